"""The custom actions, each with a fresh tracker and dispatcher, in every language."""

import pytest
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.answers import ActionAnswerQuestion, ActionSwitchLanguage, answered_intents
from bot.core.texts import say

from .conftest import LANGUAGES, make_tracker, unsupported

# A question per language that the detector recognises confidently.
QUESTIONS = {
    "en": "Which universities abroad does NJUPT run joint programmes with?",
    "zh-Hans": "南邮和哪些国外大学有合作办学项目？",
    "zh-Hant": "請問南郵和哪些國外大學有合作辦學計畫？",
    "ru": "С какими зарубежными университетами у вас совместные программы?",
    "fr": "Avec quelles universités étrangères avez-vous des programmes conjoints ?",
}
QUEEN_MARY = {
    "en": "Queen Mary",
    "zh-Hans": "玛丽女王",
    "zh-Hant": "瑪麗女王",
    "ru": "королевы Марии",
    "fr": "Queen Mary",
}


LISTEN = FollowupAction("action_listen")


def run(action, tracker, dispatcher):
    """The texts said and the events returned, but for the end of the turn (tested on its own)."""
    events = action.run(dispatcher, tracker, {})
    assert events.count(LISTEN) <= 1 and LISTEN not in events[:-1]
    return [m.get("text") for m in dispatcher.messages], [e for e in events if e != LISTEN]


@pytest.mark.parametrize("action", [ActionAnswerQuestion(), ActionSwitchLanguage()])
def test_outside_a_form_an_answer_ends_the_turn_without_asking_the_policies_again(action, dispatcher):
    events = action.run(dispatcher, make_tracker("hello", "greet"), {})
    assert events[-1] == LISTEN


def test_inside_a_form_an_answer_leaves_the_next_step_to_the_forms_rules(dispatcher):
    tracker = make_tracker("Where is the office?", "ask_address")
    tracker.active_loop = {"name": "visit_form"}
    events = ActionAnswerQuestion().run(dispatcher, tracker, {})
    assert dispatcher.messages and LISTEN not in events


def test_an_answer_that_starts_something_is_not_ended(dispatcher):
    tracker = make_tracker("yes", "affirm", slots={"offer": "visit"})
    events = ActionAnswerQuestion().run(dispatcher, tracker, {})
    assert FollowupAction("visit_form") in events and LISTEN not in events


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_question_is_answered_with_the_facts_in_its_language(language, dispatcher):
    tracker = make_tracker(QUESTIONS[language], "ask_joint_programmes")
    texts, events = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert texts == [say("ask_joint_programmes", language)]
    assert "11" in texts[0] and QUEEN_MARY[language] in texts[0]
    assert SlotSet("language", language) in events


def test_the_answered_intents_are_read_from_the_domain_and_the_texts():
    """Every ask_… intent of domain.yml with a text, and the conversation's: no list in the code."""
    questions = {"ask_department", "ask_partners", "ask_hk_macau_taiwan", "ask_visiting_scholars", "ask_conferences",
                 "ask_joint_programmes", "ask_nyit_college", "ask_joint_masters", "ask_study_fields", "ask_degrees",
                 "ask_apt", "ask_foreign_experts", "ask_training_target", "ask_philosophy", "ask_address",
                 "ask_visit"}  # fmt: skip
    conversation = {"greet", "goodbye", "thanks", "bot_capabilities", "bot_identity", "out_of_scope", "nlu_fallback"}
    assert answered_intents() == questions | conversation


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("intent", sorted(answered_intents()))
def test_every_intent_has_an_answer_in_the_conversation_language(intent, language, dispatcher):
    tracker = make_tracker("ok", intent, slots={"language": language})
    texts, events = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert texts[0] == say(intent, language)
    assert len(texts) == (2 if intent == "ask_visit" else 1)  # then the offer to file a visit request
    assert SlotSet("language", language) not in events  # "ok" keeps the language: nothing to set


@pytest.mark.parametrize("language", LANGUAGES)
def test_out_of_scope_says_so_and_gives_the_postal_address(language, dispatcher):
    tracker = make_tracker("ok", "out_of_scope", slots={"language": language})
    (text,), _ = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert "210003" in text  # "ok" is no question to pass on: no offer (see test_forms.py)


def test_the_hint_is_used_for_an_ambiguous_first_message(dispatcher):
    tracker = make_tracker("ok", "greet", metadata={"language": "ru-RU"})
    texts, events = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert texts == [say("greet", "ru")]
    assert events == []  # a hint answers, but does not fix the conversation's language


@pytest.mark.parametrize("text", ["", "   \n"])
def test_an_empty_message_gets_a_polite_answer(text, dispatcher):
    texts, _ = run(ActionAnswerQuestion(), make_tracker(text, "nlu_fallback"), dispatcher)
    assert texts == [say("empty_message", "en")]


def test_a_huge_message_is_answered_politely(dispatcher):
    tracker = make_tracker("where is the office " * 600, "ask_address")
    texts, _ = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert texts == [say("long_message", "en")]


