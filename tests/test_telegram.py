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
from typing import Any, TypeVar

import httpx
import pytest
from sanic import Sanic
from telegram import User

from actions.answers import language_buttons
from bot.channels.telegram.bridge import (
    SECRET_HEADER,
    Payloads,
    RestRasa,
    Settings,
    delete_webhook,
    keyboard,
    poll,
    rasa_text,
    set_webhook,
    split,
    utf16_length,
)
from bot.channels.telegram.webhook import TelegramWebhook
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


def me() -> User:
    return User(BotApiStandIn.BOT["id"], "NJUPT assistant", True, username=BotApiStandIn.BOT["username"])


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


def test_rasa_buttons_become_an_inline_keyboard_and_long_payloads_a_key():
    payloads = Payloads()
    markup = keyboard(language_buttons(), payloads)
    rows = markup.inline_keyboard
    assert [len(row) for row in rows] == [3, 2]
    assert [b.callback_data for row in rows for b in row] == [LANGUAGE_PAYLOAD % c for c in
                                                              ("en", "zh-Hans", "zh-Hant", "ru", "fr")]  # fmt: skip
    long_payload = '/ask_visit{"note":"' + "x" * 100 + '"}'
    (row,) = keyboard([{"title": "A longer title than twelve", "payload": long_payload}], payloads).inline_keyboard
    assert len(row[0].callback_data.encode()) <= 64 and payloads.payload(row[0].callback_data) == long_payload
    assert keyboard([{"title": "", "payload": "/x"}, "junk"], payloads) is None


@pytest.mark.parametrize(
    "typed, sent",
    [("/start", ("/greet", "start")), ("/help", ("/bot_capabilities", "help")), ("/lang", ("/lang", "lang")),
     ("/lang ru", ("/lang ru", "lang")), ("/lang@njupt_test_bot  fr ", ("/lang fr", "lang")),
     ("/start@njupt_test_bot", ("/greet", "start")), ("/start@other_bot", None),
     ("@njupt_test_bot Where is the office?", ("Where is the office?", None)),
     ('/change_language{"language":"ru"}', ('/change_language{"language":"ru"}', None)),
     ("Where is the office?", ("Where is the office?", None))],
)  # fmt: skip
def test_commands_and_mentions_become_rasa_messages(typed, sent):
    assert rasa_text(typed, me()) == sent


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
    ask = RestRasa(rasa.url, timeout=RASA_TIMEOUT)
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


async def test_the_command_menu_is_set_in_every_language_at_start(api, bridge):
    menus = {call.get("language_code"): call["commands"] for call in api.calls_of("setMyCommands")}
    assert set(menus) == {None, "zh", "ru", "fr"}  # None: the default, in English
    for code, language in ((None, "en"), ("zh", "zh-Hans"), ("ru", "ru"), ("fr", "fr")):
        assert menus[code] == [{"command": name, "description": say(f"telegram_command_{name}", language)}
                               for name in ("start", "help", "lang")]  # fmt: skip
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
    rasa.reply = lambda body: [{"text": say("language_switched", "fr")}]
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

    def __init__(self, channel: TelegramWebhook, answer: Callable[[str], str]) -> None:
        self.channel, self.answer, self.seen = channel, answer, []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/webhooks/telegram/webhook"

    async def on_new_message(self, message: Any) -> None:
        self.seen.append((message.sender_id, message.text, message.metadata, message.input_channel))
        await message.output_channel.send_text_message(message.sender_id, self.answer(message.text))

    async def __aenter__(self) -> WebhookServer:
        Sanic.test_mode = True
        app = Sanic(f"telegram_webhook_{self.port}")
        app.blueprint(self.channel.blueprint(self.on_new_message), url_prefix="/webhooks/telegram")
        self.server = await app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True)
        await self.server.startup()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()
        await self.server.wait_closed()
        await self.server.after_stop()


async def test_the_webhook_answers_only_requests_with_the_secret(api):
    channel = TelegramWebhook(Settings(api.token, SECRET, api.base_url))
    async with WebhookServer(channel, lambda text: f"Answer to {text}") as server, httpx.AsyncClient() as client:
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


async def test_the_webhook_refuses_everything_without_a_secret_or_token(api):
    update = {"update_id": 1, "message": api.message(2301, text="hi")}
    async with httpx.AsyncClient() as client:
        async with WebhookServer(TelegramWebhook(Settings(api.token, None, api.base_url)), str) as server:
            assert (await client.post(server.url, json=update, headers={SECRET_HEADER: ""})).status_code == 403
        async with WebhookServer(TelegramWebhook(Settings(None, SECRET, api.base_url)), str) as server:
            assert (await client.post(server.url, json=update, headers={SECRET_HEADER: SECRET})).status_code == 503
    assert api.calls == []


async def test_the_webhook_shares_the_bridges_replies_buttons_and_apology(api):
    def answer(text: str) -> str:
        raise RuntimeError("the action server is down")

    channel = TelegramWebhook(Settings(api.token, SECRET, api.base_url))
    async with WebhookServer(channel, answer) as server, httpx.AsyncClient() as client:
        sticker = {"update_id": 1, "message": api.message(2401, language_code="fr", **MEDIA["sticker"])}
        question = {"update_id": 2, "message": api.message(2401, text="Où est le bureau ?", language_code="fr")}
        for update in (sticker, question):
            response = await client.post(server.url, json=update, headers={SECRET_HEADER: SECRET})
            assert response.status_code == 200
    assert api.texts(2401) == [say("telegram_unsupported", "fr"), say("unavailable", "fr")]


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
