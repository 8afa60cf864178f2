"""The assistant's Telegram handlers, shared by the polling bridge and the webhook channel.

``build_application(settings, conversation)`` returns a python-telegram-bot
``Application`` with one small callback per kind of update; the polling bridge
(``bridge.py``) and the Rasa input channel (``webhook.py``) differ only in how
they reach Rasa (a ``Conversation``) and in where the updates come from.

What the bot does with an update:

* each chat is one conversation, sender ``telegram-<chat id>``; the user's
  ``language_code`` is the language hint (``metadata.language``);
* ``/start`` asks Rasa ``/greet``, ``/help`` asks ``/bot_capabilities`` (and lists
  the commands), ``/lang`` and ``/lang xx`` and any other text go as they are;
* a pressed inline button is acknowledged (answerCallbackQuery) and its payload
  sent; payloads of any length travel as python-telegram-bot's arbitrary callback
  data (a button whose data is no longer known sends its title);
* while Rasa thinks, the chat shows "typing…" (sendChatAction);
* photos, stickers, voice, documents, locations and edited messages get a short
  notice in the conversation's language, without a turn in the conversation;
* in group chats, only messages that mention the bot, reply to it or are its
  commands are answered (the ``ADDRESSED`` filter);
* Rasa's replies are sent as plain text (no parse mode, so nothing needs escaping),
  split at paragraph boundaries under Telegram's 4,096 characters, with Rasa's
  buttons as an inline keyboard under the last part;
* when Rasa is down or too slow, the error handler apologises in the user's language;
* a 429 from Telegram is waited out and the call repeated (``AIORateLimiter``);
* different chats are answered in parallel, one chat's updates in order;
* the staff group (``TELEGRAM_STAFF_CHAT_ID``) is no conversation: there a reply to the
  bot's post of a hand-off (or of a user's relayed message) goes to that user
  (``bot.core.delivery``), ``/take REF`` claims a hand-off and ``/close REF`` returns the
  user to the bot; nothing from the group reaches Rasa, and the same commands or replies
  from any other chat have no such power (they are ordinary messages there).

Message texts and the token are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from weakref import WeakValueDictionary

from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.constants import ChatAction, ChatType, MessageLimit
from telegram.error import TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    InvalidCallbackData,
    MessageHandler,
    filters,
)

from bot.channels.telegram.request import AiohttpRequest
from bot.core.delivery import TELEGRAM_API, deliver, staff_chat_id, staff_summary
from bot.core.handoff import HandoffNotFound, HandoffStore, handoffs, staff_say
from bot.core.languages import choose, registry
from bot.core.rasa_client import RasaUnavailable
from bot.core.storage import RequestNotFound
from bot.core.texts import say

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram allows 1-256 characters A-Z, a-z, 0-9, _ and - in a webhook secret.
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
WEBHOOK_PATH = "/webhooks/telegram/webhook"
# The Telegram channel's own view of its conversations, for the polling bridge (webhook.py):
# GET {CONVERSATIONS_PATH}/<sender> and POST .../<sender>/events, with the channel's token.
CONVERSATIONS_PATH = "/webhooks/telegram/conversations"
# The events the channel may append to its conversations (to move a form out of a group).
CHANNEL_EVENTS = ("slot", "active_loop")
# The updates the bot handles; Telegram sends no others.
ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY]
MAX_MESSAGE_LENGTH = int(MessageLimit.MAX_TEXT_LENGTH)  # 4096, counted in UTF-16 code units
# Telegram commands and what is sent to Rasa for them; /lang goes as typed.
COMMANDS = {"start": "/greet", "help": "/bot_capabilities", "lang": "/lang", "forget": "/forget_me"}
MENU = ("start", "help", "lang", "forget")  # the command menu; descriptions are texts telegram_command_<name>
# Where a form that a member starts in a group continues: a private chat opened by a deep link
# (t.me/<bot>?start=<key>), whose /start <key> sends Rasa the message that starts the form again.
PRIVATE_FORMS = {"visit_form": ("visit", "/request_visit"), "question_form": ("question", "/affirm")}
BOT_LINK = "https://t.me/{bot}"
RASA_TIMEOUT = 30.0
CONCURRENT_UPDATES = 16  # different chats are answered in parallel, one chat in order
CALLBACK_KEYBOARDS = 4096  # keyboards whose button payloads are remembered (arbitrary_callback_data)
MAX_RETRIES = 4  # per Bot API call, when Telegram answers 429
KEYBOARD_COLUMNS = 3
SHORT_TITLE = 12  # buttons with titles this short share a row
LANGUAGE_SLOT = "language"
# In the staff group: /take REF, /close REF (also /take@bot REF); REF as H-2026-0001.
STAFF_COMMAND = re.compile(r"^/(?P<command>take|close)(?:@[A-Za-z0-9_]+)?(?:\s+(?P<ref>[A-Za-z]-\d{4}-\d+))?\s*$")

Reply = dict[str, Any]


class TelegramSetupError(ValueError):
    """A missing or invalid Telegram setting, explained for the user."""


class Conversation(Protocol):
    """How the handlers reach Rasa: over its REST channel (polling) or inside it (webhook)."""

    async def ask(self, sender: str, text: str, metadata: dict[str, str]) -> list[Reply]:
        """Rasa's replies to a user message ([{"text", "buttons", "language"}]); RasaUnavailable if none."""

    async def state(self, sender: str) -> dict[str, Any]:
        """The conversation's state as Rasa's tracker gives it ({"slots", "active_loop"});
        {} when it is unknown (no conversation yet, or no way to read it)."""

    async def update(self, sender: str, events: list[dict[str, Any]]) -> None:
        """Appends ``slot`` and ``active_loop`` events (Rasa's JSON form) to the conversation."""


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


