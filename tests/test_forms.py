"""The visit-request and question forms, unit-tested with fresh trackers, in every language."""

import asyncio
import datetime as dt

import pytest
import yaml
from rasa_sdk import Action
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher

from actions import forms
from actions.forms import (
    ActionFinishOfficeQuestion,
    ActionFinishVisitRequest,
    AskArrivalDate,
    AskFieldToChange,
    AskPurpose,
    AskVisitConfirmed,
    AskVisitorName,
    DateAnswer,
    ValidateQuestionForm,
    ValidateVisitForm,
)
from bot.core import storage
from bot.core.choices import choices
from bot.core.paths import DOMAIN_FILE
from bot.core.texts import say

from .conftest import LANGUAGES, make_tracker

DOMAIN = yaml.safe_load(DOMAIN_FILE.read_text(encoding="utf-8"))
VISIT_SLOTS = DOMAIN["forms"]["visit_form"]["required_slots"]
NEXT_YEAR = dt.date.today().year + 1
DATES = {  # the same date, as people write it in each language
    "en": f"10 May {NEXT_YEAR}", "zh-Hans": f"{NEXT_YEAR}年5月10日", "zh-Hant": f"{NEXT_YEAR}年5月10日",
    "ru": f"10 мая {NEXT_YEAR}", "fr": f"10 mai {NEXT_YEAR}",
}  # fmt: skip


def tracker_for(text, requested, intent="inform", confidence=0.5, slots=None, language="en", **extra):
    tracker = make_tracker(text, intent, slots={"language": language, "requested_slot": requested, **(slots or {})},
                           **extra)  # fmt: skip
    if intent:
        tracker.latest_message["intent"]["confidence"] = confidence
    return tracker


def validate(action, dispatcher, text, requested, **kwargs):
    """The validator's events for ``text`` answering ``requested`` (the real domain, a fresh tracker)."""
    return asyncio.run(action.run(dispatcher, tracker_for(text, requested, **kwargs), DOMAIN))


def slots_of(events) -> dict:
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def ask(action_class, dispatcher, slots, text="", intent=None):
    action_class().run(dispatcher, make_tracker(text, intent, slots=slots), DOMAIN)
    return dispatcher.messages


def texts_of(dispatcher) -> list[str]:
    return [m["text"] for m in dispatcher.messages]


# --- the framework's machinery -------------------------------------------------------


def test_every_registered_action_is_named_in_the_domain():
    """rasa-sdk registers each concrete action; abstract bases (and stray names like action_ask_) are not."""
    executor = ActionExecutor()
    executor.register_package("actions")
    named = {action if isinstance(action, str) else next(iter(action)) for action in DOMAIN["actions"]}
    assert set(executor.actions) <= named
    assert "action_ask_" not in executor.actions
    assert {f"action_ask_{slot}" for slot in VISIT_SLOTS} <= set(executor.actions)
    assert all(not cls.__name__.startswith("Ask_") for cls in Action.__subclasses__())


def test_the_forms_questions_come_from_the_domain():
    assert ValidateVisitForm().domain_slots(DOMAIN) == VISIT_SLOTS
    assert not hasattr(forms, "VISIT_SLOTS")  # no copy of the domain's list in code


def test_the_actions_that_read_the_forms_are_sent_the_domain():
    """Rasa sends the domain only to the actions marked send_domain (enable_selective_domain): the
    form validators and the actions that empty a form's answers; without it they say so."""
    marked = {name for action in DOMAIN["actions"] if isinstance(action, dict)
              for name, options in action.items() if options.get("send_domain")}  # fmt: skip
    assert {"validate_visit_form", "validate_question_form", "action_finish_visit_request",
            "action_finish_office_question", "action_open_handoff"} <= marked  # fmt: skip
    endpoints = yaml.safe_load((DOMAIN_FILE.parent / "endpoints.yml").read_text(encoding="utf-8"))
    assert endpoints["action_endpoint"]["enable_selective_domain"] is True
    tracker = tracker_for("Ann Lee", "visitor_name")
    with pytest.raises(ValueError, match="send_domain"):
        asyncio.run(ValidateVisitForm().run(CollectingDispatcher(), tracker, {}))
    with pytest.raises(ValueError, match="send_domain"):
        forms.form_slots("visit_form", {"slots": {}})


# --- entering a form: the language is decided first ------------------------------------

