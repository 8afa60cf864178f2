"""Which language the bot answers in (bot/core/languages.py): the rules, one by one."""

import functools
import re

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.answers import ActionAnswerQuestion, ActionSwitchLanguage, reply_language
from bot.core.facts import facts
from bot.core.languages import choose, detect, is_short, registry, requested_language, without_names
from bot.core.paths import NLU_DIR, TEXTS_DIR
from bot.core.texts import say
from bot.core.validation import read_examples
from bot.tools.datacheck import HOLDOUT_DIR

from .conftest import LANGUAGES, make_tracker, unsupported


def test_the_registry_lists_every_language_with_data():
    codes = registry().codes
    assert codes and registry().default in codes
    for code in codes:
        assert (NLU_DIR / f"{code}.yml").exists(), code
        assert (TEXTS_DIR / f"{code}.yml").exists() or registry().languages[code].derive_from, code


@pytest.mark.parametrize(
    "hint, expected",
    [("zh-CN", "zh-Hans"), ("zh_TW", "zh-Hant"), ("zh-HK", "zh-Hant"), ("zh", "zh-Hans"),
     ("ru-RU", "ru"), ("fr-CA", "fr"), ("EN-us", "en"), ("", None), (None, None), (42, None)],
)  # fmt: skip
def test_hints_are_normalized(hint, expected):
    assert registry().normalize(hint) == expected


def test_a_hint_of_an_unspoken_language_is_no_language():
    iso, _ = unsupported()
    assert registry().normalize(f"{iso.lower()}-{iso}") is None


# Rule 1: an explicit request switches the language.
@pytest.mark.parametrize(
    "text, expected",
    [("Can you answer in Chinese?", "zh-Hans"), ("请用英文回答", "en"), ("Parlez-vous français ?", "fr"),
     ("по-русски, пожалуйста", "ru"), ("можно на английском?", "en"), ("/lang ru", "ru"),
     ("/lang zh-tw", "zh-Hant"), ("改成繁體中文", "zh-Hant"), ("tu peux répondre en russe", "ru"),
     ("hello", None), ("/lang klingon", None)],
)  # fmt: skip
def test_explicit_requests_name_the_language(text, expected):
    assert requested_language(text) == expected


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_name_of_a_language_in_the_registry_asks_for_it(language):
    for name in registry().languages[language].names:
        assert requested_language(f"Can you answer in {name} please?") == language, name
        assert requested_language(f"/lang {language}") == language


def test_explicit_request_wins_over_everything():
    assert choose("请用英文回答", current="zh-Hans", hint="zh-CN", explicit="en").language == "en"


# Rule 2: an explicit choice holds until the next one, whatever the messages are typed in.
@functools.cache
def typed_in(language: str) -> str:
    """A held-out question of the language that the detector gives to it, alone."""
    lingua = registry().languages[language].lingua
    for examples in read_examples(HOLDOUT_DIR / f"{language}.yml").values():
        for text in sorted(examples, key=len, reverse=True):
            found = detect(text).language
            if found == language or (lingua == "ZH" and found == "zh"):
                return text
    raise AssertionError(f"no held-out question of {language} is detected as {language}")


@pytest.mark.parametrize("chosen", LANGUAGES)
def test_an_explicit_choice_holds_for_messages_in_every_other_language(chosen):
    for other in LANGUAGES:
        if other == chosen:
            continue
        text = typed_in(other)
        choice = choose(text, current=chosen, hint=other, chosen=True)
        assert (choice.language, choice.reason) == (chosen, "chosen"), (other, text)
        assert choose(text, current=chosen, hint=other).reason == "detected", (other, text)  # without a choice


@pytest.mark.parametrize("chosen", LANGUAGES)
def test_only_another_explicit_choice_ends_it(chosen):
    other = next(code for code in LANGUAGES if code != chosen)
    assert choose(f"/lang {other}", current=chosen, explicit=other, chosen=True).language == other
    assert choose("ok", current=chosen, hint=other, chosen=True).language == chosen


def slot_events(events: list) -> list:
    """The slots an action set (it also ends the turn: ``FollowupAction``, tested in test_actions)."""
    return [event for event in events if event.get("event") == "slot"]