def sender(chat_id: int) -> str:
    """The conversation of a Telegram chat."""
    return f"telegram-{chat_id}"


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


def keyboard(buttons: object) -> InlineKeyboardMarkup | None:
    """Rasa's buttons ([{"title", "payload"}]) as an inline keyboard.

    The payload is the button's callback data as it is, whatever its length: the
    application's ``arbitrary_callback_data`` sends Telegram a key and gives the
    payload back when the button is pressed.
    """
    if not isinstance(buttons, list):
        return None
    valid = [
        b for b in buttons
        if isinstance(b, dict) and isinstance(b.get("title"), str) and b["title"].strip()
        and isinstance(b.get("payload"), str) and b["payload"]
    ]  # fmt: skip
    if not valid:
        return None
    keys = [InlineKeyboardButton(b["title"], callback_data=b["payload"]) for b in valid]
    columns = KEYBOARD_COLUMNS if all(len(b["title"]) <= SHORT_TITLE for b in valid) else 1
    return InlineKeyboardMarkup([keys[i : i + columns] for i in range(0, len(keys), columns)])


def reply_language(replies: list[Reply], hint: str | None) -> str:
    """The language Rasa answered in (each reply carries it), else the user's hint."""
    for reply in reversed(replies):
        language = registry().normalize(reply.get("language"))
        if language:
            return language
    return choose("", None, hint).language


# --- which messages are for the bot ------------------------------------------------


def _mentions(message: Message, bot: Bot) -> bool:
    """Whether the text or caption mentions the bot (@username, or a mention of its user)."""
    username = f"@{bot.username}".lower()
    types = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
    entities = {**message.parse_entities(types), **message.parse_caption_entities(types)}
    return any(
        (entity.user is not None and entity.user.id == bot.id) or text.lower() == username
        for entity, text in entities.items()
    )


_ADDRESSED_COMMAND = re.compile(r"/[A-Za-z0-9_]+@(?P<bot>[A-Za-z0-9_]+)")


