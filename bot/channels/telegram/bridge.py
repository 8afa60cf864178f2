"""The assistant on Telegram, through python-telegram-bot 22: the polling bridge and the logic it shares.

Long polling needs no public URL. ``bot run`` (``make run``) starts this module as
a third process when ``TELEGRAM_BOT_TOKEN`` is set; on its own::

    TELEGRAM_BOT_TOKEN=123456:ABC... .venv/bin/python -m bot.channels.telegram.bridge --rasa-url http://127.0.0.1:5005

It asks Rasa over the REST channel. While a webhook is registered
(``bot telegram set-webhook``) it does not poll, and it resumes polling by itself
once the webhook is removed (``bot telegram delete-webhook``). In production the
webhook is the Rasa input channel in ``bot/telegram_webhook.py``, which feeds
updates to the same ``Bridge``.

Configuration (environment; nothing is needed for Rasa to start):

    TELEGRAM_BOT_TOKEN       the bot's token from @BotFather
    TELEGRAM_WEBHOOK_SECRET  the webhook's secret (X-Telegram-Bot-Api-Secret-Token)
    TELEGRAM_BASE_URL        the Bot API's URL, python-telegram-bot's ``base_url``
                             (default https://api.telegram.org/bot; the token is appended)

What the bridge does with an update:

* each chat is one conversation, sender ``telegram-<chat id>``; the user's
  ``language_code`` is the language hint (``metadata.language``);
* ``/start`` asks Rasa ``/greet``, ``/help`` asks ``/bot_capabilities`` (and lists
  the commands), ``/lang`` and ``/lang xx`` and any other text go as they are;
* a pressed inline button is acknowledged (answerCallbackQuery) and its payload sent;
* while Rasa thinks, the chat shows "typing…" (sendChatAction);
* at start, the command menu (/start, /help, /lang) is set in every language the
  bot speaks (setMyCommands, English by default);
* photos, stickers, voice, documents, locations and edited messages get a short
  text reply in the user's language, without asking Rasa;
* in group chats, only messages that mention the bot or reply to it are answered;
* Rasa's replies are sent as plain text (no parse mode, so nothing needs escaping),
  split at paragraph boundaries under Telegram's 4,096 characters, with Rasa's
  buttons as an inline keyboard under the last part;
* when Rasa is down or too slow the user gets an apology in their language;
* a 429 from Telegram is waited out (``retry_after``) and the call repeated.

Message texts and the token are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import logging
import os
import re
import signal
import sys
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit
from weakref import WeakValueDictionary

from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    Update,
    User,
)
from telegram.constants import ChatAction, ChatType, InlineKeyboardButtonLimit, MessageLimit
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, ContextTypes, TypeHandler
from telegram.warnings import PTBDeprecationWarning

from bot.core.languages import choose, registry, warm_up
from bot.core.rasa_client import RasaClient, RasaRefused
from bot.core.rasa_client import RasaUnavailable as CoreRasaUnavailable
from bot.core.texts import say

logger = logging.getLogger("bot.channels.telegram.bridge")  # not __main__ under `python -m`

TELEGRAM_API = "https://api.telegram.org/bot"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram allows 1-256 characters A-Z, a-z, 0-9, _ and - in a webhook secret.
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
WEBHOOK_PATH = "/webhooks/telegram/webhook"
# The updates the bridge handles; Telegram sends no others.
ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY]
MAX_MESSAGE_LENGTH = int(MessageLimit.MAX_TEXT_LENGTH)  # 4096, counted in UTF-16 code units
MAX_CALLBACK_DATA = int(InlineKeyboardButtonLimit.MAX_CALLBACK_DATA)  # 64 bytes
# Telegram commands and what is sent to Rasa for them; other commands go as typed.
COMMANDS = {"start": "/greet", "help": "/bot_capabilities"}
MENU = ("start", "help", "lang")  # the command menu; descriptions are texts telegram_command_<name>
RASA_TIMEOUT = 30.0
CONCURRENT_UPDATES = 16  # different chats are answered in parallel, one chat in order
WEBHOOK_CHECK_INTERVAL = 60.0
MAX_ATTEMPTS = 5  # per Bot API call, when Telegram answers 429
KEYBOARD_COLUMNS = 3
SHORT_TITLE = 12  # buttons with titles this short share a row

Reply = dict[str, Any]
# sender, message text, metadata -> Rasa's replies ([{"text": ..., "buttons": [...]}])
Ask = Callable[[str, str, dict[str, str]], Awaitable[list[Reply]]]
T = TypeVar("T")


class RasaUnavailable(RuntimeError):
    """Rasa did not answer: down, too slow, or an error."""


class TelegramSetupError(ValueError):
    """A missing or invalid Telegram setting, explained for the user."""


@dataclass(frozen=True)
class Settings:
    """The Telegram configuration, from the environment."""

    token: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    base_url: str = TELEGRAM_API

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            token=env.get("TELEGRAM_BOT_TOKEN", "").strip() or None,
            webhook_secret=env.get("TELEGRAM_WEBHOOK_SECRET", "").strip() or None,
            base_url=env.get("TELEGRAM_BASE_URL", "").strip() or TELEGRAM_API,
        )

    def require_token(self) -> str:
        if not self.token:
            raise TelegramSetupError("TELEGRAM_BOT_TOKEN is not set (create a bot with @BotFather)")
        return self.token

    def require_secret(self) -> str:
        if not self.webhook_secret or not SECRET_PATTERN.fullmatch(self.webhook_secret):
            raise TelegramSetupError(
                "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters A-Z, a-z, 0-9, _ or - "
                "(e.g. from `openssl rand -hex 32`)"
            )
        return self.webhook_secret


def quiet_http_logs() -> None:
    """httpx logs every request URL at INFO, and Bot API URLs contain the token."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


