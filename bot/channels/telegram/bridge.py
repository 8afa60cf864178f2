"""The assistant on Telegram by long polling: ``python -m bot.channels.telegram``.

Long polling needs no public URL. ``bot run`` (``make run``) starts this module as
a third process when ``TELEGRAM_BOT_TOKEN`` is set; on its own::

    TELEGRAM_BOT_TOKEN=123456:ABC... .venv/bin/python -m bot.channels.telegram --rasa-url http://127.0.0.1:5005

It asks Rasa over the REST channel and answers with the handlers of
``bot.channels.telegram.handlers`` (what the bot does with each kind of update is
described there). While a webhook is registered (``bot telegram set-webhook``) it
does not poll, and it resumes polling by itself once the webhook is removed
(``bot telegram delete-webhook``). In production the webhook is the Rasa input
channel in ``bot/channels/telegram/webhook.py``, with the same handlers.

Configuration (environment; nothing is needed for Rasa to start):

    TELEGRAM_BOT_TOKEN       the bot's token from @BotFather
    TELEGRAM_WEBHOOK_SECRET  the webhook's secret (X-Telegram-Bot-Api-Secret-Token)
    TELEGRAM_BASE_URL        the Bot API's URL, python-telegram-bot's ``base_url``
                             (default https://api.telegram.org/bot; the token is appended)
    TELEGRAM_CHANNEL_TOKEN   the channel's token for Rasa (``bot run`` makes one and
                             gives it to Rasa and to this process only)

At start the command menu (/start, /help, /lang) is set in every language the bot
speaks (setMyCommands, English by default). Message texts and the token are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import uvloop
from telegram.error import Conflict, InvalidToken, NetworkError, TelegramError
from telegram.ext import Application

from bot.channels.telegram.handlers import (
    ALLOWED_UPDATES,
    CONVERSATIONS_PATH,
    RASA_TIMEOUT,
    WEBHOOK_PATH,
    Conversation,
    Reply,
    Settings,
    TelegramSetupError,
    build_application,
    management_bot,
    quiet_http_logs,
    set_command_menus,
)
from bot.core.languages import warm_up
from bot.core.rasa_client import RasaClient, RasaRefused, RasaUnavailable

logger = logging.getLogger("bot.channels.telegram.bridge")  # not __main__ under `python -m`

WEBHOOK_CHECK_INTERVAL = 60.0
T = TypeVar("T")


class RestRasa:
    """Conversations over Rasa's REST channel (``bot.core.rasa_client``), as the Telegram channel.

    Its token (``TELEGRAM_CHANNEL_TOKEN``, given by ``bot run``) lets it speak for
    ``telegram-`` conversations, and read and update their state through the
    Telegram channel's own endpoints (``CONVERSATIONS_PATH``, in ``webhook.py``);
    without it Rasa refuses them.
    """

    def __init__(self, url: str, timeout: float = RASA_TIMEOUT, channel_token: str | None = None) -> None:
        token = channel_token or os.environ.get("TELEGRAM_CHANNEL_TOKEN") or None
        self.rasa = RasaClient(url, channel_token=token, timeout=timeout)

    async def ask(self, sender: str, text: str, metadata: dict[str, str]) -> list[Reply]:
        try:
            return await self.rasa.send(sender, text, metadata)
        except RasaRefused as error:  # a wrong token, a rate limit: to the user, Rasa did not answer
            raise RasaUnavailable(f"HTTP {error.status}: {error}") from error

    async def state(self, sender: str) -> dict[str, Any]:
        try:
            state = await self.rasa.call("GET", f"{CONVERSATIONS_PATH}/{quote(sender, safe='')}")
        except (RasaUnavailable, RasaRefused) as error:
            logger.warning("Rasa did not give a conversation's state: %s", type(error).__name__)
            return {}
        return state if isinstance(state, dict) else {}

    async def update(self, sender: str, events: list[dict[str, Any]]) -> None:
        try:
            await self.rasa.call("POST", f"{CONVERSATIONS_PATH}/{quote(sender, safe='')}/events", json=events)
        except RasaRefused as error:
            raise RasaUnavailable(f"HTTP {error.status}: {error}") from error

    async def close(self) -> None:
        await self.rasa.close()


# --- polling ---------------------------------------------------------------------------


async def _wait(stop: asyncio.Event, seconds: float | None, *others: asyncio.Event) -> None:
    """Until ``stop`` (or another event) is set, at most ``seconds`` (None: no limit)."""
    waiters = [asyncio.create_task(event.wait()) for event in (stop, *others)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _initialize(application: Application, stop: asyncio.Event, interval: float) -> None:
    """getMe until Telegram answers (network errors are retried; a bad token is not)."""
    delay = 1.0
    while not stop.is_set():
        try:
            await application.initialize()
            return
        except InvalidToken:
            raise
        except NetworkError as error:
            logger.warning("Telegram unreachable (%s): retrying in %.0f s", type(error).__name__, delay)
            await _wait(stop, delay)
            delay = min(delay * 2, interval)


def _on_polling_error(conflict: asyncio.Event, error: TelegramError) -> None:
    if isinstance(error, Conflict):
        conflict.set()  # a webhook was set, or another process polls with this token
    else:
        logger.warning("Telegram polling: %s (retrying)", type(error).__name__)


_FAILED = object()


async def _attempt(what: str, call: Awaitable[T], stop: asyncio.Event, interval: float) -> T | object:
    """Awaits one Bot API call; on a passing error logs it, waits a little and returns _FAILED.

    An invalid token is not passing: it propagates and ends the bridge.
    """
    try:
        return await call
    except InvalidToken:
        raise
    except TelegramError as error:
        logger.warning("Telegram: %s failed (%s), retrying", what, type(error).__name__)
        await _wait(stop, min(5.0, interval))
        return _FAILED


async def poll(
    settings: Settings, conversation: Conversation, stop: asyncio.Event, check_interval: float = WEBHOOK_CHECK_INTERVAL
) -> None:
    """Answer Telegram chats by long polling until ``stop`` is set.

    While a webhook is registered the bridge does not poll (polling would delete
    it); it checks every ``check_interval`` seconds and polls once it is gone.
    """
    application = build_application(settings, conversation)
    await _initialize(application, stop, check_interval)
    if stop.is_set():
        return
    logger.info("Telegram: connected as @%s", application.bot.username)
    await set_command_menus(application.bot)
    updater = application.updater
    assert updater is not None
    state = None
    try:
        await application.start()
        while not stop.is_set():
            info = await _attempt("getWebhookInfo", application.bot.get_webhook_info(), stop, check_interval)
            if info is _FAILED:
                continue
            webhook = info.url
            if webhook:
                if state != "webhook":
                    logger.info("Telegram: a webhook is registered, not polling (bot telegram delete-webhook)")
                state = "webhook"
                await _wait(stop, check_interval)
                continue
            conflict = asyncio.Event()
            started = updater.start_polling(
                allowed_updates=ALLOWED_UPDATES, bootstrap_retries=0,
                error_callback=functools.partial(_on_polling_error, conflict),
            )  # fmt: skip
            if await _attempt("start polling", started, stop, check_interval) is _FAILED:
                continue
            if state != "polling":
                logger.info("Telegram: polling for updates")
            state = "polling"
            await _wait(stop, None, conflict)
            await updater.stop()
            if conflict.is_set() and not stop.is_set():
                logger.warning("Telegram: getUpdates conflict (a webhook was set, or another process polls)")
                state = "conflict"
                await _wait(stop, min(5.0, check_interval))
    finally:
        if updater.running:
            await updater.stop()
        if application.running:
            await application.stop()
        await application.shutdown()


# --- the webhook's registration (bot telegram set-webhook / delete-webhook) ------------------


def webhook_url(url: str) -> str:
    """The URL Telegram posts to: must be https; a bare host gets the channel's path."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise TelegramSetupError(f"the webhook URL must start with https:// (Telegram requires it), got {url!r}")
    if parts.path in ("", "/"):
        return url.rstrip("/") + WEBHOOK_PATH
    return url


