"""Talk to a person: the hand-off's store, the action that opens it, the channel that relays,
and (end to end over REST) the bot staying quiet, also across a restart of Rasa."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from rasa_sdk.events import FollowupAction
from rasa_sdk.executor import CollectingDispatcher

from actions.answers import ActionAnswerQuestion
from actions.handoff import ActionOpenHandoff
from bot.core import handoff as handoff_module
from bot.core import storage
from bot.core.handoff import HANDOFF_OPENED, HandoffStore
from bot.core.texts import say
from bot.plugins.handoff import back_to_bot, history_events, intercept, updates

from .conftest import LANGUAGES, Chat, make_tracker

# The issue's own words, one per language (also in tests/nlu_holdout/, never trained on).
ASK_FOR_A_PERSON = {
    "en": "can I talk to a human?",
    "zh-Hans": "转人工",
    "zh-Hant": "我要找老師",
    "ru": "позовите оператора",
    "fr": "je voudrais parler à quelqu'un",
}
BACK = {"en": "back to the bot", "zh-Hans": "回到机器人", "zh-Hant": "回到機器人", "ru": "вернуться к боту",
        "fr": "revenir au robot"}  # fmt: skip
WEB = "web-" + "a" * 22


@pytest.fixture
def database(handoff_store):
    return handoff_store


# --- the action ------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_asking_for_a_person_opens_a_handoff_with_a_reference(language, database):
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(ASK_FOR_A_PERSON[language], "request_human", slots={"language": language},
                           sender_id="telegram-4242")  # fmt: skip
    ActionOpenHandoff().run(dispatcher, tracker, {})
    (message,) = dispatcher.messages
    (opened,) = database.list_open()
    assert opened.ref.startswith("H-") and opened.channel == "telegram" and opened.language == language
    where = say("handoff_where_telegram", language)
    assert message["text"] == say("handoff_opened", language, ref=opened.ref, where=where)
    assert opened.ref in message["text"] and "/bot" in message["text"]
    assert message[HANDOFF_OPENED] == opened.ref
    assert [b["payload"] for b in message["buttons"]] == ["/bot"]
    request = database.request(opened.ref)
    assert request.kind == "handoff" and ASK_FOR_A_PERSON[language] in request.details


def test_the_web_chat_is_told_to_keep_the_page_and_email_users_by_email(database):
    dispatcher = CollectingDispatcher()
    ActionOpenHandoff().run(dispatcher, make_tracker("je voudrais parler à quelqu'un", "request_human",
                                                     slots={"language": "fr"}, sender_id=WEB), {})  # fmt: skip
    assert say("handoff_where_web", "fr") in dispatcher.messages[0]["text"]
    dispatcher = CollectingDispatcher()
    tracker = make_tracker("a human please", "request_human", slots={"language": "en", "office_email": "a@b.example"},
                           sender_id="curl-user")  # fmt: skip
    ActionOpenHandoff().run(dispatcher, tracker, {})
    assert say("handoff_where_email", "en") in dispatcher.messages[0]["text"]
    assert database.request(database.active("curl-user").ref).email == "a@b.example"


def test_a_second_request_keeps_the_same_handoff(database):
    first, created = database.open("telegram-1", "en")
    again, created_again = database.open("telegram-1", "en")
    assert created and not created_again and again.ref == first.ref


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_offer_after_an_unanswered_question_includes_a_person(language, database):
    dispatcher = CollectingDispatcher()
    slots = {"language": language, "language_chosen": True}
    tracker = make_tracker("How much are the tuition fees for a master?", "out_of_scope", slots=slots)
    ActionAnswerQuestion().run(dispatcher, tracker, {})
    offer = dispatcher.messages[-1]
    assert offer["text"] == say("question_offer", language)
    assert ("/request_human", say("button_talk_to_person", language)) in [
        (b["payload"], b["title"]) for b in offer["buttons"]
    ]


@pytest.mark.parametrize("typed", ["talk to a person", "转人工", "с сотрудником", "parler à une personne"])
def test_a_typed_person_after_the_offer_opens_the_handoff(typed, database):
    tracker = make_tracker(typed, "nlu_fallback", slots={"language": "en", "offer": "question"})
    events = ActionAnswerQuestion().run(CollectingDispatcher(), tracker, {})
    assert FollowupAction("action_open_handoff") in events


# --- the channel: relay, back to the bot, quiet period ------------------------------------


def test_while_open_messages_go_to_the_staff_and_the_user_is_told(database):
    handoff, _ = database.open(WEB, "ru")
    turn = asyncio.run(intercept(WEB, "У меня вопрос о визе", database))
    (reply,) = turn.replies
    assert reply["text"] == say("handoff_relayed", "ru", ref=handoff.ref) and reply["language"] == "ru"
    assert [(m.author, m.text) for m in database.messages(handoff.ref)] == [("user", "У меня вопрос о визе")]
    # "the bot said something" is for the staff, not a way back
    assert asyncio.run(intercept(WEB, "the bot said something else", database)).replies is not None


@pytest.mark.parametrize("language", LANGUAGES)
def test_asking_for_the_bot_again_closes_it(language, database):
    handoff, _ = database.open(WEB, language)
    assert back_to_bot(BACK[language]) and back_to_bot("/bot")
    (reply,) = asyncio.run(intercept(WEB, BACK[language], database)).replies
    assert reply["text"] == say("handoff_ended_by_user", language, ref=handoff.ref)
    assert database.active(WEB) is None
    assert database.get(handoff.ref).closed_reason == "user"
    assert asyncio.run(intercept(WEB, "Where is the office?", database)).replies is None  # the bot answers


def test_a_quiet_handoff_returns_to_the_bot_and_says_so(database, monkeypatch):
    monkeypatch.setenv("HANDOFF_TIMEOUT_MINUTES", "30")
    long_ago = handoff_module.now_utc() - dt.timedelta(minutes=31)
    handoff, _ = database.open(WEB, "fr", now=long_ago)
    turn = asyncio.run(intercept(WEB, "Quelle est votre adresse ?", database))
    assert turn.replies is None  # the bot answers this one
    assert [n["text"] for n in turn.notices] == [say("handoff_timed_out", "fr", ref=handoff.ref, minutes="30")]
    assert database.get(handoff.ref).closed_reason == "timeout"


def test_a_recent_handoff_stays_open(database, monkeypatch):
    monkeypatch.setenv("HANDOFF_TIMEOUT_MINUTES", "30")
    database.open(WEB, "fr", now=handoff_module.now_utc() - dt.timedelta(minutes=29))
    assert asyncio.run(intercept(WEB, "Bonjour ?", database)).replies is not None


def test_the_web_page_gets_replies_newer_than_it_has(database):
    handoff, _ = database.open(WEB, "en")
    first = database.reply(handoff.ref, "cli:li", "Hello, how can we help?")
    seen = updates(WEB, 0, database)
    assert seen["handoff"] == handoff.ref and seen["taken"]
    assert [e["text"] for e in seen["messages"]] == [say("handoff_staff_reply", "en", ref=handoff.ref,
                                                         text="Hello, how can we help?")]  # fmt: skip
    assert updates(WEB, first.id, database)["messages"] == []
    assert database.messages(handoff.ref)[0].delivery == "shown"


def test_the_history_has_every_turn_of_the_handoff_and_the_page_gets_none_twice(database):
    handoff, _ = database.open(WEB, "ru")
    asyncio.run(intercept(WEB, "У меня вопрос о визе", database))
    reply = database.reply(handoff.ref, "cli:li", "Здравствуйте!")
    (back,) = asyncio.run(intercept(WEB, "вернуться к боту", database)).replies
    assert [(e["event"], e["text"]) for e in history_events(WEB, database)] == [
        ("user", "У меня вопрос о визе"),
        ("bot", say("handoff_relayed", "ru", ref=handoff.ref)),
        ("bot", say("handoff_staff_reply", "ru", ref=handoff.ref, text="Здравствуйте!")),
        ("user", "вернуться к боту"),
        ("bot", back["text"]),
    ]
    # the acknowledgement and the notice were in the replies: the page's polling does not repeat them
    assert [e["metadata"]["id"] for e in updates(WEB, 0, database)["messages"]] == [reply.id]
    # the staff read the conversation without the acknowledgements
    assert [m.author for m in database.messages(handoff.ref)] == ["user", "staff", "user", "bot"]


# --- end to end over REST ------------------------------------------------------------------


@pytest.mark.e2e
def test_rest_the_bot_stays_quiet_also_after_a_rasa_restart(own_servers):
    servers = own_servers()
    user = Chat(servers, "handoff-rest-user")
    opened = user.send("je voudrais parler à quelqu'un")
    text = opened[0]["text"]
    assert "H-" in text and opened[0]["language"] == "fr", opened
    ref = "H-" + text.split("H-", 1)[1][:9]
    relayed = user.ask("Quels sont les frais de scolarité ?")
    assert relayed == say("handoff_relayed", "fr", ref=ref)
    servers.process("Rasa server").stop()
    servers.process("Rasa server").start()
    servers.wait_ready(240)
    assert user.ask("Toujours là ?") == say("handoff_relayed", "fr", ref=ref)
    store = HandoffStore(storage.RequestStore(servers.env["DATABASE_URL"]))
    assert [m.text for m in store.messages(ref)] == ["Quels sont les frais de scolarité ?", "Toujours là ?"]
    assert user.ask("/bot") == say("handoff_ended_by_user", "fr", ref=ref)
    assert "210003" in user.ask("Quelle est l'adresse postale du bureau ?")


NAMES = {"en": "Ada Lovelace", "zh-Hans": "李华", "zh-Hant": "李華", "ru": "Иван Петров", "fr": "Marie Curie"}


@pytest.mark.e2e
@pytest.mark.parametrize("language", LANGUAGES)
def test_rest_asking_for_a_person_in_the_middle_of_a_visit_request(language, chat, servers):
    user = chat(language_hint=language)
    assert user.ask("/request_visit").endswith(say("form_ask_visitor_name", language))
    assert user.ask(NAMES[language]) == say("form_ask_institution", language)
    left = user.send(ASK_FOR_A_PERSON[language])  # not taken as the institution
    ref = left[-1].get("handoff")
    assert [r["text"] for r in left] == [say("handoff_form_stopped", language),
                                         say("handoff_opened", language, ref=ref, where=say("handoff_where_chat", language))]  # fmt: skip
    assert {r["language"] for r in left} == {language}
    store = HandoffStore(storage.RequestStore(servers.env["DATABASE_URL"]))
    request = store.request(ref)
    assert request.kind == "handoff" and request.sender_id == user.sender
    assert f"{say('field_visitor_name', 'en')}: {NAMES[language]}" in request.details  # the staff see the answers
    assert not [r for r in store.requests.list() if r.sender_id == user.sender and r.kind == "visit"]
    # the staff have the conversation now, exactly as outside a form
    assert user.ask("Université de Lyon") == say("handoff_relayed", language, ref=ref)
    assert [m.text for m in store.messages(ref)] == ["Université de Lyon"]
    assert user.ask("/bot") == say("handoff_ended_by_user", language, ref=ref)
    # the form was left, its answers emptied: a new request starts from the first question
    assert user.ask("/request_visit") == say("form_visit_start", language) + "\n" + say(
        "form_ask_visitor_name", language
    )


@pytest.mark.e2e
def test_rest_asking_for_a_person_while_passing_a_question_on(chat, servers):
    user = chat(language_hint="ru")
    offer = user.send("Сколько стоит обучение в магистратуре?")
    assert offer[-1]["text"] == say("question_offer", "ru"), offer
    assert user.ask("/affirm") == say("form_ask_office_email", "ru")
    left = user.send("позовите оператора")
    ref = left[-1]["handoff"]
    assert [r["text"] for r in left][0] == say("handoff_form_stopped", "ru")
    assert left[-1]["text"] == say("handoff_opened", "ru", ref=ref, where=say("handoff_where_chat", "ru"))
    assert user.ask("ivan@example.org") == say("handoff_relayed", "ru", ref=ref)  # relayed, not stored as the e-mail
    store = HandoffStore(storage.RequestStore(servers.env["DATABASE_URL"]))
    assert not [r for r in store.requests.list() if r.sender_id == user.sender and r.kind == "question"]
    assert [m.text for m in store.messages(ref)] == ["ivan@example.org"]


def test_forget_me_and_erasing_a_request_delete_the_handoff_and_its_messages(database):
    from bot.core import privacy

    handoff, _ = database.open(WEB, "en")
    database.add_user_message(handoff.ref, "my name is Ada, my phone is …")
    database.reply(handoff.ref, "cli:li", "Thank you, Ada")
    other, _ = database.open("telegram-77", "en")
    database.reply(other.ref, "cli:li", "Hello")
    privacy.erase_sender(WEB, url=database.requests.engine.url.render_as_string(hide_password=False))
    assert database.find(handoff.ref) is None and database.messages(handoff.ref) == []
    assert database.find(other.ref) is not None and len(database.messages(other.ref)) == 1
    privacy.erase_request(other.ref, url=database.requests.engine.url.render_as_string(hide_password=False))
    assert database.find(other.ref) is None and database.messages(other.ref) == []


def _has_open_follows_active(store):
    assert not store.has_open(WEB)
    handoff, _ = store.open(WEB, "ru")
    other, _ = store.open("telegram-77", "en")
    assert store.has_open(WEB) and store.active(WEB) is not None
    store.take(handoff.ref, "Li Wei")
    assert store.has_open(WEB)
    store.close(handoff.ref, "Li Wei")
    assert not store.has_open(WEB) and store.active(WEB) is None
    assert store.has_open("telegram-77") and not store.has_open("telegram-7")


def test_the_quick_check_of_every_message_agrees_with_the_open_handoff_sqlite(database):
    _has_open_follows_active(database)


def test_the_quick_check_of_every_message_agrees_with_the_open_handoff_postgresql(postgres_url):
    from bot.core.handoff import HandoffStore
    from bot.core.storage import RequestStore

    store = HandoffStore(RequestStore(postgres_url))
    try:
        _has_open_follows_active(store)
    finally:
        store.engine.dispose()
