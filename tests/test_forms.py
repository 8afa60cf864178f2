"""The visit-request and question forms, unit-tested with fresh trackers, in every language."""

import datetime as dt

import pytest
from rasa_sdk.events import SlotSet

from actions import forms
from actions.answers import ActionAnswerQuestion
from actions.forms import (
    ActionFinishOfficeQuestion,
    ActionFinishVisitRequest,
    AskAction,
    ValidateQuestionForm,  # fmt: skip
    ValidateVisitForm,
)
from bot.core import storage
from bot.core.texts import say

from .conftest import LANGUAGES, make_tracker

NEXT_YEAR = dt.date.today().year + 1
DATES = {  # the same date, as people write it in each language
    "en": f"10 May {NEXT_YEAR}", "zh-Hans": f"{NEXT_YEAR}年5月10日", "zh-Hant": f"{NEXT_YEAR}年5月10日",
    "ru": f"10 мая {NEXT_YEAR}", "fr": f"10 mai {NEXT_YEAR}",
}  # fmt: skip


def validate(action, dispatcher, text, requested, intent="inform", confidence=0.5, slots=None, language="en"):
    tracker = make_tracker(text, intent, slots={"language": language, "requested_slot": requested, **(slots or {})})
    tracker.latest_message["intent"]["confidence"] = confidence
    return action.run(dispatcher, tracker, {})


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_arrival_date_in_the_users_language_is_accepted(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, DATES[language], "arrival_date", language=language)
    assert events == [SlotSet("arrival_date", f"{NEXT_YEAR}-05-10")]
    assert dispatcher.messages == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_past_date_gets_a_helpful_message(language, dispatcher):
    validate(ValidateVisitForm(), dispatcher, "2020-01-01", "arrival_date", language=language)
    assert [m["text"] for m in dispatcher.messages] == [say("form_date_in_past", language)]


@pytest.mark.parametrize("language", LANGUAGES)
def test_departure_before_arrival_is_refused(language, dispatcher):
    arrival = f"{NEXT_YEAR}-05-10"
    events = validate(ValidateVisitForm(), dispatcher, f"{NEXT_YEAR}-05-01", "departure_date",
                      slots={"arrival_date": arrival}, language=language)  # fmt: skip
    assert SlotSet("departure_date", None) in events
    assert [m["text"] for m in dispatcher.messages] == [say("form_departure_before_arrival", language, arrival=arrival)]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_date_that_is_not_one(language, dispatcher):
    validate(ValidateVisitForm(), dispatcher, "soon", "arrival_date", language=language)
    assert [m["text"] for m in dispatcher.messages] == [say("form_invalid_date", language)]


@pytest.mark.parametrize("text, value", [("ada@uni.example", "ada@uni.example"),
                                         ("my email is ada@uni.example.", "ada@uni.example")])  # fmt: skip
def test_emails_are_accepted(text, value, dispatcher):
    assert validate(ValidateVisitForm(), dispatcher, text, "email") == [SlotSet("email", value)]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("text", ["ada at uni dot edu", "ada@", "@uni.edu", "ada@uni"])
def test_a_wrong_email_gets_a_helpful_message(language, text, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, text, "email", language=language)
    assert SlotSet("email", None) in events
    assert [m["text"] for m in dispatcher.messages] == [say("form_invalid_email", language)]


@pytest.mark.parametrize("language", LANGUAGES)
def test_purpose_buttons_in_each_language(language, dispatcher):
    AskAction.__subclasses__()  # the per-slot classes exist
    ask = next(c for c in AskAction.__subclasses__() if c.slot == "purpose")()
    ask.run(dispatcher, make_tracker("", slots={"language": language}), {})
    (message,) = dispatcher.messages
    assert message["text"] == say("form_ask_purpose", language)
    titles = [b["title"] for b in message["buttons"]]
    assert titles == [say(f"purpose_{p}", language) for p in forms.PURPOSES]
    events = validate(ValidateVisitForm(), dispatcher, message["buttons"][1]["payload"], "purpose", language=language)
    assert events == [SlotSet("purpose", "research")]


def test_a_question_in_the_middle_is_answered_and_the_form_goes_on(dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "wait, what is the office's postal address?", "email",
                      intent="ask_address", confidence=0.98)  # fmt: skip
    assert [m["text"] for m in dispatcher.messages] == [say("ask_address", "en"), say("form_interrupted", "en")]
    assert events == [SlotSet("form_interruptions", 1)]  # the email is asked again


