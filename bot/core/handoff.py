"""Talk to a person: a conversation handed to the office staff, and the staff's replies.

Rasa-free, on the requests database (``bot.core.storage``). A hand-off is a request of
kind ``handoff`` (reference ``H-2026-0001``, listed by ``bot requests``) plus a row of
``handoffs`` with its state, and the ``request_messages`` of any request: the user's
messages while the hand-off is open, every staff reply (who, when, what, how it was
delivered) and the bot's notices (taken, closed, timed out). The state is in the
database, not in Rasa: the channels (``bot.plugins.handoff``) ask it before a message
reaches the bot, so a hand-off holds over REST, the web chat and Telegram alike and
survives a restart of any process.

    store = handoffs()
    handoff, created = store.open("telegram-42", "ru", transcript="user: …")
    store.active("telegram-42")               # the open hand-off, or None
    store.add_user_message(ref, "…")          # relayed to the staff
    store.take(ref, "telegram:Li Wei")        # claimed: the user is told a person replies
    message = store.reply(ref, "cli:root", "…")   # then bot.core.delivery.deliver(message)
    store.close(ref, "cli:root")              # back to the bot (the user is told)
    store.expire()                            # hand-offs quiet for HANDOFF_TIMEOUT_MINUTES

The staff's side (posts in the staff group, the answers to /take and /close) is written
in ``STAFF_LANGUAGE`` (``staff_say``; default en, zh-Hans for a Chinese office), from
the ``staff_`` texts of data/texts/<code>.yml. The staff console calls the same
functions (``list_open``, ``messages``, ``take``, ``reply`` then ``deliver``, ``close``;
each message's ``delivery`` and ``delivery_note``). Nothing here logs a message's text.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from dataclasses import dataclass, fields

import sqlalchemy as sa

from bot.core.languages import registry
from bot.core.storage import (
    OfficeRequest,
    RequestStore,
    handoffs_table,
    messages_table,
    requests_table,
    store,
)
from bot.core.texts import say

logger = logging.getLogger(__name__)

# The metadata key of the bot's reply that opened a hand-off (its reference): the channel
# then posts the hand-off in the staff group.
HANDOFF_OPENED = "handoff_opened"
# What the user sends to talk to the bot again (also the payload of the "Back to the bot" button).
BACK_TO_BOT = "/bot"
TIMEOUT_VARIABLE = "HANDOFF_TIMEOUT_MINUTES"
STAFF_LANGUAGE_VARIABLE = "STAFF_LANGUAGE"
DEFAULT_TIMEOUT_MINUTES = 30
OPEN = ("waiting", "taken")
# delivery of a staff reply or a notice
PENDING, DELIVERED, WAITING, SHOWN, UNDELIVERED = "pending", "delivered", "waiting", "shown", "undelivered"
MAX_TEXT_CHARS = 4000  # a staff reply fits one Telegram message
# The delivery notes of the bot's messages that reached the user in the reply to their own
# message (not by the page's polling): the acknowledgement of a message relayed to the staff
# ("Sent to the office staff"), the notice after "back to the bot", a timed-out notice.
ACKNOWLEDGED = "acknowledged in the reply to the user"
IN_THE_REPLY = "in the reply to the user"
BEFORE_THE_REPLY = "shown before the bot's next reply"
IN_A_REPLY = (ACKNOWLEDGED, IN_THE_REPLY, BEFORE_THE_REPLY)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def timeout_minutes() -> float:
    """``HANDOFF_TIMEOUT_MINUTES`` (default 30; 0: never times out)."""
    try:
        return max(0.0, float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_MINUTES)))
    except ValueError:
        return float(DEFAULT_TIMEOUT_MINUTES)


def staff_language(environ: dict[str, str] | None = None) -> str:
    """The language the staff read: ``STAFF_LANGUAGE``, any code or alias of data/languages.yml
    (``zh-Hans``, ``zh``, ``en``...); the default language (en) when unset or unknown."""
    value = (os.environ if environ is None else environ).get(STAFF_LANGUAGE_VARIABLE, "")
    code = registry().normalize(value)
    if code is None and value.strip():
        logger.warning("%s=%r is no language of data/languages.yml: the staff read %s", STAFF_LANGUAGE_VARIABLE,
                       value, registry().default)  # fmt: skip
    return code or registry().default


def staff_say(key: str, **values: str) -> str:
    """A ``staff_`` text in the staff's language (``STAFF_LANGUAGE``)."""
    return say(key, staff_language(), **values)