class Addressed(filters.MessageFilter):
    """Messages for this bot: in private chats all of them; in groups those that mention the
    bot, reply to one of its messages or are its commands (``/help@bot``). A command for
    another bot (``/start@other_bot``) is for that bot only, in any chat."""

    def filter(self, message: Message) -> bool:
        bot = message.get_bot()
        command = _ADDRESSED_COMMAND.match(message.text or "")
        if command:
            return command["bot"].lower() == (bot.username or "").lower()
        if message.chat.type == ChatType.PRIVATE:
            return True
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == bot.id:
            return True
        return _mentions(message, bot)


ADDRESSED = Addressed(name="Addressed")


def without_mention(text: str, username: str | None) -> str:
    """The text for Rasa: ``@bot`` removed (``/cmd@bot x`` becomes ``/cmd x``)."""
    if username:
        name = re.escape(username)
        text = re.sub(rf"^(/[A-Za-z0-9_]+)@{name}\b", r"\1", text.strip(), flags=re.IGNORECASE)
        text = re.sub(rf"@{name}\b", " ", text, flags=re.IGNORECASE)
    return re.sub(r" {2,}", " ", text).strip()


# --- the handlers --------------------------------------------------------------------


def _hint(update: Update) -> str | None:
    user = update.effective_user
    return user.language_code if user is not None else None


def _pressed_title(query: Any) -> str | None:
    """The title of a pressed button whose payload is no longer known (a restart, another process)."""
    data = query.data
    markup = getattr(query.message, "reply_markup", None)
    for row in getattr(markup, "inline_keyboard", ()):
        for button in row:
            known = button.callback_data
            if isinstance(known, InvalidCallbackData) and known.callback_data == data.callback_data:
                return button.text
    return None