def test_a_name_that_looks_like_a_topic_is_still_a_name(dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "Queen Mary University", "institution",
                      intent="ask_joint_programmes", confidence=0.99)  # fmt: skip
    assert events == [SlotSet("institution", "Queen Mary University")]


@pytest.mark.parametrize("language", LANGUAGES)
def test_cancel_at_any_time(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "cancel", "country", intent="cancel", confidence=0.95,
                      language=language)  # fmt: skip
    assert events == [SlotSet("visit_confirmed", "cancelled"), SlotSet("requested_slot", None)]
    finished = ActionFinishVisitRequest().run(dispatcher, make_tracker(slots={"language": language,
                                                                              "visit_confirmed": "cancelled"}), {})  # fmt: skip
    assert dispatcher.messages[-1]["text"] == say("request_cancelled", language)
    assert SlotSet("visitor_name", None) in finished


FILLED = {"visitor_name": "Ada Lovelace", "institution": "University of London", "country": "UK",
          "email": "ada@uni.example", "purpose": "lecture", "arrival_date": f"{NEXT_YEAR}-05-10",
          "departure_date": f"{NEXT_YEAR}-05-12", "visit_notes": "Analytical engines"}  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_summary_shows_every_answer(language, dispatcher):
    ask = next(c for c in AskAction.__subclasses__() if c.slot == "visit_confirmed")()
    ask.run(dispatcher, make_tracker(slots={"language": language, **FILLED}), {})
    (message,) = dispatcher.messages
    for value in ("Ada Lovelace", "University of London", "ada@uni.example", say("purpose_lecture", language)):
        assert value in message["text"]
    assert [b["payload"] for b in message["buttons"]] == ["/affirm", "/deny", "/cancel"]


def test_correcting_an_earlier_answer(dispatcher):
    slots = dict(FILLED)
    events = validate(ValidateVisitForm(), dispatcher, "/deny", "visit_confirmed", intent="deny", slots=slots)
    assert dispatcher.messages[-1]["text"] == say("form_which_field", "en")
    assert say("field_email", "en") in [b["title"] for b in dispatcher.messages[-1]["buttons"]]
    assert SlotSet("visit_confirmed", None) in events
    events = validate(ValidateVisitForm(), dispatcher, say("field_email", "en"), "visit_confirmed", slots=slots)
    assert events == [SlotSet("email", None), SlotSet("visit_confirmed", None)]  # asked again, then the summary


