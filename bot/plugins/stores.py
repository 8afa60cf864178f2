"""Where conversations are kept: one SQL database, chosen by ``DATABASE_URL``.

Registered in ``endpoints.yml`` as ``tracker_store: {type: bot.plugins.stores.EnvSQLTrackerStore}``.

* unset: a SQLite file, ``var/bot.db`` in the project (zero set-up);
* ``DATABASE_URL=postgresql://postgres@127.0.0.1:5432/njupt_bot``: PostgreSQL;
  the database is created when it does not exist yet.

Conversations survive restarts either way. The engine hides statement
parameters from its errors and logs (``hide_parameters``): an error on an
insert would otherwise print the user's message.

A reply costs the same at the 400th message as at the first: to answer, Rasa
gets only the recent part of the conversation (``RECENT_TURNS`` user messages
and what followed them), preceded by what the older part left behind: the
session's start, the latest value of every slot, the active form and the last
action. Rasa replays those events, its rules look at them and the action server
is sent them, so none of that grows with the conversation. Every event is still
stored; the history, the tracker API and "forget me" read the whole
conversation (``retrieve_full_tracker``). Saving appends the events added since
the tracker was read, in one statement, without counting the stored ones. A new
conversation is stored with its first turn: Rasa's ``create_tracker`` saves the
empty conversation first (a transaction of its own for one "listen" event); here
that event waits for the turn's save.

Between two messages of a conversation its tracker stays in memory (the last
``CACHED_CONVERSATIONS`` conversations): the next message costs one indexed query
(the conversation's latest event id) instead of reading and replaying its events.
The query makes the copy safe whoever else writes: another replica, "forget me",
the staff's erasure; when the stored conversation is not what the copy was saved
as, it is read again. A retrieved copy leaves the cache (its owner changes it),
and comes back when it is saved, cut to the recent part exactly as the SQL read
cuts it (``recent_part``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import OrderedDict, deque
from collections.abc import Generator, Iterator
from typing import Any

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs, ensure_schema_exists
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import ActionExecuted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.core.database import connection_arguments, database_url, sqlite_pool

# User messages (with the bot's answers to them) that Rasa sees in full, besides the new one. Rules
# look one or two turns back, the actions at most the previous user message, the staff's post of a
# hand-off the last six messages: three is enough. Each message's cost grows with this number (the
# rules' states, the copies of the tracker, the tracker sent to the action server).
RECENT_TURNS = 3
# Events whose latest occurrence before the recent part still counts: the form, paused or not.
LATEST_OF_KIND = ({"active_loop"}, {"pause", "resume"}, {"action"})
# Events of the session's start that the latest of their kind replaces.
REPLACED = ("slot", *set().union(*LATEST_OF_KIND))
# Events after which older state no longer applies: then the whole session is read (rare).
RESETS = ("restart", "reset_slots", "rewind", "undo")
# The PostgreSQL advisory lock held while the tracker store creates its database and table.
SCHEMA_LOCK = 0x6E6A7074  # "njpt"
# How many events of the conversation the tracker held when it was read or last saved, and the id
# of the conversation's latest stored event then.
STORED = "_njupt_stored_events"
LATEST = "_njupt_latest_event_id"
# The index that makes the latest event id of one conversation one lookup on PostgreSQL, however
# many events it has (Rasa's own index is on sender_id alone).
LATEST_INDEX = "CREATE INDEX IF NOT EXISTS ix_events_sender_id_id ON events (sender_id, id)"
# The events table's columns that a saved event fills (``_row``).
ROW_COLUMNS = ("sender_id", "type_name", "timestamp", "intent_name", "action_name", "data")
# Conversations whose tracker is kept in memory between messages (the least recent leaves first).
CACHED_CONVERSATIONS = 1000


def _write_ahead(connection: Any, _record: Any) -> None:
    """SQLite in write-ahead mode: a saved turn is one append to the log, not a rewrite of pages with
    two syncs; it is synced at checkpoints (``synchronous=NORMAL``), and still survives a crash of the
    servers (not a power cut between checkpoints). Readers do not wait for the writer."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@contextlib.contextmanager