def channel_of(sender_id: str) -> str:
    """The channel a conversation is on: ``telegram``, ``web`` or ``rest`` (any other client)."""
    folded = sender_id.lower()
    return next((name for name in ("telegram", "web") if folded.startswith(f"{name}-")), "rest")


@dataclass
class Handoff:
    ref: str
    sender_id: str
    channel: str
    language: str | None
    status: str
    opened_at: dt.datetime
    last_activity_at: dt.datetime
    taken_by: str | None = None
    closed_at: dt.datetime | None = None
    closed_by: str | None = None
    closed_reason: str | None = None
    staff_post_id: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def lang(self) -> str:
        return self.language or "en"


@dataclass
class Message:
    id: int
    ref: str
    sender_id: str | None
    at: dt.datetime
    author: str  # user, staff, bot
    text: str
    staff_name: str | None = None
    language: str | None = None
    delivery: str | None = None
    delivery_note: str | None = None
    staff_post_id: int | None = None


def _row(cls, row):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


class HandoffNotFound(LookupError):
    """No hand-off (or no open one) with that reference."""


# ``has_open``'s query in the parameter style of each driver (sqlite3: qmark; psycopg2: pyformat).
_HAS_OPEN = {
    style: f"SELECT 1 FROM handoffs WHERE sender_id = {mark} AND status IN ({', '.join([mark] * len(OPEN))}) LIMIT 1"
    for style, mark in (("qmark", "?"), ("format", "%s"), ("pyformat", "%s"))
}


