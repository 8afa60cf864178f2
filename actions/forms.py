"""Forms: a visit request, and a question passed on to the office.

``visit_form`` asks, one at a time and in the user's language: full name,
institution, country, e-mail, purpose (buttons), arrival and departure dates,
topic or notes, then shows a summary to confirm, change an answer, or cancel.
``question_form`` asks for an e-mail and shows the question it will pass on
(the one the bot could not answer), which the user may send or rewrite.

Every user turn inside a form goes through one validator (``FormValidator``):
it reads the answer to the requested slot, or answers a question about the
department asked in the middle (the form then asks again), or goes back one
question ("back", "返回", "назад", "retour": the previous answer is asked
again), or cancels. Saved
requests get a reference (``V-2027-0001``, ``Q-2026-0001``) from
``bot.core.storage``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from abc import ABC, abstractmethod
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.answers import ANSWERED_INTENTS, LANGUAGE_SLOT
from bot.core.languages import registry
from bot.core.parsing import is_email, parse_date
from bot.core.storage import OfficeRequest, store
from bot.core.texts import say, texts

logger = logging.getLogger(__name__)

VISIT_SLOTS = ["visitor_name", "institution", "country", "email", "purpose",
               "arrival_date", "departure_date", "visit_notes", "visit_confirmed"]  # fmt: skip
QUESTION_SLOTS = ["office_email", "office_question"]
FREE_TEXT_LIMITS = {"visitor_name": 200, "institution": 300, "country": 100,
                    "visit_notes": 2000, "office_question": 4000}  # fmt: skip
PURPOSES = ["lecture", "research", "conference", "other"]
CHANGEABLE = VISIT_SLOTS[:-1]
# A topic question is answered mid-form when NLU is at least this sure of it.
FAQ_CONFIDENCE = 0.85
FAQ_INTENTS = {i for i in ANSWERED_INTENTS if i.startswith("ask_")} | {"bot_capabilities", "bot_identity"}
QUESTION_SHAPE = re.compile(r"[?？]|\b(what|where|how|which|who|when|why|is|are|do|does|can|"
                            r"что|где|как|какие|какой|когда|кто|ли|quel|quelle|quels|où|comment|est-ce)\b|"
                            r"吗|嗎|什么|什麼|哪|怎么|怎麼|多少|几|幾", re.IGNORECASE)  # fmt: skip


def language_of(tracker: Tracker) -> str:
    """The conversation's language (forms never switch it on a name or a date)."""
    current = tracker.get_slot(LANGUAGE_SLOT)
    if current in registry().languages:
        return current
    hint = ((tracker.latest_message or {}).get("metadata") or {}).get("language")
    return registry().normalize(hint) or registry().default


def _message(tracker: Tracker) -> tuple[str, str | None, float]:
    message = tracker.latest_message or {}
    intent = message.get("intent") or {}
    return (message.get("text") or "").strip(), intent.get("name"), float(intent.get("confidence") or 0)


def _localized_options(key_prefix: str, options: list[str]) -> dict[str, str]:
    """Every language's title of each option (lower case) -> the option."""
    source = texts()
    return {source.raw(f"{key_prefix}{option}", code).lower(): option
            for code in registry().codes for option in options}  # fmt: skip


def option_buttons(key_prefix: str, options: list[str], language: str) -> list[dict[str, str]]:
    """Buttons whose payload is their title: typed or pressed, the answer reads the same."""
    return [{"title": say(f"{key_prefix}{o}", language), "payload": say(f"{key_prefix}{o}", language)} for o in options]


def interrupted(tracker: Tracker) -> SlotSet:
    """Counts a turn that did not answer the form; setting it keeps the form going."""
    return SlotSet("form_interruptions", (tracker.get_slot("form_interruptions") or 0) + 1)


def _said(text: str, words_key: str) -> bool:
    """Whether ``text`` is one of the comma-separated words of ``words_key``, in any language."""
    words = {w.strip().lower() for code in registry().codes for w in texts().raw(words_key, code).split(",")}
    return text.strip().strip(".!。！").lower() in words


def is_none_answer(text: str) -> bool:
    return _said(text, "none_words")


def is_back_answer(text: str) -> bool:
    return _said(text, "back_words")


class AskAction(Action):
    """Asks for one slot of a form, in the user's language (``action_ask_<slot>``)."""

    slot: str = ""

    def name(self) -> str:
        return f"action_ask_{self.slot}"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        language = language_of(tracker)
        if self.slot == VISIT_SLOTS[0] and tracker.get_slot("requested_slot") is None:
            # the form has just started (the ask action runs before requested_slot is set)
            dispatcher.utter_message(text=say("form_visit_start", language))
        if self.slot == "purpose":
            dispatcher.utter_message(text=say("form_ask_purpose", language),
                                     buttons=option_buttons("purpose_", PURPOSES, language))  # fmt: skip
        elif self.slot == "visit_confirmed":
            dispatcher.utter_message(text=summary(tracker, language), buttons=[
                {"title": say("button_confirm", language), "payload": "/affirm"},
                {"title": say("button_change", language), "payload": "/deny"},
                {"title": say("button_cancel", language), "payload": "/cancel"},
            ])  # fmt: skip
        elif self.slot == "office_question":
            question = tracker.get_slot("last_question") or ""
            dispatcher.utter_message(
                text=say("form_ask_office_question", language, question=question),
                buttons=[{"title": say("button_send_as_is", language), "payload": "/affirm"},
                         {"title": say("button_cancel", language), "payload": "/cancel"}],
            )  # fmt: skip
        else:
            dispatcher.utter_message(text=say(f"form_ask_{self.slot}", language))
        return []


