"""Forms: a visit request, and a question passed on to the office.

``visit_form`` asks, one at a time: full name, institution, country, e-mail, purpose,
arrival and departure dates, topic or notes, then shows a summary to send, change an
answer, or cancel. ``question_form`` asks for an e-mail and shows the question it will
pass on (the one the bot could not answer), which the user may send or rewrite. The
questions of each form are its ``required_slots`` in domain.yml.

The validators are rasa-sdk ``FormValidationAction``s: one ``extract_<slot>`` and one
``validate_<slot>`` per slot. Their shared base (``FormValidator``) first handles what is
not an answer: "back" ("返回", "назад", "retour": the previous question is asked again),
"cancel" (the form stops and its slots are emptied), a language switch, a question
about the department asked in the middle (answered, then the form asks again), and a
wish to talk to a person ("can I talk to a human?", "转人工": not an answer, so the form
rejects the message and the rules of data/rules/handoff.yml leave the form and hand the
conversation to the staff, ``actions.handoff``).

Language: entering a form decides the reply language by the same rules as every other
reply (``actions.answers.reply_language``); inside the form it stays the conversation's
language, so a name or a date never switches it. Every message is tagged with it.

Typed answers to questions with options (the purpose, the summary, which answer to
change, "did you mean this date?") are matched by ``bot.core.choices``, in any language.
Saved requests get a reference (``V-2027-0001``, ``Q-2026-0001``) from ``bot.core.storage``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT
from rasa_sdk.types import DomainDict

from actions.answers import (
    LANGUAGE_SLOT,
    remember_language,
    reply_language,
    tag_language,
    wants_language,
)
from bot.core.choices import choices
from bot.core.languages import registry
from bot.core.parsing import is_email
from bot.core.storage import OfficeRequest, store
from bot.core.texts import faq_intents, say, texts

try:  # bot.core.parsing.read_dates comes with the `dates` branch
    from bot.core.parsing import DateAnswer, office_today, read_dates
except ImportError:  # pragma: no cover - until it is merged: one date per answer, never ambiguous
    from zoneinfo import ZoneInfo

    from bot.core.parsing import parse_date

    @dataclass(frozen=True)
    class DateAnswer:  # type: ignore[no-redef]
        start: dt.date | None
        end: dt.date | None = None
        ambiguous: bool = False

    def office_today() -> dt.date:  # type: ignore[misc]
        return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()

    def read_dates(text: str, language: str, today: dt.date | None = None) -> DateAnswer:  # type: ignore[misc]
        return DateAnswer(parse_date(text))


logger = logging.getLogger(__name__)

# Longest answer kept for each free-text slot (the database's column sizes).
FREE_TEXT_LIMITS = {"visitor_name": 200, "institution": 300, "country": 100, "purpose_details": 300,
                    "visit_notes": 2000, "office_question": 4000}  # fmt: skip
# Slots a form uses besides its questions; emptied with them when it ends.
HELPER_SLOTS = {"visit_form": ["purpose_details", "field_to_change", "date_unsure"], "question_form": ["last_question"]}
# A topic question is answered mid-form when NLU is at least this sure of it.
FAQ_CONFIDENCE = 0.85
# "cancel" (or a "no" where no "no" is expected) stops a form when NLU is at least this sure.
CANCEL_CONFIDENCE = 0.6
# "Can I talk to a human?" leaves a form for the staff when NLU is at least this sure of it
# (names, institutions and notes come out as nlu_fallback or out_of_scope).
PERSON_CONFIDENCE = 0.6
# Besides the FAQ intents (``bot.core.texts.faq_intents``: every ask_… intent with a text, a new one too).
FORM_QUESTION_INTENTS = frozenset({"bot_capabilities", "bot_identity"})
QUESTION_SHAPE = re.compile(r"[?？]|\b(what|where|how|which|who|when|why|is|are|do|does|can|"
                            r"что|где|как|какие|какой|когда|кто|ли|quel|quelle|quels|où|comment|est-ce)\b|"
                            r"吗|嗎|什么|什麼|哪|怎么|怎麼|多少|几|幾", re.IGNORECASE)  # fmt: skip


# --- the language and the message -------------------------------------------------


def language_of(tracker: Tracker) -> str:
    """The conversation's language inside a form (never switched by a name or a date)."""
    current = tracker.get_slot(LANGUAGE_SLOT)
    if current in registry().languages:
        return current
    hint = ((tracker.latest_message or {}).get("metadata") or {}).get("language")
    return registry().normalize(hint) or registry().default


