"""The inbox of unanswered questions, read from the tracker store (Rasa's ``events`` table).

A user message is *unanswered* when the model gave it the fallback
(``nlu_fallback``), the out-of-scope intent, or an intent below the confidence
threshold (``INBOX_CONFIDENCE_THRESHOLD``, default 0.5). Messages are grouped by
language and normalised text (case folded, Traditional folded to Simplified with
OpenCC as the model's tokenizer does, punctuation and repeated spaces dropped),
with their count, first and last time seen, channels (from the conversation id,
``bot.core.senders``) and the bot's best guess (the most frequent intent of the
ranking other than the fallback and out-of-scope).

A group's id is a hash of its language and normalised text, so it stays the same
from one listing to the next, and a decision on it (``assigned`` to an intent,
``todo``: needs a new answer, ``ignored``) holds for the same text when it comes
again. ``bot inbox ...`` and the staff console (/staff/) both use this module.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass, field

import sqlalchemy as sa

from bot.core.languages import detect, registry, to_simplified
from bot.core.senders import channel_of
from bot.core.storage import inbox_decisions_table, open_store_engine

FALLBACK, OUT_OF_SCOPE = "nlu_fallback", "out_of_scope"
DEFAULT_THRESHOLD = 0.5
DECISIONS = ("assigned", "todo", "ignored")
STATUSES = ("open", *DECISIONS, "all")
MAX_TEXT_CHARS = 500  # longer messages are not questions staff would add as examples


def threshold() -> float:
    """INBOX_CONFIDENCE_THRESHOLD: below it an answered intent still counts as unanswered."""
    try:
        return float(os.environ.get("INBOX_CONFIDENCE_THRESHOLD") or DEFAULT_THRESHOLD)
    except ValueError:
        return DEFAULT_THRESHOLD


def normalise(text: str) -> str:
    """Near-identical texts made identical: folded case and script, no punctuation, single spaces."""
    folded = to_simplified(unicodedata.normalize("NFKC", text)).casefold()
    kept = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in folded)
    return " ".join(kept.split())


def group_id(language: str, normal: str) -> str:
    return hashlib.sha256(f"{language}\n{normal}".encode()).hexdigest()[:10]


@dataclass
class Message:
    """One unanswered user message."""

    sender: str
    text: str
    language: str
    reason: str  # fallback | out_of_scope | low_confidence
    intent: str | None
    confidence: float
    guess: str | None
    at: dt.datetime


@dataclass
class Group:
    id: str
    language: str
    normal: str
    text: str  # the most frequent form as typed
    count: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    channels: list[str]
    guess: str | None
    reasons: list[str]
    status: str = "open"
    intent: str | None = None  # the intent it was assigned to
    decided_by: str | None = None
    texts: collections.Counter = field(default_factory=collections.Counter, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "language": self.language, "text": self.text, "count": self.count,
            "first_seen": self.first_seen.isoformat(" ", "seconds"),
            "last_seen": self.last_seen.isoformat(" ", "seconds"),
            "channels": self.channels, "guess": self.guess, "reasons": self.reasons, "status": self.status,
            "intent": self.intent, "decided_by": self.decided_by,
        }  # fmt: skip


class GroupNotFound(LookupError):
    pass


def _reason(intent: str | None, confidence: float, limit: float) -> str | None:
    if intent == FALLBACK:
        return "fallback"
    if intent == OUT_OF_SCOPE:
        return "out_of_scope"
    if intent and confidence < limit:
        return "low_confidence"
    return None


def _guess(parse: dict) -> str | None:
    for entry in parse.get("intent_ranking") or []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name and name not in (FALLBACK, OUT_OF_SCOPE):
            return name
    return None


def _language(text: str, hint: object) -> str:
    reg = registry()
    found = detect(text).language
    if found == "zh":
        found = "zh-Hans"
    return found if found in reg.languages else reg.normalize(hint) or reg.default


def user_and_bot_events(engine: sa.engine.Engine, since: dt.datetime | None = None):
    """The query of every user and bot event in Rasa's tracker store (since ``since``), one
    conversation after another in order: (sender_id, type_name, timestamp, data). None when
    the tracker store has no table yet."""
    if not sa.inspect(engine).has_table("events"):
        return None
    events = sa.Table("events", sa.MetaData(), autoload_with=engine)
    query = (
        sa.select(events.c.sender_id, events.c.type_name, events.c.timestamp, events.c.data)
        .where(events.c.type_name.in_(("user", "bot")))
        .order_by(events.c.sender_id, events.c.id)
    )
    if since is not None:
        query = query.where(events.c.timestamp >= since.replace(tzinfo=dt.timezone.utc).timestamp())
    return query


class Inbox:
    """The unanswered messages of the bot's database, grouped, and the staff's decisions on them."""

    def __init__(self, url: str | None = None, limit: float | None = None, engine: sa.engine.Engine | None = None):
        self.engine = engine or open_store_engine(url)
        self.limit = threshold() if limit is None else limit

    def messages(self, since: dt.datetime | None = None) -> list[Message]:
        """Every unanswered user message (since ``since``), with the language the bot answered it in."""
        query = user_and_bot_events(self.engine, since)
        if query is None:
            return []
        found: list[Message] = []
        waiting: Message | None = None  # an unanswered message waiting for the language of its reply
        with self.engine.connect() as connection:
            for sender, kind, timestamp, raw in connection.execute(query):
                try:
                    data = json.loads(raw or "{}")
                except ValueError:
                    continue
                if kind == "bot":
                    language = (data.get("metadata") or {}).get("language")
                    if waiting is not None and waiting.sender == sender and language in registry().languages:
                        waiting.language = language
                    waiting = None
                    continue
                waiting = None
                text = (data.get("text") or "").strip()
                parse = data.get("parse_data") or {}
                intent = (parse.get("intent") or {}).get("name")
                confidence = float((parse.get("intent") or {}).get("confidence") or 0.0)
                reason = _reason(intent, confidence, self.limit)
                if not text or text.startswith("/") or len(text) > MAX_TEXT_CHARS or reason is None:
                    continue
                at = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).replace(tzinfo=None)
                language = _language(text, (data.get("metadata") or {}).get("language"))
                waiting = Message(sender, text, language, reason, intent, confidence, _guess(parse), at)
                found.append(waiting)
        return found

    def decisions(self) -> dict[str, dict]:
        with self.engine.connect() as connection:
            return {row.group_id: dict(row._mapping) for row in connection.execute(sa.select(inbox_decisions_table))}

    def groups(
        self, language: str | None = None, since: dt.datetime | None = None, status: str = "open"
    ) -> list[Group]:
        """The groups of unanswered messages, most frequent first."""
        by_id: dict[str, Group] = {}
        guesses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for message in self.messages(since):
            if language and message.language != language:
                continue
            normal = normalise(message.text)
            if not normal:
                continue
            key = group_id(message.language, normal)
            group = by_id.get(key)
            if group is None:
                group = by_id[key] = Group(key, message.language, normal, message.text, 0, message.at, message.at,
                                           [], None, [])  # fmt: skip
            group.count += 1
            group.first_seen, group.last_seen = min(group.first_seen, message.at), max(group.last_seen, message.at)
            group.texts[message.text] += 1
            channel = channel_of(message.sender)
            if channel not in group.channels:
                group.channels.append(channel)
            if message.reason not in group.reasons:
                group.reasons.append(message.reason)
            if message.guess:
                guesses[key][message.guess] += 1
        decisions = self.decisions()
        for key, group in by_id.items():
            group.text = group.texts.most_common(1)[0][0]
            group.guess = guesses[key].most_common(1)[0][0] if guesses[key] else None
            decision = decisions.get(key)
            if decision:
                group.status, group.intent = decision["decision"], decision["intent"]
                group.decided_by = decision["username"]
        chosen = [g for g in by_id.values() if status == "all" or g.status == status]
        return sorted(chosen, key=lambda g: (-g.count, -g.last_seen.timestamp(), g.id))

    def get(self, group: str) -> Group:
        found = [g for g in self.groups(status="all") if g.id == group.strip().lower()]
        if not found:
            raise GroupNotFound(group)
        return found[0]

    def decide(self, group: Group, decision: str, username: str, intent: str | None = None) -> None:
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}")
        table = inbox_decisions_table
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        values = {"language": group.language, "text": group.normal, "decision": decision, "intent": intent,
                  "username": username, "decided_at": now}  # fmt: skip
        with self.engine.begin() as connection:
            connection.execute(table.delete().where(table.c.group_id == group.id))
            connection.execute(table.insert().values(group_id=group.id, **values))
        group.status, group.intent, group.decided_by = decision, intent, username