async def set_webhook(settings: Settings, url: str) -> str:
    """Register ``url`` with TELEGRAM_WEBHOOK_SECRET as the webhook; returns the URL used."""
    secret, url = settings.require_secret(), webhook_url(url)
    async with management_bot(settings) as bot:
        await bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
        await set_command_menus(bot)
    return url


async def delete_webhook(settings: Settings) -> None:
    """Remove the webhook (the polling bridge then polls again)."""
    async with management_bot(settings) as bot:
        await bot.delete_webhook()


# --- the process ---------------------------------------------------------------------


async def _serve(settings: Settings, rasa_url: str, timeout: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if not os.environ.get("TELEGRAM_CHANNEL_TOKEN"):
        logger.warning("TELEGRAM_CHANNEL_TOKEN is not set: Rasa will refuse the Telegram conversations")
    rasa = RestRasa(rasa_url, timeout)
    try:
        await poll(settings, rasa, stop)
    except InvalidToken:
        logger.error("Telegram rejected TELEGRAM_BOT_TOKEN: check it with @BotFather")
        return 2
    finally:
        await rasa.close()
    logger.info("Telegram: stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.channels.telegram", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rasa-url", default=os.environ.get("RASA_URL", "http://127.0.0.1:5005"),
                        help="the Rasa server (its REST channel)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=RASA_TIMEOUT, help="seconds to wait for Rasa")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_http_logs()
    settings = Settings.from_env()
    if not settings.token:
        logger.error("Telegram: off (set TELEGRAM_BOT_TOKEN)")
        return 2
    warm_up()  # the language detector, now rather than on the first message
    return uvloop.run(_serve(settings, args.rasa_url, args.timeout))  # libuv's event loop, as Rasa's


if __name__ == "__main__":
    sys.exit(main())