async def _blocking(function, *args):
    """A database call, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


def staff_member(update: Update) -> str:
    user = update.effective_user
    if user is None:
        return "telegram:unknown"
    return f"telegram:{user.full_name} ({user.id})"


class StaffGroup:
    """The staff group's callbacks: replies to the bot's posts go to the user, /take and /close."""

    def __init__(self, chat_id: int, store: HandoffStore | None = None) -> None:
        self.chat_id = chat_id
        self._store = store

    @property
    def store(self) -> HandoffStore:
        return self._store or handoffs()

    def filter(self) -> filters.BaseFilter:
        return filters.Chat(chat_id=self.chat_id)

    async def message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A message in the staff group: a command, a reply to one of the bot's posts, or chatter (ignored)."""
        message = update.effective_message
        if message is None or update.effective_chat is None or update.effective_chat.id != self.chat_id:
            return
        text = (message.text or "").strip()
        replied = message.reply_to_message
        ref = None
        if replied is not None and replied.from_user is not None and replied.from_user.id == context.bot.id:
            ref = await _blocking(self.store.by_post, replied.message_id)
        command = STAFF_COMMAND.match(text)
        try:
            if command:
                await self.command(update, context, command["command"], command["ref"] or ref)
            elif ref and text:
                await self.reply(update, context, ref, text)
        except (HandoffNotFound, RequestNotFound) as error:
            await message.reply_text(staff_say("staff_not_found", ref=str(error.args[0])))

    async def command(self, update: Update, context: ContextTypes.DEFAULT_TYPE, command: str, ref: str | None) -> None:
        message = update.effective_message
        if not ref:
            await message.reply_text(staff_say("staff_command_usage", command=command))
            return
        who = staff_member(update)
        if command == "take":
            handoff, notice = await _blocking(self.store.take, ref, who)
            told = staff_summary(await deliver(notice, self.store, context.bot)) if notice else None
            await message.reply_text(
                staff_say("staff_taken", ref=handoff.ref, who=who, outcome=told or staff_say("staff_already_yours"))
            )
            return
        notice = await _blocking(self.store.close, ref, who, "staff")
        if notice is None:
            await message.reply_text(staff_say("staff_already_closed", ref=ref.upper()))
            return
        outcome = staff_summary(await deliver(notice, self.store, context.bot))
        await message.reply_text(staff_say("staff_closed", ref=notice.ref, outcome=outcome))

    async def reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE, ref: str, text: str) -> None:
        stored = await _blocking(self.store.reply, ref, staff_member(update), text)
        delivered = await deliver(stored, self.store, context.bot)
        await update.effective_message.reply_text(
            staff_say("staff_reply_outcome", ref=delivered.ref, outcome=staff_summary(delivered))
        )

    async def ignore(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Buttons, media and anything else in the staff group: not for Rasa."""


class Handlers:
    """One callback per kind of update; Rasa is reached through ``conversation``."""

    def __init__(self, conversation: Conversation, staff_chat: int | None = None) -> None:
        self.conversation = conversation
        self.staff = StaffGroup(staff_chat) if staff_chat is not None else None

    def install(self, application: Application) -> None:
        """The handlers, first match wins: the staff group, edited messages, commands, buttons, text, media."""
        new = ADDRESSED & ~filters.UpdateType.EDITED_MESSAGE
        if self.staff is not None:
            group = self.staff.filter()
            application.add_handlers([
                MessageHandler(group & filters.UpdateType.MESSAGE, self.staff.message),
                MessageHandler(group, self.staff.ignore),
            ])  # fmt: skip
        application.add_handlers([
            MessageHandler(filters.UpdateType.EDITED_MESSAGE & ADDRESSED, self.edited),
            CommandHandler("start", self.start, filters=new),
            CommandHandler("help", self.help, filters=new),
            CommandHandler("lang", self.lang, filters=new),
            CommandHandler("forget", self.forget, filters=new),
            CallbackQueryHandler(self.button),
            MessageHandler(filters.TEXT & new, self.text),
            MessageHandler(filters.ATTACHMENT & new, self.unsupported),
        ])  # fmt: skip
        application.add_error_handler(self.error)

    # --- callbacks ---

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/start``: Rasa's greeting; ``/start visit`` (a deep link from a group): the form,
        unless one is already running in this chat (its "yes" must not be taken for an answer)."""
        key = (context.args or [""])[0]
        forms = {link: message for link, message in PRIVATE_FORMS.values()}
        message = COMMANDS["start"]
        if update.effective_chat.type == ChatType.PRIVATE and key in forms:
            state = await self.conversation.state(sender(update.effective_chat.id))
            if not (state.get("active_loop") or {}).get("name"):
                message = forms[key]
        await self.ask(update, context, message)

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/help``: what the bot can answer, then the commands, in the same language."""
        replies = await self.ask(update, context, COMMANDS["help"])
        language = reply_language(replies, _hint(update))
        await self.send(context.bot, update.effective_chat.id, [{"text": say("telegram_commands", language)}])

    async def lang(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/lang``: the language buttons; ``/lang xx``: switch to xx."""
        await self.ask(update, context, " ".join([COMMANDS["lang"], *(context.args or [])]))

    async def forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/forget``: erase the user's data (the bot asks to confirm). Only in a private chat:
        a group's conversation belongs to all its members, so there the bot says where to ask."""
        if update.effective_chat.type == ChatType.PRIVATE:
            await self.ask(update, context, COMMANDS["forget"])
        else:
            await self.notice(update, context, "telegram_forget_private")

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A pressed inline button: its spinner stopped, its payload sent."""
        query = update.callback_query
        try:
            await query.answer()
        except TelegramError as error:  # the payload is answered anyway
            logger.warning("answerCallbackQuery failed: %s", type(error).__name__)
        if query.message is None or update.effective_chat is None:
            return  # a button under an inline message: not one of ours
        payload = query.data if isinstance(query.data, str) else None
        if isinstance(query.data, InvalidCallbackData):
            payload = _pressed_title(query)
        if payload:
            await self.ask(update, context, payload)

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Any other text (questions, answers, other commands) goes to Rasa as it is."""
        text = without_mention(update.effective_message.text, context.bot.username)
        await self.ask(update, context, text)

    async def unsupported(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Photos, stickers, voice, files, locations: the bot reads text only."""
        await self.notice(update, context, "telegram_unsupported")

    async def edited(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An edited message: the answer to the first version has been given."""
        await self.notice(update, context, "telegram_edited")

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The one error handler: logged once; in a chat, the user gets an apology in their language.

        The apology cannot come from Rasa (it is what failed), so its language is the
        message's when it tells, else the user's Telegram language.
        """
        error = context.error
        update_id = update.update_id if isinstance(update, Update) else None
        if isinstance(error, TelegramError):
            logger.warning("update %s: Telegram refused a call: %s: %s", update_id, type(error).__name__, error)
            return
        if isinstance(error, RasaUnavailable):
            logger.warning("update %s: Rasa did not answer: %s", update_id, error)
        else:
            logger.error("update %s failed", update_id, exc_info=error)
        if not isinstance(update, Update) or update.effective_chat is None:
            return
        text = (update.message.text or "") if update.message is not None else ""
        language = choose(text, None, _hint(update)).language
        try:
            await self.send(context.bot, update.effective_chat.id, [{"text": say("unavailable", language)}])
        except TelegramError as refused:
            logger.warning("update %s: the apology was refused: %s", update_id, type(refused).__name__)

    # --- what the callbacks share ---

    async def ask(self, update: Update, context: ContextTypes.DEFAULT_TYPE, text: str) -> list[Reply]:
        """Sends ``text`` to the chat's conversation and Rasa's replies to the chat."""
        chat = update.effective_chat
        hint = _hint(update)
        typing = asyncio.create_task(self.typing(context.bot, chat.id))  # while Rasa thinks, not before
        try:
            replies = await self.conversation.ask(sender(chat.id), text, {"language": hint} if hint else {})
        finally:
            await typing  # the dots before the answer, never after it
        if not any(isinstance(r.get("text"), str) and r["text"].strip() or r.get("buttons") for r in replies):
            raise RasaUnavailable("no reply")
        if chat.type != ChatType.PRIVATE and await self.move_form(update, context):
            return replies
        await self.send(context.bot, chat.id, replies)
        return replies

    async def move_form(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
        """A form never runs in a group: when a member's message has started one, it is ended
        there and continues in the member's private chat. True if so.

        A form asks for a name and an e-mail address, which the group should not read, and in
        a group every member would answer the same form. So the group's conversation drops it
        (Rasa's events: no active form, no pending offer) and the member gets a deep link to a
        private chat with the bot, whose conversation is prepared to start the same form
        (its language, and for a question the question). The form's first question is not sent
        to the group; a notice with the link is.
        """
        group = sender(update.effective_chat.id)
        state = await self.conversation.state(group)
        form = (state.get("active_loop") or {}).get("name")
        if not form:
            return False
        member = update.effective_user
        key, _ = PRIVATE_FORMS.get(form, ("", ""))
        slots = state.get("slots") or {}
        ended = [{"event": "active_loop", "name": None}]
        ended += [{"event": "slot", "name": name, "value": None} for name in ("requested_slot", "offer")]
        await self.conversation.update(group, ended)
        if member is not None and not member.is_bot:
            prepared = {"language": slots.get(LANGUAGE_SLOT)}
            if form == "question_form":
                prepared.update(offer="question", last_question=slots.get("last_question"))
            events = [{"event": "slot", "name": name, "value": value} for name, value in prepared.items() if value]
            if events:
                await self.conversation.update(sender(member.id), events)
        language = choose("", registry().normalize(slots.get(LANGUAGE_SLOT)), _hint(update)).language
        url = BOT_LINK.format(bot=context.bot.username) + (f"?start={key}" if key else "")
        button = InlineKeyboardButton(say("telegram_button_private", language), url=url)
        await context.bot.send_message(update.effective_chat.id, say("telegram_form_private", language),
                                       reply_markup=InlineKeyboardMarkup([[button]]))  # fmt: skip
        return True

    async def notice(self, update: Update, context: ContextTypes.DEFAULT_TYPE, key: str) -> None:
        """A short answer that is no turn in the conversation, in the conversation's language.

        Sending a sticker to Rasa would make it a turn: the NLU would classify nothing,
        and in a form it would be taken as the answer to the current question. So the
        notice is said here, in the language of Rasa's ``language`` slot (read from the
        conversation, not remembered here), or in the user's Telegram language before
        the conversation has one.
        """
        chat_id = update.effective_chat.id
        current = (await self.conversation.state(sender(chat_id))).get("slots", {}).get(LANGUAGE_SLOT)
        language = choose("", registry().normalize(current), _hint(update)).language
        await self.send(context.bot, chat_id, [{"text": say(key, language)}])

    @staticmethod
    async def typing(bot: Bot, chat_id: int) -> None:
        """Shows "typing…" until the answer is sent (or 5 s); a refusal only loses the dots."""
        try:
            await bot.send_chat_action(chat_id, ChatAction.TYPING)
        except TelegramError as error:
            logger.warning("sendChatAction failed: %s", type(error).__name__)

    @staticmethod
    async def send(bot: Bot, chat_id: int, replies: list[Reply]) -> None:
        """Each reply as plain text, in parts if long, its buttons under the last part."""
        for reply in replies:
            text = reply.get("text") if isinstance(reply.get("text"), str) else ""
            markup = keyboard(reply.get("buttons"))
            parts = split(text)
            if not parts:
                if markup is None:
                    continue
                parts = ["…"]
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                await bot.send_message(chat_id, part, reply_markup=markup if last else None)


class ChatOrderedUpdates(BaseUpdateProcessor):
    """Updates of different chats in parallel (up to ``max_concurrent_updates``), of one chat in order."""

    def __init__(self, max_concurrent_updates: int = CONCURRENT_UPDATES) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: WeakValueDictionary[int, asyncio.Lock] = WeakValueDictionary()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        lock = self._locks.setdefault(chat.id, asyncio.Lock())
        async with lock:
            await coroutine

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


class MessageRateLimiter(AIORateLimiter):
    """python-telegram-bot's limiter (Telegram's 30 messages a second overall, 20 a minute per
    group; 429s waited out and the call repeated), except for the "typing…" chat action, which
    is no message: counted, it took half of the 30 a second from the answers themselves."""

    async def process_request(self, callback, args, kwargs, endpoint, data, rate_limit_args):  # type: ignore[override]
        if endpoint == "sendChatAction":
            return await callback(*args, **kwargs)
        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)


def rate_limiter() -> AIORateLimiter:
    """Waits out Telegram's 429 (``retry_after``) and repeats the call, up to MAX_RETRIES times."""
    return MessageRateLimiter(max_retries=MAX_RETRIES)


def build_application(settings: Settings, conversation: Conversation, *, polling: bool = True) -> Application:
    """A python-telegram-bot Application with the handlers; without an updater for a webhook."""
    quiet_http_logs()
    builder = (
        Application.builder()
        .token(settings.require_token())
        .base_url(settings.base_url)
        .arbitrary_callback_data(CALLBACK_KEYBOARDS)
        .rate_limiter(rate_limiter())
        .request(AiohttpRequest())
        .get_updates_request(AiohttpRequest(connections=1))
        .concurrent_updates(ChatOrderedUpdates())
        .job_queue(None)
    )
    if not polling:
        builder = builder.updater(None)
    application = builder.build()
    Handlers(conversation, staff_chat_id()).install(application)
    return application


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
    """setMyCommands for every language; the bot works without a menu, so failures only warn."""
    for language_code, commands in command_menus().items():
        try:
            await bot.set_my_commands(commands, language_code=language_code)
        except TelegramError as error:
            logger.warning("setMyCommands (%s) failed: %s", language_code or "default", type(error).__name__)


def management_bot(settings: Settings) -> ExtBot:
    """A bot for one-off calls (the webhook's registration), with the 429 retries."""
    quiet_http_logs()
    return ExtBot(settings.require_token(), base_url=settings.base_url, rate_limiter=rate_limiter())
