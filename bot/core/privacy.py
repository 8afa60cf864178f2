"""Erasing personal data for real: retention, and a user's own "forget me".

Visitors' names and e-mails are kept twice: in the ``office_requests`` table
(with a hand-off's messages and the staff's replies in ``handoffs`` and
``request_messages``) and, as typed and in slots, in the conversation's events
(Rasa's ``events`` table, same database). Erasing one without the other erases nothing, so every
function here deletes both, then compacts the database so that the file keeps
no copy of the deleted rows (SQLite: ``VACUUM`` and a WAL checkpoint;
PostgreSQL: ``VACUUM``, ``FULL`` for the retention purge).

    purge(older_than_days=365)   # bot requests purge / bot conversations purge / bot run, daily
    erase_sender("telegram-42")  # "forget me"; staff: bot requests erase REF
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.core.database import open_engine
from bot.core.storage import handoffs_table, messages_table, requests_table

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 365
# The metadata key of a bot reply after which the channel erases the conversation.
ERASE_CONVERSATION = "erase_conversation"


@dataclass
class Erased:
    requests: int = 0
    conversations: int = 0

    def __add__(self, other: Erased) -> Erased:
        return Erased(self.requests + other.requests, self.conversations + other.conversations)


def _events(engine: Engine) -> sa.Table | None:
    if not sa.inspect(engine).has_table("events"):
        return None  # no conversation stored yet
    return sa.Table("events", sa.MetaData(), autoload_with=engine)


def _has_requests(engine: Engine) -> bool:
    return sa.inspect(engine).has_table(requests_table.name)


def compact(engine: Engine, full: bool = False) -> None:
    """Rewrites the database so that deleted rows leave no copy in its files."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("VACUUM")
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        elif engine.dialect.name == "postgresql":
            for table in ("events", requests_table.name, messages_table.name):
                if sa.inspect(engine).has_table(table):
                    connection.exec_driver_sql(f"VACUUM {'FULL ' if full else ''}{table}")


def _delete_senders(engine: Engine, senders: set[str]) -> Erased:
    erased = Erased()
    if not senders:
        return erased
    events = _events(engine)
    with engine.begin() as connection:
        if events is not None:
            erased.conversations = len(
                connection.execute(
                    sa.select(events.c.sender_id).where(events.c.sender_id.in_(senders)).distinct()
                ).all()
            )
            connection.execute(events.delete().where(events.c.sender_id.in_(senders)))
        if _has_requests(engine):
            erased.requests = connection.execute(
                requests_table.delete().where(requests_table.c.sender_id.in_(senders))
            ).rowcount
            _delete_orphans(engine, connection, senders)
    return erased


def _delete_orphans(engine: Engine, connection: sa.engine.Connection, senders: set[str] = frozenset()) -> None:
    """The hand-offs and messages of these senders, and of requests that are gone."""
    for table in (handoffs_table, messages_table):
        if sa.inspect(connection).has_table(table.name):
            gone = ~table.c.ref.in_(sa.select(requests_table.c.ref))
            connection.execute(table.delete().where(table.c.sender_id.in_(senders) | gone if senders else gone))


def erase_sender(sender_id: str, url: str | None = None, engine: Engine | None = None) -> Erased:
    """Deletes one person's conversation and requests, then compacts the database."""
    own = engine is None
    engine = engine or open_engine(url)
    try:
        erased = _delete_senders(engine, {sender_id})
        compact(engine)
        return erased
    finally:
        if own:
            engine.dispose()


def erase_requests(sender_id: str, url: str | None = None) -> int:
    """Deletes the requests one person made (the action server's half of "forget me";
    the conversation is erased by the channel, after Rasa has stored the turn)."""
    engine = open_engine(url)
    try:
        if not _has_requests(engine):
            return 0
        with engine.begin() as connection:
            deleted = connection.execute(
                requests_table.delete().where(requests_table.c.sender_id == sender_id)
            ).rowcount
            _delete_orphans(engine, connection, {sender_id})
        if deleted:
            compact(engine)
        return deleted
    finally:
        engine.dispose()


def erase_request(ref: str, url: str | None = None) -> Erased:
    """Deletes one request and the conversation it came from (staff, on a person's demand)."""
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sa.select(requests_table.c.id, requests_table.c.sender_id).where(
                    requests_table.c.ref == ref.strip().upper()
                )
            ).first()
        if row is None:
            return Erased()
        erased = _delete_senders(engine, {row.sender_id}) if row.sender_id else Erased()
        with engine.begin() as connection:
            erased.requests += connection.execute(requests_table.delete().where(requests_table.c.id == row.id)).rowcount
            _delete_orphans(engine, connection)
        compact(engine)
        return erased
    finally:
        engine.dispose()


def purge(older_than_days: int, url: str | None = None, now: float | None = None) -> Erased:
    """The retention period: deletes every request created more than ``older_than_days`` ago
    with the whole conversation it came from, and every conversation idle that long with
    the requests it made; then compacts the database."""
    now = time.time() if now is None else now
    cutoff = now - older_than_days * 86400
    cutoff_time = dt.datetime.fromtimestamp(cutoff, dt.timezone.utc).replace(tzinfo=None)
    engine = open_engine(url)
    try:
        senders: set[str] = set()
        old_requests = 0
        with engine.connect() as connection:
            events = _events(engine)
            if events is not None:
                idle = sa.select(events.c.sender_id).group_by(events.c.sender_id)
                idle = idle.having(sa.func.max(events.c.timestamp) < cutoff)
                senders |= set(connection.execute(idle).scalars())
            if _has_requests(engine):
                old = sa.select(requests_table.c.sender_id).where(requests_table.c.created_at < cutoff_time)
                senders |= {s for s in connection.execute(old).scalars() if s}
        erased = _delete_senders(engine, senders)
        if _has_requests(engine):
            with engine.begin() as connection:
                old_requests = connection.execute(
                    requests_table.delete().where(requests_table.c.created_at < cutoff_time)
                ).rowcount
                _delete_orphans(engine, connection)
        erased.requests += old_requests
        compact(engine, full=True)
        logger.info("retention: %d request(s), %d conversation(s) erased", erased.requests, erased.conversations)
        return erased
    finally:
        engine.dispose()
