"""Where conversations are kept: one SQL database, chosen by ``DATABASE_URL``.

Registered in ``endpoints.yml`` as ``tracker_store: {type: bot.stores.EnvSQLTrackerStore}``.

* unset: a SQLite file, ``var/bot.db`` in the project (zero set-up);
* ``DATABASE_URL=postgresql://postgres@127.0.0.1:5432/njupt_bot``: PostgreSQL;
  the database is created when it does not exist yet.

Conversations survive restarts either way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rasa.core.tracker_store import SQLTrackerStore
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = f"sqlite:///{ROOT / 'var' / 'bot.db'}"


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


class EnvSQLTrackerStore(SQLTrackerStore):
    """Rasa's SQL tracker store on the database named by ``DATABASE_URL``."""

    def __init__(self, domain=None, event_broker=None, **kwargs: Any) -> None:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("dialect", "host", "port", "db")}
        super().__init__(domain=domain, event_broker=event_broker, **connection_arguments(database_url()), **kwargs)
