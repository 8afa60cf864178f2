"""Custom actions: answer a question, and switch the conversation's language.

Every action first chooses the reply language (``bot.core.languages.choose``) from
the message, the conversation's ``language`` and ``language_chosen`` slots and
the channel's hint (``metadata.language``), then answers from ``data/texts`` and
the facts. An explicit request sets both slots: the choice then holds until the
next explicit request.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.core.choices import choices
from bot.core.languages import Choice, choose, is_short, registry, requested_language
from bot.core.texts import faq_intents, say, texts

logger = logging.getLogger(__name__)

LANGUAGE_SLOT = "language"
# True once the user asked for a language (words, /lang, a button, the web
# page's selector): that language then holds whatever the messages are typed in.
CHOSEN_SLOT = "language_chosen"
# Messages longer than this are not answered as a question (NLU on a whole
# letter is guesswork); the user is asked for a sentence or two instead.
MAX_QUESTION_CHARS = 2000
LANGUAGE_COMMAND = "/lang"
ACTION_LISTEN = "action_listen"
# Fewer letters than this is no question to pass on to the office ("2027", "ok").
MIN_QUESTION_LETTERS = 3
# Intents of the conversation whose answer is the text of the same name in data/texts. Besides
# these, every FAQ intent (an ``ask_…`` intent of domain.yml with a text of its name, made by a
# developer or from the staff console) is answered with its text: see ``answered_intents``.
CONVERSATION_ANSWERS = frozenset(
    {"greet", "goodbye", "thanks", "bot_capabilities", "bot_identity", "out_of_scope", "nlu_fallback"}
)


def answered_intents() -> frozenset[str]:
    """The intents whose answer is the text of the same name: the conversation's and the FAQs."""
    return CONVERSATION_ANSWERS | faq_intents()


# Intents of a short message that may be a language request the NLU could not
# place, when it names a language (see _names_a_language).
UNPLACED_INTENTS = frozenset({"nlu_fallback", "out_of_scope", "bot_capabilities", "bot_identity"})
REQUEST_RANK = 3
# Intents answered with a text of another name.
REPLY_KEYS = {"affirm": "nothing_to_confirm", "deny": "ok_anything_else", "cancel": "ok_anything_else"}


@dataclass(frozen=True)
class Offer:
    """What the bot may offer after an answer (the `offer` slot's value)."""

    question: str  # its text in data/texts and its options in data/choices.yml
    form: str  # the form that "yes" starts
    payloads: dict[str, str]  # each option's button payload

    def buttons(self, language: str) -> list[dict[str, str]]:
        asked = choices().question(self.question)
        return [{"title": asked.title(o, language), "payload": self.payloads[o]} for o in asked.options]


OFFERS = {
    "visit": Offer("visit_offer", "visit_form", {"yes": "/request_visit", "no": "/deny"}),
    # "person": a live conversation with the staff instead (actions/handoff.py)
    "question": Offer("question_offer", "question_form", {"yes": "/affirm", "no": "/deny", "person": "/request_human"}),
}


def _message(tracker: Tracker) -> tuple[str, str | None, dict[str, Any]]:
    message = tracker.latest_message or {}
    intent = (message.get("intent") or {}).get("name")
    return message.get("text") or "", intent, message.get("metadata") or {}


def _previous_intent(tracker: Tracker) -> str | None:
    """The intent of the user's message before the latest one."""
    users = [e for e in tracker.events if e.get("event") == "user"]
    return ((users[-2].get("parse_data") or {}).get("intent") or {}).get("name") if len(users) > 1 else None


def _messages_since_offer(tracker: Tracker) -> int:
    """How many user messages came since the bot last made or withdrew an offer (this one included)."""
    count = 0
    for event in reversed(tracker.events):
        if event.get("event") == "slot" and event.get("name") == "offer":
            break
        count += event.get("event") == "user"
    return count


def _names_a_language(tracker: Tracker) -> bool:
    """A short request the NLU could not place ("Can you answer in German?" where no
    training example of the language names German, read as "what can you do?" or
    not understood) that names a language of data/languages.yml. An out-of-scope
    message counts only with change_language among the NLU's first guesses
    ("Do you teach German?" is no request)."""
    text, intent, _ = _message(tracker)
    if intent not in UNPLACED_INTENTS or not is_short(text) or requested_language(text) is None:
        return False
    if intent != "out_of_scope":
        return True
    ranking = (tracker.latest_message or {}).get("intent_ranking") or []
    guesses = [r.get("name") for r in ranking if r.get("name") != "nlu_fallback"][:REQUEST_RANK]
    return "change_language" in guesses


def wants_language(tracker: Tracker) -> bool:
    text, intent, _ = _message(tracker)
    return (
        intent == "change_language" or text.lstrip().lower().startswith(LANGUAGE_COMMAND) or _names_a_language(tracker)
    )


def reply_language(tracker: Tracker) -> Choice:
    """The language of this turn's reply (rules in bot/core/languages.py)."""
    text, _, metadata = _message(tracker)
    explicit = None
    if wants_language(tracker):
        entity = next(tracker.get_latest_entity_values("language"), None)
        explicit = registry().normalize(entity) or requested_language(text)
    chosen = tracker.get_slot(CHOSEN_SLOT) is True
    return choose(text, tracker.get_slot(LANGUAGE_SLOT), metadata.get("language"), explicit, chosen)


def language_buttons() -> list[dict[str, str]]:
    return [
        {"title": texts().raw("language_name", code), "payload": f'/change_language{{"language":"{code}"}}'}
        for code in registry().codes
    ]


