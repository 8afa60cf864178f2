"""While the staff have a conversation, its messages go to them and the bot stays quiet.

The check lives in the Rasa server's input channels, before a message reaches the
bot: the REST channel (``bot.plugins.rest``, which the web chat and the Telegram
polling bridge use) and the Telegram webhook (``bot.channels.telegram.webhook``) call
``intercept`` first. The state is the database's (``bot.core.handoff``), not a slot, so
it holds over every channel and survives a restart of Rasa or of the action server.

* An open hand-off that has been quiet for ``HANDOFF_TIMEOUT_MINUTES`` is closed first; the
  user's message then goes to the bot, after a notice that the staff's conversation ended.
* ``/bot`` (the "Back to the bot" button) or a message that is only "back to the bot" in
  any language (``data/choices.yml``, ``handoff_end``) closes it: the bot answers again.
* Any other message is stored with the hand-off and posted in the staff group under the
  hand-off's post; the user is told a person will reply. A language switch (the web
  page's selector) still goes to the bot.

None of these turns reaches Rasa's tracker, so the hand-off's rows keep them whole for the
web chat's history (``history_events``): the user's messages (the "back to the bot" one
too), the acknowledgements, the staff's replies and the notices, each at its time.

``after_turn`` posts a hand-off the bot has just opened (its reply's ``handoff_opened``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from bot.core.choices import choices
from bot.core.delivery import post_handoff, post_to_staff, relay_to_staff
from bot.core.handoff import (
    ACKNOWLEDGED,
    BACK_TO_BOT,
    BEFORE_THE_REPLY,
    DELIVERED,
    IN_A_REPLY,
    IN_THE_REPLY,
    Handoff,
    HandoffStore,
    handoffs,
    staff_say,
)
from bot.core.texts import say

logger = logging.getLogger(__name__)

# Sent to the bot even while the staff have the conversation: the web page's language selector.
PASSES_THROUGH = re.compile(r"^/change_language\b")


@dataclass
class Turn:
    """What the channel does with a message: ``replies`` instead of the bot's (None: ask the
    bot), and ``notices`` to show before the bot's replies."""

    replies: list[dict[str, Any]] | None = None
    notices: list[dict[str, Any]] = field(default_factory=list)


def back_to_bot(text: str) -> bool:
    """Whether the user asks for the bot again: ``/bot``, or "back to the bot" alone."""
    stripped = text.strip()
    if stripped.lower() in (BACK_TO_BOT, f"{BACK_TO_BOT}@"):
        return True
    return len(stripped) <= 60 and choices().question("handoff_end").whole(stripped) == "bot"


def back_button(language: str) -> dict[str, str]:
    return {"title": say("button_back_to_bot", language), "payload": BACK_TO_BOT}


async def _run(function, *args, **kwargs):
    """A blocking database call, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(function, *args, **kwargs))


async def intercept(sender: str, text: str, store: HandoffStore | None = None) -> Turn:
    """The hand-off's part of a user's message (see the module's docstring)."""
    store = store or handoffs()
    turn = Turn()
    # Most messages: no hand-off, one lookup. On SQLite (a local file) it is made here, as it costs
    # less than handing it to a thread; a database server is asked from a thread.
    if store.engine.dialect.name == "sqlite":
        is_open = store.has_open(sender)
    else:
        is_open = await _run(store.has_open, sender)
    if not is_open:
        return turn
    for notice in await _run(store.expire, sender):
        turn.notices.append({"text": notice.text, "language": notice.language})
        await _run(store.set_delivery, notice.id, DELIVERED, BEFORE_THE_REPLY)
        handoff = await _run(store.get, notice.ref)
        await post_to_staff(staff_say("staff_timed_out", ref=notice.ref), reply_to=handoff.staff_post_id)
    handoff: Handoff | None = await _run(store.active, sender)
    if handoff is None or PASSES_THROUGH.match(text.strip()):
        return turn
    language = handoff.lang
    if back_to_bot(text):
        await _run(store.add_user_message, handoff.ref, text)  # for the history: what the user wrote or pressed
        notice = await _run(store.close, handoff.ref, "user", "user")
        if notice is not None:
            await _run(store.set_delivery, notice.id, DELIVERED, IN_THE_REPLY)
            await post_to_staff(staff_say("staff_user_left", ref=handoff.ref), reply_to=handoff.staff_post_id)
            turn.replies = [{"recipient_id": sender, "text": notice.text, "language": language}]
        return turn if turn.replies is not None else Turn(None, turn.notices)
    message = await _run(store.add_user_message, handoff.ref, text)
    await relay_to_staff(message, store)
    relayed = say("handoff_relayed", language, ref=handoff.ref)
    await _run(store.acknowledge, handoff.ref, relayed)
    turn.replies = [{"recipient_id": sender, "text": relayed, "language": language, "buttons": [back_button(language)],
                     "handoff": handoff.ref}]  # fmt: skip
    return turn


async def after_turn(opened: list[str], store: HandoffStore | None = None) -> None:
    """Posts the hand-offs the bot has just opened in the staff group."""
    for ref in opened:
        try:
            await post_handoff(ref, store)
        except Exception:  # the user has their answer; the post is retried with the next message
            logger.warning("hand-off %s: could not post it to the staff", ref, exc_info=True)


def history_events(sender: str, store: HandoffStore | None = None) -> list[dict[str, Any]]:
    """A conversation's hand-off messages and staff replies as tracker-like events (blocking),
    to merge into the history the web chat reads; replies waiting for the page become shown."""
    store = store or handoffs()
    messages = store.conversation_messages(sender)
    store.mark_shown([m for m in messages if m.author != "user"])
    return [event(message) for message in messages]


def event(message: Any) -> dict[str, Any]:
    """One hand-off message as Rasa's event JSON (``timestamp`` in seconds)."""
    from datetime import timezone

    stamp = message.at.replace(tzinfo=timezone.utc).timestamp()
    if message.author == "user":
        return {"event": "user", "text": message.text, "timestamp": stamp, "metadata": {"language": message.language}}
    metadata = {"language": message.language, "handoff": message.ref, "author": message.author, "id": message.id}
    text, data = message.text, {}
    if message.author == "staff":
        text = say("handoff_staff_reply", message.language or "en", ref=message.ref, text=message.text)
    elif message.delivery_note == ACKNOWLEDGED:  # with its "Back to the bot" button, as it was sent
        data = {"buttons": [back_button(message.language or "en")]}
    return {"event": "bot", "text": text, "timestamp": stamp, "metadata": metadata, "data": data}


def updates(sender: str, after: int, store: HandoffStore | None = None) -> dict[str, Any]:
    """What the web page asks every few seconds (blocking): the replies and notices with an
    id over ``after`` (not those the page had in the reply to a message of the user), and the
    open hand-off's reference (None: the bot has the conversation)."""
    store = store or handoffs()
    store.expire(sender)
    messages = [m for m in store.conversation_messages(sender, after)
                if m.author != "user" and m.delivery_note not in IN_A_REPLY]  # fmt: skip
    store.mark_shown(messages)
    handoff = store.active(sender)
    return {
        "handoff": handoff.ref if handoff else None,
        "taken": bool(handoff and handoff.status == "taken"),
        "messages": [event(m) for m in messages],
        "last": store.last_message_id(sender),
    }
