"""The Telegram bridge and webhook, through python-telegram-bot against a stand-in of the Bot API.

    .venv/bin/pytest -q tests/test_telegram.py              # everything
    .venv/bin/pytest -q tests/test_telegram.py -m "not e2e"  # without starting the real bot

The stand-in (tests/telegram_standin.py) is a real HTTP server on 127.0.0.1 that
python-telegram-bot reaches through TELEGRAM_BASE_URL. The bridge tests run the
polling bridge in the test's event loop against it and a stand-in of Rasa's
REST channel; the webhook tests serve the Rasa input channel with Sanic. The
end-to-end tests start the real bot as `make run` does (`bot run`, with
TELEGRAM_BOT_TOKEN set) and talk to it only through the stand-in.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import pytest
from rasa.core.tracker_store import InMemoryTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import SlotSet
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Sanic

from actions.answers import language_buttons
from bot.channels.telegram.bridge import RestRasa, delete_webhook, poll, set_webhook
from bot.channels.telegram.handlers import SECRET_HEADER, MessageRateLimiter, Settings, keyboard, split, utf16_length
from bot.channels.telegram.webhook import MAX_BODY_BYTES, TelegramWebhook
from bot.cli import main as cli
from bot.core.languages import detect
from bot.core.paths import ROOT, VAR
from bot.core.texts import say

from .conftest import free_port
from .telegram_standin import BotApiStandIn, RasaStandIn

T = TypeVar("T")
SECRET = "test-webhook-secret_0123456789"
RASA_TIMEOUT = 2.0  # the bridge's patience with the Rasa stand-in
LANGUAGE_PAYLOAD = '/change_language{"language":"%s"}'
STICKER = {"file_id": "sticker-1", "file_unique_id": "s1", "type": "regular", "width": 512, "height": 512,
           "is_animated": False, "is_video": False}  # fmt: skip
MEDIA = {
    "sticker": {"sticker": STICKER},
    "photo": {"photo": [{"file_id": "p", "file_unique_id": "p1", "width": 90, "height": 90}], "caption": "look"},
    "voice": {"voice": {"file_id": "v", "file_unique_id": "v1", "duration": 3}},
    "document": {"document": {"file_id": "d", "file_unique_id": "d1", "file_name": "cv.pdf"}},
    "location": {"location": {"latitude": 32.06, "longitude": 118.78}},
}


async def until(condition: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """Waits (without blocking the bridge's event loop) until ``condition()`` is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := condition()):
        if loop.time() > deadline:
            raise AssertionError(f"still waiting for {what} after {timeout:.0f} s")
        await asyncio.sleep(0.02)
    return value


async def replies(api: BotApiStandIn, chat_id: int, count: int) -> list[dict[str, Any]]:
    """The first ``count`` messages the bot sent to ``chat_id``."""
    return (await until(lambda: len(api.messages(chat_id)) >= count and api.messages(chat_id),
                        f"{count} message(s) to chat {chat_id}"))[:count]  # fmt: skip


# --- what needs no server ------------------------------------------------------------


def test_a_long_text_is_split_at_paragraph_boundaries():
    paragraphs = [f"Paragraph {i}: " + "word " * 40 for i in range(40)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    parts = split(text)
    assert len(parts) > 1 and all(utf16_length(p) <= 4096 for p in parts)
    assert "\n\n".join(parts) == text  # nothing lost, every cut between two paragraphs


def test_a_paragraph_longer_than_a_message_is_cut_at_sentences_and_emoji_count_twice():
    sentence = "南京邮电大学欢迎您。"
    parts = split(sentence * 500)
    assert all(p.endswith("。") for p in parts) and "".join(parts) == sentence * 500
    emoji = split("😀" * 3000)  # 6000 UTF-16 code units
    assert [utf16_length(p) for p in emoji] == [4096, 1904]


def test_rasa_buttons_become_an_inline_keyboard():
    markup = keyboard(language_buttons())
    rows = markup.inline_keyboard
    assert [len(row) for row in rows] == [3, 2]
    assert [b.callback_data for row in rows for b in row] == [LANGUAGE_PAYLOAD % c for c in
                                                              ("en", "zh-Hans", "zh-Hant", "ru", "fr")]  # fmt: skip
    (row,) = keyboard([{"title": "A longer title than twelve", "payload": "/x"}]).inline_keyboard
    assert len(row) == 1  # long titles get a row each
    assert keyboard([{"title": "", "payload": "/x"}, "junk"]) is None


def test_settings_come_from_the_environment_and_hide_the_secrets():
    settings = Settings.from_env({"TELEGRAM_BOT_TOKEN": "1:secret-token", "TELEGRAM_WEBHOOK_SECRET": "s-e-c"})
    assert settings.base_url == "https://api.telegram.org/bot"
    assert "secret-token" not in repr(settings) and "s-e-c" not in repr(settings)
    local = "http://127.0.0.1:8081/bot"
    assert Settings.from_env({"TELEGRAM_BASE_URL": local}).base_url == local


def test_bot_run_says_telegram_is_off_without_a_token(monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert cli.telegram_status(cli.Servers()) == "Telegram: off (set TELEGRAM_BOT_TOKEN)"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BotApiStandIn.TOKEN)
    assert "long polling" in cli.telegram_status(cli.Servers())


# --- the polling bridge, in this process ---------------------------------------------------


@pytest.fixture
def api():
    with BotApiStandIn() as standin:
        yield standin


@pytest.fixture
def rasa():
    standin = RasaStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
async def bridge(api: BotApiStandIn, rasa: RasaStandIn):
    """The polling bridge, running in the test's event loop until the test ends."""
    ask = RestRasa(rasa.url, timeout=RASA_TIMEOUT, channel_token=RasaStandIn.TOKEN)
    stop = asyncio.Event()
    task = asyncio.create_task(poll(Settings(api.token, None, api.base_url), ask, stop, check_interval=0.2))
    await until(lambda: api.calls_of("getUpdates") or task.done(), "the bridge to poll")
    yield task
    stop.set()
    await asyncio.wait_for(task, 30)
    await ask.close()


async def test_each_chat_is_one_conversation_with_the_users_language_as_hint(api, rasa, bridge):
    api.send_text(1001, "Where is the office?", language_code="fr-FR")
    api.send_text(-2002, "@njupt_test_bot Where is the office?", chat_type="supergroup", user_id=7,
                  language_code="zh-hans")  # fmt: skip
    (reply,) = await replies(api, 1001, 1)
    await replies(api, -2002, 1)
    assert reply["text"] == "Answer to Where is the office?"
    assert sorted(rasa.requests, key=lambda r: r["sender"]) == [
        {"sender": "telegram--2002", "message": "Where is the office?", "metadata": {"language": "zh-hans"}},
        {"sender": "telegram-1001", "message": "Where is the office?", "metadata": {"language": "fr-FR"}},
    ]


async def test_start_help_and_lang_commands(api, rasa, bridge):
    answers = {"/greet": say("greet", "ru"), "/bot_capabilities": say("bot_capabilities", "ru")}
    rasa.reply = lambda body: [{"text": answers.get(body["message"], say("language_switched", "ru"))}]
    for text in ("/start", "/help", "/lang", "/lang ru", "/lang@njupt_test_bot fr"):
        api.send_text(1101, text, language_code="ru")
    texts = [m["text"] for m in await replies(api, 1101, 6)]
    assert [r["message"] for r in rasa.requests] == ["/greet", "/bot_capabilities", "/lang", "/lang ru", "/lang fr"]
    assert texts[:3] == [say("greet", "ru"), say("bot_capabilities", "ru"), say("telegram_commands", "ru")]


async def test_commands_and_mentions_become_rasa_messages(api, rasa, bridge):
    typed_and_sent = [
        ("/start", "/greet"), ("/help", "/bot_capabilities"), ("/lang", "/lang"), ("/lang ru", "/lang ru"),
        ("/lang@njupt_test_bot  fr ", "/lang fr"), ("/start@njupt_test_bot", "/greet"), ("/forget", "/forget_me"),
        ("/start@other_bot", None),  # another bot's command: not answered
        ("@njupt_test_bot Where is the office?", "Where is the office?"),
        ('/change_language{"language":"ru"}', '/change_language{"language":"ru"}'),
        ("Where is the office?", "Where is the office?"),
    ]  # fmt: skip
    for typed, _ in typed_and_sent:
        api.send_text(1050, typed, language_code="en")
    expected = [sent for _, sent in typed_and_sent if sent]
    texts = [m["text"] for m in await replies(api, 1050, len(expected) + 1)]  # /help adds the command list
    assert [r["message"] for r in rasa.requests] == expected
    assert texts[-1] == "Answer to Where is the office?"
    assert len(api.messages(1050)) == len(expected) + 1


async def test_forget_in_a_group_points_to_a_private_chat_and_erases_nothing(api, rasa, bridge):
    api.send_text(-3301, "/forget@njupt_test_bot", chat_type="supergroup", user_id=5, language_code="ru")
    (reply,) = await replies(api, -3301, 1)
    assert reply["text"] == say("telegram_forget_private", "ru")
    assert "/forget_me" not in [r["message"] for r in rasa.requests]


async def test_the_command_menu_is_set_in_every_language_at_start(api, bridge):
    menus = {call.get("language_code"): call["commands"] for call in api.calls_of("setMyCommands")}
    assert set(menus) == {None, "zh", "ru", "fr"}  # None: the default, in English
    for code, language in ((None, "en"), ("zh", "zh-Hans"), ("ru", "ru"), ("fr", "fr")):
        assert menus[code] == [{"command": name, "description": say(f"telegram_command_{name}", language)}
                               for name in ("start", "help", "lang", "forget")]  # fmt: skip
        assert all(detect(c["description"]).language == language for c in menus[code])


async def test_the_chat_shows_typing_while_rasa_thinks_and_a_refused_action_loses_nothing(api, rasa, bridge):
    api.send_text(1151, "Where is the office?", language_code="en")
    await replies(api, 1151, 1)
    calls = [(name, params) for name, params in api.calls if name in ("sendChatAction", "sendMessage")]
    assert [name for name, _ in calls] == ["sendChatAction", "sendMessage"]
    assert calls[0][1] == {"chat_id": 1151, "action": "typing"}
    api.fail("sendChatAction", 400, "Bad Request: not enough rights")
    api.send_text(1151, "And the postcode?", language_code="en")
    assert (await replies(api, 1151, 2))[1]["text"] == "Answer to And the postcode?"


async def test_typing_is_not_counted_against_telegrams_limit_on_messages():
    limiter = MessageRateLimiter(overall_max_rate=2, overall_time_period=1, max_retries=0)
    await limiter.initialize()
    done: list[str] = []

    async def call(endpoint: str) -> bool:
        async def sent() -> bool:
            done.append(endpoint)
            return True

        return await limiter.process_request(sent, (), {}, endpoint, {"chat_id": 7}, None)

    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(call("sendChatAction") for _ in range(10)))
    assert done == ["sendChatAction"] * 10 and asyncio.get_running_loop().time() - started < 0.5
    await asyncio.gather(*(call("sendMessage") for _ in range(4)))  # two a second: the limit holds
    assert done.count("sendMessage") == 4 and asyncio.get_running_loop().time() - started >= 0.9
    await limiter.shutdown()


async def test_a_sticker_gets_its_reply_without_typing(api, rasa, bridge):
    api.queue({"message": api.message(1152, language_code="en", **MEDIA["sticker"])})
    await replies(api, 1152, 1)
    assert api.calls_of("sendChatAction") == [] and rasa.requests == []


async def test_buttons_are_an_inline_keyboard_and_a_press_is_acknowledged_and_sent(api, rasa, bridge):
    rasa.reply = lambda body: (
        [{"text": say("language_choose", "en"), "buttons": language_buttons()}] if body["message"] == "/lang"
        else [{"text": say("language_switched", "ru")}]
    )  # fmt: skip
    api.send_text(1201, "/lang", language_code="en")
    (choice,) = await replies(api, 1201, 1)
    titles = [[b["text"] for b in row] for row in choice["reply_markup"]["inline_keyboard"]]
    assert titles == [["English", "简体中文", "繁體中文"], ["Русский", "Français"]]
    _, query_id = api.press(choice, "Русский", language_code="en")
    _, switched = await replies(api, 1201, 2)
    assert api.calls_of("answerCallbackQuery") == [{"callback_query_id": query_id}]
    assert rasa.requests[-1]["message"] == LANGUAGE_PAYLOAD % "ru"
    assert switched["text"] == say("language_switched", "ru") and "reply_markup" not in switched


async def test_a_button_payload_longer_than_64_bytes_comes_back_whole(api, rasa, bridge):
    long_payload = '/request_visit{"note":"' + "x" * 100 + '"}'
    rasa.reply = lambda body: (
        [{"text": "Shall I file it?", "buttons": [{"title": "Yes", "payload": long_payload}]}]
        if body["message"] == "visit" else [{"text": "Filed."}]
    )  # fmt: skip
    api.send_text(1211, "visit", language_code="en")
    (offer,) = await replies(api, 1211, 1)
    ((button,),) = offer["reply_markup"]["inline_keyboard"]
    assert len(button["callback_data"].encode()) <= 64  # Telegram's limit
    api.press(offer, "Yes", language_code="en")
    assert (await replies(api, 1211, 2))[1]["text"] == "Filed."
    assert rasa.requests[-1]["message"] == long_payload


async def test_a_button_whose_payload_is_forgotten_sends_its_title(api, rasa, bridge):
    """A keyboard sent before a restart: its payloads are gone, the title still says what was meant."""
    old = {"message_id": 1, "date": 1, "from": api.BOT, "chat": api.chat(1212), "text": "Language?",
           "reply_markup": {"inline_keyboard": [[{"text": "Русский", "callback_data": "f" * 64}]]}}  # fmt: skip
    api.press(old, "Русский", language_code="en")
    (reply,) = await replies(api, 1212, 1)
    assert rasa.requests[-1]["message"] == "Русский" and reply["text"] == "Answer to Русский"


async def test_a_6000_character_answer_arrives_in_parts_cut_between_paragraphs(api, rasa, bridge):
    paragraph = "Joint programmes with universities abroad. " * 3
    answer = "\n\n".join(f"{i:02d} {paragraph.strip()}" for i in range(50))
    assert len(answer) > 6000
    rasa.reply = lambda body: [{"text": answer, "buttons": language_buttons()}]
    api.send_text(1301, "Tell me everything", language_code="en")
    first, second = await replies(api, 1301, 2)
    assert utf16_length(first["text"]) <= 4096 and utf16_length(second["text"]) <= 4096
    assert first["text"] + "\n\n" + second["text"] == answer
    assert "reply_markup" not in first and len(second["reply_markup"]["inline_keyboard"]) == 2


async def test_text_is_sent_as_is_without_a_parse_mode(api, rasa, bridge):
    tricky = "<b>NJUPT</b> *bold* _it_ [link](x) `code` 1 < 2 & 3 > 2"
    rasa.reply = lambda body: [{"text": tricky}]
    api.send_text(1401, "markup?", language_code="en")
    (reply,) = await replies(api, 1401, 1)
    assert reply["text"] == tricky
    assert all("parse_mode" not in call for call in api.calls_of("sendMessage"))


@pytest.mark.parametrize(
    "kind, language_code, language",
    [("sticker", "ru", "ru"), ("photo", "zh-hans", "zh-Hans"), ("voice", "fr", "fr"),
     ("document", "zh-hant", "zh-Hant"), ("location", "en", "en"), ("edited", "ru", "ru")],
)  # fmt: skip
async def test_media_and_edited_messages_get_a_polite_reply_in_the_users_language(
    api, rasa, bridge, kind, language_code, language
):
    if kind == "edited":
        message = api.message(1501, text="Where is the office?", language_code=language_code, edit_date=1)
        api.queue({"edited_message": message})
    else:
        api.queue({"message": api.message(1501, language_code=language_code, **MEDIA[kind])})
    (reply,) = await replies(api, 1501, 1)
    expected = "telegram_edited" if kind == "edited" else "telegram_unsupported"
    assert reply["text"] == say(expected, language)
    assert rasa.requests == []


async def test_a_sticker_is_answered_in_the_language_the_chat_was_answered_in(api, rasa, bridge):
    rasa.reply = lambda body: [{"text": say("language_switched", "fr"), "language": "fr"}]
    api.send_text(1601, "/lang fr", language_code="en")
    await replies(api, 1601, 1)
    api.queue({"message": api.message(1601, language_code="en", **MEDIA["sticker"])})
    assert (await replies(api, 1601, 2))[1]["text"] == say("telegram_unsupported", "fr")


async def test_in_groups_the_bot_answers_only_when_mentioned_or_replied_to(api, rasa, bridge):
    group = {"chat_type": "group", "user_id": 77, "language_code": "en"}
    api.send_text(-1701, "Where is the office?", **group)  # talk among members
    api.send_text(-1701, "/start@other_bot", **group)
    api.queue({"message": api.message(-1701, **group, **MEDIA["sticker"])})
    api.queue({"message": api.message(-1701, **group, new_chat_members=[api.user(78)])})
    api.send_text(-1701, "@njupt_test_bot where is the office?", **group)
    (answer,) = await replies(api, -1701, 1)
    api.send_text(-1701, "and the postcode?", reply_to_message=answer, **group)
    api.send_text(-1701, "/help@njupt_test_bot", **group)
    await replies(api, -1701, 4)  # the answer to the reply, then /help's two messages
    assert [r["message"] for r in rasa.requests] == ["where is the office?", "and the postcode?", "/bot_capabilities"]
    assert all(r["sender"] == "telegram--1701" for r in rasa.requests)


def starts_a_form(rasa: RasaStandIn, form: str, language: str, *questions: str):
    """Rasa's replies when ``form`` starts: it is active, and it asks ``questions`` (text keys)."""

    def reply(body: dict[str, Any]) -> list[dict[str, Any]]:
        rasa.tracker(body["sender"])["active_loop"] = {"name": form}
        return [{"text": say(key, language), "language": language} for key in questions]

    return reply


async def test_a_visit_request_started_in_a_group_continues_in_a_private_chat(api, rasa, bridge):
    group = {"chat_type": "supergroup", "language_code": "ru"}
    visit = starts_a_form(rasa, "visit_form", "ru", "form_visit_start", "form_ask_visitor_name")
    rasa.reply = lambda body: visit(body) if body["message"] in ("хочу приехать", "/request_visit") else (
        [{"text": f"Answer to {body['message']}", "language": "ru"}]
    )  # fmt: skip
    api.send_text(-3001, "@njupt_test_bot хочу приехать", user_id=31, **group)
    (notice,) = await replies(api, -3001, 1)  # the form's questions are not asked in the group
    assert notice["text"] == say("telegram_form_private", "ru")
    ((button,),) = notice["reply_markup"]["inline_keyboard"]
    assert button == {"text": say("telegram_button_private", "ru"), "url": "https://t.me/njupt_test_bot?start=visit"}
    assert rasa.tracker("telegram--3001")["active_loop"] == {}  # the group's conversation has no form
    # another member cannot fill in the first one's form: in the group there is none
    api.send_text(-3001, "@njupt_test_bot Иван Петров", user_id=32, **group)
    assert (await replies(api, -3001, 2))[1]["text"] == "Answer to Иван Петров"
    # the member follows the link: Telegram sends "/start visit" in the private chat
    api.send_text(31, "/start visit", language_code="ru")
    private = await replies(api, 31, 2)
    assert rasa.requests[-1] == {"sender": "telegram-31", "message": "/request_visit", "metadata": {"language": "ru"}}
    assert [m["text"] for m in private] == [say("form_visit_start", "ru"), say("form_ask_visitor_name", "ru")]
    assert rasa.tracker("telegram-31")["active_loop"] == {"name": "visit_form"}  # private chats keep their form


async def test_a_question_passed_on_from_a_group_is_confirmed_in_the_private_chat(api, rasa, bridge):
    question = "Peut-on faire un stage d’été à NJUPT ?"
    rasa.tracker("telegram--3101")["slots"].update(language="fr", offer="question", last_question=question)
    rasa.reply = starts_a_form(rasa, "question_form", "fr", "form_ask_office_email")
    api.send_text(-3101, "@njupt_test_bot oui", chat_type="group", user_id=41, language_code="en")
    (notice,) = await replies(api, -3101, 1)
    assert notice["text"] == say("telegram_form_private", "fr")  # the conversation's language
    assert notice["reply_markup"]["inline_keyboard"][0][0]["url"] == "https://t.me/njupt_test_bot?start=question"
    assert rasa.tracker("telegram--3101")["slots"]["offer"] is None  # a later "oui" in the group starts nothing
    # the member's private conversation is ready to pass the question on, in French
    slots = rasa.tracker("telegram-41")["slots"]
    assert (slots["language"], slots["offer"], slots["last_question"]) == ("fr", "question", question)
    api.send_text(41, "/start question", language_code="en")
    (ask_email,) = await replies(api, 41, 1)
    assert rasa.requests[-1]["message"] == "/affirm" and ask_email["text"] == say("form_ask_office_email", "fr")


async def test_a_deep_link_does_not_answer_a_form_already_running_in_the_private_chat(api, rasa, bridge):
    rasa.tracker("telegram-42")["active_loop"] = {"name": "visit_form"}  # at its "is this right?" step
    api.send_text(42, "/start question", language_code="en")
    await replies(api, 42, 1)
    assert rasa.requests[-1]["message"] == "/greet"  # not "/affirm", which would confirm the visit


async def test_when_rasa_is_down_the_user_gets_an_apology_and_the_bridge_recovers(api, rasa, bridge):
    rasa.stop()
    api.send_text(1801, "Где находится международный отдел?", language_code="ru")
    api.send_text(1802, "国际处在哪里？")  # no language_code: the text tells
    (down_ru,) = await replies(api, 1801, 1)
    (down_zh,) = await replies(api, 1802, 1)
    assert down_ru["text"] == say("unavailable", "ru") and down_zh["text"] == say("unavailable", "zh-Hans")
    rasa.start()  # the same port
    api.send_text(1801, "А теперь?", language_code="ru")
    assert (await replies(api, 1801, 2))[1]["text"] == "Answer to А теперь?"
    assert not bridge.done()


async def test_when_rasa_is_slow_the_user_gets_an_apology(api, rasa, bridge):
    rasa.delay = RASA_TIMEOUT + 2
    api.send_text(1901, "Quelle est l'adresse du bureau ?", language_code="fr")
    (reply,) = await replies(api, 1901, 1)
    assert reply["text"] == say("unavailable", "fr")
    rasa.delay = 0
    api.send_text(1901, "Et maintenant ?", language_code="fr")
    assert (await replies(api, 1901, 2))[1]["text"] == "Answer to Et maintenant ?"


async def test_a_429_is_waited_out_and_the_message_sent_again(api, rasa, bridge):
    api.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    api.send_text(2001, "hello", language_code="en")
    (reply,) = await replies(api, 2001, 1)
    attempts = api.calls_of("sendMessage")
    assert len(attempts) == 2 and attempts[0]["text"] == attempts[1]["text"] == reply["text"]


async def test_polling_pauses_while_a_webhook_is_registered_and_resumes_without_it(api, rasa, bridge):
    settings = Settings(api.token, SECRET, api.base_url)
    await set_webhook(settings, "https://bot.example.org")
    assert api.webhook["url"] == "https://bot.example.org/webhooks/telegram/webhook"
    assert api.webhook["secret_token"] == SECRET
    assert api.webhook["allowed_updates"] == ["message", "edited_message", "callback_query"]
    registered = len(api.calls)
    # the bridge noticed (getUpdates answered 409), then checked twice that the webhook is still there
    await until(lambda: [m for m, _ in api.calls[registered:]].count("getWebhookInfo") >= 2, "two checks")
    api.send_text(2101, "Anyone there?", language_code="en")
    assert api.webhook["url"]  # polling never deleted the webhook
    await delete_webhook(settings)
    removed = len(api.calls)
    (reply,) = await replies(api, 2101, 1)
    assert reply["text"] == "Answer to Anyone there?"
    assert [m for m, _ in api.calls].index("sendMessage") >= removed


def test_bot_telegram_set_webhook_and_delete_webhook(api, monkeypatch, capsys):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", api.token)
    monkeypatch.setenv("TELEGRAM_BASE_URL", api.base_url)
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    url = "https://bot.example.org/webhooks/telegram/webhook"
    assert cli.main(["telegram", "set-webhook", url]) == 1  # no secret: refused before calling Telegram
    assert "TELEGRAM_WEBHOOK_SECRET" in capsys.readouterr().err and api.calls_of("setWebhook") == []
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    assert cli.main(["telegram", "set-webhook", "http://bot.example.org/"]) == 1  # Telegram needs https
    assert cli.main(["telegram", "set-webhook", url]) == 0
    assert api.calls_of("setWebhook") == [{"url": url, "secret_token": SECRET, "allowed_updates":
                                           ["message", "edited_message", "callback_query"]}]  # fmt: skip
    assert {call.get("language_code") for call in api.calls_of("setMyCommands")} == {None, "zh", "ru", "fr"}
    assert cli.main(["telegram", "delete-webhook"]) == 0
    assert len(api.calls_of("deleteWebhook")) == 1 and api.webhook["url"] == ""
    assert api.token not in capsys.readouterr().out


# --- the webhook channel, served by Sanic in this process -----------------------------------


class WebhookServer:
    """The Rasa input channel's blueprint in a Sanic server, with a stand-in of Rasa's on_new_message."""

    def __init__(self, channel: TelegramWebhook, answer: Callable[[str], str], tracker_store: Any = None) -> None:
        self.channel, self.answer, self.seen, self.tracker_store = channel, answer, [], tracker_store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/webhooks/telegram/webhook"

    async def on_new_message(self, message: Any) -> None:
        self.seen.append((message.sender_id, message.text, message.metadata, message.input_channel))
        await message.output_channel.send_text_message(message.sender_id, self.answer(message.text))

    async def __aenter__(self) -> WebhookServer:
        Sanic.test_mode = True
        app = Sanic(f"telegram_webhook_{self.port}")
        app.blueprint(self.channel.blueprint(self.on_new_message), url_prefix="/webhooks/telegram")
        if self.tracker_store is not None:
            app.ctx.agent = SimpleNamespace(tracker_store=self.tracker_store)  # where Rasa keeps its agent
        self.server = await app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True)
        await self.server.startup()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()
        await self.server.wait_closed()
        await self.server.after_stop()