def _one_at_a_time(url: str) -> Generator[None, None, None]:
    """On PostgreSQL, one replica at a time creates the database and the events table (two at
    once collide on the table's type, and Rasa waits 5 s to try again): a session advisory lock
    taken in the server's own database, which always exists."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        yield
        return
    engine = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT", hide_parameters=True)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK})
    finally:
        engine.dispose()


def recent_part(events: list[Any]) -> list[Any] | None:
    """What ``EnvSQLTrackerStore._recent_rows`` reads, taken from a tracker's events in memory: the
    latest session's start, what its older part left behind and its last ``RECENT_TURNS`` user
    messages with what followed; None when a reset in the older part makes all of it count."""
    starts = [i for i, event in enumerate(events) if event.type_name == "session_started"]
    start = starts[-1] if starts else 0
    users = [i for i in range(start, len(events)) if events[i].type_name == "user"]
    if len(users) <= RECENT_TURNS:
        return events[start:]
    cut, first_user = users[-RECENT_TURNS], users[0]
    older = range(start, cut)
    if any(events[i].type_name in RESETS for i in older):
        return None
    # The session's start, without what the latest of each kind below replaces: trimming again
    # and again keeps the same number of events.
    keep = {i for i in range(start, first_user) if events[i].type_name not in REPLACED}
    latest_slot = {events[i].key: i for i in older if events[i].type_name == "slot"}
    keep.update(latest_slot.values())
    for kinds in LATEST_OF_KIND:
        found = [i for i in older if events[i].type_name in kinds]
        keep.update(found[-1:])
    return [events[i] for i in sorted(keep)] + events[cut:]


def _only_listening(events: list[Any]) -> bool:
    """Whether ``events`` are only what Rasa's ``create_tracker`` gives a new conversation."""
    return all(isinstance(event, ActionExecuted) and event.action_name == ACTION_LISTEN_NAME for event in events)