class HandoffStore:
    """Hand-offs and the messages of requests, on the requests' database."""

    def __init__(self, requests: RequestStore | None = None) -> None:
        self.requests = requests or store()
        self.engine = self.requests.engine

    # --- reading ---

    def get(self, ref: str) -> Handoff:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(handoffs_table).where(handoffs_table.c.ref == ref.strip().upper())
            ).first()  # fmt: skip
        if row is None:
            raise HandoffNotFound(ref)
        return _row(Handoff, row)

    def find(self, ref: str) -> Handoff | None:
        try:
            return self.get(ref)
        except HandoffNotFound:
            return None

    def has_open(self, sender_id: str) -> bool:
        """Whether the sender has an open hand-off: the check of every user message, so one indexed
        lookup straight on the database driver (14 µs on SQLite, against 270 µs for ``active``)."""
        statement = _HAS_OPEN.get(self.engine.dialect.paramstyle)
        if statement is None:  # a driver of another parameter style: the general query
            return self.active(sender_id) is not None
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(statement, (sender_id, *OPEN))
            found = cursor.fetchone() is not None
            cursor.close()
        finally:
            connection.close()  # back to the pool
        return found

    def active(self, sender_id: str) -> Handoff | None:
        """The sender's open hand-off (timed-out ones included until ``expire`` closes them)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(handoffs_table)
                .where(handoffs_table.c.sender_id == sender_id, handoffs_table.c.status.in_(OPEN))
                .order_by(handoffs_table.c.opened_at.desc())
            ).first()  # fmt: skip
        return _row(Handoff, row) if row is not None else None

    def list_open(self) -> list[Handoff]:
        """Every open hand-off, oldest first (what the console lists)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(handoffs_table).where(handoffs_table.c.status.in_(OPEN)).order_by(handoffs_table.c.opened_at)
            )  # fmt: skip
            return [_row(Handoff, row) for row in rows]

    def messages(self, ref: str, acknowledgements: bool = False) -> list[Message]:
        """A request's messages since it was made, oldest first (what the staff read: without the
        bot's acknowledgements of each relayed message, unless asked)."""
        query = sa.select(messages_table).where(messages_table.c.ref == ref.strip().upper())
        if not acknowledgements:
            query = query.where(sa.or_(messages_table.c.delivery_note.is_(None),
                                       messages_table.c.delivery_note != ACKNOWLEDGED))  # fmt: skip
        with self.engine.connect() as connection:
            return [_row(Message, row) for row in connection.execute(query.order_by(messages_table.c.id))]

    def conversation_messages(self, sender_id: str, after: int = 0) -> list[Message]:
        """A conversation's hand-off messages and replies with an id over ``after`` (the web chat)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(messages_table)
                .where(messages_table.c.sender_id == sender_id, messages_table.c.id > after)
                .order_by(messages_table.c.id)
            )  # fmt: skip
            return [_row(Message, row) for row in rows]

    def last_message_id(self, sender_id: str) -> int:
        """The id of a conversation's newest hand-off message or reply (0: none)."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.max(messages_table.c.id)).where(messages_table.c.sender_id == sender_id)
            ).scalar() or 0  # fmt: skip

    def by_post(self, post_id: int) -> str | None:
        """The reference whose post (or relayed message) in the staff group has this id."""
        with self.engine.connect() as connection:
            ref = connection.execute(
                sa.select(handoffs_table.c.ref).where(handoffs_table.c.staff_post_id == post_id)
            ).scalar()  # fmt: skip
            if ref is None:
                ref = connection.execute(
                    sa.select(messages_table.c.ref).where(messages_table.c.staff_post_id == post_id)
                ).scalar()  # fmt: skip
        return ref

    def request(self, ref: str) -> OfficeRequest:
        return self.requests.get(ref)

    # --- changing ---

    def open(self, sender_id: str, language: str, email: str | None = None, transcript: str = "",
             now: dt.datetime | None = None) -> tuple[Handoff, bool]:  # fmt: skip
        """The sender's open hand-off, or a new one (True): a request of kind ``handoff``
        whose details are the last messages of the conversation."""
        current = self.active(sender_id)
        if current is not None:
            return current, False
        now = now or now_utc()
        request = self.requests.save(
            OfficeRequest(kind="handoff", email=email or None, details=transcript, language=language,
                          sender_id=sender_id),
            now=now,
        )  # fmt: skip
        with self.engine.begin() as connection:
            connection.execute(
                handoffs_table.insert().values(
                    ref=request.ref, sender_id=sender_id, channel=channel_of(sender_id), language=language,
                    status="waiting", opened_at=now, last_activity_at=now,
                )
            )  # fmt: skip
        logger.info("hand-off %s opened (%s)", request.ref, channel_of(sender_id))
        return self.get(request.ref), True

    def _add(self, connection, ref: str, sender_id: str | None, author: str, text: str, language: str | None,
             now: dt.datetime, staff_name: str | None = None, delivery: str | None = None) -> int:  # fmt: skip
        return connection.execute(
            messages_table.insert().values(
                ref=ref, sender_id=sender_id, at=now, author=author, text=text, language=language,
                staff_name=staff_name, delivery=delivery,
            )
        ).inserted_primary_key[0]  # fmt: skip

    def _message(self, message_id: int) -> Message:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(messages_table).where(messages_table.c.id == message_id)).first()
        return _row(Message, row)

    def add_user_message(self, ref: str, text: str, now: dt.datetime | None = None) -> Message:
        """A user's message while the hand-off is open (it is relayed, not answered by the bot)."""
        handoff, now = self.get(ref), now or now_utc()
        with self.engine.begin() as connection:
            message_id = self._add(connection, handoff.ref, handoff.sender_id, "user", text, handoff.language, now)
            connection.execute(
                handoffs_table.update().where(handoffs_table.c.ref == handoff.ref).values(last_activity_at=now)
            )  # fmt: skip
        return self._message(message_id)

    def acknowledge(self, ref: str, text: str, now: dt.datetime | None = None) -> Message:
        """The bot's acknowledgement of a relayed message, as the user got it in the reply: kept
        for the web chat's history (``bot.plugins.handoff.history_events``), not shown to the staff."""
        handoff, now = self.get(ref), now or now_utc()
        with self.engine.begin() as connection:
            message_id = self._add(connection, handoff.ref, handoff.sender_id, "bot", text, handoff.language, now,
                                   delivery=DELIVERED)  # fmt: skip
            connection.execute(
                messages_table.update().where(messages_table.c.id == message_id).values(delivery_note=ACKNOWLEDGED)
            )  # fmt: skip
        return self._message(message_id)

    def notice(self, ref: str, key: str, now: dt.datetime | None = None, **extra: str) -> Message:
        """The bot's notice to the user (text ``key`` in the hand-off's language), to deliver."""
        handoff, now = self.get(ref), now or now_utc()
        text = say(key, handoff.lang, ref=handoff.ref, **extra)
        with self.engine.begin() as connection:
            message_id = self._add(connection, handoff.ref, handoff.sender_id, "bot", text, handoff.language, now,
                                   delivery=PENDING)  # fmt: skip
        return self._message(message_id)

    def take(self, ref: str, staff: str, now: dt.datetime | None = None) -> tuple[Handoff, Message | None]:
        """A staff member claims an open hand-off; the user gets a notice (None if already theirs)."""
        handoff, now = self.get(ref), now or now_utc()
        if not handoff.is_open:
            raise HandoffNotFound(f"{handoff.ref} is closed")
        if handoff.status == "taken" and handoff.taken_by == staff:
            return handoff, None
        with self.engine.begin() as connection:
            connection.execute(
                handoffs_table.update().where(handoffs_table.c.ref == handoff.ref)
                .values(status="taken", taken_by=staff, last_activity_at=now)
            )  # fmt: skip
        logger.info("hand-off %s taken", handoff.ref)
        return self.get(ref), self.notice(ref, "handoff_taken", now)

    def reply(self, ref: str, staff: str, text: str, now: dt.datetime | None = None) -> Message:
        """A staff reply to any request (hand-off, question, visit), stored before it is delivered
        (``bot.core.delivery.deliver``). A reply to an open hand-off also takes it."""
        text = text.strip()
        if not text:
            raise ValueError("the reply is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"the reply is longer than {MAX_TEXT_CHARS} characters")
        request, now = self.requests.get(ref), now or now_utc()
        handoff = self.find(request.ref)
        with self.engine.begin() as connection:
            message_id = self._add(connection, request.ref, request.sender_id or None, "staff", text,
                                   request.language, now, staff_name=staff, delivery=PENDING)  # fmt: skip
            if handoff is not None and handoff.is_open:
                connection.execute(
                    handoffs_table.update().where(handoffs_table.c.ref == handoff.ref)
                    .values(status="taken", taken_by=handoff.taken_by or staff, last_activity_at=now)
                )  # fmt: skip
        logger.info("reply to %s stored", request.ref)
        return self._message(message_id)

    def close(self, ref: str, by: str, reason: str = "staff", now: dt.datetime | None = None) -> Message | None:
        """Ends an open hand-off: the conversation is the bot's again. Returns the notice to
        deliver to the user (None when it was closed already)."""
        handoff, now = self.get(ref), now or now_utc()
        if not handoff.is_open:
            return None
        key = {"user": "handoff_ended_by_user", "timeout": "handoff_timed_out"}.get(reason, "handoff_closed")
        text = say(key, handoff.lang, ref=handoff.ref, minutes=f"{timeout_minutes():g}")
        with self.engine.begin() as connection:  # closed and the notice stored at once: no reader sees one alone
            closed = connection.execute(
                handoffs_table.update()
                .where(handoffs_table.c.ref == handoff.ref, handoffs_table.c.status.in_(OPEN))
                .values(status="closed", closed_at=now, closed_by=by, closed_reason=reason)
            ).rowcount  # fmt: skip
            if not closed:  # another process closed it at the same moment
                return None
            connection.execute(
                requests_table.update()
                .where(requests_table.c.ref == handoff.ref, requests_table.c.status == "open")
                .values(status="closed", closed_at=now)
            )  # fmt: skip
            message_id = self._add(connection, handoff.ref, handoff.sender_id, "bot", text, handoff.language, now,
                                   delivery=PENDING)  # fmt: skip
        logger.info("hand-off %s closed (%s)", handoff.ref, reason)
        return self._message(message_id)

    def expire(self, sender_id: str | None = None, now: dt.datetime | None = None) -> list[Message]:
        """Closes the open hand-offs (of one sender, or all) quiet for longer than the timeout;
        returns the notices to deliver."""
        minutes = timeout_minutes()
        if not minutes:
            return []
        now = now or now_utc()
        cutoff = now - dt.timedelta(minutes=minutes)
        query = sa.select(handoffs_table.c.ref).where(
            handoffs_table.c.status.in_(OPEN), handoffs_table.c.last_activity_at < cutoff
        )
        if sender_id is not None:
            query = query.where(handoffs_table.c.sender_id == sender_id)
        with self.engine.connect() as connection:
            refs = list(connection.execute(query).scalars())
        notices = [self.close(ref, "timeout", "timeout", now) for ref in refs]
        return [notice for notice in notices if notice is not None]

    def set_delivery(self, message_id: int, delivery: str, note: str | None = None) -> Message:
        """How a reply went. A reply the web page has already shown (it may ask before the
        sender has finished) stays ``shown``."""
        with self.engine.begin() as connection:
            current = connection.execute(
                sa.select(messages_table.c.delivery, messages_table.c.delivery_note)
                .where(messages_table.c.id == message_id)
            ).first()  # fmt: skip
            if current is not None and current.delivery == SHOWN and delivery == WAITING:
                shown = next((p for p in (current.delivery_note or "").split("; ") if p.startswith("web: shown")), None)
                delivery = SHOWN
                if note is not None and shown:
                    note = note.replace("web: waiting for the page", shown)
            values = {"delivery": delivery} | ({"delivery_note": note} if note is not None else {})
            connection.execute(messages_table.update().where(messages_table.c.id == message_id).values(**values))
        return self._message(message_id)

    def mark_shown(self, messages: list[Message], now: dt.datetime | None = None) -> None:
        """The web page has shown these replies and notices: ``waiting`` (or not yet delivered) becomes ``shown``."""
        waiting = [m.id for m in messages if m.delivery in (WAITING, PENDING)]
        if not waiting:
            return
        stamp = (now or now_utc()).strftime("%Y-%m-%d %H:%M:%S")
        with self.engine.begin() as connection:
            for message in (m for m in messages if m.id in waiting):
                note = (message.delivery_note or "web: waiting for the page").replace(
                    "web: waiting for the page", f"web: shown {stamp} UTC"
                )
                connection.execute(
                    messages_table.update()
                    .where(messages_table.c.id == message.id, messages_table.c.delivery.in_((WAITING, PENDING)))
                    .values(delivery=SHOWN, delivery_note=note)
                )  # fmt: skip

    def set_post(self, staff_post_id: int, ref: str | None = None, message_id: int | None = None) -> None:
        """Remembers the staff group's post of a hand-off (``ref``) or of a relayed message."""
        with self.engine.begin() as connection:
            if message_id is not None:
                connection.execute(
                    messages_table.update().where(messages_table.c.id == message_id).values(staff_post_id=staff_post_id)
                )  # fmt: skip
            elif ref is not None:
                connection.execute(
                    handoffs_table.update().where(handoffs_table.c.ref == ref).values(staff_post_id=staff_post_id)
                )  # fmt: skip


@functools.cache
def handoffs() -> HandoffStore:
    """The hand-off store of this process, opened on first use."""
    return HandoffStore()
