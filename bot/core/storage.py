"""Visit requests and messages to the office, kept in a real database.

SQLAlchemy (1.4, as Rasa 3.6 ships) on the database named by ``DATABASE_URL``
(``bot.core.database``): a SQLite file by default, PostgreSQL in production. The schema
is created on first use and upgraded in place by numbered migrations, so no
request is lost when it changes. References (``V-2027-0001`` for visits,
``Q-2026-0001`` for questions, ``H-2026-0001`` for a conversation handed to the
staff: bot/core/handoff.py) come from a counter row updated in the same
transaction as the insert, so concurrent writers (several action-server
workers) never lose a request or share a reference.

Personal data (names, e-mails, questions) lives in the ``office_requests``
table (and, as typed, in the conversations of the tracker store); nothing here
logs it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.core.database import open_engine

logger = logging.getLogger(__name__)

KINDS = {"visit": "V", "question": "Q", "handoff": "H"}
# The key of the PostgreSQL advisory lock held while the schema changes.
MIGRATION_LOCK = 0x6E6A7570
STATUSES = ("open", "closed")

metadata = sa.MetaData()
requests_table = sa.Table(
    "office_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ref", sa.String(20), nullable=False, unique=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("status", sa.String(10), nullable=False, default="open"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("closed_at", sa.DateTime),
    sa.Column("note", sa.Text),
    sa.Column("language", sa.String(10)),
    sa.Column("sender_id", sa.String(128)),
    sa.Column("full_name", sa.String(200)),
    sa.Column("institution", sa.String(300)),
    sa.Column("country", sa.String(100)),
    sa.Column("email", sa.String(254)),
    sa.Column("purpose", sa.String(30)),
    sa.Column("arrival", sa.Date),
    sa.Column("departure", sa.Date),
    sa.Column("details", sa.Text),  # topic or notes of a visit; the question of a message
)
counters_table = sa.Table(
    "office_request_counters",
    metadata,
    sa.Column("prefix", sa.String(10), primary_key=True),  # e.g. "V-2027"
    sa.Column("value", sa.Integer, nullable=False),
)
schema_table = sa.Table("office_schema", metadata, sa.Column("version", sa.Integer, nullable=False))
# A conversation handed to the office staff (bot/core/handoff.py): its request is the
# office_requests row of kind "handoff" with the same ref (H-2026-0001).
handoffs_table = sa.Table(
    "handoffs",
    metadata,
    sa.Column("ref", sa.String(20), primary_key=True),
    sa.Column("sender_id", sa.String(128), nullable=False, index=True),
    sa.Column("channel", sa.String(20), nullable=False),  # telegram, web, rest
    sa.Column("language", sa.String(10)),
    sa.Column("status", sa.String(10), nullable=False),  # waiting, taken, closed
    sa.Column("taken_by", sa.String(200)),
    sa.Column("opened_at", sa.DateTime, nullable=False),
    sa.Column("last_activity_at", sa.DateTime, nullable=False),
    sa.Column("closed_at", sa.DateTime),
    sa.Column("closed_by", sa.String(200)),
    sa.Column("closed_reason", sa.String(20)),  # staff, user, timeout
    sa.Column("staff_post_id", sa.BigInteger),  # its post in the staff Telegram group
)
# The messages of a request after it was made: a hand-off's user messages, every staff
# reply to any request (who, when, what, and how it was delivered), the bot's notices.
messages_table = sa.Table(
    "request_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ref", sa.String(20), nullable=False, index=True),
    sa.Column("sender_id", sa.String(128), index=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("author", sa.String(10), nullable=False),  # user, staff, bot
    sa.Column("staff_name", sa.String(200)),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("language", sa.String(10)),
    sa.Column("delivery", sa.String(20)),  # pending, delivered, waiting, shown, undelivered
    sa.Column("delivery_note", sa.Text),  # per way: "telegram: sent; e-mail: off (SMTP_URL not set)"
    sa.Column("staff_post_id", sa.BigInteger),  # a user message's copy in the staff group
)

# --- the staff console (bot/staff/): accounts, sessions, login failures, audit, inbox decisions ---
staff_users_table = sa.Table(
    "staff_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=False),  # Argon2id, with its salt and parameters
    sa.Column("created_at", sa.DateTime, nullable=False),
)
staff_sessions_table = sa.Table(
    "staff_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # SHA-256 of the cookie: a leaked row opens nothing
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
)
staff_login_failures_table = sa.Table(
    "staff_login_failures",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),  # "user:NAME" or "ip:ADDRESS"
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("locked_until", sa.DateTime),
)
staff_audit_table = sa.Table(
    "staff_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime, nullable=False, index=True),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)
inbox_decisions_table = sa.Table(
    "inbox_decisions",
    metadata,
    sa.Column("group_id", sa.String(16), primary_key=True),  # hash of the language and the normalised text
    sa.Column("language", sa.String(10), nullable=False),
    sa.Column("text", sa.Text, nullable=False),  # the normalised text the decision is about
    sa.Column("decision", sa.String(10), nullable=False),  # assigned | todo | ignored
    sa.Column("intent", sa.String(100)),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("decided_at", sa.DateTime, nullable=False),
)
publishes_table = sa.Table(
    "staff_publishes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # baseline | published | failed | rolled_back | rollback
    sa.Column("model", sa.String(300)),  # the model file, relative to the project
    sa.Column("data_snapshot", sa.String(300)),  # data/ as published, a .tar.gz relative to the project
    sa.Column("changes", sa.Text, nullable=False, default=""),  # what changed since the previous publish
    sa.Column("detail", sa.Text, nullable=False, default=""),  # why it failed, the timings
    sa.Column("git_commit", sa.String(64)),
    sa.Column("seconds", sa.Float),
)
STAFF_TABLES = (
    staff_users_table,
    staff_sessions_table,
    staff_login_failures_table,
    staff_audit_table,
    inbox_decisions_table,
    publishes_table,
)


def _create_v1(connection: Connection) -> None:
    for table in (requests_table, counters_table):
        table.create(connection, checkfirst=True)


def _create_v2_staff(connection: Connection) -> None:
    """The staff console's tables (issue 13)."""
    for table in STAFF_TABLES:
        table.create(connection, checkfirst=True)