def form_language(tracker: Tracker) -> str:
    """Entering a form (nothing asked yet): the reply language by the usual rules; then it stays."""
    if tracker.get_slot(REQUESTED_SLOT) is None:
        return reply_language(tracker).language
    return language_of(tracker)


def _message(tracker: Tracker) -> tuple[str, str | None, float]:
    message = tracker.latest_message or {}
    intent = message.get("intent") or {}
    return (message.get("text") or "").strip(), intent.get("name"), float(intent.get("confidence") or 0)


def asked_a_question(tracker: Tracker) -> str | None:
    """The intent of a department question asked instead of an answer, if the message is one."""
    text, intent, confidence = _message(tracker)
    if (
        (intent in faq_intents() or intent in FORM_QUESTION_INTENTS)
        and confidence >= FAQ_CONFIDENCE
        and QUESTION_SHAPE.search(text)
    ):
        return intent
    return None


def asked_for_a_person(tracker: Tracker) -> bool:
    """Whether the message asks for a person (intent ``request_human``) instead of answering."""
    _, intent, confidence = _message(tracker)
    return intent == "request_human" and confidence >= PERSON_CONFIDENCE


def question_answered(tracker: Tracker) -> str | None:
    """The question the latest message replied to (``requested_slot`` when it was written)."""
    asked, answered, seen = None, None, False
    for event in tracker.events:
        if event.get("event") == "slot" and event.get("name") == REQUESTED_SLOT:
            asked = event.get("value")
        elif event.get("event") == "user":
            answered, seen = asked, True
    return answered if seen else tracker.get_slot(REQUESTED_SLOT)


def _said(text: str, words_key: str) -> bool:
    """Whether ``text`` is one of the comma-separated words of ``words_key``, in any language."""
    words = {w.strip().lower() for code in registry().codes for w in texts().raw(words_key, code).split(",")}
    return text.strip().strip(".!。！").lower() in words


def is_none_answer(text: str) -> bool:
    return _said(text, "none_words")


def is_back_answer(text: str) -> bool:
    return _said(text, "back_words")


def read_dates_in_any_language(text: str, language: str) -> DateAnswer:
    """The dates of ``text`` read in the form's language, else in the first other language that reads them."""
    today = office_today()
    answers = (read_dates(text, code, today) for code in [language, *registry().codes] if code)
    return next((answer for answer in answers if answer.start), DateAnswer(None))


def interrupted(tracker: Tracker) -> dict[str, Any]:
    """Counts a turn that did not answer the form; setting it keeps the form going."""
    return SlotSet("form_interruptions", (tracker.get_slot("form_interruptions") or 0) + 1)


def forms_of(domain: DomainDict) -> dict[str, Any]:
    """The domain's forms. Rasa sends the domain only to the actions marked ``send_domain`` in
    domain.yml: an action that reads the forms and is not marked says so, rather than finding none."""
    if "forms" not in domain:
        raise ValueError("this action reads the domain: mark it `send_domain: true` in domain.yml")
    return domain["forms"]


def form_slots(form: str, domain: DomainDict) -> list[str]:
    """Every slot a form fills: its questions (domain.yml) and its helper slots."""
    return list(forms_of(domain).get(form, {}).get("required_slots", [])) + HELPER_SLOTS[form]


# --- options ----------------------------------------------------------------------


def option_buttons(question: str, language: str, payloads: dict[str, str] | None = None) -> list[dict[str, str]]:
    """One button per option; its payload is its title (typed or pressed, it reads the same) unless given."""
    asked = choices().question(question)
    return [{"title": asked.title(o, language), "payload": (payloads or {}).get(o, asked.title(o, language))}
            for o in asked.options]  # fmt: skip


def display_date(value: str | None, language: str) -> str:
    if not value:
        return ""
    date = dt.date.fromisoformat(value)
    return f"{date.year}年{date.month}月{date.day}日" if language.startswith("zh") else date.isoformat()


def summary_purpose(tracker: Tracker, language: str) -> str:
    """The purpose as the summary shows it: the option's title, or "other" in the visitor's words."""
    get = tracker.get_slot
    return get("purpose_details") or (
        choices().question("purpose").title(get("purpose"), language) if get("purpose") else ""
    )


