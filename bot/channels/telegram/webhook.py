"""The Telegram webhook: a Rasa input channel at ``/webhooks/telegram/webhook``.

Registered in ``credentials.yml`` as ``bot.channels.telegram.webhook.TelegramWebhook``, so
it runs inside the Rasa server that ``make run`` starts. Telegram posts updates
there once the webhook is registered behind HTTPS::

    export TELEGRAM_BOT_TOKEN=... TELEGRAM_WEBHOOK_SECRET=...
    .venv/bin/bot telegram set-webhook https://bot.example.org/webhooks/telegram/webhook

Each update is parsed with python-telegram-bot and answered by the same handlers
as long polling (``bot.channels.telegram.handlers``), except that Rasa is asked
directly (``on_new_message``) instead of over HTTP, and the conversation's
state is read and updated in Rasa's own tracker store.

The request is checked before its body is read: a request whose
``X-Telegram-Bot-Api-Secret-Token`` header is not ``TELEGRAM_WEBHOOK_SECRET`` gets
a 403 (so does every request while no secret is set), and a body over
``MAX_BODY_BYTES`` a 413. Rasa starts without any Telegram variable: the channel
then refuses (403) or, with a secret but no token, answers 503.

The channel also serves the polling bridge, which reaches Rasa over HTTP: it
reads a Telegram conversation's state (``GET /webhooks/telegram/conversations/<sender>``)
and moves a form out of a group (``POST .../<sender>/events``, slot and
active_loop events only). Both need the channel's token (``X-Channel-Token``,
``TELEGRAM_CHANNEL_TOKEN``; see ``bot.core.senders``) and are not for the public:
only ``/webhooks/telegram/webhook`` is.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.agent import Agent
from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.server import update_conversation_with_events
from rasa.shared.core.events import Event
from rasa.shared.core.trackers import EventVerbosity
from sanic import Blueprint, Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application

from bot.channels.telegram.handlers import (
    CHANNEL_EVENTS,
    CONVERSATIONS_PATH,
    RASA_TIMEOUT,
    SECRET_HEADER,
    WEBHOOK_PATH,
    Reply,
    Settings,
    build_application,
    quiet_http_logs,
)
from bot.core.rasa_client import RasaUnavailable
from bot.core.ratelimit import Busy, RateLimits
from bot.core.senders import TOKEN_HEADER, may_use
from bot.plugins.handoff import after_turn
from bot.plugins.rest import LanguageCollectingChannel, checked_intercept, erase_conversation

logger = logging.getLogger(__name__)

# Telegram's updates are a few kilobytes; anything larger is not from Telegram.
MAX_BODY_BYTES = 1024 * 1024


class InProcessRasa:
    """A conversation with the Rasa server this channel runs in, asked as the REST channel would."""

    def __init__(self, on_new_message: Callable[[UserMessage], Awaitable[Any]], channel: str,
                 timeout: float = RASA_TIMEOUT) -> None:  # fmt: skip
        self.on_new_message, self.channel, self.timeout = on_new_message, channel, timeout
        self.agent: Agent | None = None  # the server's, known from the first request

    async def ask(self, sender: str, text: str, metadata: dict[str, str]) -> list[Reply]:
        turn = await checked_intercept(sender, text)  # while the staff have the conversation
        if turn.replies is not None:
            return turn.notices + turn.replies
        collector = LanguageCollectingChannel()
        message = UserMessage(text, collector, sender, input_channel=self.channel, metadata=metadata)
        try:
            await asyncio.wait_for(self.on_new_message(message), self.timeout)
        except asyncio.TimeoutError as error:
            raise RasaUnavailable("timed out") from error
        except Exception as error:  # anything Rasa raises: the user gets the apology
            logger.exception("Rasa could not handle a Telegram message")
            raise RasaUnavailable(type(error).__name__) from error
        if collector.erase and self.agent is not None:  # "forget me": Rasa has stored the turn
            await erase_conversation(self.agent.tracker_store, sender)
        await after_turn(collector.opened)
        return turn.notices + collector.messages

    async def state(self, sender: str) -> dict[str, Any]:
        if self.agent is None:
            return {}
        try:
            tracker = await self.agent.tracker_store.retrieve(sender)
        except Exception as error:  # a database error: the notice follows the user's hint
            logger.warning("the tracker store did not answer: %s", type(error).__name__)
            return {}
        return tracker.current_state(EventVerbosity.NONE) if tracker is not None else {}

    async def update(self, sender: str, events: list[dict[str, Any]]) -> None:
        """As Rasa's ``POST /conversations/<id>/tracker/events`` does."""
        if self.agent is None:
            return
        parsed = [event for event in map(Event.from_parameters, events) if event]
        async with self.agent.lock_store.lock(sender):
            tracker = await update_conversation_with_events(sender, self.agent.processor, self.agent.domain, parsed)
            await self.agent.tracker_store.save(tracker)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The streamed request body, or None as soon as it is over ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    while (chunk := await request.stream.read()) is not None:
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


PREFIX = WEBHOOK_PATH.rsplit("/", 1)[0]  # where Rasa mounts the channel: /webhooks/telegram


