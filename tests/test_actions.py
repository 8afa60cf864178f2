"""The custom actions, each with a fresh tracker and dispatcher, in every language."""

import pytest
from rasa_sdk.events import SlotSet

from actions.answers import ANSWERED_INTENTS, ActionAnswerQuestion, ActionSwitchLanguage
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


def run(action, tracker, dispatcher):
    events = action.run(dispatcher, tracker, {})
    return [m.get("text") for m in dispatcher.messages], events


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_question_is_answered_with_the_facts_in_its_language(language, dispatcher):
    tracker = make_tracker(QUESTIONS[language], "ask_joint_programmes")
    texts, events = run(ActionAnswerQuestion(), tracker, dispatcher)
    assert texts == [say("ask_joint_programmes", language)]
    assert "11" in texts[0] and QUEEN_MARY[language] in texts[0]
    assert SlotSet("language", language) in events


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("intent", sorted(ANSWERED_INTENTS))
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