def summary(tracker: Tracker, language: str) -> str:
    get = tracker.get_slot
    purpose = summary_purpose(tracker, language)
    return say(
        "visit_summary", language,
        visitor_name=get("visitor_name") or "", institution=get("institution") or "", country=get("country") or "",
        email=get("email") or "", purpose=purpose, visit_notes=get("visit_notes") or "—",
        arrival_date=display_date(get("arrival_date"), language),
        departure_date=display_date(get("departure_date"), language),
    )  # fmt: skip


# --- asking -------------------------------------------------------------------------


class AskAction(Action, ABC):
    """Asks for one slot of a form (``action_ask_<slot>``), in the form's language."""

    @abstractmethod
    def name(self) -> str: ...

    @property
    def slot(self) -> str:
        return self.name().removeprefix("action_ask_")

    def ask(self, dispatcher: CollectingDispatcher, tracker: Tracker, language: str) -> None:
        dispatcher.utter_message(text=say(f"form_ask_{self.slot}", language))

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        language = form_language(tracker)
        self.ask(dispatcher, tracker, language)
        tag_language(dispatcher, language)
        return []


class AskChoice(AskAction, ABC):
    """Asks a question with options: buttons, and the options in words when its answer fitted none."""

    choice: str  # the question in data/choices.yml
    payloads: dict[str, str] = {}

    def full_question(self, tracker: Tracker, language: str) -> str:
        return say(f"form_ask_{self.slot}", language)

    def short_question(self, language: str) -> str:
        return say(f"form_ask_{self.slot}", language)

    def ask(self, dispatcher: CollectingDispatcher, tracker: Tracker, language: str) -> None:
        buttons = option_buttons(self.choice, language, self.payloads)
        # asked again: the answer fitted no option (not: a question was answered, or the language switched)
        if question_answered(tracker) == self.slot and not (asked_a_question(tracker) or wants_language(tracker)):
            text = say("form_choose_again", language, question=self.short_question(language),
                       options=choices().question(self.choice).in_words(language))  # fmt: skip
        else:
            text = self.full_question(tracker, language)
        dispatcher.utter_message(text=text, buttons=buttons)


class AskVisitorName(AskAction):
    """Asks for the visitor's name; a new request first says how to go back or stop."""

    def name(self) -> str:
        return "action_ask_visitor_name"

    def ask(self, dispatcher: CollectingDispatcher, tracker: Tracker, language: str) -> None:
        if tracker.get_slot(REQUESTED_SLOT) is None:  # the form has just started
            dispatcher.utter_message(text=say("form_visit_start", language))
        super().ask(dispatcher, tracker, language)


class AskInstitution(AskAction):
    """Asks for the visitor's university or institution."""

    def name(self) -> str:
        return "action_ask_institution"


class AskCountry(AskAction):
    """Asks for the institution's country."""

    def name(self) -> str:
        return "action_ask_country"


class AskEmail(AskAction):
    """Asks for the e-mail address the office replies to."""

    def name(self) -> str:
        return "action_ask_email"


class AskPurpose(AskChoice):
    """Asks for the purpose of the visit."""

    choice = "purpose"

    def name(self) -> str:
        return "action_ask_purpose"


class AskDate(AskAction, ABC):
    """Asks for a date, or whether an answer that reads two ways meant the first reading."""

    def ask(self, dispatcher: CollectingDispatcher, tracker: Tracker, language: str) -> None:
        unsure = tracker.get_slot("date_unsure")
        if unsure:
            dispatcher.utter_message(
                text=say("form_date_check", language, date=display_date(unsure, language)),
                buttons=option_buttons("date_check", language, {"yes": unsure}),
            )
        else:
            super().ask(dispatcher, tracker, language)


class AskArrivalDate(AskDate):
    """Asks for the arrival date (a range answers both dates)."""

    def name(self) -> str:
        return "action_ask_arrival_date"


class AskDepartureDate(AskDate):
    """Asks for the departure date."""

    def name(self) -> str:
        return "action_ask_departure_date"


class AskVisitNotes(AskAction):
    """Asks for the topic or anything else the office should know."""

    def name(self) -> str:
        return "action_ask_visit_notes"