# One registered action per slot: action_ask_visitor_name, action_ask_email, ...
for _slot in VISIT_SLOTS + QUESTION_SLOTS:
    globals()[f"Ask_{_slot}"] = type(f"Ask_{_slot}", (AskAction,), {"slot": _slot})


def display_date(value: str | None, language: str) -> str:
    if not value:
        return ""
    date = dt.date.fromisoformat(value)
    return f"{date.year}年{date.month}月{date.day}日" if language.startswith("zh") else date.isoformat()


def summary(tracker: Tracker, language: str) -> str:
    values = {slot: tracker.get_slot(slot) or "" for slot in CHANGEABLE}
    values["purpose"] = say(f"purpose_{values['purpose']}", language) if values["purpose"] in PURPOSES else ""
    values["arrival_date"] = display_date(values["arrival_date"], language)
    values["departure_date"] = display_date(values["departure_date"], language)
    values["visit_notes"] = values["visit_notes"] or "—"
    return say("visit_summary", language, **values)


class FormValidator(Action, ABC):
    """Reads the answer to the requested slot; answers questions asked mid-form; cancels."""

    form_slots: list[str] = []
    confirm_slot: str | None = None

    @abstractmethod
    def name(self) -> str: ...

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        requested = tracker.get_slot("requested_slot")
        if requested not in self.form_slots:
            return []  # the form is being activated: nothing was asked yet
        language = language_of(tracker)
        text, intent, confidence = _message(tracker)
        if is_back_answer(text):
            return self.go_back(dispatcher, requested, tracker, language)
        # "cancel", or a plain "no" where no "no" is expected ("算了吧" is both)
        wants_out = intent == "cancel" or (intent == "deny" and requested not in (self.confirm_slot, "visit_notes"))
        if wants_out and confidence >= 0.6:
            return [SlotSet(self.confirm_slot or requested, "cancelled"), SlotSet("requested_slot", None)]
        value, problem = self.read(requested, text, intent, confidence, tracker, language)
        if value is not None:
            return self.accept(requested, value, tracker)
        if intent in FAQ_INTENTS and confidence >= FAQ_CONFIDENCE and QUESTION_SHAPE.search(text):
            dispatcher.utter_message(text=say(intent, language))
            dispatcher.utter_message(text=say("form_interrupted", language))
            # a slot set (not the requested one) keeps the form going: it asks again
            return [interrupted(tracker)]
        if problem:
            message = say(problem[0], language, **problem[1])
            buttons = problem[2] if len(problem) > 2 else []
            dispatcher.utter_message(text=message, buttons=buttons)
        return [SlotSet(requested, None), interrupted(tracker)]

    def accept(self, slot: str, value: Any, tracker: Tracker) -> list[EventType]:
        return [SlotSet(slot, value)]

    def go_back(self, dispatcher: CollectingDispatcher, requested: str, tracker: Tracker,
                language: str) -> list[EventType]:  # fmt: skip
        """The "back" command forgets the previous answer, so the form asks for it again (then goes on as before)."""
        index = self.form_slots.index(requested)
        if index == 0:
            dispatcher.utter_message(text=say("form_nothing_to_go_back_to", language))
            return [SlotSet(requested, None), interrupted(tracker)]
        return [SlotSet(self.form_slots[index - 1], None), interrupted(tracker)]

    def read(self, slot: str, text: str, intent: str | None, confidence: float, tracker: Tracker,
             language: str) -> tuple[Any, tuple | None]:  # fmt: skip
        """(value, None) when ``text`` answers ``slot``, else (None, (text key, placeholders[, buttons]))."""
        if slot in ("email", "office_email"):
            found = next((w.strip(".,;()<>«»“”\"'") for w in text.split() if "@" in w), text)
            return (found, None) if is_email(found) else (None, ("form_invalid_email", {}))
        limit = FREE_TEXT_LIMITS.get(slot, 300)
        if not text or text.startswith("/"):
            return None, None
        if len(text) > limit:
            return None, ("form_too_long", {"limit": str(limit)})
        looks_like_faq = intent in FAQ_INTENTS and confidence >= FAQ_CONFIDENCE and QUESTION_SHAPE.search(text)
        return (None, None) if looks_like_faq else (text, None)