def _create_v3_handoff(connection: Connection) -> None:
    """Hand-offs to the staff and the messages of requests (needs only office_requests)."""
    for table in (handoffs_table, messages_table):
        table.create(connection, checkfirst=True)


# Numbered schema changes, applied in order, each in its own transaction.
# Add new ones at the end; never edit one that has shipped.
MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1, _create_v2_staff, _create_v3_handoff]


@dataclass
class OfficeRequest:
    """One visit request or message to the office."""

    kind: str
    email: str | None
    details: str = ""
    language: str = "en"
    sender_id: str = ""
    full_name: str | None = None
    institution: str | None = None
    country: str | None = None
    purpose: str | None = None
    arrival: dt.date | None = None
    departure: dt.date | None = None
    ref: str = ""
    status: str = "open"
    created_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    note: str | None = None
    id: int | None = field(default=None, repr=False)

    @classmethod
    def from_row(cls, row: sa.engine.Row) -> OfficeRequest:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row._mapping.items() if k in names})


class RequestNotFound(LookupError):
    pass


def _sqlite_immediate_transactions(engine: Engine) -> None:
    """SQLite: take the write lock at BEGIN, so two writers queue instead of deadlocking."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _insert_if_missing(dialect: str, prefix: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(counters_table).values(prefix=prefix, value=0).on_conflict_do_nothing()


class RequestStore:
    """The requests table: save, list, show, close, purge."""

    def __init__(self, url: str | None = None) -> None:
        self.engine = open_engine(url)
        if self.engine.dialect.name == "sqlite":
            _sqlite_immediate_transactions(self.engine)
        self.upgrade()

    def schema_version(self, connection: Connection) -> int:
        schema_table.create(connection, checkfirst=True)
        version = connection.execute(sa.select(schema_table.c.version)).scalar()
        if version is None:
            connection.execute(schema_table.insert().values(version=0))
            return 0
        return version

    def _lock(self, connection: Connection) -> None:
        """PostgreSQL: one process at a time changes the schema (the lock ends with the
        transaction); SQLite's BEGIN IMMEDIATE already serialises writers."""
        if self.engine.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})

    def upgrade(self) -> int:
        """Applies the migrations not applied yet; returns the schema version."""
        with self.engine.begin() as connection:
            self._lock(connection)
            version = self.schema_version(connection)
        for number, migration in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            with self.engine.begin() as connection:
                self._lock(connection)
                if self.schema_version(connection) >= number:  # another process did it
                    continue
                migration(connection)
                connection.execute(schema_table.update().values(version=number))
                logger.info("database schema upgraded to version %d", number)
            version = number
        return version

    def save(self, request: OfficeRequest, now: dt.datetime | None = None) -> OfficeRequest:
        """Stores a new request and gives it its reference."""
        if request.kind not in KINDS:
            raise ValueError(f"unknown kind {request.kind!r}")
        now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        prefix = f"{KINDS[request.kind]}-{(request.arrival or now).year if request.kind == 'visit' else now.year}"
        with self.engine.begin() as connection:
            # the counter row exists (a concurrent first insert is a no-op), then is
            # incremented: the UPDATE locks it until this transaction commits
            connection.execute(_insert_if_missing(self.engine.dialect.name, prefix))
            connection.execute(
                counters_table.update().where(counters_table.c.prefix == prefix)
                .values(value=counters_table.c.value + 1)
            )  # fmt: skip
            number = connection.execute(
                sa.select(counters_table.c.value).where(counters_table.c.prefix == prefix)
            ).scalar_one()
            request.ref, request.created_at, request.status = f"{prefix}-{number:04d}", now, "open"
            values = {f.name: getattr(request, f.name) for f in fields(request) if f.name != "id"}
            request.id = connection.execute(requests_table.insert().values(**values)).inserted_primary_key[0]
        logger.info("saved %s request %s", request.kind, request.ref)
        return request

    def list(self, status: str = "open", kind: str | None = None) -> list[OfficeRequest]:
        query = sa.select(requests_table).order_by(requests_table.c.id)
        if status != "all":
            query = query.where(requests_table.c.status == status)
        if kind:
            query = query.where(requests_table.c.kind == kind)
        with self.engine.connect() as connection:
            return [OfficeRequest.from_row(row) for row in connection.execute(query)]

    def get(self, ref: str) -> OfficeRequest:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(requests_table).where(requests_table.c.ref == ref.strip().upper())
            ).first()  # fmt: skip
        if row is None:
            raise RequestNotFound(ref)
        return OfficeRequest.from_row(row)

    def close(self, ref: str, note: str | None = None) -> OfficeRequest:
        request = self.get(ref)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        with self.engine.begin() as connection:
            connection.execute(
                requests_table.update().where(requests_table.c.id == request.id)
                .values(status="closed", closed_at=now, note=note if note is not None else request.note)
            )  # fmt: skip
        return self.get(ref)

    def purge(self, older_than_days: int, now: dt.datetime | None = None) -> int:
        """Deletes requests created more than ``older_than_days`` ago; returns how many."""
        now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        cutoff = now - dt.timedelta(days=older_than_days)
        with self.engine.begin() as connection:
            return connection.execute(
                requests_table.delete().where(requests_table.c.created_at < cutoff)
            ).rowcount  # fmt: skip


def open_store_engine(url: str | None = None) -> Engine:
    """An engine on the bot's database with the schema upgraded (the staff console's entry)."""
    return RequestStore(url).engine


@functools.cache
def store() -> RequestStore:
    """The store of this process, opened on first use."""
    return RequestStore()


COLUMNS = ["ref", "kind", "status", "created_at", "closed_at", "note", "language", "full_name", "institution",
           "country", "email", "purpose", "arrival", "departure", "details", "sender_id"]  # fmt: skip


def rows(requests: Iterable[OfficeRequest]) -> list[dict[str, object]]:
    """Plain dicts, for CSV, JSON and tables."""
    names = COLUMNS
    return [{name: getattr(r, name) for name in names} for r in requests]
