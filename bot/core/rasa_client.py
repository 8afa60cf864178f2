"""The one client the channels use to call the Rasa server (httpx).

    client = RasaClient("http://127.0.0.1:5005", channel_token=os.environ.get("WEB_CHANNEL_TOKEN"))
    replies = await client.send("web-…", "Where is the office?", {"language": "en"})
    events = await client.history("web-…")

``send`` posts to the REST channel (``/webhooks/rest/webhook``); ``history``
reads one conversation's events from the REST channel's history endpoint. The
channel's token (``bot.core.senders``) goes in a header, never in a URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

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
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(self.timeout, connect=5.0)
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
            self._client = httpx.AsyncClient(timeout=timeout, limits=limits, headers=self.headers)
        return self._client

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.client.request(method, self.url + path, **kwargs)
            data = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise RasaUnavailable(type(error).__name__) from error
        if response.status_code >= 500:
            raise RasaUnavailable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            raise RasaRefused(response.status_code, error if isinstance(error, str) else "refused")
        return data

    async def send(self, sender: str, text: str, metadata: dict[str, str] | None = None) -> list[Reply]:
        """The bot's replies to one message (each a dict with text, buttons, language)."""
        body = {"sender": sender, "message": text, "metadata": metadata or {}}
        replies = await self._json("POST", "/webhooks/rest/webhook", json=body)
        if not isinstance(replies, list):
            raise RasaUnavailable("the REST channel did not return a list")
        return [reply for reply in replies if isinstance(reply, dict)]

    async def history(self, sender: str) -> list[dict[str, Any]]:
        """The events of one conversation since its last restart."""
        data = await self._json("GET", f"/webhooks/rest/history/{quote(sender, safe='')}")
        events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(events, list):
            raise RasaUnavailable("the history endpoint did not return events")
        return events

    async def handoff(self, sender: str, after: int = 0) -> dict[str, Any]:
        """A conversation's staff replies and notices newer than ``after``, and its open hand-off."""
        data = await self._json("GET", f"/webhooks/rest/handoff/{quote(sender, safe='')}", params={"after": after})
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise RasaUnavailable("the hand-off endpoint did not return messages")
        return data

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