class ValidateVisitForm(FormValidator):
    """Validates every answer of the visit request form."""

    form_slots = VISIT_SLOTS
    confirm_slot = "visit_confirmed"

    def name(self) -> str:
        return "validate_visit_form"

    def read(self, slot, text, intent, confidence, tracker, language):
        if slot in ("arrival_date", "departure_date"):
            return self.read_date(slot, text, tracker)
        if slot == "purpose":
            option = _localized_options("purpose_", PURPOSES).get(text.lower())
            if option:
                return option, None
            return None, ("form_invalid_purpose", {}, option_buttons("purpose_", PURPOSES, language))
        if slot == "visit_confirmed":
            return self.read_confirmation(text, intent, language)
        if slot == "visit_notes" and is_none_answer(text):
            return "", None
        return super().read(slot, text, intent, confidence, tracker, language)

    @staticmethod
    def read_date(slot: str, text: str, tracker: Tracker) -> tuple[Any, tuple | None]:
        date = parse_date(text)
        if date is None:
            return None, ("form_invalid_date", {})
        if date <= dt.date.today():
            return None, ("form_date_in_past", {})
        arrival = tracker.get_slot("arrival_date")
        if slot == "departure_date" and arrival and date < dt.date.fromisoformat(arrival):
            return None, ("form_departure_before_arrival", {"arrival": arrival})
        return date.isoformat(), None

    @staticmethod
    def read_confirmation(text: str, intent: str | None, language: str) -> tuple[Any, tuple | None]:
        if intent == "affirm" or text == "/affirm":
            return "yes", None
        field = _localized_options("field_", CHANGEABLE).get(text.lower())
        if field:
            return f"change:{field}", None
        return None, ("form_which_field", {}, option_buttons("field_", CHANGEABLE, language))

    def accept(self, slot: str, value: Any, tracker: Tracker) -> list[EventType]:
        if slot == "visit_confirmed" and str(value).startswith("change:"):
            field = value.split(":", 1)[1]
            # forget that answer: the form asks it again, then shows the summary again
            return [SlotSet(field, None), SlotSet("visit_confirmed", None)]
        if slot == "arrival_date":
            departure = tracker.get_slot("departure_date")
            if departure and departure < value:  # a corrected arrival after the old departure
                return [SlotSet(slot, value), SlotSet("departure_date", None)]
        return [SlotSet(slot, value)]


class ValidateQuestionForm(FormValidator):
    """Validates the e-mail and the question passed on to the office."""

    form_slots = QUESTION_SLOTS

    def name(self) -> str:
        return "validate_question_form"

    def read(self, slot, text, intent, confidence, tracker, language):
        if slot == "office_question" and (intent == "affirm" or text == "/affirm"):
            return tracker.get_slot("last_question") or "", None
        if slot == "office_question":
            limit = FREE_TEXT_LIMITS[slot]
            if not text or text.startswith("/"):
                return None, None
            return (text, None) if len(text) <= limit else (None, ("form_too_long", {"limit": str(limit)}))
        return super().read(slot, text, intent, confidence, tracker, language)


class FinishAction(Action, ABC):
    """Saves the finished form as a request and gives the reference, or confirms the cancel."""

    slots: list[str] = []

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def request(self, tracker: Tracker, language: str) -> OfficeRequest | None:
        """The request to save, or None when the form was cancelled."""

    @property
    @abstractmethod
    def saved_text(self) -> str: ...

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        language = language_of(tracker)
        reset = [SlotSet(slot, None) for slot in self.slots + ["offer", "form_interruptions"]]
        request = self.request(tracker, language)
        if request is None:
            dispatcher.utter_message(text=say("request_cancelled", language))
            return reset
        try:
            saved = store().save(request)
        except Exception:  # the database is down: keep the answers, say so
            logger.exception("could not save a %s request", request.kind)
            dispatcher.utter_message(text=say("request_not_saved", language))
            return [SlotSet("visit_confirmed", None)] if request.kind == "visit" else []
        dispatcher.utter_message(text=say(self.saved_text, language, ref=saved.ref))
        return reset


class ActionFinishVisitRequest(FinishAction):
    """Saves the visit request once confirmed."""

    slots = VISIT_SLOTS
    saved_text = "visit_saved"

    def name(self) -> str:
        return "action_finish_visit_request"

    def request(self, tracker: Tracker, language: str) -> OfficeRequest | None:
        if tracker.get_slot("visit_confirmed") != "yes":
            return None
        get = tracker.get_slot
        return OfficeRequest(
            kind="visit", email=get("email"), details=get("visit_notes") or "", language=language,
            sender_id=tracker.sender_id, full_name=get("visitor_name"), institution=get("institution"),
            country=get("country"), purpose=get("purpose"),
            arrival=dt.date.fromisoformat(get("arrival_date")), departure=dt.date.fromisoformat(get("departure_date")),
        )  # fmt: skip


class ActionFinishOfficeQuestion(FinishAction):
    """Saves the question for the office."""

    slots = QUESTION_SLOTS + ["last_question"]
    saved_text = "question_saved"

    def name(self) -> str:
        return "action_finish_office_question"

    def request(self, tracker: Tracker, language: str) -> OfficeRequest | None:
        email, question = tracker.get_slot("office_email"), tracker.get_slot("office_question")
        if not email or question in (None, "cancelled") or email == "cancelled":
            return None
        return OfficeRequest(kind="question", email=email, details=question, language=language,
                             sender_id=tracker.sender_id)  # fmt: skip
