"""Delivering the staff's replies to users, and hand-offs to the staff's Telegram group.

    message = handoffs().reply("H-2026-0001", "cli:li", "…")
    message = await deliver(message)          # message.delivery, message.delivery_note

Where a reply goes, from the request's conversation and e-mail:

* a Telegram user (``telegram-<chat id>``): a message in their chat, right away, through
  the Bot API (python-telegram-bot; ``TELEGRAM_BOT_TOKEN``, ``TELEGRAM_BASE_URL``);
* a web chat user (``web-…``): kept for the page, which shows it while it is open (it asks
  every few seconds) or in the history when they come back; ``waiting`` until then, ``shown`` after;
* by e-mail, when ``SMTP_URL`` is set and the user gave an address: the reference in the
  subject. ``smtp://host:25`` (plain), ``smtp+starttls://user:password@host:587`` (STARTTLS),
  ``smtps://user:password@host:465`` (SSL); ``SMTP_FROM`` is the sender address
  (default: the user name when it is an address). Without ``SMTP_URL`` nothing is e-mailed.

A reply that reached no one (the bot blocked, no e-mail, no way to reach the client) is
``undelivered``, and the note says why for each way. The staff group
(``TELEGRAM_STAFF_CHAT_ID``) gets each new hand-off with its reference, language, channel
and last messages, and each message the user sends while it is open, so that a staff
member can answer by replying to the post. Everything posted there is in the staff's
language (``STAFF_LANGUAGE``, ``bot.core.handoff.staff_say``): the posts, the delivery
confirmations (``staff_summary``), the answers to /take and /close. Texts are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from telegram import Bot, ReplyParameters
from telegram.error import TelegramError

from bot.core.handoff import (
    DELIVERED,
    SHOWN,
    UNDELIVERED,
    WAITING,
    Handoff,
    HandoffStore,
    Message,
    handoffs,
    staff_language,
    staff_say,
)
from bot.core.storage import OfficeRequest
from bot.core.texts import say

logger = logging.getLogger(__name__)

TELEGRAM_API = "https://api.telegram.org/bot"
STAFF_CHAT_VARIABLE = "TELEGRAM_STAFF_CHAT_ID"
SMTP_VARIABLE = "SMTP_URL"
SMTP_TIMEOUT = 20.0
TELEGRAM_TEXT_LIMIT = 4000  # under Telegram's 4,096 UTF-16 units, with the label
POST_MESSAGES = 6  # the last messages of the conversation in a new hand-off's post


def staff_chat_id(environ: Mapping[str, str] | None = None) -> int | None:
    """``TELEGRAM_STAFF_CHAT_ID`` (a group's id is negative, e.g. -1001234567890), or None."""
    value = (os.environ if environ is None else environ).get(STAFF_CHAT_VARIABLE, "").strip()
    try:
        return int(value) if value else None
    except ValueError:
        logger.warning("%s is not a chat id (a number such as -1001234567890): ignored", STAFF_CHAT_VARIABLE)
        return None


def telegram_bot(environ: Mapping[str, str] | None = None) -> Bot | None:
    """A Bot API client from ``TELEGRAM_BOT_TOKEN`` and ``TELEGRAM_BASE_URL``, or None without a token."""
    env = os.environ if environ is None else environ
    token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        return None
    for name in ("httpx", "httpcore"):  # their INFO lines show Bot API URLs, with the token
        logging.getLogger(name).setLevel(logging.WARNING)
    return Bot(token, base_url=env.get("TELEGRAM_BASE_URL", "").strip() or TELEGRAM_API)


def telegram_chat(sender_id: str | None) -> int | None:
    """The Telegram chat of a conversation ``telegram-<chat id>``."""
    if not sender_id or not sender_id.startswith("telegram-"):
        return None
    try:
        return int(sender_id.removeprefix("telegram-"))
    except ValueError:
        return None


# --- e-mail --------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # plain, starttls, ssl
    username: str | None
    password: str | None
    sender: str

    @classmethod
    def from_url(cls, url: str, sender: str | None = None) -> SmtpSettings:
        parts = urlsplit(url)
        security = {"smtp": "plain", "smtp+starttls": "starttls", "smtp+tls": "starttls", "smtps": "ssl"}.get(
            parts.scheme.lower()
        )
        if security is None or not parts.hostname:
            raise ValueError(f"{SMTP_VARIABLE} must look like smtp://host:25, smtp+starttls://user:pw@host:587 "
                             "or smtps://user:pw@host:465")  # fmt: skip
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        port = parts.port or {"plain": 25, "starttls": 587, "ssl": 465}[security]
        fallback = username if username and "@" in username else f"assistant@{parts.hostname}"
        return cls(parts.hostname, port, security, username, password, sender or fallback)


def smtp_settings(environ: Mapping[str, str] | None = None) -> SmtpSettings | None:
    env = os.environ if environ is None else environ
    url = env.get(SMTP_VARIABLE, "").strip()
    return SmtpSettings.from_url(url, env.get("SMTP_FROM", "").strip() or None) if url else None


def send_email(settings: SmtpSettings, to: str, subject: str, body: str) -> None:
    """Sends one plain-text e-mail (blocking); smtplib's errors pass through."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = settings.sender, to, subject
    message["Date"], message["Message-ID"] = formatdate(localtime=False), make_msgid(domain=settings.host)
    message.set_content(body)
    context = ssl.create_default_context(cafile=os.environ.get("SMTP_CA_FILE") or None)
    if settings.security == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, settings.port, timeout=SMTP_TIMEOUT, context=context)
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT)
    with client:
        if settings.security == "starttls":
            client.starttls(context=context)
        if settings.username:
            client.login(settings.username, settings.password or "")
        client.send_message(message)


# --- delivering a reply ----------------------------------------------------------------


def user_text(message: Message, request: OfficeRequest) -> str:
    """What the user reads: a staff reply with its label, a notice as it is."""
    if message.author == "staff":
        return say("handoff_staff_reply", message.language or request.language or "en", ref=request.ref,
                   text=message.text)  # fmt: skip
    return message.text


async def deliver(message: Message, store: HandoffStore | None = None, bot: Bot | None = None) -> Message:
    """Sends a staff reply or a notice to the user by every way that reaches them; stores how it went."""
    store = store or handoffs()
    request = store.request(message.ref)
    text = user_text(message, request)
    notes, reached, waiting = [], False, False
    chat = telegram_chat(request.sender_id)
    if chat is not None:
        own = bot is None
        bot = bot or telegram_bot()
        if bot is None:
            notes.append("telegram: off (TELEGRAM_BOT_TOKEN not set)")
        else:
            try:
                if own:
                    async with bot:
                        await bot.send_message(chat, text[:TELEGRAM_TEXT_LIMIT])
                else:
                    await bot.send_message(chat, text[:TELEGRAM_TEXT_LIMIT])
                notes.append("telegram: sent")
                reached = True
            except TelegramError as error:  # blocked the bot, chat gone, Telegram down
                notes.append(f"telegram: failed ({type(error).__name__}: {error})")
                logger.warning("reply to %s: Telegram refused it: %s", request.ref, type(error).__name__)
    elif (request.sender_id or "").startswith("web-"):
        notes.append("web: waiting for the page")
        waiting = True
    if message.author == "staff":
        outcome, sent = await email(request, message)
        notes.append(outcome)
        reached = reached or sent
    elif chat is None and not waiting:
        notes.append("no channel to reach the user")
    status = DELIVERED if reached else WAITING if waiting else UNDELIVERED
    if status == UNDELIVERED:
        logger.warning("reply to %s undelivered", request.ref)
    return store.set_delivery(message.id, status, "; ".join(notes))


async def email(request: OfficeRequest, message: Message) -> tuple[str, bool]:
    """E-mails a staff reply when SMTP_URL is set and the user gave an address: (note, sent)."""
    try:
        settings = smtp_settings()
    except ValueError as error:
        return f"e-mail: off ({error})", False
    if settings is None:
        return f"e-mail: off ({SMTP_VARIABLE} not set)", False
    if not request.email:
        return "e-mail: no address given", False
    language = message.language or request.language or "en"
    subject = say("handoff_email_subject", language, ref=request.ref)
    body = say("handoff_email_body", language, ref=request.ref, text=message.text)
    try:
        await asyncio.get_running_loop().run_in_executor(None, send_email, settings, request.email, subject, body)
    except (OSError, smtplib.SMTPException) as error:
        logger.warning("reply to %s: e-mail failed: %s", request.ref, type(error).__name__)
        return f"e-mail: failed ({type(error).__name__})", False
    return "e-mail: sent", True


def summary(message: Message) -> str:
    """One line for the staff's terminal: how a reply went (the stored note, in English)."""
    mark = {DELIVERED: "✓", SHOWN: "✓", WAITING: "…", UNDELIVERED: "⚠"}.get(message.delivery or "", "?")
    return f"{mark} {message.delivery or 'pending'}: {message.delivery_note or ''}".strip()


# Each way's part of a delivery note (``deliver``) -> its staff_note_ text (the groups: its placeholders).
NOTE_PARTS = [
    (re.compile(r"telegram: sent"), "staff_note_telegram_sent"),
    (re.compile(r"telegram: failed \((?P<error>.*)\)"), "staff_note_telegram_failed"),
    (re.compile(r"telegram: off \(TELEGRAM_BOT_TOKEN not set\)"), "staff_note_telegram_off"),
    (re.compile(r"web: waiting for the page"), "staff_note_web_waiting"),
    (re.compile(r"web: shown (?P<when>.*) UTC"), "staff_note_web_shown"),
    (re.compile(r"e-mail: sent"), "staff_note_email_sent"),
    (re.compile(rf"e-mail: off \({SMTP_VARIABLE} not set\)"), "staff_note_email_unset"),
    (re.compile(r"e-mail: off \((?P<reason>.*)\)"), "staff_note_email_off"),
    (re.compile(r"e-mail: no address given"), "staff_note_email_no_address"),
    (re.compile(r"e-mail: failed \((?P<error>.*)\)"), "staff_note_email_failed"),
    (re.compile(r"no channel to reach the user"), "staff_note_no_channel"),
]


def staff_note(note: str, language: str) -> str:
    """A stored delivery note in ``language``, way by way (a part it does not know stays as it is)."""
    parts = []
    for part in filter(None, note.split("; ")):
        found = next(((key, m) for pattern, key in NOTE_PARTS if (m := pattern.fullmatch(part))), None)
        parts.append(say(found[0], language, **found[1].groupdict()) if found else part)
    return say("staff_note_separator", language).join(parts)


def staff_summary(message: Message) -> str:
    """``summary`` for the staff group: how a reply went, in ``STAFF_LANGUAGE``."""
    language = staff_language()
    mark = {DELIVERED: "✓", SHOWN: "✓", WAITING: "…", UNDELIVERED: "⚠"}.get(message.delivery or "", "?")
    status = say(f"staff_delivery_{message.delivery or 'pending'}", language)
    notes = staff_note(message.delivery_note or "", language)
    line = say("staff_delivery_line", language, mark=mark, status=status, notes=notes)
    return line if notes else f"{mark} {status}"


# --- the staff group -------------------------------------------------------------------


def post_text(handoff: Handoff, request: OfficeRequest) -> str:
    """A new hand-off as the staff group reads it, in ``STAFF_LANGUAGE``."""
    about = staff_say("staff_post_about", lang=handoff.lang, channel=handoff.channel)
    lines = [
        staff_say("staff_post_new", ref=handoff.ref),
        about + (" · " + staff_say("staff_post_email_given") if request.email else ""),
    ]
    if request.details:
        lines += ["", staff_say("staff_post_last_messages"), request.details]
    lines += ["", staff_say("staff_post_how", ref=handoff.ref)]
    return "\n".join(lines)[:TELEGRAM_TEXT_LIMIT]


async def post_to_staff(text: str, reply_to: int | None = None, bot: Bot | None = None) -> int | None:
    """Posts ``text`` in the staff group (a reply to ``reply_to``); its message id, or None."""
    chat = staff_chat_id()
    own = bot is None
    bot = bot or telegram_bot()
    if chat is None or bot is None:
        return None
    parameters = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
    try:
        if own:
            async with bot:
                sent = await bot.send_message(chat, text[:TELEGRAM_TEXT_LIMIT], reply_parameters=parameters)
        else:
            sent = await bot.send_message(chat, text[:TELEGRAM_TEXT_LIMIT], reply_parameters=parameters)
    except TelegramError as error:
        logger.warning("the staff group refused a post: %s", type(error).__name__)
        return None
    return sent.message_id


async def post_handoff(ref: str, store: HandoffStore | None = None, bot: Bot | None = None) -> int | None:
    """Posts a new hand-off in the staff group (once; again later if it failed)."""
    store = store or handoffs()
    handoff = store.get(ref)
    if handoff.staff_post_id is not None:
        return handoff.staff_post_id
    post_id = await post_to_staff(post_text(handoff, store.request(ref)), bot=bot)
    if post_id is not None:
        store.set_post(post_id, ref=ref)
    return post_id


async def relay_to_staff(message: Message, store: HandoffStore | None = None, bot: Bot | None = None) -> int | None:
    """Posts a user's message of an open hand-off in the staff group, under the hand-off's post."""
    store = store or handoffs()
    post = await post_handoff(message.ref, store, bot)
    if post is None:
        return None
    post_id = await post_to_staff(
        staff_say("staff_relayed", ref=message.ref, text=message.text), reply_to=post, bot=bot
    )
    if post_id is not None:
        store.set_post(post_id, message_id=message.id)
    return post_id