def owned(request: Request, sender: str) -> bool:
    """Whether the request comes from the Telegram channel's own process, about one of its chats."""
    return sender.startswith("telegram-") and may_use(sender, request.headers.get(TOKEN_HEADER))


class TelegramWebhook(InputChannel):
    """Telegram updates posted by Telegram's webhook, checked against the secret."""

    @classmethod
    def name(cls) -> str:
        return "telegram"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        return cls(Settings.from_env())  # secrets come from the environment, not the file

    def __init__(self, settings: Settings, timeout: float = RASA_TIMEOUT) -> None:
        self.settings, self.timeout = settings, timeout
        quiet_http_logs()
        if not settings.webhook_secret:
            logger.info("Telegram webhook: off (set TELEGRAM_WEBHOOK_SECRET and TELEGRAM_BOT_TOKEN)")
        elif not settings.token:
            logger.warning("Telegram webhook: TELEGRAM_WEBHOOK_SECRET is set but TELEGRAM_BOT_TOKEN is not")

    def authorised(self, secret: str | None) -> bool:
        expected = self.settings.webhook_secret
        if not expected or secret is None:
            return False
        return hmac.compare_digest(secret.encode(), expected.encode())

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint(f"custom_webhook_{type(self).__name__}", __name__)
        conversation = InProcessRasa(on_new_message, self.name(), self.timeout)
        # Per chat and in flight; not per address: every update comes from Telegram's servers.
        limits = RateLimits.from_env()
        started: list[Application] = []
        lock = asyncio.Lock()

        async def application() -> Application:
            """Built and initialized (getMe) on the first update."""
            async with lock:
                if not started:
                    app = build_application(self.settings, conversation, polling=False)
                    await app.initialize()
                    started.append(app)
            return started[0]

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> HTTPResponse:
            if not self.authorised(request.headers.get(SECRET_HEADER)):
                return response.json({"error": "forbidden"}, status=403)
            body = await read_body(request)
            if body is None:
                return response.json({"error": f"the body is over {MAX_BODY_BYTES} bytes"}, status=413)
            if not self.settings.token:
                return response.json({"error": "TELEGRAM_BOT_TOKEN is not set"}, status=503)
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads
                data = None
            if not isinstance(data, dict):
                return response.json({"error": "expected a Telegram update (a JSON object)"}, status=400)
            try:
                app = await application()
            except TelegramError as error:  # Telegram retries the update later
                logger.warning("Telegram webhook: cannot reach the Bot API: %s", type(error).__name__)
                return response.json({"error": "the Bot API is unreachable"}, status=503)
            try:
                update = Update.de_json(data, app.bot)
            except Exception:  # a field of the wrong type raises whatever it leads to (AttributeError, …)
                return response.json({"error": "not a Telegram update"}, status=400)
            # One chat over its rate, or too many updates in flight: Telegram delivers it again later.
            chat = update.effective_chat
            retry_after = await limits.check(sender=f"telegram-{chat.id}" if chat else None)
            if retry_after:
                return response.json(
                    {"error": "too many requests"}, status=429, headers={"Retry-After": str(retry_after)}
                )
            conversation.agent = getattr(request.app.ctx, "agent", None)
            app.bot.insert_callback_data(update)  # button payloads, as the polling updater does
            try:
                async with limits.slot():
                    # errors go to the handlers' error handler; one chat's updates in order
                    await app.update_processor.process_update(update, app.process_update(update))
            except Busy as busy:
                return response.json({"error": "busy"}, status=429, headers={"Retry-After": str(busy.retry_after)})
            return response.json({"status": "ok"})

        @webhook.route(CONVERSATIONS_PATH.removeprefix(PREFIX) + "/<sender>", methods=["GET"])
        async def state(request: Request, sender: str) -> HTTPResponse:
            """A Telegram conversation's slots and form, for the polling bridge (its token required)."""
            if not owned(request, sender):
                return response.json({"error": "unknown conversation"}, status=404)
            conversation.agent = getattr(request.app.ctx, "agent", None)
            return response.json(await conversation.state(sender))

        @webhook.route(CONVERSATIONS_PATH.removeprefix(PREFIX) + "/<sender>/events", methods=["POST"])
        async def events(request: Request, sender: str) -> HTTPResponse:
            """Appends slot and active_loop events to a Telegram conversation (the bridge's token required)."""
            if not owned(request, sender):
                return response.json({"error": "unknown conversation"}, status=404)
            try:
                body = json.loads(request.body)
            except (ValueError, RecursionError):
                body = None
            if not isinstance(body, list) or not all(
                isinstance(e, dict) and e.get("event") in CHANNEL_EVENTS for e in body
            ):
                return response.json({"error": f"expected a list of {' or '.join(CHANNEL_EVENTS)} events"}, status=400)
            conversation.agent = getattr(request.app.ctx, "agent", None)
            await conversation.update(sender, body)
            return response.json({"status": "ok"})

        @webhook.listener("after_server_stop")
        async def close(app: Sanic, loop: asyncio.AbstractEventLoop) -> None:
            if started:
                await started[0].shutdown()

        return webhook
