"""The web chat: the page at http://localhost:8080/ and its small API, in front of Rasa.

    python -m bot.channels.web.server --rasa-url http://127.0.0.1:5005 [--host 127.0.0.1] [--port 8080]

``bot run`` (``make run``) starts it next to the Rasa server and gives both the
web channel's token (``WEB_CHANNEL_TOKEN``, random at each start): with it, and
only with it, this server may speak for ``web-`` conversations on Rasa's REST
channel and read their history (``bot.core.senders``); it has no access to
Rasa's admin API. It serves the page in
``bot/channels/web/static/`` (plain HTML, CSS and JavaScript: no build step, nothing fetched from
elsewhere) and, on the same origin, the only URLs the page calls:

    POST /api/message           {"sender", "message", "language"} -> Rasa's REST channel
                                -> [{"text", "buttons": [{"title", "payload"}]}]
    GET  /api/history/<sender>  the conversation, read from Rasa's tracker store, with the office
                                staff's replies -> {"messages": [{"role": "user"|"bot"|"staff", "text",
                                "buttons", "language"}], "handoff": ref|null, "last": id}
    GET  /api/updates/<sender>?after=<id>
                                the staff's replies and notices newer than <id>, asked by the page
                                every 2 s while the staff have the conversation (every 30 s otherwise)
                                -> {"messages": [...], "handoff": ref|null, "last": id}
    GET  /embed.js              a chat button and panel for another site (one <script> tag)
    GET  /api/health            this server is up (says nothing of Rasa)
    /staff/...                  the staff console, behind a login (bot/channels/web/console.py)

The channel's token stays in this process: the browser never sees it. The page
makes its own sender id, ``web-`` and 128 random bits, so through this server one
can read only web conversations, and only one whose id one holds. When Rasa
cannot be reached, /api/message and /api/history answer 503 ``{"error":
"unreachable"}`` and the page says so and retries. Over the rate limits
(``bot.core.ratelimit``: per address, per conversation, requests in flight)
the API answers 429 with ``Retry-After``. Access logs never show a
conversation id.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from bot.channels.web import console as staff_console
from bot.core.languages import registry
from bot.core.limits import MAX_MESSAGE_CHARS
from bot.core.rasa_client import RasaClient, RasaRefused, RasaUnavailable
from bot.core.ratelimit import Busy, RateLimits, client_ip, trusted_proxies
from bot.core.senders import is_web_sender
from bot.core.texts import say, texts
from bot.staff.service import Console

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MAX_HINT_CHARS = 35
# The history holds every staff reply: the page asks for those after the last one it has.
HISTORY_HAS_ALL = 2**53
TEXT_PREFIX = "web_"
# A button's payload that switches the language, as the page and the bot send it.
CHANGE_LANGUAGE = re.compile(r'^/change_language\{\s*"language"\s*:\s*"([^"]+)"\s*\}$')

FILES = {
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/staff.css": ("staff.css", "text/css"),
}
# Only this origin's own files: no inline script, no CDN, no web font. Which
# sites may embed the page in a frame: WEB_FRAME_ANCESTORS (default: its own origin).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors {frame_ancestors}"
)
FRAME_ANCESTOR = re.compile(r"'self'|'none'|https?://(\*\.)?[A-Za-z0-9.-]+(:(\d+|\*))?")


def frame_ancestors(value: str | None) -> str:
    """The CSP's frame-ancestors from WEB_FRAME_ANCESTORS (space-separated origins); bad entries are dropped."""
    kept = [origin for origin in (value or "").split() if FRAME_ANCESTOR.fullmatch(origin)]
    return " ".join(kept) or "'self'"