class EnvSQLTrackerStore(SQLTrackerStore):
    """Rasa's SQL tracker store on the database named by ``DATABASE_URL``; reads the recent part."""

    def __init__(self, domain=None, event_broker=None, **kwargs: Any) -> None:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("dialect", "host", "port", "db")}
        with _one_at_a_time(database_url()):
            super().__init__(domain=domain, event_broker=event_broker, **connection_arguments(database_url()), **kwargs)
            if self.engine.dialect.name == "postgresql":  # SQLite's index on sender_id already ends with the id
                with self.engine.begin() as connection:
                    connection.execute(sa.text(LATEST_INDEX))
        url = self.engine.url
        self.engine.dispose()
        sqlite = url.get_backend_name() == "sqlite"
        options = sqlite_pool() if sqlite else create_engine_kwargs(url)
        self.engine = sa.create_engine(url, hide_parameters=True, **options)
        if sqlite:
            sa.event.listen(self.engine, "connect", _write_ahead)
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        self._saved: OrderedDict[str, DialogueStateTracker] = OrderedDict()  # sender id -> its tracker as saved
        self._unstored: set[str] = set()  # conversations found empty, whose first save appends all
        table = self.SQLEvent.__table__
        self._latest_query = sa.select(sa.func.max(table.c.id)).where(table.c.sender_id == sa.bindparam("sender_id"))
        self._insert = table.insert()
        # On SQLite a turn is appended, and the latest event id read, straight on the driver:
        # SQLAlchemy's own work was two thirds of a save (100 against 40 µs for five events).
        # PostgreSQL keeps SQLAlchemy, which sends the rows in one statement where psycopg2's
        # executemany would make a round trip of each.
        self._sqlite_append = None
        if sqlite:
            insert = self._insert.compile(dialect=self.engine.dialect, column_keys=list(ROW_COLUMNS))
            latest = self._latest_query.compile(dialect=self.engine.dialect)
            self._sqlite_append = (insert.string, insert.positiontup, latest.string)

    def _latest_id(self, connection: Any, sender_id: str) -> int | None:
        """The id of the conversation's latest stored event (one indexed query, compiled once)."""
        return connection.execute(self._latest_query, {"sender_id": sender_id}).scalar()

    def _recent_rows(self, session: Any, sender_id: str) -> list[Any]:
        """The rows Rasa needs of the latest session, in order (see the module's docstring)."""
        event = self.SQLEvent
        mine = event.sender_id == sender_id
        start = session.query(sa.func.max(event.id)).filter(mine, event.type_name == "session_started").scalar()
        in_session = (mine, event.id >= start) if start is not None else (mine,)
        cut = (
            session.query(event.id).filter(*in_session, event.type_name == "user")
            .order_by(event.id.desc()).offset(RECENT_TURNS - 1).limit(1).scalar()
        )  # fmt: skip
        older = (*in_session, event.id < cut) if cut is not None else None
        if older is None or session.query(event.id).filter(*older, event.type_name.in_(RESETS)).first():
            return session.query(event).filter(*in_session).order_by(event.id).all()
        first_user = session.query(sa.func.min(event.id)).filter(*in_session, event.type_name == "user").scalar()
        # the session's start, but for what the latest of each kind below replaces
        start_rows = session.query(event.id).filter(*in_session, event.id < first_user)
        ids = [row[0] for row in start_rows.filter(event.type_name.notin_(REPLACED))]
        slots = session.query(sa.func.max(event.id)).filter(*older, event.type_name == "slot")
        ids += [row[0] for row in slots.group_by(event.action_name)]
        for kinds in LATEST_OF_KIND:
            latest = session.query(sa.func.max(event.id)).filter(*older, event.type_name.in_(kinds)).scalar()
            ids += [latest] if latest is not None else []
        before = session.query(event).filter(event.id.in_(ids)).order_by(event.id).all()
        return before + session.query(event).filter(mine, event.id >= cut).order_by(event.id).all()

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool) -> DialogueStateTracker | None:
        if fetch_events_from_all_sessions:
            return await super()._retrieve(sender_id, fetch_events_from_all_sessions)
        latest = self._latest(sender_id)
        tracker = self._saved.pop(sender_id, None)
        saved_as = (getattr(tracker, LATEST, None), getattr(tracker, STORED, None))
        if tracker is not None and saved_as == (latest, len(tracker.events)):
            return tracker  # as saved (a turn that failed after changing it does not count)
        rows = []
        if latest is not None:
            with self.session_scope() as session:
                rows = self._recent_rows(session, sender_id)
        if latest is None and len(self._unstored) < CACHED_CONVERSATIONS:
            self._unstored.add(sender_id)
        if not self.domain or not rows:
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, [json.loads(row.data) for row in rows], self.domain.slots)
        setattr(tracker, STORED, len(tracker.events))
        setattr(tracker, LATEST, latest)
        return tracker

    def forget(self, sender_id: str) -> None:
        """Drops the conversation's copy in memory (its events have been erased)."""
        self._saved.pop(sender_id, None)

    def _new_events(self, tracker: DialogueStateTracker) -> list[Any] | None:
        """The events added since the tracker was read or saved; None when that is not known."""
        stored = getattr(tracker, STORED, None)
        if stored is None and tracker.sender_id in self._unstored:
            stored = 0  # a new conversation (Rasa's create_tracker)
        return None if stored is None else list(itertools.islice(tracker.events, stored, len(tracker.events)))

    def _additional_events(self, session: Any, tracker: DialogueStateTracker) -> Iterator:
        new = self._new_events(tracker)
        return super()._additional_events(session, tracker) if new is None else iter(new)

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Rasa's, with the new events appended in one statement; then the tracker is kept as saved."""
        sender_id = tracker.sender_id
        new = self._new_events(tracker)
        if sender_id in self._unstored and new is not None and _only_listening(new):
            return  # Rasa's create_tracker: a new conversation's first "listen" is stored with its first turn
        await self.stream_events(tracker)
        if new is None:  # a tracker made elsewhere (the tracker API): count the stored events
            with self.session_scope() as session:
                new = list(super()._additional_events(session, tracker))
        rows = [self._row(sender_id, event) for event in new]
        latest = getattr(tracker, LATEST, None)
        if rows or latest is None:
            latest = self._append(sender_id, rows)
        self._unstored.discard(sender_id)
        setattr(tracker, STORED, len(tracker.events))
        setattr(tracker, LATEST, latest)
        self._keep(tracker)

    def _latest(self, sender_id: str) -> int | None:
        """The id of the conversation's latest stored event; on SQLite straight on the driver."""
        if self._sqlite_append is None:
            with self.engine.connect() as connection:
                return self._latest_id(connection, sender_id)
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(self._sqlite_append[2], (sender_id,))
            latest = cursor.fetchone()[0]
            cursor.close()
            connection.commit()  # ends the read: the log can be checkpointed past it
        finally:
            connection.close()  # back to the pool
        return latest

    def _append(self, sender_id: str, rows: list[dict[str, Any]]) -> int | None:
        """Appends the rows and reads the conversation's latest event id back, in one transaction.
        The lock store keeps other replicas off this conversation: the latest is ours."""
        if self._sqlite_append is None:
            with self.engine.begin() as connection:
                if rows:
                    connection.execute(self._insert, rows)  # executemany: one statement, compiled once
                return self._latest_id(connection, sender_id)
        insert, columns, latest_query = self._sqlite_append
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            if rows:
                cursor.executemany(insert, [tuple(row[column] for column in columns) for row in rows])
            cursor.execute(latest_query, (sender_id,))
            latest = cursor.fetchone()[0]
            cursor.close()
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()  # back to the pool
        return latest

    @staticmethod
    def _row(sender_id: str, event: Any) -> dict[str, Any]:
        """The events table's row of one event, as Rasa's ``save`` writes it."""
        data = event.as_dict()
        intent = ((data.get("parse_data") or {}).get("intent") or {}).get("name")
        return {"sender_id": sender_id, "type_name": event.type_name, "timestamp": data.get("timestamp"),
                "intent_name": intent, "action_name": data.get("name"), "data": json.dumps(data)}  # fmt: skip

    def _keep(self, tracker: DialogueStateTracker) -> None:
        """Keeps the saved tracker for the conversation's next message, with its older part dropped
        in memory as ``_recent_rows`` drops it in SQL: the tracker Rasa works on stays the same
        size however long the conversation, and the next message finds what a read would give."""
        if getattr(tracker, LATEST) is None:
            self._saved.pop(tracker.sender_id, None)
            return
        if sum(isinstance(event, UserUttered) for event in tracker.events) > RECENT_TURNS:
            kept = recent_part(list(tracker.events))
            if kept is None:  # a reset in the older part: the next message reads the session again
                self._saved.pop(tracker.sender_id, None)
                return
            tracker.events = deque(kept)  # the state (slots, form, latest message) is unchanged
            setattr(tracker, STORED, len(kept))
        self._saved[tracker.sender_id] = tracker
        self._saved.move_to_end(tracker.sender_id)
        while len(self._saved) > CACHED_CONVERSATIONS:
            self._saved.popitem(last=False)

    @contextlib.contextmanager
    def session_scope(self) -> Generator[sa.orm.Session, None, None]:
        """Rasa's, except for one thing: Rasa takes any ValueError in the scope for a missing
        PostgreSQL schema and exits the server, so one message with a lone surrogate (SQLite
        cannot encode it) or a NUL (PostgreSQL refuses it) stopped the bot (found by
        ``make fuzz``). Here an error fails that one message (the channels apologise)."""
        session = self.sessionmaker()
        try:
            ensure_schema_exists(session)  # POSTGRESQL_SCHEMA missing: ValueError, as an error, not an exit
            yield session
        finally:
            session.close()
