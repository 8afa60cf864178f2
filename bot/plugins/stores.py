"""Where conversations are kept: one SQL database, chosen by ``DATABASE_URL``.

Registered in ``endpoints.yml`` as ``tracker_store: {type: bot.plugins.stores.EnvSQLTrackerStore}``.

* unset: a SQLite file, ``var/bot.db`` in the project (zero set-up);
* ``DATABASE_URL=postgresql://postgres@127.0.0.1:5432/njupt_bot``: PostgreSQL;
  the database is created when it does not exist yet.

Conversations survive restarts either way.
"""

from __future__ import annotations

from typing import Any

from rasa.core.tracker_store import SQLTrackerStore

from bot.core.database import connection_arguments, database_url


class EnvSQLTrackerStore(SQLTrackerStore):
    """Rasa's SQL tracker store on the database named by ``DATABASE_URL``."""

    def __init__(self, domain=None, event_broker=None, **kwargs: Any) -> None:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("dialect", "host", "port", "db")}
        super().__init__(domain=domain, event_broker=event_broker, **connection_arguments(database_url()), **kwargs)
