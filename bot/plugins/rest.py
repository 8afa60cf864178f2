"""The REST channel at ``/webhooks/rest/webhook``: Rasa's own, made safe to face users.

Registered in ``credentials.yml`` as ``bot.plugins.rest.RestChannel``. Same URL and
JSON as Rasa's built-in REST channel::

    POST /webhooks/rest/webhook
    {"sender": "alice", "message": "Where is the office?", "metadata": {"language": "zh-CN"}}

What it adds:

* malformed requests (no JSON object, no sender, a message that is not text,
  over ``MAX_MESSAGE_CHARS``) get a 400/413 with a JSON ``error`` instead of a
  stack trace;
* only known metadata keys (``language``: the channel's language hint) reach
  the conversation;
* a sender id of another channel (``web-…``, ``telegram-…``) is refused (403)
  unless the request carries that channel's token (``bot.core.senders``);
* rate limits per client address and per conversation, and a cap on requests
  in flight (``bot.core.ratelimit``): over them, a 429 with ``Retry-After``;
* ``GET /webhooks/rest/history/<sender>`` gives one conversation's events to
  the channel that owns it (its token required): the web chat reads its
  history there, without Rasa's admin API and its token;
* each reply carries ``"language"``: the language it is written in (the
  actions tag their messages; see ``actions.answers.tag_language``);
* when the bot produced no reply at all (action server down, an internal
  error), the user gets a short apology in their language instead of silence;
* while the office staff have the conversation (a hand-off, ``bot.plugins.handoff``),
  the message goes to them instead of the bot, and the history includes their replies;
  ``GET /webhooks/rest/handoff/<sender>?after=<id>`` gives the web chat the replies
  newer than ``id`` (its token required).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.core.handoff import HANDOFF_OPENED
from bot.core.languages import choose
from bot.core.limits import MAX_MESSAGE_CHARS, MAX_SENDER_CHARS
from bot.core.privacy import ERASE_CONVERSATION, erase_sender
from bot.core.ratelimit import Busy, RateLimits, client_ip, trusted_proxies
from bot.core.senders import TOKEN_HEADER, channel_token_variable, may_use
from bot.core.texts import say
from bot.plugins.handoff import Turn, after_turn, history_events, intercept, updates

logger = logging.getLogger(__name__)

METADATA_KEYS = ("language",)


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_request(body: Any) -> tuple[str, str, dict[str, Any]]:
    """Sender, text and metadata of a REST request body, or BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest('expected a JSON object like {"sender": "id", "message": "text"}')
    sender = body.get("sender")
    if isinstance(sender, int) and not isinstance(sender, bool):
        sender = str(sender)
    if not isinstance(sender, str) or not sender.strip() or len(sender) > MAX_SENDER_CHARS:
        raise BadRequest(f'"sender" must be a non-empty string of at most {MAX_SENDER_CHARS} characters')
    text = body.get("message", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise BadRequest('"message" must be a string')
    if len(text) > MAX_MESSAGE_CHARS:
        raise BadRequest(f'"message" is longer than {MAX_MESSAGE_CHARS} characters', status=413)
    if not encodable(sender) or not encodable(text):  # "\ud800" in JSON: no character at all
        raise BadRequest('"sender" and "message" must be Unicode text (no lone surrogates)')
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequest('"metadata" must be a JSON object')
    kept = {key: metadata[key] for key in METADATA_KEYS if isinstance(metadata.get(key), str)}
    return sender.strip(), text, kept


def apology(text: str, metadata: dict[str, Any]) -> dict[str, str]:
    """What the user sees when the bot could not answer, in their language."""
    language = choose(text, None, metadata.get("language")).language
    return {"text": say("unavailable", language), "language": language}


class LanguageCollectingChannel(CollectingOutputChannel):
    """Rasa's collecting channel, keeping each reply's ``language`` (bot message metadata),
    noting a reply after which the conversation is to be erased ("forget me") and the
    hand-offs a reply opened (to post them in the staff group)."""

    def __init__(self) -> None:
        super().__init__()
        self.erase = False
        self.opened: list[str] = []

    async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
        self.erase = self.erase or bool(message.pop(ERASE_CONVERSATION, False))
        opened = message.pop(HANDOFF_OPENED, None)
        if isinstance(opened, str):
            self.opened.append(opened)
        language = message.get("language")
        before = len(self.messages)
        await super().send_response(recipient_id, message)
        if isinstance(language, str):
            for sent in self.messages[before:]:
                sent["language"] = language


async def erase_conversation(tracker_store: Any, sender: str) -> None:
    """Deletes every stored event of one conversation ("forget me"), then compacts the database."""
    store = getattr(tracker_store, "_tracker_store", tracker_store)  # Rasa wraps it (AwaitableTrackerStore)
    engine = getattr(store, "engine", None)
    if engine is None:  # not a SQL tracker store: nothing is kept on disk
        logger.warning("forget me: the tracker store %s keeps no SQL engine", type(store).__name__)
        return
    await asyncio.get_running_loop().run_in_executor(None, functools.partial(erase_sender, sender, engine=engine))
    if hasattr(store, "forget"):
        store.forget(sender)


async def checked_intercept(sender: str, text: str) -> Turn:
    """The hand-off's part of a message; if the database fails, the bot answers as before."""
    try:
        return await intercept(sender, text)
    except Exception:
        logger.exception("the hand-off check failed; the bot answers")
        return Turn()


def merged(events: list[dict[str, Any]], handed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rasa's events in their order, each hand-off event placed before the first later one."""
    if not handed:
        return events
    result, pending = [], sorted(handed, key=lambda e: e["timestamp"])
    for event in events:
        while pending and pending[0]["timestamp"] < (event.get("timestamp") or 0):
            result.append(pending.pop(0))
        result.append(event)
    return result + pending


def too_many(retry_after: int) -> HTTPResponse:
    return response.json({"error": "too many requests"}, status=429, headers={"Retry-After": str(retry_after)})


class RestChannel(RestInput):
    """Rasa's REST channel with request checks, limits, the language hint and an apology."""

    def __init__(self) -> None:
        self.limits = RateLimits.from_env()
        self.proxies = trusted_proxies()

    @classmethod
    def name(cls) -> str:
        return "rest"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint(f"custom_webhook_{type(self).__name__}", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            try:
                body = request.json
            except Exception:  # sanic raises its own InvalidUsage on bad JSON
                body = None
            try:
                sender, text, metadata = parse_request(body)
            except BadRequest as error:
                return response.json({"error": str(error)}, status=error.status)
            token = request.headers.get(TOKEN_HEADER)
            if not may_use(sender, token):
                return response.json({"error": "this conversation belongs to another channel"}, status=403)
            # A channel's own server (a valid token) limits its users by address itself.
            ip = (
                None
                if channel_token_variable(sender)
                else client_ip(request.ip, request.headers.get("X-Forwarded-For"), self.proxies)
            )
            retry_after = await self.limits.check(ip=ip, sender=sender)
            if retry_after:
                return too_many(retry_after)
            collector = LanguageCollectingChannel()
            turn = Turn()
            try:
                async with self.limits.slot():
                    turn = await checked_intercept(sender, text)
                    if turn.replies is not None:  # the staff have the conversation
                        return response.json(turn.notices + turn.replies)
                    await on_new_message(
                        UserMessage(text, collector, sender, input_channel=self.name(), metadata=metadata)
                    )
            except Busy as busy:
                return too_many(busy.retry_after)
            except Exception:
                logger.exception("could not handle a message (%s)", type(self).__name__)
            if not collector.messages:
                collector.messages.append({"recipient_id": sender, **apology(text, metadata)})
            if collector.erase:  # Rasa has stored the turn: now the conversation can go
                await erase_conversation(request.app.ctx.agent.tracker_store, sender)
            await after_turn(collector.opened)
            if collector.opened and collector.messages:  # the web page then asks for the staff's replies
                collector.messages[-1]["handoff"] = collector.opened[-1]
            notices = [{"recipient_id": sender, **notice} for notice in turn.notices]
            return response.json(notices + collector.messages)

        @webhook.route("/history/<sender>", methods=["GET"])
        async def history(request: Request, sender: str) -> HTTPResponse:
            if not channel_token_variable(sender) or not may_use(sender, request.headers.get(TOKEN_HEADER)):
                return response.json({"error": "unknown conversation"}, status=404)
            tracker = await request.app.ctx.agent.tracker_store.retrieve_full_tracker(sender)
            events = [event.as_dict() for event in tracker.events_after_latest_restart()] if tracker else []
            loop = asyncio.get_running_loop()
            handed = await loop.run_in_executor(None, history_events, sender)
            events = merged(events, handed)
            return response.json({"events": events})

        @webhook.route("/handoff/<sender>", methods=["GET"])
        async def handoff(request: Request, sender: str) -> HTTPResponse:
            if not channel_token_variable(sender) or not may_use(sender, request.headers.get(TOKEN_HEADER)):
                return response.json({"error": "unknown conversation"}, status=404)
            after = request.args.get("after", "0")
            after = int(after) if after.isdigit() else 0
            loop = asyncio.get_running_loop()
            return response.json(await loop.run_in_executor(None, updates, sender, after))

        return webhook