async def test_the_webhook_answers_only_requests_with_the_secret(api):
    channel = TelegramWebhook(Settings(api.token, SECRET, api.base_url))
    async with (
        WebhookServer(channel, lambda text: f"Answer to {text}") as server,
        httpx.AsyncClient(timeout=60) as client,
    ):
        forged = {"update_id": 1, "message": api.message(2201, text="/start", language_code="ru")}
        for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET + "x"}, {SECRET_HEADER: ""}):
            assert (await client.post(server.url, json=forged, headers=headers)).status_code == 403
        signed = {"update_id": 2, "message": api.message(2202, text="/start", language_code="ru")}
        response = await client.post(server.url, json=signed, headers={SECRET_HEADER: SECRET})
        assert response.status_code == 200
        garbage = await client.post(server.url, content=b"not json", headers={SECRET_HEADER: SECRET})
        assert garbage.status_code == 400
    assert server.seen == [("telegram-2202", "/greet", {"language": "ru"}, "telegram")]
    assert api.texts(2201) == [] and api.texts(2202) == ["Answer to /greet"]


async def test_one_chat_over_its_rate_gets_429_on_the_webhook_and_others_go_on(api, monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_PER_SENDER", "2")
    channel = TelegramWebhook(Settings(api.token, SECRET, api.base_url))
    async with (
        WebhookServer(channel, lambda text: f"Answer to {text}") as server,
        httpx.AsyncClient(timeout=60) as client,
    ):
        statuses = []
        for n in range(3):
            update = {"update_id": 10 + n, "message": api.message(2601, text=f"question {n}", language_code="en")}
            reply = await client.post(server.url, json=update, headers={SECRET_HEADER: SECRET})
            statuses.append((reply.status_code, reply.headers.get("Retry-After")))
        other = {"update_id": 20, "message": api.message(2602, text="hello", language_code="en")}
        assert (await client.post(server.url, json=other, headers={SECRET_HEADER: SECRET})).status_code == 200
    assert [s for s, _ in statuses] == [200, 200, 429] and int(statuses[2][1]) >= 1
    assert api.texts(2601) == ["Answer to question 0", "Answer to question 1"]  # Telegram delivers the third again


async def test_the_webhook_refuses_everything_without_a_secret_or_token(api):
    update = {"update_id": 1, "message": api.message(2301, text="hi")}
    async with httpx.AsyncClient(timeout=60) as client:
        async with WebhookServer(TelegramWebhook(Settings(api.token, None, api.base_url)), str) as server:
            assert (await client.post(server.url, json=update, headers={SECRET_HEADER: ""})).status_code == 403
        async with WebhookServer(TelegramWebhook(Settings(None, SECRET, api.base_url)), str) as server:
            assert (await client.post(server.url, json=update, headers={SECRET_HEADER: SECRET})).status_code == 503
    assert api.calls == []


async def test_the_webhook_shares_the_bridges_replies_buttons_and_apology(api):
    def answer(text: str) -> str:
        raise RuntimeError("the action server is down")

    channel = TelegramWebhook(Settings(api.token, SECRET, api.base_url))
    async with WebhookServer(channel, answer) as server, httpx.AsyncClient(timeout=60) as client:
        sticker = {"update_id": 1, "message": api.message(2401, language_code="fr", **MEDIA["sticker"])}
        question = {"update_id": 2, "message": api.message(2401, text="Où est le bureau ?", language_code="fr")}
        for update in (sticker, question):
            response = await client.post(server.url, json=update, headers={SECRET_HEADER: SECRET})
            assert response.status_code == 200
    assert api.texts(2401) == [say("telegram_unsupported", "fr"), say("unavailable", "fr")]


async def test_the_webhook_answers_a_sticker_in_the_conversations_language(api):
    """The conversation was switched to Traditional Chinese; the user's Telegram is in Russian."""
    domain = Domain.load(ROOT / "domain.yml")
    store = InMemoryTrackerStore(domain)
    await store.save(DialogueStateTracker.from_events("telegram-2501", [SlotSet("language", "zh-Hant")], domain.slots))
    channel = TelegramWebhook(Settings(api.token, SECRET, api.base_url))
    async with WebhookServer(channel, str, store) as server, httpx.AsyncClient(timeout=60) as client:
        for chat_id in (2501, 2502):  # 2502 has no conversation yet: the user's language
            sticker = {"update_id": chat_id, "message": api.message(chat_id, language_code="ru", **MEDIA["sticker"])}
            assert (await client.post(server.url, json=sticker, headers={SECRET_HEADER: SECRET})).status_code == 200
    assert api.texts(2501) == [say("telegram_unsupported", "zh-Hant")]
    assert api.texts(2502) == [say("telegram_unsupported", "ru")]
    assert server.seen == []  # notices are no turn in the conversation


async def test_the_webhook_checks_the_secret_first_and_refuses_a_body_over_1_mb(api):
    channel = TelegramWebhook(Settings(api.token, SECRET, api.base_url))
    padding = "x" * MAX_BODY_BYTES
    huge = {"update_id": 1, "message": api.message(2601, text="hi", language_code="en"), "padding": padding}
    async with (
        WebhookServer(channel, lambda text: f"Answer to {text}") as server,
        httpx.AsyncClient(timeout=60) as client,
    ):
        refused = await client.post(server.url, json=huge, headers={SECRET_HEADER: "wrong"})
        assert refused.status_code == 403  # not 413: nothing about the body is told without the secret
        too_big = await client.post(server.url, json=huge, headers={SECRET_HEADER: SECRET})
        assert too_big.status_code == 413

        async def chunks():  # no Content-Length: the limit holds while reading
            for _ in range(3):
                yield padding[: MAX_BODY_BYTES // 2].encode()

        streamed = await client.post(server.url, content=chunks(), headers={SECRET_HEADER: SECRET})
        assert streamed.status_code == 413
        normal = {"update_id": 2, "message": api.message(2602, text="hi", language_code="en")}
        assert (await client.post(server.url, json=normal, headers={SECRET_HEADER: SECRET})).status_code == 200
    assert server.seen == [("telegram-2602", "hi", {"language": "en"}, "telegram")]
    assert api.texts(2601) == [] and api.texts(2602) == ["Answer to hi"]


async def test_the_conversation_endpoints_answer_only_the_telegram_channels_own_process(api, monkeypatch):
    monkeypatch.setenv("TELEGRAM_CHANNEL_TOKEN", "channel-secret")
    domain = Domain.load(ROOT / "domain.yml")
    store = InMemoryTrackerStore(domain)
    await store.save(DialogueStateTracker.from_events("telegram-2701", [SlotSet("language", "ru")], domain.slots))
    channel = TelegramWebhook(Settings(None, None, api.base_url))  # polling: no webhook, the endpoints still serve
    async with WebhookServer(channel, str, store) as server, httpx.AsyncClient(timeout=60) as client:
        base = server.url.rsplit("/", 1)[0] + "/conversations"
        signed = {"X-Channel-Token": "channel-secret"}
        for sender, headers in (("telegram-2701", {}), ("telegram-2701", {"X-Channel-Token": "guess"}),
                                ("alice", signed)):  # fmt: skip
            assert (await client.get(f"{base}/{sender}", headers=headers)).status_code == 404
        state = await client.get(f"{base}/telegram-2701", headers=signed)
        assert state.status_code == 200, state.text
        assert state.json()["slots"]["language"] == "ru"
        injected = [{"event": "user", "text": "/request_visit"}]  # only slot and active_loop events
        assert (await client.post(f"{base}/telegram-2701/events", json=injected, headers=signed)).status_code == 400
    assert api.calls == []


# --- end to end: the real bot, started as `make run` starts it -------------------------------

QUESTIONS = {  # chat id: (language_code, question, the answer's text key, facts in it, its language)
    3001: ("zh-hans", "国际合作与交流处的邮寄地址是什么？", "ask_address", ["新模范马路66号", "210003"], "zh-Hans"),
    3002: ("ru", "Со сколькими странами сотрудничает университет?", "ask_partners", ["16"], "ru"),
}


@dataclass
class RunningBot:
    api: BotApiStandIn
    rasa_url: str
    process: subprocess.Popen
    output: Path  # what `bot run` printed
    log: Path  # the Telegram bridge's log

    def tail(self) -> str:
        return self.output.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def running_bot(model: Path, tmp_path_factory: pytest.TempPathFactory):
    """`bot run` with TELEGRAM_BOT_TOKEN, its Bot API being the stand-in; a Chinese and a
    Russian user's questions are waiting before it starts."""
    with BotApiStandIn() as api:
        for chat_id, (code, question, *_) in QUESTIONS.items():
            api.send_text(chat_id, question, language_code=code)
        rasa_port, action_port = free_port(), free_port()
        env = {
            **os.environ, "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_BASE_URL": api.base_url,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('db') / 'bot.db'}",
        }  # fmt: skip
        command = [str(Path(sys.executable).parent / "bot"), "run", "--rasa-port", str(rasa_port),
                   "--action-port", str(action_port), "--web-port", str(free_port())]  # fmt: skip
        output = tmp_path_factory.mktemp("run") / "bot-run.out"
        with output.open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        running = RunningBot(api, f"http://127.0.0.1:{rasa_port}", process, output,
                             VAR / "log" / f"telegram-{rasa_port}.log")  # fmt: skip
        try:
            yield running
        finally:
            process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in (running.log, VAR / "log" / f"rasa-{rasa_port}.log"):
            assert api.token not in log.read_text(errors="replace"), f"the token is in {log}"
        assert process.returncode == 0, running.tail()


@pytest.mark.e2e
@pytest.mark.model
def test_e2e_a_chinese_and_a_russian_user_get_the_facts_in_their_language(running_bot):
    api = running_bot.api
    for chat_id, (_, _question, key, facts, language) in QUESTIONS.items():
        try:
            (reply,) = api.wait_for_messages(chat_id, 1, timeout=600)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{running_bot.tail()}") from None
        for fact in facts:
            assert fact in reply["text"], reply["text"]
        assert reply["text"] == say(key, language)
        assert detect(reply["text"]).language == language
    assert running_bot.process.poll() is None
    assert "Telegram: long polling" in running_bot.output.read_text()
    log = running_bot.log.read_text()
    assert "polling for updates" in log
    assert not any(question in log for _, question, *_ in QUESTIONS.values())  # no message text in the log


@pytest.mark.e2e
@pytest.mark.model
def test_e2e_start_lang_a_language_button_and_a_sticker(running_bot):
    api = running_bot.api
    api.send_text(3101, "/start", language_code="ru")
    (greeting,) = api.wait_for_messages(3101, 1)
    assert greeting["text"] == say("greet", "ru")
    api.send_text(3101, "/lang", language_code="ru")
    choice = api.wait_for_messages(3101, 2)[1]
    assert choice["text"] == say("language_choose", "ru")
    buttons = [b for row in choice["reply_markup"]["inline_keyboard"] for b in row]
    assert [b["text"] for b in buttons] == ["English", "简体中文", "繁體中文", "Русский", "Français"]
    _, query_id = api.press(choice, "Français", language_code="ru")
    assert api.wait_for_messages(3101, 3)[2]["text"] == say("language_switched", "fr")
    assert {"callback_query_id": query_id} in api.calls_of("answerCallbackQuery")
    api.send_text(3101, "/lang zh-Hant", language_code="ru")
    assert api.wait_for_messages(3101, 4)[3]["text"] == say("language_switched", "zh-Hant")
    api.queue({"message": api.message(3101, language_code="ru", **MEDIA["sticker"])})
    assert api.wait_for_messages(3101, 5)[4]["text"] == say("telegram_unsupported", "zh-Hant")


@pytest.mark.e2e
@pytest.mark.model
def test_e2e_forged_webhooks_get_403_and_no_reply_a_signed_one_an_answer(running_bot):
    api = running_bot.api
    url = f"{running_bot.rasa_url}/webhooks/telegram/webhook"
    forged = {"update_id": 900, "message": api.message(3201, text="/start", language_code="en")}
    for headers in ({}, {SECRET_HEADER: "guess"}):
        assert httpx.post(url, json=forged, headers=headers, timeout=60).status_code == 403
    question = "Quelle est l'adresse postale du bureau des relations internationales ?"
    signed = {"update_id": 901, "message": api.message(3202, text=question, language_code="fr")}
    response = httpx.post(url, json=signed, headers={SECRET_HEADER: SECRET}, timeout=120)
    assert response.status_code == 200
    (reply,) = api.messages(3202)  # sent before the webhook request returned
    assert reply["text"] == say("ask_address", "fr") and "210003" in reply["text"]
    assert api.messages(3201) == []  # nothing for the forged updates, then or since


@pytest.mark.e2e
@pytest.mark.model
@pytest.mark.parametrize("way", ["polling", "webhook"])
def test_e2e_a_visit_request_in_a_group_continues_in_a_private_chat(running_bot, way):
    """Through the real Rasa: the form leaves the group's conversation and starts in the member's own."""
    api = running_bot.api
    group_id, member, other = (-3301, 33, 34) if way == "polling" else (-3401, 35, 36)

    def write(chat_id: int, text: str, user_id: int, chat_type: str = "supergroup") -> None:
        message = api.message(chat_id, text=text, chat_type=chat_type, user_id=user_id, language_code="fr")
        if way == "polling":
            api.queue({"message": message})
        else:
            update = {"update_id": 950 + user_id + len(api.sent), "message": message}
            url = f"{running_bot.rasa_url}/webhooks/telegram/webhook"
            assert httpx.post(url, json=update, headers={SECRET_HEADER: SECRET}, timeout=120).status_code == 200

    write(group_id, "/request_visit@njupt_test_bot", member)
    (notice,) = api.wait_for_messages(group_id, 1)
    assert notice["text"] == say("telegram_form_private", "fr")
    assert notice["reply_markup"]["inline_keyboard"][0][0]["url"] == "https://t.me/njupt_test_bot?start=visit"
    write(group_id, "@njupt_test_bot Marie Curie", other)  # would be the form's answer if the form ran here
    group = [m["text"] for m in api.wait_for_messages(group_id, 2)]
    assert not any(say("form_ask_institution", "fr") in text for text in group)
    write(member, "/start visit", member, chat_type="private")
    private = [m["text"] for m in api.wait_for_messages(member, 2)]
    assert say("form_ask_visitor_name", "fr") in private