# --- Rasa ------------------------------------------------------------------------


class RestRasa:
    """Asks Rasa over the REST channel (``bot.core.rasa_client``), as the Telegram channel:
    its token (``TELEGRAM_CHANNEL_TOKEN``) lets it speak for ``telegram-`` conversations."""

    def __init__(self, url: str, timeout: float = RASA_TIMEOUT) -> None:
        self.client = RasaClient(url, channel_token=os.environ.get("TELEGRAM_CHANNEL_TOKEN"), timeout=timeout)

    async def __call__(self, sender: str, text: str, metadata: dict[str, str]) -> list[Reply]:
        try:
            return await self.client.send(sender, text, metadata)
        except (CoreRasaUnavailable, RasaRefused) as error:
            raise RasaUnavailable(str(error)) from error

    async def close(self) -> None:
        await self.client.close()


# --- Telegram messages -------------------------------------------------------------


def utf16_length(text: str) -> int:
    """Telegram's length of a text: UTF-16 code units (an emoji may count two)."""
    return len(text.encode("utf-16-le")) // 2


def _fitting(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` UTF-16 code units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)


# Where a part may end, best first: a paragraph, a line, a sentence, a space.
_BOUNDARIES = (re.compile(r"\n[ \t]*\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?;。！？；])\s*"), re.compile(r"\s"))


def split(text: str, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """``text`` in parts of at most ``limit``, cut at paragraph boundaries where possible
    (else at a line, a sentence or a space; a single word longer than that is cut)."""
    parts = []
    rest = text.strip()
    while utf16_length(rest) > limit:
        window = rest[: _fitting(rest, limit)]
        cut = 0
        for boundary in _BOUNDARIES:
            ends = [m for m in boundary.finditer(window) if m.start() > 0]
            if ends:
                cut = ends[-1].start()
                break
        if cut <= 0:
            cut = len(window)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


class Payloads:
    """Button payloads as callback data: as they are when they fit Telegram's 64 bytes,
    else a short key remembered here (the most recent ``size``)."""

    PREFIX = "#payload:"

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._long: OrderedDict[str, str] = OrderedDict()

    def data(self, payload: str) -> str:
        if len(payload.encode()) <= MAX_CALLBACK_DATA and not payload.startswith(self.PREFIX):
            return payload
        key = self.PREFIX + hashlib.sha256(payload.encode()).hexdigest()[:32]
        self._long[key] = payload
        self._long.move_to_end(key)
        while len(self._long) > self.size:
            self._long.popitem(last=False)
        return key

    def payload(self, data: str) -> str | None:
        """The payload of a pressed button; None if it is no longer known."""
        return self._long.get(data) if data.startswith(self.PREFIX) else data


def keyboard(buttons: object, payloads: Payloads) -> InlineKeyboardMarkup | None:
    """Rasa's buttons ([{"title", "payload"}]) as an inline keyboard."""
    if not isinstance(buttons, list):
        return None
    valid = [
        b for b in buttons
        if isinstance(b, dict) and isinstance(b.get("title"), str) and b["title"].strip()
        and isinstance(b.get("payload"), str) and b["payload"]
    ]  # fmt: skip
    if not valid:
        return None
    keys = [InlineKeyboardButton(b["title"], callback_data=payloads.data(b["payload"])) for b in valid]
    columns = KEYBOARD_COLUMNS if all(len(b["title"]) <= SHORT_TITLE for b in valid) else 1
    return InlineKeyboardMarkup([keys[i : i + columns] for i in range(0, len(keys), columns)])


# --- updates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Incoming:
    """What an update asks of the bot."""

    chat_id: int | None
    hint: str | None = None  # the user's Telegram language_code
    text: str | None = None  # the message for Rasa
    notice: str | None = None  # or: the key of a text to answer with, without Rasa
    command: str | None = None  # the Telegram command, if any ("help")
    callback_query_id: str | None = None  # a pressed button to acknowledge

    @property
    def sender(self) -> str:
        return f"telegram-{self.chat_id}"


_COMMAND = re.compile(r"/(?P<name>[A-Za-z0-9_]+)(?:@(?P<bot>[A-Za-z0-9_]+))?(?P<rest>(?:\s.*)?)", re.DOTALL)


def _mentions(message: Message, me: User) -> bool:
    username = f"@{me.username}".lower() if me.username else None
    types = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION, MessageEntity.BOT_COMMAND]
    entities = {}
    if message.text:
        entities.update(message.parse_entities(types))
    if message.caption:
        entities.update(message.parse_caption_entities(types))
    for entity, text in entities.items():
        if entity.type == MessageEntity.TEXT_MENTION:
            if entity.user is not None and entity.user.id == me.id:
                return True
        elif username and text.lower().endswith(username):
            return True
    return False


def addressed(message: Message, me: User) -> bool:
    """Private chats always; groups only when the message mentions the bot or replies to it."""
    if message.chat.type == ChatType.PRIVATE:
        return True
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
        return True
    return _mentions(message, me)


def rasa_text(text: str, me: User) -> tuple[str, str | None] | None:
    """The message for Rasa and the command, or None for another bot's command."""
    if me.username:
        text = re.sub(rf"@{re.escape(me.username)}\b", " ", text, flags=re.IGNORECASE)
    text = text.strip()
    command = _COMMAND.fullmatch(text)
    if not command:
        return text, None
    if command["bot"]:
        return None  # /start@other_bot
    name = command["name"].lower()
    if name in COMMANDS:
        return COMMANDS[name], name
    rest = command["rest"].strip()
    return f"/{command['name']}" + (f" {rest}" if rest else ""), name


def _language_code(user: User | None) -> str | None:
    return user.language_code if user is not None else None


def _button_title(message: object, data: str) -> str | None:
    markup = getattr(message, "reply_markup", None)
    for row in getattr(markup, "inline_keyboard", ()):
        for button in row:
            if button.callback_data == data:
                return button.text
    return None


def read_update(update: Update, me: User, payloads: Payloads) -> Incoming | None:
    """What to do with an update; None to ignore it."""
    query = update.callback_query
    if query is not None:
        message = query.message
        hint = _language_code(query.from_user)
        if message is None or not isinstance(query.data, str):
            return Incoming(None, hint, callback_query_id=query.id)
        text = payloads.payload(query.data) or _button_title(message, query.data)
        return Incoming(message.chat.id, hint, text=text, callback_query_id=query.id)
    if update.edited_message is not None:
        message = update.edited_message
        if not addressed(message, me):
            return None
        return Incoming(message.chat.id, _language_code(message.from_user), notice="telegram_edited")
    message = update.message
    if message is None or not addressed(message, me):
        return None  # channel posts, other update types, group talk not for the bot
    hint = _language_code(message.from_user)
    if message.text is None:
        if message.effective_attachment is None:
            return None  # a service message: someone joined, a pinned message...
        return Incoming(message.chat.id, hint, notice="telegram_unsupported")
    parsed = rasa_text(message.text, me)
    if parsed is None:
        return None
    return Incoming(message.chat.id, hint, text=parsed[0], command=parsed[1])


def _retry_after(error: RetryAfter) -> float:
    with warnings.catch_warnings():  # an int today, a timedelta in a future release
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def with_retry(call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """A Bot API call, repeated after ``retry_after`` seconds when Telegram answers 429."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return await call(*args, **kwargs)
        except RetryAfter as error:
            if attempt == MAX_ATTEMPTS:
                raise
            delay = _retry_after(error)
            logger.warning("Telegram rate limit: retrying in %.1f s (attempt %d)", delay, attempt)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class ChatLanguages:
    """The language each chat was last answered in (the most recent ``size`` chats)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._languages: OrderedDict[int, str] = OrderedDict()

    def get(self, chat_id: int) -> str | None:
        return self._languages.get(chat_id)

    def set(self, chat_id: int, language: str) -> None:
        self._languages[chat_id] = language
        self._languages.move_to_end(chat_id)
        while len(self._languages) > self.size:
            self._languages.popitem(last=False)


class Bridge:
    """Telegram updates to Rasa messages, Rasa's replies to Telegram messages."""

    def __init__(self, ask: Ask) -> None:
        self.ask = ask
        self.payloads = Payloads()
        self.languages = ChatLanguages()
        self._locks: WeakValueDictionary[int, asyncio.Lock] = WeakValueDictionary()

    def install(self, application: Application) -> None:
        application.add_handler(TypeHandler(Update, self.on_update))
        application.add_error_handler(self.on_error)

    async def on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        incoming = read_update(update, context.bot.bot, self.payloads)
        if incoming is None:
            return
        if incoming.chat_id is None:
            await self.acknowledge(context.bot, incoming)
            return
        lock = self._locks.setdefault(incoming.chat_id, asyncio.Lock())
        async with lock:  # one chat's updates are answered in the order they came
            await self.acknowledge(context.bot, incoming)
            if incoming.text is None and incoming.notice is None:
                return
            if incoming.notice is None:
                await self.typing(context.bot, incoming.chat_id)
            replies = await self.replies(incoming)
            await self.send(context.bot, incoming.chat_id, replies)

    async def acknowledge(self, bot: Bot, incoming: Incoming) -> None:
        """Stops a pressed button's spinner (answerCallbackQuery); the payload is answered anyway."""
        if not incoming.callback_query_id:
            return
        try:
            await with_retry(bot.answer_callback_query, incoming.callback_query_id)
        except TelegramError as error:
            logger.warning("answerCallbackQuery failed: %s", type(error).__name__)

    async def typing(self, bot: Bot, chat_id: int) -> None:
        """Shows "typing…" until the answer is sent (or 5 s); a refusal only loses the dots."""
        try:
            await bot.send_chat_action(chat_id, ChatAction.TYPING)
        except TelegramError as error:
            logger.warning("sendChatAction failed: %s", type(error).__name__)

    async def replies(self, incoming: Incoming) -> list[Reply]:
        """What to answer: Rasa's replies, a notice, or an apology, in the user's language."""
        assert incoming.chat_id is not None
        current = self.languages.get(incoming.chat_id)
        if incoming.notice:
            return [{"text": say(incoming.notice, choose("", current, incoming.hint).language)}]
        text = incoming.text or ""
        metadata = {"language": incoming.hint} if incoming.hint else {}
        try:
            replies = await self.ask(incoming.sender, text, metadata)
        except RasaUnavailable as error:
            logger.warning("Rasa did not answer chat %s: %s", incoming.chat_id, error)
            replies = []
        said = "\n".join(r["text"] for r in replies if isinstance(r.get("text"), str) and r["text"].strip())
        if not said and not any(r.get("buttons") for r in replies):
            return [{"text": say("unavailable", choose(text, current, incoming.hint).language)}]
        language = choose(said, current, incoming.hint).language
        self.languages.set(incoming.chat_id, language)
        if incoming.command == "help":
            replies = [*replies, {"text": say("telegram_commands", language)}]
        return replies

    async def send(self, bot: Bot, chat_id: int, replies: list[Reply]) -> None:
        for reply in replies:
            text = reply.get("text") if isinstance(reply.get("text"), str) else ""
            markup = keyboard(reply.get("buttons"), self.payloads)
            parts = split(text)
            if not parts:
                if markup is None:
                    continue
                parts = ["…"]
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                await with_retry(bot.send_message, chat_id, part, reply_markup=markup if last else None)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        update_id = update.update_id if isinstance(update, Update) else None
        error = context.error
        if isinstance(error, TelegramError):
            logger.warning("update %s: Telegram refused a call: %s: %s", update_id, type(error).__name__, error)
        else:
            logger.error("update %s failed", update_id, exc_info=error)


def build_application(settings: Settings, bridge: Bridge, *, polling: bool = True) -> Application:
    """A python-telegram-bot Application running ``bridge``; without an updater for a webhook."""
    quiet_http_logs()
    builder = (
        Application.builder()
        .token(settings.require_token())
        .base_url(settings.base_url)
        .concurrent_updates(CONCURRENT_UPDATES)
        .job_queue(None)
    )
    if not polling:
        builder = builder.updater(None)
    application = builder.build()
    bridge.install(application)
    return application


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


def command_menus() -> dict[str | None, list[BotCommand]]:
    """The command menu per Telegram language code (None: everyone else, in English).

    Telegram knows languages by two letters, so Chinese gets the Simplified menu.
    """
    menus: dict[str | None, list[BotCommand]] = {}
    for code in registry().codes:
        key = None if code == "en" else code.split("-")[0].lower()
        menus.setdefault(key, [BotCommand(name, say(f"telegram_command_{name}", code)) for name in MENU])
    return menus


async def set_command_menus(bot: Bot) -> None:
    """setMyCommands for every language; the bridge works without a menu, so failures only warn."""
    for language_code, commands in command_menus().items():
        try:
            await with_retry(bot.set_my_commands, commands, language_code=language_code)
        except TelegramError as error:
            logger.warning("setMyCommands (%s) failed: %s", language_code or "default", type(error).__name__)


async def poll(
    settings: Settings, ask: Ask, stop: asyncio.Event, check_interval: float = WEBHOOK_CHECK_INTERVAL
) -> None:
    """Answer Telegram chats by long polling until ``stop`` is set.

    While a webhook is registered the bridge does not poll (polling would delete
    it); it checks every ``check_interval`` seconds and polls once it is gone.
    """
    application = build_application(settings, Bridge(ask))
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
    token, secret, url = settings.require_token(), settings.require_secret(), webhook_url(url)
    async with Bot(token, base_url=settings.base_url) as bot:
        await bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
        await set_command_menus(bot)
    return url


async def delete_webhook(settings: Settings) -> None:
    """Remove the webhook (the polling bridge then polls again)."""
    async with Bot(settings.require_token(), base_url=settings.base_url) as bot:
        await bot.delete_webhook()


# --- the process ---------------------------------------------------------------------


async def _serve(settings: Settings, rasa_url: str, timeout: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
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
    return asyncio.run(_serve(settings, args.rasa_url, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
