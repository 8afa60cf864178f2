"""Where conversations are kept: one SQL database, chosen by ``DATABASE_URL``.

Registered in ``endpoints.yml`` as ``tracker_store: {type: bot.plugins.stores.EnvSQLTrackerStore}``.

* unset: a SQLite file, ``var/bot.db`` in the project (zero set-up);
* ``DATABASE_URL=postgresql://postgres@127.0.0.1:5432/njupt_bot``: PostgreSQL;
  the database is created when it does not exist yet.

Conversations survive restarts either way. The engine hides statement
parameters from its errors and logs (``hide_parameters``): an error on an
insert would otherwise print the user's message.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs

from bot.core.database import connection_arguments, database_url


class EnvSQLTrackerStore(SQLTrackerStore):
    """Rasa's SQL tracker store on the database named by ``DATABASE_URL``."""

    def __init__(self, domain=None, event_broker=None, **kwargs: Any) -> None:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("dialect", "host", "port", "db")}
        super().__init__(domain=domain, event_broker=event_broker, **connection_arguments(database_url()), **kwargs)
        url = self.engine.url
        self.engine.dispose()
        self.engine = sa.create_engine(url, hide_parameters=True, **create_engine_kwargs(url))
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