HEADERS = {
    "Content-Security-Policy": CSP.format(frame_ancestors=frame_ancestors(os.environ.get("WEB_FRAME_ANCESTORS"))),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
RASA = web.AppKey("rasa", RasaClient)
LIMITS = web.AppKey("limits", RateLimits)
PROXIES = web.AppKey("proxies", frozenset)


# --- what the page says --------------------------------------------------------


def page_texts() -> dict[str, Any]:
    """Every ``web_`` text in every language, the languages' own names and aliases."""
    reg, source = registry(), texts()
    keys = [key for key in source.by_language[reg.default] if key.startswith(TEXT_PREFIX)]
    aliases = {}
    for lang in reg.languages.values():
        aliases |= {alias: lang.code for alias in (lang.code.lower(), *lang.aliases)}
    return {
        "default": reg.default,
        "languages": [{"code": c, "name": source.raw("language_name", c)} for c in reg.codes],
        "aliases": aliases,
        "texts": {code: {key: say(key, code) for key in keys} for code in reg.codes},
    }


def render_index() -> str:
    """index.html with the texts inlined as a JSON data block (no request, no flash)."""
    data = json.dumps(page_texts(), ensure_ascii=False).replace("</", "<\\/")
    return (STATIC / "index.html").read_text(encoding="utf-8").replace("{{TEXTS}}", data)


def render_embed() -> str:
    """embed.js with the chat button's texts in every language."""
    page = page_texts()
    data = {
        "default": page["default"],
        "aliases": page["aliases"],
        "texts": {
            code: {key: by_key[f"web_{key}"] for key in ("open_chat", "close_chat", "page_title")}
            for code, by_key in page["texts"].items()
        },
    }
    script = (STATIC / "embed.js").read_text(encoding="utf-8")
    inline = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return script.replace("/*TEXTS*/null", inline)


# --- the conversation from the tracker ---------------------------------------------


def _buttons(raw: Any) -> list[dict[str, str]]:
    return [
        {"title": str(b.get("title") or ""), "payload": str(b.get("payload") or "")}
        for b in (raw if isinstance(raw, list) else [])
        if isinstance(b, dict)
    ]


def _language(code: object) -> str | None:
    """A reply's language (the bot's own tag) when it is one the bot speaks."""
    return code if isinstance(code, str) and code in registry().languages else None


def conversation(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages a user saw, from a tracker's events.

    A user message that is a button's payload is shown as the button's title, as
    the page showed it; a language switch as the language's name. Each message has
    the language it is in, for the page's ``lang`` (None when unknown): a bot
    message its tag; a user message the language it was sent in (the one
    switched to, the button's message's, else the hint sent with it).
    """
    messages: list[dict[str, Any]] = []
    titles: dict[str, tuple[str, str | None]] = {}
    for event in events:
        kind = event.get("event")
        if kind == "bot":
            text = event.get("text") or ""
            buttons = _buttons((event.get("data") or {}).get("buttons"))
            if text or buttons:
                metadata = event.get("metadata") or {}
                language = _language(metadata.get("language"))
                role = "staff" if metadata.get("author") == "staff" else "bot"
                messages.append({"role": role, "text": text, "buttons": buttons, "language": language})
                titles.update({b["payload"]: (b["title"], language) for b in buttons})
        elif kind == "user":
            text = event.get("text") or ""
            switch = CHANGE_LANGUAGE.match(text)
            switched = _language(switch.group(1)) if switch else None
            language = switched or registry().normalize((event.get("metadata") or {}).get("language"))
            if text in titles:
                text, language = titles[text][0], switched or titles[text][1] or language
            elif switched:
                text = texts().raw("language_name", switched)
            messages.append({"role": "user", "text": text, "buttons": [], "language": language})
    return messages


# --- the routes --------------------------------------------------------------------


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


def unreachable() -> web.Response:
    return _error("unreachable", 503)


async def index(request: web.Request) -> web.Response:
    return web.Response(text=render_index(), content_type="text/html", headers=HEADERS)


async def static(request: web.Request) -> web.Response:
    name, content_type = FILES[request.path]
    body = (STATIC / name).read_bytes()
    return web.Response(body=body, content_type=content_type, headers=HEADERS)


async def embed(request: web.Request) -> web.Response:
    # Loaded by other sites' pages: any origin may use it, with no credentials.
    headers = {**HEADERS, "Access-Control-Allow-Origin": "*"}
    return web.Response(text=render_embed(), content_type="text/javascript", headers=headers)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def too_many(retry_after: int) -> web.Response:
    return web.json_response({"error": "too many requests"}, status=429, headers={"Retry-After": str(retry_after)})


async def limited(request: web.Request, sender: str) -> web.Response | None:
    """A 429 when this address or conversation is over its rate, else None."""
    ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), request.app[PROXIES])
    retry_after = await request.app[LIMITS].check(ip=ip, sender=sender)
    return too_many(retry_after) if retry_after else None


async def message(request: web.Request) -> web.Response:
    try:
        # JSON is UTF-8 (RFC 8259): a charset in Content-Type is not looked up (a bogus one raised
        # LookupError), and nesting too deep for the parser is a bad request, not a crash.
        body = json.loads(await request.read())
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        return _error('expected {"sender": "web-…", "message": "text", "language": "en"}', 400)
    sender, text, hint = body.get("sender"), body.get("message"), body.get("language")
    if not isinstance(sender, str) or not is_web_sender(sender):
        return _error('"sender" must be "web-" and 16 to 100 letters, digits, - or _', 400)
    if not isinstance(text, str) or not text.strip():
        return _error('"message" must be a non-empty string', 400)
    if len(text) > MAX_MESSAGE_CHARS:
        return _error(f'"message" is longer than {MAX_MESSAGE_CHARS} characters', 413)
    if (refusal := await limited(request, sender)) is not None:
        return refusal
    metadata = {"language": hint} if isinstance(hint, str) and 0 < len(hint) <= MAX_HINT_CHARS else {}
    try:
        async with request.app[LIMITS].slot():
            data = await request.app[RASA].send(sender, text, metadata)
    except Busy as busy:
        return too_many(busy.retry_after)
    except RasaRefused as refused:
        if refused.status == 429:
            return too_many(1)
        return _error(str(refused), refused.status)
    except RasaUnavailable as error:
        logger.warning("Rasa cannot be reached: %s", error)
        return unreachable()
    replies = [
        {"text": m.get("text") or "", "buttons": _buttons(m.get("buttons")), "language": _language(m.get("language")),
         **({"handoff": m["handoff"]} if isinstance(m.get("handoff"), str) else {})}
        for m in data
    ]  # fmt: skip
    return web.json_response([r for r in replies if r["text"] or r["buttons"]])


async def history(request: web.Request) -> web.Response:
    sender = request.match_info["sender"]
    if not is_web_sender(sender):
        return _error("unknown conversation", 404)
    if (refusal := await limited(request, None)) is not None:
        return refusal
    try:
        events = await request.app[RASA].history(sender)
        state = await request.app[RASA].handoff(sender, HISTORY_HAS_ALL)
    except (RasaRefused, RasaUnavailable) as error:
        logger.warning("Rasa did not give the conversation history: %s", type(error).__name__)
        return unreachable()
    return web.json_response({"messages": conversation(events), "handoff": state.get("handoff"),
                              "last": state.get("last", 0)})  # fmt: skip


async def updates(request: web.Request) -> web.Response:
    """The office staff's replies newer than ``after`` (the page asks every few seconds)."""
    sender = request.match_info["sender"]
    if not is_web_sender(sender):
        return _error("unknown conversation", 404)
    after = request.query.get("after", "0")
    if not after.isdigit() or len(after) > 12:
        return _error('"after" must be a message id', 400)
    if (refusal := await limited(request, None)) is not None:
        return refusal
    try:
        state = await request.app[RASA].handoff(sender, int(after))
    except (RasaRefused, RasaUnavailable) as error:
        logger.warning("Rasa did not give the staff's replies: %s", type(error).__name__)
        return unreachable()
    return web.json_response({"messages": conversation(state["messages"]), "handoff": state.get("handoff"),
                              "last": state.get("last", int(after))})  # fmt: skip


class AccessLogger(AbstractAccessLogger):
    """Access log lines without conversation ids (the history path's last part is hidden)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = request.path
        if path.startswith(("/api/history/", "/api/updates/")):
            path = path[: path.index("/", 5) + 1] + "…"
        self.logger.info("%s %s %s %.0f ms", request.method, path, response.status, time * 1000)


# --- the application ---------------------------------------------------------------


def make_app(
    rasa_url: str, channel_token: str | None, limits: RateLimits | None = None, console: Console | None = None
) -> web.Application:
    """The web chat; with ``console``, also the staff console at /staff/ (``bot.channels.web.console``)."""
    app = web.Application(client_max_size=64 * 1024, middlewares=[staff_console.guard])
    app[RASA] = RasaClient(rasa_url, channel_token=channel_token)
    app[LIMITS] = limits or RateLimits.from_env()
    app[PROXIES] = trusted_proxies()
    page_texts()  # a broken texts file stops the server now, not on the first visit

    async def close_client(app: web.Application) -> None:
        await app[RASA].close()

    app.on_cleanup.append(close_client)
    app.router.add_get("/", index)
    for path in FILES:
        app.router.add_get(path, static)
    app.router.add_get("/embed.js", embed)
    app.router.add_get("/api/health", health)
    app.router.add_post("/api/message", message)
    app.router.add_get("/api/history/{sender}", history)
    app.router.add_get("/api/updates/{sender}", updates)
    if console is not None:
        staff_console.add_routes(app, console)
    return app


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("WEB_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("WEB_PORT", "8080")))
    parser.add_argument("--rasa-url", default=os.environ.get("RASA_URL", "http://127.0.0.1:5005"))
    args = parser.parse_args(argv)
    token = os.environ.get("WEB_CHANNEL_TOKEN")
    if not token:
        logger.warning("WEB_CHANNEL_TOKEN is not set: Rasa will refuse this server's messages (start it with bot run)")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines show conversation ids in URLs
    app = make_app(args.rasa_url, token, console=Console())
    # On libuv's event loop (uvloop, as Rasa's own server): the server's CPU per message 2.3 -> 1.7 ms.
    web.run_app(app, host=args.host, port=args.port, print=None, access_log_class=AccessLogger,
                loop=uvloop.new_event_loop())  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
