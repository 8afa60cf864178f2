"""Talk to a person: the conversation is handed to the office staff.

"Can I talk to a human?", "转人工", "我要找老师", "позовите оператора", "je voudrais
parler à quelqu'un" (intent ``request_human``), or "Talk to a person" after an answer
the bot did not have: the hand-off is stored (``bot.core.handoff``, reference
``H-2026-0001``) with the last messages of the conversation, and the bot says where
the staff will answer (this Telegram chat, this page, or by e-mail), that it may take
time, and the reference. Its reply is marked (``HANDOFF_OPENED``) so that the channel
posts the hand-off in the staff's Telegram group; from then on the channel relays the
user's messages to the staff (``bot.plugins.handoff``) until the hand-off is closed.

Asked in the middle of a form (data/rules/handoff.yml: the form rejects the message,
``action_deactivate_loop`` leaves it), the same happens, and first the bot says that the
request was not sent; the form's slots are emptied, and its answers so far go to the
staff with the hand-off (its post's last messages), so that nobody has to ask them again.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.answers import LanguageAction, remember_language, reply_language, tag_language
from actions.forms import HELPER_SLOTS, display_date, form_slots, summary_purpose
from bot.core.handoff import BACK_TO_BOT, HANDOFF_OPENED, channel_of, handoffs, staff_language, staff_say
from bot.core.languages import Choice
from bot.core.texts import say

logger = logging.getLogger(__name__)

TRANSCRIPT_MESSAGES = 6
TRANSCRIPT_CHARS = 300  # of each message in the staff's post
FORMS = tuple(HELPER_SLOTS)  # visit_form, question_form
# The title of a form's answer in the staff's post: field_<slot> (the summary's), or these.
FIELD_TITLES = {"office_email": "field_email", "office_question": "field_office_question"}


def transcript(tracker: Tracker) -> str:
    """The last messages of the conversation, as the staff read them."""
    lines = []

    def line(kind: str, text: str) -> str:  # "user: …", "用户：…" (the staff's language)
        return staff_say("staff_transcript_line", author=staff_say(f"staff_author_{kind}"), text=text)

    for event in tracker.events:
        kind = event.get("event")
        text = (event.get("text") or "").strip()
        if kind in ("user", "bot") and text and not (kind == "user" and text.startswith("/")):
            lines.append(line(kind, text if len(text) <= TRANSCRIPT_CHARS else text[:TRANSCRIPT_CHARS] + "…"))
    latest = (tracker.latest_message or {}).get("text") or ""
    if latest and not latest.startswith("/") and (not lines or lines[-1] != line("user", latest.strip())):
        lines.append(line("user", latest.strip()[:TRANSCRIPT_CHARS]))
    return "\n".join(lines[-TRANSCRIPT_MESSAGES:])


def form_left(tracker: Tracker) -> str | None:
    """The form that was active when the latest message came and has been left since
    (``action_deactivate_loop``, data/rules/handoff.yml), else None."""
    active = at_message = None
    for event in tracker.events:
        if event.get("event") == "active_loop":
            active = event.get("name")
        elif event.get("event") == "user":
            at_message = active
    return at_message if at_message in FORMS and active is None else None


def form_answers(tracker: Tracker, form: str, domain: dict[str, Any]) -> str:
    """The answers a form had when it was left, for the staff (in their language), or ""."""
    language = staff_language()
    lines = []
    for slot in form_slots(form, domain):
        value = tracker.get_slot(slot)
        if value in (None, "") or slot in HELPER_SLOTS[form] or isinstance(value, bool):
            continue
        if slot == "purpose":
            value = summary_purpose(tracker, language)
        elif slot.endswith("_date"):
            value = display_date(value, language)
        title = say(FIELD_TITLES.get(slot, f"field_{slot}"), language)
        lines.append(say("staff_transcript_line", language, author=title, text=str(value)))
    if not lines:
        return ""
    return "\n".join([staff_say(f"staff_form_left_{form}"), *lines])


class ActionOpenHandoff(LanguageAction):
    """Hands the conversation to the office staff and says where and how they will answer."""

    def name(self) -> str:
        return "action_open_handoff"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        """LanguageAction's run, and a form left for the staff is emptied."""
        choice = reply_language(tracker)
        events = remember_language(tracker, choice)
        left = form_left(tracker)
        if choice.unsupported:
            dispatcher.utter_message(text=say("language_unsupported", choice.language))
        else:
            events += self.open(dispatcher, tracker, choice, form_answers(tracker, left, domain) if left else None)
        if left:  # nothing of the form is kept: its answers went to the staff with the hand-off
            emptied = [*form_slots(left, domain), "form_interruptions", "offer"]
            events = [e for e in events if e.get("name") not in emptied] + [SlotSet(slot, None) for slot in emptied]
        tag_language(dispatcher, choice.language)
        return events

    def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, choice: Choice) -> list[EventType]:
        return self.open(dispatcher, tracker, choice)

    def open(self, dispatcher: CollectingDispatcher, tracker: Tracker, choice: Choice,
             left_answers: str | None = None) -> list[EventType]:  # fmt: skip
        """Opens the hand-off (``left_answers``: a form was left, with these answers) and says so."""
        language = choice.language
        email = tracker.get_slot("office_email") or tracker.get_slot("email")
        context = transcript(tracker)
        if left_answers is not None:
            dispatcher.utter_message(text=say("handoff_form_stopped", language))
            context = "\n\n".join(filter(None, [context, left_answers]))
        handoff, created = handoffs().open(tracker.sender_id, language, email=email, transcript=context)
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
