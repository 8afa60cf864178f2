"""Rate limits and a cap on requests in flight, for every public entry point.

    limits = RateLimits.from_env()
    retry_after = await limits.check(ip=client_ip, sender=sender)   # None: go ahead
    if retry_after: answer 429 with Retry-After: retry_after

Each key (an IP address, a conversation) has a leaky bucket from aiolimiter:
``RATE_LIMIT_PER_SENDER`` messages per minute for one conversation (default 30:
more than a person types), ``RATE_LIMIT_PER_IP`` per minute for one address
(default 300: an office behind one NAT). ``MAX_IN_FLIGHT`` (default 64) caps
the requests a process handles at once; past it, new ones get a 429 at once
rather than a queue that grows until everything times out. The buckets live in
the process: with several replicas each applies its own.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

PERIOD = 60.0  # seconds: the rates are per minute
MAX_KEYS = 100_000  # buckets kept (least recently used dropped first)


class Busy(Exception):
    """Too many requests in flight; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("too many requests in flight")
        self.retry_after = retry_after


class Buckets:
    """One leaky bucket per key, ``rate`` requests per ``PERIOD``."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._limiters: OrderedDict[str, AsyncLimiter] = OrderedDict()

    async def take(self, key: str) -> int | None:
        """None when ``key`` may go ahead (and count it), else seconds to wait."""
        if self.rate <= 0:
            return None
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = AsyncLimiter(self.rate, PERIOD)
            if len(self._limiters) > MAX_KEYS:
                self._limiters.popitem(last=False)
        self._limiters.move_to_end(key)
        if not limiter.has_capacity():
            return max(1, math.ceil(PERIOD / self.rate))
        await limiter.acquire()  # immediate: there is capacity
        return None


@dataclass
class RateLimits:
    per_ip: int = 300
    per_sender: int = 30
    max_in_flight: int = 64

    def __post_init__(self) -> None:
        self._ips = Buckets(self.per_ip)
        self._senders = Buckets(self.per_sender)
        self._in_flight = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RateLimits:
        env = os.environ if environ is None else environ
        return cls(
            per_ip=int(env.get("RATE_LIMIT_PER_IP", cls.per_ip)),
            per_sender=int(env.get("RATE_LIMIT_PER_SENDER", cls.per_sender)),
            max_in_flight=int(env.get("MAX_IN_FLIGHT", cls.max_in_flight)),
        )

    async def check(self, ip: str | None = None, sender: str | None = None) -> int | None:
        """None when the request may go ahead, else the seconds for ``Retry-After``."""
        for buckets, key in ((self._ips, ip), (self._senders, sender)):
            if key:
                wait = await buckets.take(key)
                if wait:
                    return wait
        return None

    @asynccontextmanager
    async def slot(self):
        """Holds one of ``max_in_flight`` places, or raises Busy at once."""
        if self.max_in_flight > 0 and self._in_flight >= self.max_in_flight:
            raise Busy()
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1


def client_ip(peer: str | None, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The client's address: the peer's, or the last untrusted hop of X-Forwarded-For
    when the peer is a trusted proxy (``TRUSTED_PROXIES``, default the loopback)."""
    peer = peer or ""
    if peer in trusted and forwarded_for:
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if hop not in trusted:
                return hop
    return peer


def trusted_proxies(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if environ is None else environ
    return frozenset(p.strip() for p in env.get("TRUSTED_PROXIES", "127.0.0.1,::1").split(",") if p.strip())