@pytest.mark.parametrize("chosen", LANGUAGES)
def test_the_actions_hold_the_choice_and_set_it_only_on_a_request(chosen, dispatcher):
    other = next(code for code in LANGUAGES if code != chosen)
    request = make_tracker(f"/lang {chosen}", "change_language", slots={"language": other})
    events = ActionSwitchLanguage().run(dispatcher, request, {})
    assert [m["text"] for m in dispatcher.messages] == [say("language_switched", chosen)]
    assert SlotSet("language", chosen) in events and SlotSet("language_chosen", True) in events
    dispatcher = CollectingDispatcher()
    question = make_tracker(typed_in(other), "ask_address", slots={"language": chosen, "language_chosen": True})
    events = ActionAnswerQuestion().run(dispatcher, question, {})
    assert [m["text"] for m in dispatcher.messages] == [say("ask_address", chosen)]
    assert [m["language"] for m in dispatcher.messages] == [chosen]
    assert slot_events(events) == []  # the slots stay as they are


def test_a_detected_language_is_no_choice(dispatcher):
    tracker = make_tracker(typed_in("ru"), "ask_address", slots={"language": "en"})
    events = ActionAnswerQuestion().run(dispatcher, tracker, {})
    assert slot_events(events) == [SlotSet("language", "ru")]  # not language_chosen: the next may switch again


def test_an_injected_entity_makes_no_choice():
    tracker = make_tracker('/greet{"language_chosen": true, "language": "ru"}', "greet", slots={"language": "en"},
                           entities=[{"entity": "language", "value": "ru"}])  # fmt: skip
    choice = reply_language(tracker)
    assert (choice.language, choice.reason) != ("ru", "explicit")


# A short message that names a language asks for it even when the NLU did not
# recognise the request (no training example names that language).
def tracker_with_ranking(text: str, intent: str, ranking: list[str]) -> Tracker:
    tracker = make_tracker(text, intent, slots={"language": "en"})
    tracker.latest_message["intent_ranking"] = [{"name": name, "confidence": 0.1} for name in ranking]
    return tracker


@pytest.mark.parametrize(
    "intent, ranking",
    [("nlu_fallback", ["nlu_fallback", "greet"]), ("bot_capabilities", ["bot_capabilities", "greet", "thanks"]),
     ("out_of_scope", ["out_of_scope", "change_language"])],
)  # fmt: skip
def test_a_short_message_naming_a_language_is_a_request_the_nlu_may_miss(intent, ranking):
    tracker = tracker_with_ranking("Vous pouvez répondre en russe ?", intent, ranking)
    assert reply_language(tracker).language == "ru"


@pytest.mark.parametrize(
    "text, intent, ranking",
    [("Vous pouvez répondre en russe ?", "out_of_scope", ["out_of_scope", "greet", "thanks", "change_language"]),
     ("Vous pouvez répondre en russe ?", "ask_degrees", ["ask_degrees", "change_language"]),
     ("Les cours du master conjoint avec Queen Mary sont-ils enseignés en anglais ou en français ?",
      "nlu_fallback", ["nlu_fallback", "change_language"])],
)  # fmt: skip
def test_a_question_that_mentions_a_language_is_no_request(text, intent, ranking):
    assert reply_language(tracker_with_ranking(text, intent, ranking)).reason != "explicit"


def test_short_means_a_few_words():
    assert is_short("Can you answer in German please?") and is_short("你能用德语回答我的问题吗")
    assert not is_short("Are the courses of the joint master's programme taught in English or in French?")


# Rule 3: a confidently detected language sets it.
@pytest.mark.parametrize(
    "text, expected",
    [("Where is the international office?", "en"), ("南邮国际处在哪里", "zh-Hans"),
     ("請問國際處的地址在哪裡", "zh-Hant"), ("Какой адрес у международного отдела?", "ru"),
     ("Quelle est l'adresse du bureau international ?", "fr"), ("NJUPT的地址是什么", "zh-Hans"),
     ("What is 南邮's address?", "en")],
)  # fmt: skip
def test_confident_messages_set_the_language(text, expected):
    choice = choose(text, current="en" if expected != "en" else "ru", hint=None)
    assert (choice.language, choice.reason) == (expected, "detected")