class AskVisitConfirmed(AskChoice):
    """Shows the summary: send it, change an answer, or cancel."""

    choice = "summary"
    payloads = {"yes": "/affirm", "change": "/deny", "cancel": "/cancel"}

    def name(self) -> str:
        return "action_ask_visit_confirmed"

    def full_question(self, tracker: Tracker, language: str) -> str:
        return summary(tracker, language)

    def short_question(self, language: str) -> str:
        return say("form_ask_send", language)


class AskFieldToChange(AskChoice):
    """Asks which answer to change."""

    choice = "field"

    def name(self) -> str:
        return "action_ask_field_to_change"

    def full_question(self, tracker: Tracker, language: str) -> str:
        return say("form_which_field", language)

    def short_question(self, language: str) -> str:
        return say("form_which_field", language)


class AskOfficeEmail(AskAction):
    """Asks for the e-mail address the office replies to."""

    def name(self) -> str:
        return "action_ask_office_email"


class AskOfficeQuestion(AskAction):
    """Shows the question to pass on: send it as it is, or type a new version."""

    def name(self) -> str:
        return "action_ask_office_question"

    def ask(self, dispatcher: CollectingDispatcher, tracker: Tracker, language: str) -> None:
        dispatcher.utter_message(
            text=say("form_ask_office_question", language, question=tracker.get_slot("last_question") or ""),
            buttons=[{"title": say("button_send_as_is", language), "payload": "/affirm"},
                     {"title": say("button_cancel", language), "payload": "/cancel"}],
        )  # fmt: skip


# --- validating ---------------------------------------------------------------------


