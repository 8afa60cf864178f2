"""Hostile inputs (issue 14): `make fuzz` in small, and the failures it found, each kept fixed.

The big run is ``python -m bot.tools.fuzz --examples 10000`` (``make fuzz``); here the
same generator sends a seeded thousand inputs to a stack of the test's own, with
the rate limits off so that no 429 hides a failure.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
from sanic import Sanic

from bot.channels.telegram.handlers import SECRET_HEADER, Settings
from bot.channels.telegram.webhook import TelegramWebhook
from bot.cli.servers import Servers
from bot.tools import fuzz

from .conftest import free_port


@pytest.mark.e2e
@pytest.mark.model
def test_a_thousand_hostile_inputs_break_nothing_and_set_no_slot(model: Path, tmp_path: Path):
    """No 5xx, no crash; every channel answers in English and Chinese as before; memory
    within 10% of the warm-up's; no slot set by an injected intent."""
    drawn = []

    def draw() -> list[fuzz.Case]:  # while the servers start
        drawn.extend(fuzz.generate(1000, 14, heavy=0.06))
        return drawn

    phase = fuzz.run_phase("limits off", draw, model, fuzz.NO_LIMITS, "limits off", warm=30,
                           log_dir=tmp_path / "logs", progress=lambda _: None)  # fmt: skip

    assert len(phase.results) >= 1000
    assert {"REST", "web", "Telegram", "injection"} <= {case.kind.split(":")[0] for case in drawn}

    failures = [(r.kind, r.status, r.error, r.request.path[:80], r.request.body[:200]) for r in phase.failures]
    assert failures == [], "see the logs in " + str(tmp_path / "logs")
    assert phase.answer_problems == []  # REST, web chat and Telegram, in English and Chinese
    assert phase.injected_read > 0 and phase.injected_problems == []
    assert phase.memory_problems == [], (phase.memory_before, phase.memory_after)


def _post(url: str, data: bytes, content_type: str) -> tuple[int, object]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.mark.e2e
@pytest.mark.parametrize(
    "data",
    [b"[" * 20_000 + b"]" * 20_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000],  # json.loads: RecursionError, a 500
    ids=["deep list", "deep object"],
)
def test_the_web_chat_answers_json_nested_too_deep_with_400(servers: Servers, data: bytes):
    status, body = _post(f"{servers.web_url}/api/message", data, "application/json")
    assert status == 400 and "sender" in body["error"]


@pytest.mark.e2e
@pytest.mark.parametrize("charset", ["bogus", "latin-1"])  # aiohttp looked "bogus" up: LookupError, a 500
def test_the_web_chat_reads_its_json_as_utf8_whatever_the_charset_says(servers: Servers, charset: str):
    data = json.dumps({"sender": "web-" + "f" * 24, "message": "Where is the international office?"}).encode()
    status, replies = _post(f"{servers.web_url}/api/message", data, f"application/json; charset={charset}")
    assert status == 200 and replies and replies[0]["language"] == "en"


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": [False], "message": False},  # python-telegram-bot: AttributeError, a 500
        {"update_id": 1, "message": "text"},
        {"update_id": 1, "callback_query": ["x"]},
        {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "from": 7}},
    ],
    ids=["a bool message", "a string message", "a list callback", "a number sender"],
)
async def test_the_telegram_webhook_answers_an_update_of_the_wrong_shape_with_400(update: dict):
    async def on_new_message(message) -> None:
        raise AssertionError("an update of the wrong shape reached Rasa")

    port = free_port()
    with fuzz.BotApi() as api:
        channel = TelegramWebhook(Settings(fuzz.BOT_TOKEN, fuzz.WEBHOOK_SECRET, api.base_url))
        Sanic.test_mode = True
        app = Sanic(f"fuzz_webhook_{port}")
        app.blueprint(channel.blueprint(on_new_message), url_prefix="/webhooks/telegram")
        server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True)
        await server.startup()
        try:
            async with httpx.AsyncClient() as client:
                url = f"http://127.0.0.1:{port}/webhooks/telegram/webhook"
                answer = await client.post(url, json=update, headers={SECRET_HEADER: fuzz.WEBHOOK_SECRET})
        finally:
            server.close()
            await server.wait_closed()
            await server.after_stop()
    assert answer.status_code == 400 and answer.json() == {"error": "not a Telegram update"}


def test_the_rest_channel_refuses_a_lone_surrogate_with_400():
    from bot.plugins.rest import BadRequest, parse_request

    for body in ({"sender": "fuzz", "message": "hi \ud800"}, {"sender": "\udfff", "message": "hi"}):
        with pytest.raises(BadRequest):
            parse_request(body)


async def test_a_message_the_database_cannot_store_fails_alone_and_does_not_stop_rasa(tmp_path, monkeypatch):
    """Rasa's SQL tracker store exited the server on any ValueError (a lone surrogate on SQLite,
    a NUL on PostgreSQL): one request stopped the bot."""
    from bot.plugins.stores import EnvSQLTrackerStore

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    store = EnvSQLTrackerStore()
    with pytest.raises(ValueError):  # UnicodeEncodeError: that message fails, the process goes on
        await store.retrieve("telegram-\udfff")
    assert await store.retrieve("fuzz-ordinary") is None