class LanguageAction(Action, ABC):
    """Chooses the reply language, then lets the subclass answer in it."""

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, choice: Choice) -> list[EventType]:
        """Say this action's answer in ``choice.language``."""

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        choice = reply_language(tracker)
        logger.debug("reply language %s (%s)", choice.language, choice.reason)
        events = remember_language(tracker, choice)
        if choice.unsupported:
            dispatcher.utter_message(text=say("language_unsupported", choice.language))
        else:
            events += self.respond(dispatcher, tracker, choice)
        tag_language(dispatcher, choice.language)
        return events + end_of_turn(tracker, events)


def end_of_turn(tracker: Tracker, events: list[EventType]) -> list[EventType]:
    """``FollowupAction("action_listen")`` when nothing follows this answer: outside a form,
    whose rules continue after it, and unless the answer starts something itself. Rasa then
    listens without asking its policies again what comes next (their rules would say the same)."""
    if (tracker.active_loop or {}).get("name") or any(event.get("event") == "followup" for event in events):
        return []
    return [FollowupAction(ACTION_LISTEN)]


def remember_language(tracker: Tracker, choice: Choice) -> list[EventType]:
    """Sets the conversation's language when this message chose one (asked for, or detected),
    and marks an explicit choice, which then holds until the next one (``language_chosen``)."""
    events: list[EventType] = []
    if choice.reason in ("explicit", "detected") and choice.language != tracker.get_slot(LANGUAGE_SLOT):
        events.append(SlotSet(LANGUAGE_SLOT, choice.language))
    if choice.reason == "explicit" and tracker.get_slot(CHOSEN_SLOT) is not True:
        events.append(SlotSet(CHOSEN_SLOT, True))
    return events


def tag_language(dispatcher: CollectingDispatcher, language: str) -> None:
    """Mark each message with the language it is written in.

    Rasa keeps the extra key as the bot message's metadata; the REST channel
    returns it with each reply (``"language"``), so channels know the language
    of a reply without guessing it from the text.
    """
    for message in dispatcher.messages:
        message.setdefault("language", language)


def _switch(dispatcher: CollectingDispatcher, choice: Choice) -> list[EventType]:
    if choice.reason == "explicit":
        dispatcher.utter_message(text=say("language_switched", choice.language))
    else:
        dispatcher.utter_message(text=say("language_choose", choice.language), buttons=language_buttons())
    return []


class ActionSwitchLanguage(LanguageAction):
    """Switches the conversation to the language asked for, or offers the choice."""

    def name(self) -> str:
        return "action_switch_language"

    def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, choice: Choice) -> list[EventType]:
        return _switch(dispatcher, choice)


class ActionAnswerQuestion(LanguageAction):
    """Answers the question of the latest intent from the department's facts."""

    def name(self) -> str:
        return "action_answer_question"

    def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, choice: Choice) -> list[EventType]:
        if wants_language(tracker):
            return _switch(dispatcher, choice)
        text, intent, _ = _message(tracker)
        answered = self.answer_offer(dispatcher, tracker, text, intent, choice.language)
        if answered is not None:
            return answered
        if not text.strip():
            key = "empty_message"
        elif len(text) > MAX_QUESTION_CHARS:
            key = "long_message"
        else:
            key = REPLY_KEYS.get(intent) or (intent if intent in answered_intents() else "nlu_fallback")
        dispatcher.utter_message(text=say(key, choice.language))
        return self.offer(dispatcher, tracker, key, text, choice.language)

    @staticmethod
    def answer_offer(dispatcher: CollectingDispatcher, tracker: Tracker, text: str, intent: str | None,
                     language: str) -> list[EventType] | None:  # fmt: skip
        """A typed answer to the offer just made: "yes" starts its form, "no" ends it, and a message
        the bot did not understand gets the offer once more with its options in words. None: the
        message is not about the offer (a new question), so it is answered as usual."""
        offer = OFFERS.get(tracker.get_slot("offer"))
        if offer is None:
            return None
        picked = choices().question(offer.question).pick(text)
        if picked == "yes":
            return [FollowupAction(offer.form)]
        if picked == "person":
            return [FollowupAction("action_open_handoff")]
        if picked == "no":
            dispatcher.utter_message(text=say("ok_anything_else", language))
            return [SlotSet("offer", None)]
        if intent == "nlu_fallback" and _messages_since_offer(tracker) <= 1:
            options = choices().question(offer.question).in_words(language)
            dispatcher.utter_message(
                text=say("form_choose_again", language, question=say(offer.question, language), options=options),
                buttons=offer.buttons(language),
            )
            return []
        return None

    @staticmethod
    def offer(dispatcher: CollectingDispatcher, tracker: Tracker, key: str, text: str,
              language: str) -> list[EventType]:  # fmt: skip
        """After some answers, offer to file a visit request or to pass the question on."""
        if key == "ask_visit":
            dispatcher.utter_message(text=say("visit_offer", language), buttons=OFFERS["visit"].buttons(language))
            return [SlotSet("offer", "visit")]
        unanswered = key == "out_of_scope" or (key == "nlu_fallback" and _previous_intent(tracker) == "nlu_fallback")
        # a question worth passing on has words: not "2027", "😀" or "/command"
        worded = len(re.findall(r"[^\W\d_]", text)) >= MIN_QUESTION_LETTERS and not text.startswith("/")
        if unanswered and worded:
            dispatcher.utter_message(text=say("question_offer", language), buttons=OFFERS["question"].buttons(language))
            return [SlotSet("offer", "question"), SlotSet("last_question", text.strip())]
        return [SlotSet("offer", None)] if tracker.get_slot("offer") else []
