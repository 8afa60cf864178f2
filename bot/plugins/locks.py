"""Rasa's RedisLockStore on ``REDIS_URL``, its tickets changed atomically: one conversation, one replica at a time.

Registered by ``bot.cli.servers`` in the endpoints file it writes when ``REDIS_URL`` is set
(``lock_store: {type: bot.plugins.locks.EnvRedisLockStore, key_prefix: njupt}``); the URL,
password included, stays in the environment, never in a file.

Rasa takes a ticket of the conversation's lock before it handles a message and waits until its
ticket is served. Its RedisLockStore (Rasa 3.6) reads the lock, changes it in Python and writes
it back, with no transaction: two replicas taking a ticket at the same time both get the same
number, and a replica deleting a lock nobody waits for deletes the ticket another replica took
meanwhile (that message then fails with ``LockError``). Here each change is one Redis
transaction (``WATCH``, then ``MULTI``/``EXEC``, repeated if the lock changed meanwhile), in the
same keys and format as Rasa's. A waiting message looks again every ``WAIT_SECONDS`` (Rasa: 1 s,
so 20 messages of one sender at once took 20 s or more). A ticket lives ``TICKET_LOCK_LIFETIME``
seconds (Rasa's variable, default 60): a replica killed while it holds one delays that
conversation's next message until then, never longer.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from rasa.core.lock import TicketLock
from rasa.core.lock_store import DEFAULT_SOCKET_TIMEOUT_IN_SECONDS, LOCK_LIFETIME, LockError, RedisLockStore

# Seconds between two looks of a waiting message at the lock.
WAIT_SECONDS = 0.05


class EnvRedisLockStore(RedisLockStore):
    """RedisLockStore on the Redis server of ``REDIS_URL`` (``redis://[:password@]host:port/db``,
    ``rediss://`` for TLS), with atomic ticket changes."""

    def __init__(self, endpoint_config: Any = None) -> None:
        import redis

        url = os.environ.get("REDIS_URL", "").strip()
        if not url:
            raise LockError("the Redis lock store needs REDIS_URL, e.g. redis://127.0.0.1:6379/0")
        self.red = redis.Redis.from_url(url, socket_timeout=DEFAULT_SOCKET_TIMEOUT_IN_SECONDS)
        self.red.ping()  # a wrong URL or password stops the start, not the first message
        self.key_prefix = "lock:"
        prefix = (endpoint_config.kwargs if endpoint_config else {}).get("key_prefix")
        if prefix:
            self._set_key_prefix(str(prefix))
        super(RedisLockStore, self).__init__()

    def _change(self, conversation_id: str, change: Any) -> Any:
        """Applies ``change(lock or None) -> (lock to keep or None, result)`` in one transaction."""
        key = self.key_prefix + conversation_id

        def attempt(pipe: Any) -> Any:
            raw = pipe.get(key)
            lock = TicketLock.from_dict(json.loads(raw)) if raw else None
            kept, result = change(lock)
            pipe.multi()
            if kept is None or not kept.tickets:
                pipe.delete(key)
            else:  # the key goes when its last ticket would have expired
                expires = max(ticket.expires for ticket in kept.tickets)
                pipe.set(key, kept.dumps(), ex=max(1, math.ceil(expires - time.time()) + 1))
            return result

        return self.red.transaction(attempt, key, value_from_callable=True)

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        def issue(lock: TicketLock | None) -> tuple[TicketLock, int]:
            lock = lock or TicketLock(conversation_id)
            return lock, lock.issue_ticket(lock_lifetime)

        try:
            return self._change(conversation_id, issue)
        except Exception as error:  # as Rasa's: the message fails with a LockError
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    def update_lock(self, conversation_id: str) -> None:
        lock = self.get_lock(conversation_id)
        if lock is None or not any(ticket.has_expired() for ticket in lock.tickets):
            return  # nothing to change: no write while waiting

        def drop_expired(lock: TicketLock | None) -> tuple[TicketLock | None, None]:
            if lock is not None:
                lock.remove_expired_tickets()
            return lock, None

        self._change(conversation_id, drop_expired)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        def finish(lock: TicketLock | None) -> tuple[TicketLock | None, None]:
            if lock is not None:
                lock.remove_ticket_for(ticket_number)
            return lock, None

        self._change(conversation_id, finish)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        # One transaction: the lock is deleted only if no ticket was taken meanwhile.
        self.finish_serving(conversation_id, ticket_number)

    @asynccontextmanager
    async def lock(
        self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME, wait_time_in_seconds: float = WAIT_SECONDS
    ) -> AsyncGenerator[TicketLock, None]:
        async with super().lock(conversation_id, lock_lifetime, wait_time_in_seconds) as lock:
            yield lock