def test_an_unknown_intent_gets_the_fallback(dispatcher):
    texts, _ = run(ActionAnswerQuestion(), make_tracker("blorp", "no_such_intent"), dispatcher)
    assert texts == [say("nlu_fallback", "en")]


def test_an_unsupported_language_gets_the_list_of_languages(dispatcher):
    tracker = make_tracker(unsupported()[1], "ask_address")
    (text,), events = run(ActionAnswerQuestion(), tracker, dispatcher)
    for code in LANGUAGES:
        assert say("language_name", code) in text
    assert events == []


@pytest.mark.parametrize(
    "text, entities, expected",
    [
        ("Can you answer in Chinese?", [], "zh-Hans"),
        ("请用英文回答", [], "en"),
        ("по-русски, пожалуйста", [], "ru"),
        ('/change_language{"language":"fr"}', [{"entity": "language", "value": "fr"}], "fr"),
        ('/change_language{"language":"zh-TW"}', [{"entity": "language", "value": "zh-TW"}], "zh-Hant"),
    ],
)
def test_switching_language(text, entities, expected, dispatcher):
    before = "fr" if expected == "en" else "en"  # a real switch, so the slot event can be seen
    tracker = make_tracker(text, "change_language", slots={"language": before}, entities=entities)
    texts, events = run(ActionSwitchLanguage(), tracker, dispatcher)
    assert texts == [say("language_switched", expected)]
    assert SlotSet("language", expected) in events


def test_the_lang_command_switches_whatever_the_intent(dispatcher):
    tracker = make_tracker("/lang ru", "nlu_fallback", slots={"language": "en"})
    texts, events = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert texts == [say("language_switched", "ru")]
    assert events == [SlotSet("language", "ru"), SlotSet("language_chosen", True)]


def test_a_language_request_without_a_language_offers_buttons(dispatcher):
    tracker = make_tracker("/lang", "change_language", slots={"language": "fr"})
    run(ActionSwitchLanguage(), tracker, dispatcher)
    (message,) = dispatcher.messages
    assert message["text"] == say("language_choose", "fr")
    assert [b["payload"] for b in message["buttons"]][:2] == [
        '/change_language{"language":"en"}',
        '/change_language{"language":"zh-Hans"}',
    ]


def test_an_injected_entity_does_not_set_the_language_outside_a_switch(dispatcher):
    tracker = make_tracker('/greet{"language":"ru"}', "greet", slots={"language": "en"},
                           entities=[{"entity": "language", "value": "ru"}])  # fmt: skip
    texts, events = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert texts == [say("greet", "en")]
    assert events == []


# --- typed answers to the offers (file a visit request? pass the question on?) ------------

OFFER_YES = {
    "en": "sure, go ahead",
    "zh-Hans": "好啊",
    "zh-Hant": "好的，麻煩了",
    "ru": "давайте",
    "fr": "oui volontiers",
}
OFFER_NO = {"en": "not now", "zh-Hans": "不用了", "zh-Hant": "暫時不", "ru": "нет, не надо", "fr": "non merci"}
FORMS = {"visit": "visit_form", "question": "question_form"}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("offer", ["visit", "question"])
def test_a_typed_yes_to_an_offer_starts_its_form(language, offer, dispatcher):
    tracker = make_tracker(OFFER_YES[language], "nlu_fallback", slots={"language": language, "offer": offer})
    texts, events = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert texts == []  # the form speaks next, in the conversation's language
    assert FollowupAction(FORMS[offer]) in events


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_typed_no_to_an_offer_ends_it(language, dispatcher):
    tracker = make_tracker(OFFER_NO[language], "nlu_fallback", slots={"language": language, "offer": "visit"})
    texts, events = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert texts == [say("ok_anything_else", language)]
    assert SlotSet("offer", None) in events


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_answer_to_an_offer_that_fits_nothing_gets_the_options_in_words_once(language, dispatcher):
    slots = {"language": language, "offer": "visit"}
    tracker = make_tracker("hmm blorf", "nlu_fallback", slots=slots)
    tracker.events = [{"event": "slot", "name": "offer", "value": "visit"}, {"event": "user", "text": "hmm blorf"}]
    texts, events = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert events == []  # the offer stands
    (reply,) = dispatcher.messages
    for key in ("visit_offer", "button_file_visit_request", "button_no_thanks"):
        assert say(key, language) in reply["text"]
    assert [b["payload"] for b in reply["buttons"]] == ["/request_visit", "/deny"]
    assert reply["language"] == language
    # once: a second message that fits nothing is answered as usual
    again = make_tracker("zzz", "nlu_fallback", slots=slots)
    again.events = tracker.events + [{"event": "user", "text": "zzz"}]
    texts, _ = run(ActionAnswerQuestion(), again, CollectingDispatcher())
    assert texts[0] == say("nlu_fallback", language)


def test_a_new_question_after_an_offer_is_answered_and_the_offer_lapses(dispatcher):
    tracker = make_tracker("What degrees can I study for?", "ask_degrees", slots={"language": "en", "offer": "visit"})
    texts, events = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert texts == [say("ask_degrees", "en")]
    assert SlotSet("offer", None) in events