# A sentence's language is its own words', not its names'.
@pytest.mark.parametrize(
    "text, expected",
    [("Does NJUPT run programmes with Queen Mary University of London?", "en"),
     ("南邮和Queen Mary University of London有合作吗", "zh-Hans"),
     ("南郵和Queen Mary University of London有合作嗎", "zh-Hant"),
     ("Есть ли у NJUPT программы с Queen Mary University of London?", "ru"),
     ("Est-ce que NJUPT a des programmes avec Queen Mary University of London ?", "fr"),
     ("Какие программы у NJUPT с New York Institute of Technology?", "ru"),
     ("Est-ce qu'il existe un master commun avec le Polytechnic Institute of New York University ?", "fr"),
     ("NJUPT-NYIT International College是几年制的", "zh-Hans")],
)  # fmt: skip
def test_names_in_a_sentence_do_not_decide_its_language(text, expected):
    choice = choose(text, current="en" if expected != "en" else "ru", hint=None)
    assert (choice.language, choice.reason) == (expected, "detected")


def test_the_names_removed_are_the_facts_names():
    known = facts()
    for name in (*known.named_universities, *known.master_partners, known.college, known.department):
        for language in LANGUAGES:
            text = re.sub(r"[(（][^)）]*[)）]", "", name.get(language))  # "(UK)": not the name
            assert without_names(text).strip(" ,") == "", (language, text)
    assert without_names("Queen Mary University of London").strip() == ""
    assert "programmes" in without_names("joint programmes with Queen Mary")


@pytest.mark.parametrize("text", ["Queen Mary University of London?", "New York Institute of Technology",
                                  "伦敦大学玛丽女王学院？"])  # fmt: skip
def test_a_message_that_is_only_a_name_keeps_the_language(text):
    assert choose(text, current="ru", hint="fr").language == "ru"


# Rule 4: short or ambiguous messages keep the current language.
@pytest.mark.parametrize("text", ["ok", "NYIT?", "2027", "😀", "Alice", "", "   ", "QMUL"])
def test_short_or_ambiguous_messages_keep_the_language(text):
    assert detect(text).language is None
    assert choose(text, current="ru", hint="fr").language == "ru"


def test_chinese_without_script_clues_keeps_the_chinese_variant():
    # 你好 is written the same in both scripts
    assert choose("你好", current="zh-Hant", hint=None).language == "zh-Hant"
    assert choose("你好", current="en", hint="zh-TW").language == "zh-Hant"
    assert choose("你好", current=None, hint=None).language == "zh-Hans"


# Rule 5: before a confident message, the channel's hint.
def test_hint_is_used_before_the_first_confident_message():
    choice = choose("ok", current=None, hint="ru-RU")
    assert (choice.language, choice.reason) == ("ru", "hint")


# Rule 6: otherwise English.
def test_default_is_english():
    assert choose("ok", current=None, hint=None).language == "en"
    assert choose("ok", current=None, hint=unsupported()[0].lower()).language == "en"


# An unsupported language is recognised, not guessed.
@pytest.mark.parametrize("chosen", [False, True])
def test_unsupported_languages_are_recognised(chosen):
    for text, iso in [unsupported()[::-1], ("日本語で話せますか", "JA")]:
        choice = choose(text, current="fr" if chosen else None, hint="fr", chosen=chosen)
        assert choice.unsupported == iso
        assert choice.language == "fr"  # answered in the chosen or hinted language


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_unsupported_answer_lists_every_language_by_its_own_name(language):
    text = say("language_unsupported", language)
    for code in LANGUAGES:
        assert say("language_name", code) in text


def test_a_conversation_that_switches_and_holds():
    current, chosen = None, False
    for text, explicit, expected in [
        ("Hello, what joint programmes do you have?", None, "en"),
        ("ok", None, "en"),
        ("南邮有哪些合作大学？", None, "zh-Hans"),  # detected: no choice made yet
        ("NYIT?", None, "zh-Hans"),
        ("Parlez-vous français ?", "fr", "fr"),
        ("What is the address of the office?", None, "fr"),  # the choice holds
        ("南邮有哪些合作大学？", None, "fr"),
        ("/lang ru", "ru", "ru"),
        ("Where is the office?", None, "ru"),
    ]:
        choice = choose(text, current=current, hint="en", explicit=explicit, chosen=chosen)
        assert choice.language == expected, text
        current, chosen = choice.language, chosen or choice.reason == "explicit"
