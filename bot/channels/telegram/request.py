"""python-telegram-bot's calls of the Bot API over aiohttp instead of httpx.

python-telegram-bot sends each call through a ``BaseRequest``; its own is httpx's, and
``BaseRequest`` is its documented way to use another HTTP library. Profiled on the bridge
(py-spy, one user, each message a new chat): httpx and httpcore were 60% of the bridge's CPU,
about 11 ms a message for its three calls (getUpdates, sendChatAction, sendMessage); a call
through aiohttp's client costs about 0.5 ms (``docs/performance.md``). The channels already
call Rasa with aiohttp (``bot.core.rasa_client``).

Same behaviour as python-telegram-bot's ``HTTPXRequest`` with its defaults: parameters sent
form-encoded (each value JSON, as ``RequestData.json_parameters`` gives them), files as
multipart, the same default timeouts (``pool_timeout`` counts towards aiohttp's ``connect``,
which includes waiting for a free connection), a timeout raised as ``TimedOut`` and any other
network failure as ``NetworkError``, and a proxy taken from ``HTTPS_PROXY`` / ``HTTP_PROXY`` (with
``NO_PROXY``) as httpx takes it: where Telegram is only reachable through a proxy, set it there.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


def _given(value: Any, default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


class AiohttpRequest(BaseRequest):
    """A ``BaseRequest`` on one ``aiohttp.ClientSession`` with up to ``connections`` connections."""

    def __init__(
        self,
        connections: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._connections = connections
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                headers={"User-Agent": self.USER_AGENT},
                trust_env=True,  # HTTPS_PROXY, HTTP_PROXY, NO_PROXY, as httpx's client reads them
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        parameters = request_data.json_parameters if request_data else None
        data: Any = parameters
        if files:
            data = aiohttp.FormData()
            for name, value in (parameters or {}).items():
                data.add_field(name, value)
            for name, (filename, content, mimetype) in files.items():
                data.add_field(name, content, filename=filename, content_type=mimetype)
        read = _given(read_timeout, self._read_timeout)
        write = _given(write_timeout, self._media_write_timeout if files else self._write_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            # aiohttp has no write timeout of its own: the body's sending counts towards reading
            sock_read=None if read is None else read + (write or 0),
        )
        try:
            async with self._session.request(method, url, data=data, timeout=timeout) as response:
                return response.status, await response.read()
        except asyncio.TimeoutError as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error
