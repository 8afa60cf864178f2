"""The one database of the bot, named by ``DATABASE_URL``.

Unset: a SQLite file, ``var/bot.db`` in the project (zero set-up). Set, e.g.
``postgresql://postgres@127.0.0.1:5432/njupt_bot``: that database. Used by the
tracker store (bot/plugins/stores.py) and the requests table (bot/core/storage.py).
No Rasa import, so the action server and the `bot` command stay light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bot.core.paths import ROOT, VAR

DEFAULT_URL = f"sqlite:///{VAR / 'bot.db'}"


def database_url() -> str:
    """The database every part of the bot uses: ``DATABASE_URL`` or the SQLite file."""
    return os.environ.get("DATABASE_URL") or DEFAULT_URL


def connection_arguments(url: str) -> dict[str, Any]:
    """SQLTrackerStore's keyword arguments for an SQLAlchemy URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "bot.db")
        path = path if path.is_absolute() else ROOT / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return {"dialect": "sqlite", "db": str(path)}
    return {
        "dialect": parsed.drivername,
        "host": parsed.host,
        "port": parsed.port,
        "db": parsed.database,
        "username": parsed.username,
        "password": parsed.password,
        # connect to the server's own database first, to create ours if missing
        "login_db": "postgres" if parsed.get_backend_name() == "postgresql" else None,
        "query": dict(parsed.query),
    }


def open_engine(url: str | None = None):
    """An SQLAlchemy engine on the bot's database (``DATABASE_URL`` by default).

    A relative SQLite path is taken from the project's folder, as the tracker store
    does; a missing PostgreSQL database is created.
    """
    import sqlalchemy as sa

    url = url or database_url()
    if make_url(url).get_backend_name() == "sqlite":
        path = connection_arguments(url)["db"]  # absolute, its folder created
        return sa.create_engine(f"sqlite:///{path}", hide_parameters=True, **sqlite_pool(timeout=30))
    ensure_database(url)
    # hide_parameters: an error never prints a visitor's name or e-mail into a log
    return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)


def sqlite_pool(**connect_args: Any) -> dict[str, Any]:
    """``create_engine`` arguments that keep SQLite connections open between uses. SQLAlchemy 1.4
    opens a new connection to a SQLite file for each use and closes it after (``NullPool``): with
    its set-up statements, a third of the cost of saving a turn. A pooled connection is used by
    one thread at a time, whichever it is."""
    import sqlalchemy as sa

    return {"poolclass": sa.pool.QueuePool, "connect_args": {"check_same_thread": False, **connect_args}}


def ensure_database(url: str) -> None:
    """Creates the PostgreSQL database of ``url`` when it does not exist yet."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return
    import sqlalchemy as sa

    server = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            ).first()
            if not exists:
                connection.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
    finally:
        server.dispose()
