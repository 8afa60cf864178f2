"""Talk to a person: the conversation is handed to the office staff.

"Can I talk to a human?", "转人工", "我要找老师", "позовите оператора", "je voudrais
parler à quelqu'un" (intent ``request_human``), or "Talk to a person" after an answer
the bot did not have: the hand-off is stored (``bot.core.handoff``, reference
``H-2026-0001``) with the last messages of the conversation, and the bot says where
the staff will answer (this Telegram chat, this page, or by e-mail), that it may take
time, and the reference. Its reply is marked (``HANDOFF_OPENED``) so that the channel
posts the hand-off in the staff's Telegram group; from then on the channel relays the
user's messages to the staff (``bot.plugins.handoff``) until the hand-off is closed.
"""

from __future__ import annotations

import logging

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.answers import LanguageAction
from bot.core.handoff import BACK_TO_BOT, HANDOFF_OPENED, channel_of, handoffs
from bot.core.languages import Choice
from bot.core.texts import say

logger = logging.getLogger(__name__)

TRANSCRIPT_MESSAGES = 6
TRANSCRIPT_CHARS = 300  # of each message in the staff's post


def transcript(tracker: Tracker) -> str:
    """The last messages of the conversation, as the staff read them."""
    lines = []
    for event in tracker.events:
        kind = event.get("event")
        text = (event.get("text") or "").strip()
        if kind in ("user", "bot") and text and not (kind == "user" and text.startswith("/")):
            short = text if len(text) <= TRANSCRIPT_CHARS else text[:TRANSCRIPT_CHARS] + "…"
            lines.append(f"{'user' if kind == 'user' else 'bot'}: {short}")
    latest = (tracker.latest_message or {}).get("text") or ""
    if latest and not latest.startswith("/") and (not lines or lines[-1] != f"user: {latest.strip()}"):
        lines.append(f"user: {latest.strip()[:TRANSCRIPT_CHARS]}")
    return "\n".join(lines[-TRANSCRIPT_MESSAGES:])


class ActionOpenHandoff(LanguageAction):
    """Hands the conversation to the office staff and says where and how they will answer."""

    def name(self) -> str:
        return "action_open_handoff"

    def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, choice: Choice) -> list[EventType]:
        language = choice.language
        email = tracker.get_slot("office_email") or tracker.get_slot("email")
        handoff, created = handoffs().open(tracker.sender_id, language, email=email, transcript=transcript(tracker))
        channel = channel_of(tracker.sender_id)
        where = {"telegram": "handoff_where_telegram", "web": "handoff_where_web"}.get(channel)
        where = where or ("handoff_where_email" if email else "handoff_where_chat")
        if created:
            logger.info("hand-off %s opened", handoff.ref)
        dispatcher.utter_message(
            text=say("handoff_opened", language, ref=handoff.ref, where=say(where, language)),
            buttons=[{"title": say("button_back_to_bot", language), "payload": BACK_TO_BOT}],
            **{HANDOFF_OPENED: handoff.ref},
        )
        return [SlotSet("offer", None)] if tracker.get_slot("offer") else []