BACK = {"en": "back", "zh-Hans": "返回", "zh-Hant": "上一步", "ru": "Назад", "fr": "retour"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_back_forgets_the_previous_answer_so_it_is_asked_again(language, dispatcher):
    slots = {k: FILLED[k] for k in ("visitor_name", "institution", "country", "email")}
    events = validate(ValidateVisitForm(), dispatcher, BACK[language], "purpose", intent="nlu_fallback",
                      slots=slots, language=language)  # fmt: skip
    assert events == [SlotSet("email", None), SlotSet("form_interruptions", 1)]
    assert dispatcher.messages == []  # the form now asks for the e-mail, then goes on to the purpose


def test_back_wins_over_a_cancel_and_works_from_the_summary_and_in_the_question_form(dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "go back", "visit_confirmed", intent="cancel", confidence=0.9,
                      slots=dict(FILLED))  # fmt: skip
    assert events == [SlotSet("visit_notes", None), SlotSet("form_interruptions", 1)]
    events = validate(ValidateQuestionForm(), dispatcher, "précédent", "office_question",
                      slots={"office_email": "a@b.example", "last_question": "Fees?"}, language="fr")  # fmt: skip
    assert events == [SlotSet("office_email", None), SlotSet("form_interruptions", 1)]


@pytest.mark.parametrize("language", LANGUAGES)
def test_back_at_the_first_question_says_there_is_nothing_to_change(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, BACK[language], "visitor_name", language=language)
    assert [m["text"] for m in dispatcher.messages] == [say("form_nothing_to_go_back_to", language)]
    assert events == [SlotSet("visitor_name", None), SlotSet("form_interruptions", 1)]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_new_request_starts_by_saying_how_to_go_back_or_stop(language, dispatcher):
    ask = next(c for c in AskAction.__subclasses__() if c.slot == "visitor_name")()
    ask.run(dispatcher, make_tracker(slots={"language": language}), {})
    assert [m["text"] for m in dispatcher.messages] == [say("form_visit_start", language),
                                                        say("form_ask_visitor_name", language)]  # fmt: skip
    dispatcher.messages.clear()  # asked again (after "back" or "change an answer"): the question alone
    ask.run(dispatcher, make_tracker(slots={"language": language, "requested_slot": "institution"}), {})
    assert [m["text"] for m in dispatcher.messages] == [say("form_ask_visitor_name", language)]


@pytest.fixture
def database(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    storage.store.cache_clear()
    yield storage.RequestStore(url)
    storage.store.cache_clear()


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_confirmed_visit_request_is_saved_with_a_reference(language, dispatcher, database):
    slots = {"language": language, **FILLED, "visit_confirmed": "yes"}
    events = ActionFinishVisitRequest().run(dispatcher, make_tracker(slots=slots), {})
    (saved,) = database.list()
    assert (saved.ref, saved.full_name, saved.email, saved.language) == (
        f"V-{NEXT_YEAR}-0001",
        "Ada Lovelace",
        "ada@uni.example",
        language,
    )
    assert saved.arrival == dt.date(NEXT_YEAR, 5, 10)
    assert [m["text"] for m in dispatcher.messages] == [say("visit_saved", language, ref=saved.ref)]
    assert SlotSet("email", None) in events


def test_when_the_database_is_down_nothing_is_lost(dispatcher, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    storage.store.cache_clear()
    try:
        events = ActionFinishVisitRequest().run(
            dispatcher, make_tracker(slots={**FILLED, "visit_confirmed": "yes"}), {}
        )
    finally:
        storage.store.cache_clear()
    assert [m["text"] for m in dispatcher.messages] == [say("request_not_saved", "en")]
    assert events == [SlotSet("visit_confirmed", None)]  # the answers stay; confirming again retries


FEES = {"en": "How much is the tuition fee?", "zh-Hans": "学费是多少？", "zh-Hant": "學費是多少錢？",
        "ru": "Сколько стоит обучение?", "fr": "Combien coûtent les frais de scolarité ?"}  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_unanswered_question_is_offered_to_the_office_and_saved(language, dispatcher, database):
    question = FEES[language]
    events = ActionAnswerQuestion().run(dispatcher, make_tracker(question, "out_of_scope"), {})
    assert [m["text"] for m in dispatcher.messages] == [say("out_of_scope", language), say("question_offer", language)]
    assert SlotSet("last_question", question) in events
    slots = {"language": language, "last_question": question}
    assert validate(ValidateQuestionForm(), dispatcher, "/affirm", "office_question", intent="affirm",
                    slots=slots, language=language) == [SlotSet("office_question", question)]  # fmt: skip
    ActionFinishOfficeQuestion().run(dispatcher, make_tracker(slots={
        **slots, "office_email": "me@uni.example", "office_question": question}), {})  # fmt: skip
    (saved,) = database.list()
    assert saved.ref.startswith("Q-") and saved.details == question
    assert dispatcher.messages[-1]["text"] == say("question_saved", language, ref=saved.ref)


def test_the_question_can_be_rewritten(dispatcher):
    events = validate(ValidateQuestionForm(), dispatcher, "Is there a scholarship for PhD students?", "office_question",
                      slots={"last_question": "fees?"})  # fmt: skip
    assert events == [SlotSet("office_question", "Is there a scholarship for PhD students?")]


def test_ask_visit_offers_a_visit_request(dispatcher):
    events = ActionAnswerQuestion().run(dispatcher, make_tracker("can I come to give a lecture?", "ask_visit"), {})
    assert [m["text"] for m in dispatcher.messages] == [say("ask_visit", "en"), say("visit_offer", "en")]
    assert [b["payload"] for b in dispatcher.messages[1]["buttons"]] == ["/request_visit", "/deny"]
    assert SlotSet("offer", "visit") in events


def test_not_understanding_twice_in_a_row_offers_to_pass_the_question_on(dispatcher):
    tracker = make_tracker("blorf the quantum visa gizmo", "nlu_fallback")
    tracker.events = [{"event": "user", "text": "wibble wobble", "parse_data": {"intent": {"name": "nlu_fallback"}}},
                      {"event": "user", "text": tracker.latest_message["text"],
                       "parse_data": {"intent": {"name": "nlu_fallback"}}}]  # fmt: skip
    events = ActionAnswerQuestion().run(dispatcher, tracker, {})
    assert [m["text"] for m in dispatcher.messages] == [say("nlu_fallback", "en"), say("question_offer", "en")]
    assert SlotSet("last_question", "blorf the quantum visa gizmo") in events


def test_not_understanding_once_makes_no_offer(dispatcher):
    tracker = make_tracker("blorf the quantum visa gizmo", "nlu_fallback")
    ActionAnswerQuestion().run(dispatcher, tracker, {})
    assert [m["text"] for m in dispatcher.messages] == [say("nlu_fallback", "en")]
