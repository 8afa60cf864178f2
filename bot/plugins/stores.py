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
the tracker was read, without counting the stored ones.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Generator, Iterator
from typing import Any

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs, ensure_schema_exists
from rasa.shared.core.trackers import DialogueStateTracker

from bot.core.database import connection_arguments, database_url

# User messages (with the bot's answers to them) that Rasa sees in full. Rules look one or two
# turns back and the actions the previous user message; ten is ample.
RECENT_TURNS = 10
# Events whose latest occurrence before the recent part still counts: the form, paused or not.
LATEST_OF_KIND = ({"active_loop"}, {"pause", "resume"}, {"action"})
# Events after which older state no longer applies: then the whole session is read (rare).
RESETS = ("restart", "reset_slots", "rewind", "undo")
# The PostgreSQL advisory lock held while the tracker store creates its database and table.
SCHEMA_LOCK = 0x6E6A7074  # "njpt"
# How many events of the conversation the tracker held when it was read or last saved.
STORED = "_njupt_stored_events"


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


class EnvSQLTrackerStore(SQLTrackerStore):
    """Rasa's SQL tracker store on the database named by ``DATABASE_URL``; reads the recent part."""

    def __init__(self, domain=None, event_broker=None, **kwargs: Any) -> None:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("dialect", "host", "port", "db")}
        with _one_at_a_time(database_url()):
            super().__init__(domain=domain, event_broker=event_broker, **connection_arguments(database_url()), **kwargs)
        url = self.engine.url
        self.engine.dispose()
        self.engine = sa.create_engine(url, hide_parameters=True, **create_engine_kwargs(url))
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _write_ahead)
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)

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
        ids = [row[0] for row in session.query(event.id).filter(*in_session, event.id < first_user)]  # its start
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
        with self.session_scope() as session:
            rows = self._recent_rows(session, sender_id)
        if not self.domain or not rows:
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, [json.loads(row.data) for row in rows], self.domain.slots)
        setattr(tracker, STORED, len(tracker.events))
        return tracker

    def _additional_events(self, session: Any, tracker: DialogueStateTracker) -> Iterator:
        stored = getattr(tracker, STORED, None)
        if stored is None:  # a tracker made elsewhere (a new conversation, the tracker API): count
            return super()._additional_events(session, tracker)
        return itertools.islice(tracker.events, stored, len(tracker.events))

    async def save(self, tracker: DialogueStateTracker) -> None:
        await super().save(tracker)
        setattr(tracker, STORED, len(tracker.events))

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