FIRST_MESSAGES = {
    "en": "I want to submit a visit request",
    "zh-Hans": "我想提交来访申请",
    "zh-Hant": "我想提交來訪申請",
    "ru": "Я хочу подать заявку на визит в NJUPT",
    "fr": "Je voudrais faire une demande de visite à NJUPT.",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_visit_request_as_the_first_message_runs_the_form_in_its_language(language, dispatcher):
    first = FIRST_MESSAGES[language]
    events = validate(ValidateVisitForm(), dispatcher, first, None, intent="request_visit", confidence=0.99,
                      language=None)  # fmt: skip
    assert events == [SlotSet("language", language)]
    tracker = tracker_for(first, None, intent="request_visit", language=language)
    AskVisitorName().run(dispatcher, tracker, DOMAIN)
    assert texts_of(dispatcher) == [say("form_visit_start", language), say("form_ask_visitor_name", language)]
    assert {m["language"] for m in dispatcher.messages} == {language}


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_button_into_the_form_keeps_the_conversations_language(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "/request_visit", None, intent="request_visit",
                      language=language)  # fmt: skip
    assert events == []  # nothing to change: the conversation's language holds
    AskVisitorName().run(dispatcher, tracker_for("/request_visit", None, language=language), DOMAIN)
    assert texts_of(dispatcher)[1] == say("form_ask_visitor_name", language)


def test_inside_the_form_a_name_does_not_switch_the_language(dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "Jean-Pierre Dupont", "visitor_name", language="zh-Hans")
    assert slots_of(events) == {"visitor_name": "Jean-Pierre Dupont"}
    AskVisitorName().run(dispatcher, tracker_for("Jean-Pierre Dupont", "institution", language="zh-Hans"), DOMAIN)
    assert texts_of(dispatcher) == [say("form_ask_visitor_name", "zh-Hans")]


@pytest.mark.parametrize("language", LANGUAGES)
def test_lang_in_the_middle_switches_the_form_and_asks_again(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, f"/lang {language}", "country", intent="change_language",
                      language="en" if language != "en" else "fr")  # fmt: skip
    assert SlotSet("language", language) in events and "country" not in slots_of(events)
    assert dispatcher.messages == [{**dispatcher.messages[0], "text": say("language_switched", language)}]
    assert dispatcher.messages[0]["language"] == language


# --- answers ------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_arrival_date_in_the_users_language_is_accepted(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, DATES[language], "arrival_date", language=language)
    assert slots_of(events) == {"arrival_date": f"{NEXT_YEAR}-05-10", "date_unsure": None}
    assert dispatcher.messages == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_date_written_in_another_language_than_the_forms_is_read(language, dispatcher):
    other = "ru" if language == "en" else "en"
    events = validate(ValidateVisitForm(), dispatcher, DATES[other], "arrival_date", language=language)
    assert slots_of(events)["arrival_date"] == f"{NEXT_YEAR}-05-10"


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_past_date_gets_a_helpful_message(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "2020-01-01", "arrival_date", language=language)
    assert texts_of(dispatcher) == [say("form_date_in_past", language)]
    assert {m["language"] for m in dispatcher.messages} == {language}
    assert slots_of(events)["arrival_date"] is None


@pytest.mark.parametrize("language", LANGUAGES)
def test_departure_before_arrival_is_refused(language, dispatcher):
    arrival = f"{NEXT_YEAR}-05-10"
    events = validate(ValidateVisitForm(), dispatcher, f"{NEXT_YEAR}-05-01", "departure_date",
                      slots={"arrival_date": arrival}, language=language)  # fmt: skip
    assert slots_of(events)["departure_date"] is None
    assert texts_of(dispatcher) == [say("form_departure_before_arrival", language, arrival=arrival)]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_date_that_is_not_one(language, dispatcher):
    validate(ValidateVisitForm(), dispatcher, "soon", "arrival_date", language=language)
    assert texts_of(dispatcher) == [say("form_invalid_date", language)]


@pytest.fixture
def dates_read_as(monkeypatch):
    """Makes the date reader return a given answer, to test what the form does with it."""

    def read_as(answer: DateAnswer):
        monkeypatch.setattr(forms, "read_dates", lambda text, language, today=None: answer)

    return read_as


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("requested", ["arrival_date", "departure_date"])
def test_a_range_fills_both_dates_so_departure_is_not_asked(language, requested, dispatcher, dates_read_as):
    dates_read_as(DateAnswer(dt.date(NEXT_YEAR, 5, 10), dt.date(NEXT_YEAR, 5, 14)))
    slots = {"arrival_date": f"{NEXT_YEAR}-05-01"} if requested == "departure_date" else {}
    events = validate(ValidateVisitForm(), dispatcher, "10-14 May", requested, slots=slots, language=language)
    assert slots_of(events) == {"arrival_date": f"{NEXT_YEAR}-05-10", "departure_date": f"{NEXT_YEAR}-05-14",
                                "date_unsure": None}  # fmt: skip
    assert dispatcher.messages == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_ambiguous_date_is_asked_back_once(language, dispatcher, dates_read_as):
    reading = dt.date(NEXT_YEAR, 6, 5)
    dates_read_as(DateAnswer(reading, ambiguous=True))
    events = validate(ValidateVisitForm(), dispatcher, f"05/06/{NEXT_YEAR}", "arrival_date", language=language)
    assert slots_of(events) == {"arrival_date": None, "date_unsure": reading.isoformat()}
    slots = {"language": language, "requested_slot": "arrival_date", "date_unsure": reading.isoformat()}
    (asked,) = ask(AskArrivalDate, dispatcher, slots)
    assert asked["text"] == say("form_date_check", language, date=forms.display_date(reading.isoformat(), language))
    assert asked["buttons"][0]["payload"] == reading.isoformat()
    yes = say("button_date_yes", language)
    events = validate(ValidateVisitForm(), CollectingDispatcher(), yes, "arrival_date",
                      slots={"date_unsure": reading.isoformat()}, language=language)  # fmt: skip
    assert slots_of(events) == {"arrival_date": reading.isoformat(), "date_unsure": None}
    # asked back once only: the same kind of answer again is read the first way
    events = validate(ValidateVisitForm(), CollectingDispatcher(), f"05/06/{NEXT_YEAR}", "arrival_date",
                      slots={"date_unsure": reading.isoformat()}, language=language)  # fmt: skip
    assert slots_of(events) == {"arrival_date": reading.isoformat(), "date_unsure": None}
    no = say("button_date_no", language)
    events = validate(ValidateVisitForm(), CollectingDispatcher(), no, "arrival_date",
                      slots={"date_unsure": reading.isoformat()}, language=language)  # fmt: skip
    assert slots_of(events) == {"arrival_date": None, "date_unsure": None}  # the date question again


@pytest.mark.parametrize("text, value", [("ada@uni.example", "ada@uni.example"),
                                         ("my email is ada@uni.example.", "ada@uni.example")])  # fmt: skip
def test_emails_are_accepted(text, value, dispatcher):
    assert validate(ValidateVisitForm(), dispatcher, text, "email") == [SlotSet("email", value)]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("text", ["ada at uni dot edu", "ada@", "@uni.edu", "ada@uni"])
def test_a_wrong_email_gets_a_helpful_message(language, text, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, text, "email", language=language)
    assert SlotSet("email", None) in events
    assert texts_of(dispatcher) == [say("form_invalid_email", language)]


# --- the purpose: buttons or typed words, in any language ---------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_purpose_buttons_in_each_language(language, dispatcher):
    (message,) = ask(AskPurpose, dispatcher, {"language": language, "requested_slot": "email"})
    assert message["text"] == say("form_ask_purpose", language) and message["language"] == language
    titles = [b["title"] for b in message["buttons"]]
    assert titles == [say(f"purpose_{p}", language) for p in ("lecture", "research", "conference", "other")]
    events = validate(ValidateVisitForm(), dispatcher, message["buttons"][1]["payload"], "purpose", language=language)
    assert slots_of(events) == {"purpose": "research", "purpose_details": None}


TYPED_PURPOSES = [
    ("en", "to give a lecture", "lecture"), ("en", "a talk", "lecture"), ("en", "I'd like to lecture", "lecture"),
    ("en", "RESEARCH COOPERATION!", "research"), ("en", "attending your conference", "conference"),
    ("zh-Hans", "讲座", "lecture"), ("zh-Hans", "做个报告", "lecture"), ("zh-Hans", "想来谈谈科研合作", "research"),
    ("zh-Hans", "参加学术会议", "conference"), ("zh-Hant", "我想做個演講", "lecture"),
    ("zh-Hant", "研究合作", "research"), ("zh-Hant", "參加研討會", "conference"),
    ("ru", "лекция", "lecture"), ("ru", "Хочу прочитать лекцию", "lecture"), ("ru", "научное сотрудничество", "research"),
    ("ru", "участие в конференции", "conference"), ("fr", "une conférence", "lecture"),
    ("fr", "Coopération scientifique", "research"), ("fr", "participer à un colloque", "conference"),
    ("fr", "assister à une conférence", "conference"),
    # whatever the conversation's language
    ("en", "讲座", "lecture"), ("zh-Hans", "une conférence", "lecture"), ("fr", "сотрудничество", "research"),
]  # fmt: skip


@pytest.mark.parametrize("language, text, option", TYPED_PURPOSES)
def test_a_typed_purpose_is_taken_when_it_fits_one_option(language, text, option, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, text, "purpose", intent="nlu_fallback", language=language)
    assert slots_of(events) == {"purpose": option, "purpose_details": None}
    assert dispatcher.messages == []


OTHER_PURPOSES = {"en": "to visit the campus with students", "zh-Hans": "带学生参观校园", "zh-Hant": "帶學生參觀校園",
                  "ru": "экскурсия по кампусу", "fr": "visiter le campus avec des étudiants"}  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_purpose_that_fits_no_option_is_kept_as_other_in_the_users_words(language, dispatcher):
    text = OTHER_PURPOSES[language]
    events = validate(ValidateVisitForm(), dispatcher, text, "purpose", intent="nlu_fallback", language=language)
    assert slots_of(events) == {"purpose": "other", "purpose_details": text}
    (message,) = ask(AskVisitConfirmed, dispatcher, {"language": language, **FILLED, **slots_of(events)})
    assert text in message["text"]


def test_a_question_asked_at_the_purpose_is_answered_not_taken_as_an_option(dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "What conferences does NJUPT host?", "purpose",
                      intent="ask_conferences", confidence=0.97)  # fmt: skip
    assert texts_of(dispatcher) == [say("ask_conferences", "en"), say("form_interrupted", "en")]
    assert events == [SlotSet("form_interruptions", 1)]
    # then the purpose is asked again as a question, not as "I didn't catch that"
    (message,) = ask(AskPurpose, CollectingDispatcher(), {"language": "en", "requested_slot": "purpose"},
                     "What conferences does NJUPT host?", "ask_conferences")  # fmt: skip
    assert message["text"] == say("form_ask_purpose", "en")


# --- questions and commands in the middle ---------------------------------------------


def test_a_question_in_the_middle_is_answered_and_the_form_goes_on(dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "wait, what is the office's postal address?", "email",
                      intent="ask_address", confidence=0.98)  # fmt: skip
    assert texts_of(dispatcher) == [say("ask_address", "en"), say("form_interrupted", "en")]
    assert events == [SlotSet("form_interruptions", 1)]  # the email is asked again


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_question_in_the_middle_is_answered_in_the_forms_language(language, dispatcher):
    validate(ValidateVisitForm(), dispatcher, "where is the office? what's its address?", "country",
             intent="ask_address", confidence=0.98, language=language)  # fmt: skip
    assert texts_of(dispatcher) == [say("ask_address", language), say("form_interrupted", language)]
    assert {m["language"] for m in dispatcher.messages} == {language}


def test_a_name_that_looks_like_a_topic_is_still_a_name(dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "Queen Mary University", "institution",
                      intent="ask_joint_programmes", confidence=0.99)  # fmt: skip
    assert events == [SlotSet("institution", "Queen Mary University")]


CANCEL = {"en": "cancel", "zh-Hans": "取消", "zh-Hant": "取消", "ru": "отмена", "fr": "annuler"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_cancel_at_any_time_stops_the_form_and_forgets_its_answers(language, dispatcher):
    answered = {k: FILLED[k] for k in ("visitor_name", "institution")}
    events = validate(ValidateVisitForm(), dispatcher, CANCEL[language], "country", intent="cancel", confidence=0.95,
                      slots=answered, language=language)  # fmt: skip
    assert ActiveLoop(None) in events and SlotSet("requested_slot", None) in events
    assert all(slots_of(events)[slot] is None for slot in VISIT_SLOTS)
    assert "cancelled" not in str(events)  # no sentinel value: the answers are simply gone
    finished = ActionFinishVisitRequest().run(dispatcher, make_tracker(slots={"language": language}), DOMAIN)
    assert texts_of(dispatcher)[-1] == say("request_cancelled", language)
    assert dispatcher.messages[-1]["language"] == language
    assert SlotSet("visitor_name", None) in finished


FILLED = {"visitor_name": "Ada Lovelace", "institution": "University of London", "country": "UK",
          "email": "ada@uni.example", "purpose": "lecture", "arrival_date": f"{NEXT_YEAR}-05-10",
          "departure_date": f"{NEXT_YEAR}-05-12", "visit_notes": "Analytical engines"}  # fmt: skip


# --- the summary: send, change an answer, cancel -----------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_summary_shows_every_answer(language, dispatcher):
    (message,) = ask(AskVisitConfirmed, dispatcher, {"language": language, "requested_slot": "visit_notes", **FILLED})
    for value in ("Ada Lovelace", "University of London", "ada@uni.example", say("purpose_lecture", language)):
        assert value in message["text"]
    assert [b["payload"] for b in message["buttons"]] == ["/affirm", "/deny", "/cancel"]
    assert message["language"] == language


SUMMARY_ANSWERS = {
    "yes": {"en": "yes, send it", "zh-Hans": "好的，提交吧", "zh-Hant": "確認送出", "ru": "Да, отправляйте",
            "fr": "oui, envoyez"},
    "change": {"en": "I need to change something", "zh-Hans": "我要修改一下", "zh-Hant": "不對", "ru": "нужно исправить",
               "fr": "je voudrais modifier"},
    "cancel": {"en": "don't send it", "zh-Hans": "算了，不要了", "zh-Hant": "放棄", "ru": "не отправляйте",
               "fr": "laissez tomber"},
}  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_summary_typed_yes_sends_it(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, SUMMARY_ANSWERS["yes"][language], "visit_confirmed",
                      intent="nlu_fallback", slots=FILLED, language=language)  # fmt: skip
    assert slots_of(events) == {"visit_confirmed": True}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_summary_typed_change_asks_which_answer(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, SUMMARY_ANSWERS["change"][language], "visit_confirmed",
                      intent="nlu_fallback", slots=FILLED, language=language)  # fmt: skip
    assert events == [SlotSet("visit_confirmed", False), SlotSet("requested_slot", "field_to_change")]
    slots = {"language": language, "requested_slot": "field_to_change", **FILLED, "visit_confirmed": False}
    tracker = make_tracker("x", slots=slots)
    tracker.events = [{"event": "slot", "name": "requested_slot", "value": "visit_confirmed"},
                      {"event": "user", "text": SUMMARY_ANSWERS["change"][language]},
                      {"event": "slot", "name": "requested_slot", "value": "field_to_change"}]  # fmt: skip
    AskFieldToChange().run(dispatcher, tracker, DOMAIN)
    (message,) = dispatcher.messages
    assert message["text"] == say("form_which_field", language)
    assert say("field_email", language) in [b["title"] for b in message["buttons"]]


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_summary_typed_cancel_cancels(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, SUMMARY_ANSWERS["cancel"][language], "visit_confirmed",
                      intent="nlu_fallback", slots=FILLED, language=language)  # fmt: skip
    assert ActiveLoop(None) in events and slots_of(events)["email"] is None


CHANGE_EMAIL = {"en": "change my e-mail", "zh-Hans": "邮箱写错了", "zh-Hant": "電子郵件", "ru": "исправить почту",
                "fr": "modifier le courriel"}  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
def test_naming_the_answer_at_the_summary_or_after_change_asks_it_again(language, dispatcher):
    for requested, state in (("visit_confirmed", {}), ("field_to_change", {"visit_confirmed": False})):
        events = validate(ValidateVisitForm(), dispatcher, CHANGE_EMAIL[language], requested, intent="nlu_fallback",
                          slots={**FILLED, **state}, language=language)  # fmt: skip
        assert slots_of(events) == {"email": None, "visit_confirmed": None, "field_to_change": None}


def test_correcting_an_earlier_answer_with_the_buttons(dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "/deny", "visit_confirmed", intent="deny", confidence=1,
                      slots=FILLED)  # fmt: skip
    assert slots_of(events) == {"visit_confirmed": False, "requested_slot": "field_to_change"}
    events = validate(ValidateVisitForm(), dispatcher, say("field_email", "en"), "field_to_change",
                      slots={**FILLED, "visit_confirmed": False})  # fmt: skip
    assert slots_of(events) == {"email": None, "visit_confirmed": None, "field_to_change": None}
    assert dispatcher.messages == []  # the form asks for the e-mail, then shows the summary again


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_answer_that_fits_no_option_is_asked_again_with_the_options_in_words(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "hmm blorf", "visit_confirmed", intent="nlu_fallback",
                      slots=FILLED, language=language)  # fmt: skip
    assert slots_of(events) == {"visit_confirmed": None}
    (message,) = ask(AskVisitConfirmed, dispatcher, {"language": language, "requested_slot": "visit_confirmed",
                                                     **FILLED}, "hmm blorf", "nlu_fallback")  # fmt: skip
    for title in ("button_confirm", "button_change", "button_cancel"):
        assert say(title, language) in message["text"]
    assert message["text"].startswith(say("form_choose_again", language, question="", options="")[:4])
    assert [b["payload"] for b in message["buttons"]] == ["/affirm", "/deny", "/cancel"]


# --- back ------------------------------------------------------------------------------

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


def test_back_from_which_answer_shows_the_summary_again(dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "back", "field_to_change",
                      slots={**FILLED, "visit_confirmed": False})  # fmt: skip
    assert events == [SlotSet("visit_confirmed", None), SlotSet("form_interruptions", 1)]


@pytest.mark.parametrize("language", LANGUAGES)
def test_back_at_the_first_question_says_there_is_nothing_to_change(language, dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, BACK[language], "visitor_name", language=language)
    assert texts_of(dispatcher) == [say("form_nothing_to_go_back_to", language)]
    assert events == [SlotSet("visitor_name", None), SlotSet("form_interruptions", 1)]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_new_request_starts_by_saying_how_to_go_back_or_stop(language, dispatcher):
    assert texts_of_ask(AskVisitorName, {"language": language}) == [
        say("form_visit_start", language),
        say("form_ask_visitor_name", language),
    ]
    # asked again (after "back" or "change an answer"): the question alone
    assert texts_of_ask(AskVisitorName, {"language": language, "requested_slot": "institution"}) == [
        say("form_ask_visitor_name", language)
    ]


def texts_of_ask(action_class, slots):
    return [m["text"] for m in ask(action_class, CollectingDispatcher(), slots)]


# --- saving ------------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    storage.store.cache_clear()
    yield storage.RequestStore(url)
    storage.store.cache_clear()


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_confirmed_visit_request_is_saved_with_a_reference(language, dispatcher, database):
    slots = {"language": language, **FILLED, "visit_confirmed": True}
    events = ActionFinishVisitRequest().run(dispatcher, make_tracker(slots=slots), DOMAIN)
    (saved,) = database.list()
    assert (saved.ref, saved.full_name, saved.email, saved.language) == (
        f"V-{NEXT_YEAR}-0001",
        "Ada Lovelace",
        "ada@uni.example",
        language,
    )
    assert saved.arrival == dt.date(NEXT_YEAR, 5, 10)
    assert texts_of(dispatcher) == [say("visit_saved", language, ref=saved.ref)]
    assert dispatcher.messages[0]["language"] == language
    assert {"email": None, "visit_confirmed": None, "purpose_details": None}.items() <= slots_of(events).items()


def test_an_other_purpose_is_saved_in_the_visitors_words(dispatcher, database):
    slots = {
        "language": "fr",
        **FILLED,
        "purpose": "other",
        "purpose_details": "visite du campus",
        "visit_confirmed": True,
    }
    ActionFinishVisitRequest().run(dispatcher, make_tracker(slots=slots), DOMAIN)
    (saved,) = database.list()
    assert saved.purpose == "other"
    assert saved.details == say("details_purpose", "fr", purpose="visite du campus") + "\nAnalytical engines"


def test_when_the_database_is_down_nothing_is_lost(dispatcher, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    storage.store.cache_clear()
    try:
        events = ActionFinishVisitRequest().run(
            dispatcher, make_tracker(slots={**FILLED, "visit_confirmed": True}), DOMAIN
        )
    finally:
        storage.store.cache_clear()
    assert texts_of(dispatcher) == [say("request_not_saved", "en")]
    assert events == [SlotSet("visit_confirmed", None)]  # the answers stay; confirming again retries


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_question_is_passed_on_and_saved(language, dispatcher, database):
    question = "Quand ouvrent les inscriptions ?"
    slots = {"language": language, "last_question": question}
    events = validate(ValidateQuestionForm(), dispatcher, "/affirm", "office_question", intent="affirm",
                      slots={**slots, "office_email": "me@uni.example"}, language=language)  # fmt: skip
    assert events == [SlotSet("office_question", question)]
    ActionFinishOfficeQuestion().run(dispatcher, make_tracker(slots={
        **slots, "office_email": "me@uni.example", "office_question": question}), DOMAIN)  # fmt: skip
    (saved,) = database.list()
    assert saved.ref.startswith("Q-") and saved.details == question
    assert texts_of(dispatcher)[-1] == say("question_saved", language, ref=saved.ref)


def test_the_question_can_be_rewritten(dispatcher):
    events = validate(ValidateQuestionForm(), dispatcher, "Is there a scholarship for PhD students?", "office_question",
                      slots={"last_question": "fees?"})  # fmt: skip
    assert events == [SlotSet("office_question", "Is there a scholarship for PhD students?")]


def test_every_option_has_a_title_and_words_in_every_language():
    from bot.core.choices import problems

    assert problems() == []
    assert set(choices().questions) >= {"purpose", "summary", "field", "visit_offer", "question_offer"}


SEND_AS_IT_IS = {"en": "ok, send it as it is", "zh-Hans": "好的，就这样", "zh-Hant": "直接送出", "ru": "да, как есть",
                 "fr": "oui, telle quelle"}  # fmt: skip
NEW_VERSION = {"en": "How much are the fees for the joint master's?", "zh-Hans": "联合培养硕士的学费是多少？",
               "zh-Hant": "聯合培養碩士的學費是多少？", "ru": "Сколько стоит обучение в совместной магистратуре?",
               "fr": "Combien coûte le master conjoint ?"}  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_question_to_pass_on_typed_send_keep_or_rewrite(language, dispatcher):
    slots = {"office_email": "me@uni.example", "last_question": "Fees?"}
    events = validate(ValidateQuestionForm(), dispatcher, SEND_AS_IT_IS[language], "office_question",
                      intent="nlu_fallback", slots=slots, language=language)  # fmt: skip
    assert events == [SlotSet("office_question", "Fees?")]
    events = validate(ValidateQuestionForm(), dispatcher, NEW_VERSION[language], "office_question",
                      intent="out_of_scope", confidence=0.9, slots=slots, language=language)  # fmt: skip
    assert events == [SlotSet("office_question", NEW_VERSION[language])]
    events = validate(ValidateQuestionForm(), dispatcher, CANCEL[language], "office_question",
                      intent="nlu_fallback", slots=slots, language=language)  # fmt: skip
    assert ActiveLoop(None) in events and slots_of(events)["office_email"] is None


# --- asking for a person in the middle: the form is left for the staff ---------------------

# The words and some like them, in each language (the held-out ones are in
# tests/nlu_holdout/ and never trained on). Confidences as the trained model gives them.
ASK_FOR_A_PERSON = {
    "en": ["can I talk to a human?", "I'd like to speak to someone from the office"],
    "zh-Hans": ["转人工", "我要找老师"],
    "zh-Hant": ["我要找老師", "請幫我轉接工作人員"],
    "ru": ["позовите оператора", "можно поговорить с живым человеком?"],
    "fr": ["je voudrais parler à quelqu'un", "puis-je parler à un conseiller ?"],
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("requested", ["visitor_name", "institution", "purpose", "visit_notes", "visit_confirmed"])
def test_asking_for_a_person_in_the_visit_form_is_no_answer(language, requested, dispatcher):
    for text in ASK_FOR_A_PERSON[language]:
        events = validate(ValidateVisitForm(), dispatcher, text, requested, intent="request_human", confidence=0.77,
                          slots={k: FILLED[k] for k in ("visitor_name", "institution")}, language=language)  # fmt: skip
        # nothing read, nothing said: Rasa rejects the form's turn, and the rules of
        # data/rules/handoff.yml leave the form for action_open_handoff
        assert events == [] and dispatcher.messages == []


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("requested", ["office_email", "office_question"])
def test_asking_for_a_person_in_the_question_form_is_no_answer(language, requested, dispatcher):
    for text in ASK_FOR_A_PERSON[language]:
        events = validate(ValidateQuestionForm(), dispatcher, text, requested, intent="request_human",
                          confidence=0.95, slots={"last_question": "Are there scholarships?"},
                          language=language)  # fmt: skip
        assert events == [] and dispatcher.messages == []


def test_a_name_the_model_is_unsure_of_is_still_a_name(dispatcher):
    events = validate(ValidateVisitForm(), dispatcher, "Personne Dupont", "visitor_name", intent="request_human",
                      confidence=forms.PERSON_CONFIDENCE - 0.1)  # fmt: skip
    assert events == [SlotSet("visitor_name", "Personne Dupont")]


def left_form_tracker(form: str, text: str, language: str, slots: dict, sender_id: str = "web-" + "f" * 22):
    """A tracker as action_open_handoff sees it after data/rules/handoff.yml left ``form``."""
    tracker = make_tracker(text, "request_human", slots={"language": language, **slots}, sender_id=sender_id)
    tracker.events = [
        {"event": "user", "text": "/request_visit"},
        {"event": "active_loop", "name": form},
        {"event": "bot", "text": say("form_ask_visitor_name", language)},
        {"event": "user", "text": "Ada Lovelace"},
        {"event": "bot", "text": say("form_ask_institution", language)},
        {"event": "user", "text": text},
        {"event": "action", "name": "action_deactivate_loop"},
        {"event": "active_loop", "name": None},
    ]
    return tracker


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_form_left_for_a_person_says_nothing_was_sent_and_hands_over(language, dispatcher, handoff_store):
    from actions.handoff import ActionOpenHandoff

    text = ASK_FOR_A_PERSON[language][0]
    answered = {"visitor_name": "Ada Lovelace", "institution": "University of London", "purpose": "lecture",
                "requested_slot": "country", "form_interruptions": 1}  # fmt: skip
    tracker = left_form_tracker("visit_form", text, language, answered)
    events = ActionOpenHandoff().run(dispatcher, tracker, DOMAIN)
    (handoff,) = handoff_store.list_open()
    where = say("handoff_where_web", language)
    assert texts_of(dispatcher) == [say("handoff_form_stopped", language),
                                    say("handoff_opened", language, ref=handoff.ref, where=where)]  # fmt: skip
    assert {m["language"] for m in dispatcher.messages} == {language}
    assert handoff.language == language
    # the form's answers are emptied in the conversation, and nothing was saved as a visit request
    assert (
        all(slots_of(events)[slot] is None for slot in VISIT_SLOTS) and slots_of(events)["form_interruptions"] is None
    )
    assert [r.kind for r in handoff_store.requests.list()] == ["handoff"]
    # the staff get them with the hand-off (in the staff's language, English by default)
    details = handoff_store.request(handoff.ref).details
    assert say("staff_form_left_visit_form", "en") in details
    assert "Name: Ada Lovelace" in details and "Institution: University of London" in details
    assert f"Purpose: {say('purpose_lecture', 'en')}" in details
    assert f"user: {text}" in details


def test_a_question_form_left_for_a_person_passes_the_email_and_question(dispatcher, handoff_store):
    from actions.handoff import ActionOpenHandoff

    slots = {"office_email": "ada@uni.example", "last_question": "Are there scholarships?",
             "requested_slot": "office_question"}  # fmt: skip
    tracker = left_form_tracker("question_form", "转人工", "zh-Hans", slots, sender_id="rest-client")
    events = ActionOpenHandoff().run(dispatcher, tracker, DOMAIN)
    (handoff,) = handoff_store.list_open()
    assert texts_of(dispatcher)[0] == say("handoff_form_stopped", "zh-Hans")
    assert say("handoff_where_email", "zh-Hans") in texts_of(dispatcher)[1]  # the address given in the form
    assert handoff_store.request(handoff.ref).email == "ada@uni.example"
    assert "E-mail: ada@uni.example" in handoff_store.request(handoff.ref).details
    assert slots_of(events)["office_email"] is None and slots_of(events)["last_question"] is None


def test_outside_a_form_nothing_is_said_about_a_form(dispatcher, handoff_store):
    from actions.handoff import ActionOpenHandoff

    tracker = make_tracker("转人工", "request_human", slots={"language": "zh-Hans"}, sender_id="telegram-5")
    tracker.events = [{"event": "user", "text": "转人工"}]
    events = ActionOpenHandoff().run(dispatcher, tracker, DOMAIN)
    assert len(dispatcher.messages) == 1 and say("handoff_form_stopped", "zh-Hans") not in texts_of(dispatcher)
    assert "visitor_name" not in slots_of(events)