class FormValidator(FormValidationAction, ABC):
    """What every form does with a message that is not an answer; rasa-sdk reads the answers.

    Subclasses give one ``extract_<slot>`` (the candidate in the message, only when that slot
    was asked) and one ``validate_<slot>`` (the value to keep, or None with a message saying
    why) per question.
    """

    # Questions where "no" is an answer rather than a wish to stop.
    no_is_an_answer: frozenset[str] = frozenset()
    # Questions with options (data/choices.yml) whose "cancel" option stops the form.
    choice_of: dict[str, str] = {}

    @abstractmethod
    def name(self) -> str: ...

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        requested = tracker.get_slot(REQUESTED_SLOT)
        forms_of(domain)
        slots = await self.required_slots(self.domain_slots(domain), dispatcher, tracker, domain)
        if requested not in slots:  # the form is starting: nothing was asked yet
            choice = reply_language(tracker)
            tag_language(dispatcher, choice.language)
            return remember_language(tracker, choice)
        language = language_of(tracker)
        text, _, _ = _message(tracker)
        if asked_for_a_person(tracker) and not is_back_answer(text):
            # Nothing read: rasa rejects the form's turn (ActionExecutionRejection) and the rules
            # "a person asked for in the middle of a form" leave it for action_open_handoff.
            return []
        if is_back_answer(text):
            events = self.go_back(dispatcher, tracker, slots, requested, language)
        elif self.wants_out(tracker, requested):
            events = self.cancel(tracker, domain)
        elif wants_language(tracker) and (choice := reply_language(tracker)).reason == "explicit":
            language = choice.language
            dispatcher.utter_message(text=say("language_switched", language))
            events = [*remember_language(tracker, choice), interrupted(tracker)]
        else:
            events = await self.read_answer(dispatcher, tracker, domain, requested, language)
        if not any(e.get("event") == "active_loop" for e in events):
            events += await self.next_question(dispatcher, tracker, domain, events)
        tag_language(dispatcher, language)
        return events

    async def read_answer(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict,
                          requested: str, language: str) -> list[EventType]:  # fmt: skip
        """The answer through rasa-sdk's extract/validate; else a department question; else ask again."""
        said = CollectingDispatcher()
        events = await super().run(said, tracker, domain)
        answered = any(e.get("event") == "slot" and e["name"] == requested and e["value"] is not None for e in events)
        intent = asked_a_question(tracker)
        if not answered and intent:
            dispatcher.utter_message(text=say(intent, language))
            dispatcher.utter_message(text=say("form_interrupted", language))
            return [interrupted(tracker)]  # a slot set (not the asked one) keeps the form going: it asks again
        dispatcher.messages.extend(said.messages)
        events = [e for e in events if not (e.get("event") == "slot" and e["name"] == REQUESTED_SLOT)]
        if not any(e.get("event") == "slot" for e in events):  # nothing read: ask again
            events += [SlotSet(requested, None), interrupted(tracker)]
        return events

    async def next_question(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict,
                            events: list[EventType]) -> list[EventType]:  # fmt: skip
        """The next question when this form asks more than domain.yml lists (rasa-sdk decides it)."""
        tracker.add_slots(events)
        following = await self.next_requested_slot(dispatcher, tracker, domain)
        return [following] if following else []

    def wants_out(self, tracker: Tracker, requested: str) -> bool:
        """ "cancel", a plain "no" where no "no" is expected, or the question's own "cancel" option."""
        text, intent, confidence = _message(tracker)
        if confidence >= CANCEL_CONFIDENCE and (
            intent == "cancel" or (intent == "deny" and requested not in self.no_is_an_answer)
        ):
            return True
        question = self.choice_of.get(requested)
        return bool(question) and choices().question(question).pick(text) == "cancel"

    def cancel(self, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        """Stops the form and forgets its answers; the finish action then says so."""
        form = self.form_name()
        return [SlotSet(slot, None) for slot in form_slots(form, domain) if slot != "last_question"] + [
            SlotSet(REQUESTED_SLOT, None),
            ActiveLoop(None),
        ]

    def go_back(self, dispatcher: CollectingDispatcher, tracker: Tracker, slots: list[str], requested: str,
                language: str) -> list[EventType]:  # fmt: skip
        """A "back" forgets the previous answer, so the form asks it again (then goes on as before)."""
        index = slots.index(requested)
        if index == 0:
            dispatcher.utter_message(text=say("form_nothing_to_go_back_to", language))
            return [SlotSet(requested, None), interrupted(tracker)]
        return [SlotSet(slots[index - 1], None), interrupted(tracker)]

    # --- helpers for the per-slot methods

    @staticmethod
    def answer_to(tracker: Tracker, slot: str) -> str | None:
        """The message's text when it answers ``slot`` (the question just asked), else None."""
        if tracker.get_slot(REQUESTED_SLOT) != slot:
            return None
        return _message(tracker)[0]

    def free_text(self, tracker: Tracker, slot: str) -> dict[str, Any]:
        """A typed answer to ``slot``, unless it is a command or a department question."""
        text = self.answer_to(tracker, slot)
        if not text or text.startswith("/") or asked_a_question(tracker):
            return {}
        return {slot: text}

    @staticmethod
    def within_limit(slot: str, value: str, dispatcher: CollectingDispatcher, tracker: Tracker) -> dict[str, Any]:
        limit = FREE_TEXT_LIMITS[slot]
        if len(value) > limit:
            dispatcher.utter_message(text=say("form_too_long", language_of(tracker), limit=str(limit)))
            return {slot: None}
        return {slot: value}

    def email(self, slot: str, value: str, dispatcher: CollectingDispatcher, tracker: Tracker) -> dict[str, Any]:
        found = next((w.strip(".,;()<>«»“”\"'") for w in value.split() if "@" in w), value)
        if is_email(found):
            return {slot: found}
        dispatcher.utter_message(text=say("form_invalid_email", language_of(tracker)))
        return {slot: None}


class ValidateVisitForm(FormValidator):
    """Reads and checks every answer of the visit request form."""

    no_is_an_answer = frozenset({"visit_notes", "visit_confirmed", "arrival_date", "departure_date"})
    choice_of = {"visit_confirmed": "summary"}

    def name(self) -> str:
        return "validate_visit_form"

    async def required_slots(self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> list[str]:  # fmt: skip
        """The domain's questions, then "which answer?" after "Change an answer"."""
        if tracker.get_slot("visit_confirmed") is False:
            return [*domain_slots, "field_to_change"]
        return domain_slots

    # name, institution, country, e-mail
    def extract_visitor_name(self, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.free_text(tracker, "visitor_name")

    def validate_visitor_name(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.within_limit("visitor_name", value, dispatcher, tracker)

    def extract_institution(self, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.free_text(tracker, "institution")

    def validate_institution(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.within_limit("institution", value, dispatcher, tracker)

    def extract_country(self, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.free_text(tracker, "country")

    def validate_country(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.within_limit("country", value, dispatcher, tracker)

    def extract_email(self, dispatcher, tracker, domain) -> dict[str, Any]:
        text = self.answer_to(tracker, "email")
        return {"email": text} if text else {}

    def validate_email(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.email("email", value, dispatcher, tracker)

    # purpose: one of the options, or "other" with the user's own words
    def extract_purpose(self, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.free_text(tracker, "purpose")

    def validate_purpose(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        option = choices().question("purpose").pick(value)
        if option:
            return {"purpose": option, "purpose_details": None}
        kept = self.within_limit("purpose_details", value, dispatcher, tracker)
        return {"purpose": "other" if kept["purpose_details"] else None, **kept}

    # dates: a range fills both; a date that reads two ways is asked back once
    def extract_arrival_date(self, dispatcher, tracker, domain) -> dict[str, Any]:
        text = self.answer_to(tracker, "arrival_date")
        return {"arrival_date": text} if text else {}

    def validate_arrival_date(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        answer, problem = self.date_answer("arrival_date", value, dispatcher, tracker)
        if problem is not None:
            return problem
        if answer.end:
            return self.both_dates(answer)
        kept = {"arrival_date": answer.start.isoformat(), "date_unsure": None}
        departure = tracker.get_slot("departure_date")
        if departure and departure < kept["arrival_date"]:  # a corrected arrival after the old departure
            kept["departure_date"] = None
        return kept

    def extract_departure_date(self, dispatcher, tracker, domain) -> dict[str, Any]:
        text = self.answer_to(tracker, "departure_date")
        return {"departure_date": text} if text else {}

    def validate_departure_date(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        answer, problem = self.date_answer("departure_date", value, dispatcher, tracker)
        if problem is not None:
            return problem
        if answer.end:
            return self.both_dates(answer)
        arrival = tracker.get_slot("arrival_date")
        if arrival and answer.start < dt.date.fromisoformat(arrival):
            dispatcher.utter_message(text=say("form_departure_before_arrival", language_of(tracker), arrival=arrival))
            return {"departure_date": None, "date_unsure": None}
        return {"departure_date": answer.start.isoformat(), "date_unsure": None}

    @staticmethod
    def both_dates(answer: DateAnswer) -> dict[str, Any]:
        """A range ("10-14 May 2027") answers both questions, whichever was asked."""
        return {"arrival_date": answer.start.isoformat(), "departure_date": answer.end.isoformat(), "date_unsure": None}

    @staticmethod
    def date_answer(slot: str, text: str, dispatcher: CollectingDispatcher,
                    tracker: Tracker) -> tuple[DateAnswer, dict[str, Any] | None]:  # fmt: skip
        """The date(s) of an answer in the future, or the slots to set when there are none yet."""
        language = language_of(tracker)
        unsure = tracker.get_slot("date_unsure")
        checked = choices().question("date_check").pick(text) if unsure else None
        if checked == "no":
            return DateAnswer(None), {slot: None, "date_unsure": None}
        answer = (
            DateAnswer(dt.date.fromisoformat(unsure))
            if checked == "yes"
            else read_dates_in_any_language(text, language)
        )
        if answer.start and answer.ambiguous and not unsure:  # asked back once; then the first reading holds
            return answer, {slot: None, "date_unsure": answer.start.isoformat()}
        problem = None
        if answer.start is None:
            problem = "form_invalid_date"
        elif answer.start <= office_today():
            problem = "form_date_in_past"
        if problem:
            dispatcher.utter_message(text=say(problem, language))
            return answer, {slot: None, "date_unsure": None}
        return answer, None

    def extract_visit_notes(self, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.free_text(tracker, "visit_notes")

    def validate_visit_notes(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return (
            {"visit_notes": ""}
            if is_none_answer(value)
            else self.within_limit("visit_notes", value, dispatcher, tracker)
        )

    # the summary: send it (True), change an answer (False, then "which answer?"), cancel (see wants_out)
    def extract_visit_confirmed(self, dispatcher, tracker, domain) -> dict[str, Any]:
        text = self.answer_to(tracker, "visit_confirmed")
        return {"visit_confirmed": text} if text else {}

    def validate_visit_confirmed(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        picked = choices().question("summary").pick(value)
        field = choices().question("field").pick(value)
        if field and picked in (None, "change"):  # "change the e-mail": that answer at once
            return self.change(field)
        intent = _message(tracker)[1]
        if picked == "yes" or (picked is None and intent == "affirm"):
            return {"visit_confirmed": True}
        if picked == "change" or (picked is None and intent == "deny"):
            return {"visit_confirmed": False}
        return {"visit_confirmed": None}  # asked again, with the options in words

    def extract_field_to_change(self, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.free_text(tracker, "field_to_change")

    def validate_field_to_change(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        field = choices().question("field").pick(value)
        return self.change(field) if field else {"field_to_change": None}

    @staticmethod
    def change(field: str) -> dict[str, Any]:
        """Forget one answer: the form asks it again, then shows the summary again."""
        return {field: None, "visit_confirmed": None, "field_to_change": None}


class ValidateQuestionForm(FormValidator):
    """Reads the e-mail and the question passed on to the office."""

    choice_of = {"office_question": "office_question"}

    def name(self) -> str:
        return "validate_question_form"

    def extract_office_email(self, dispatcher, tracker, domain) -> dict[str, Any]:
        text = self.answer_to(tracker, "office_email")
        return {"office_email": text} if text else {}

    def validate_office_email(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.email("office_email", value, dispatcher, tracker)

    def extract_office_question(self, dispatcher, tracker, domain) -> dict[str, Any]:
        text = self.answer_to(tracker, "office_question")
        if not text:
            return {}
        # "send it as it is" (a new version is often a question: "Can you send me ...?")
        as_it_is = choices().question("office_question").pick(text) == "send" and not re.search(r"[?？]", text)
        if as_it_is or text == "/affirm" or _message(tracker)[1] == "affirm":
            return {"office_question": tracker.get_slot("last_question") or ""}
        return {} if text.startswith("/") else {"office_question": text}  # a new version of the question

    def validate_office_question(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self.within_limit("office_question", value, dispatcher, tracker)


# --- finishing ----------------------------------------------------------------------


class FinishAction(Action, ABC):
    """Saves the finished form as a request and gives the reference, or confirms the cancel."""

    form: str
    saved_text: str

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def request(self, tracker: Tracker, language: str) -> OfficeRequest | None:
        """The request to save, or None when the form was cancelled (its answers are gone)."""

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        language = language_of(tracker)
        reset = [SlotSet(slot, None) for slot in [*form_slots(self.form, domain), "offer", "form_interruptions"]]
        request = self.request(tracker, language)
        if request is None:
            dispatcher.utter_message(text=say("request_cancelled", language))
            events = reset
        else:
            try:
                saved = store().save(request)
            except Exception:  # the database is down: keep the answers, say so
                logger.exception("could not save a %s request", request.kind)
                dispatcher.utter_message(text=say("request_not_saved", language))
                events = [SlotSet("visit_confirmed", None)] if request.kind == "visit" else []
            else:
                dispatcher.utter_message(text=say(self.saved_text, language, ref=saved.ref))
                events = reset
        tag_language(dispatcher, language)
        return events


class ActionFinishVisitRequest(FinishAction):
    """Saves the visit request once confirmed."""

    form = "visit_form"
    saved_text = "visit_saved"

    def name(self) -> str:
        return "action_finish_visit_request"

    def request(self, tracker: Tracker, language: str) -> OfficeRequest | None:
        get = tracker.get_slot
        if get("visit_confirmed") is not True:
            return None
        notes = get("visit_notes") or ""
        if get("purpose_details"):  # "other", in the visitor's own words
            notes = "\n".join(filter(None, [say("details_purpose", language, purpose=get("purpose_details")), notes]))
        return OfficeRequest(
            kind="visit", email=get("email"), details=notes, language=language,
            sender_id=tracker.sender_id, full_name=get("visitor_name"), institution=get("institution"),
            country=get("country"), purpose=get("purpose"),
            arrival=dt.date.fromisoformat(get("arrival_date")), departure=dt.date.fromisoformat(get("departure_date")),
        )  # fmt: skip


class ActionFinishOfficeQuestion(FinishAction):
    """Saves the question for the office."""

    form = "question_form"
    saved_text = "question_saved"

    def name(self) -> str:
        return "action_finish_office_question"

    def request(self, tracker: Tracker, language: str) -> OfficeRequest | None:
        email, question = tracker.get_slot("office_email"), tracker.get_slot("office_question")
        if not email or question is None:
            return None
        return OfficeRequest(kind="question", email=email, details=question, language=language,
                             sender_id=tracker.sender_id)  # fmt: skip
