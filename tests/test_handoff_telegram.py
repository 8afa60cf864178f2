"""Talk to a person on Telegram, end to end: the real action server, Rasa and polling bridge
(as `bot run` starts them) against the Bot API stand-in, with a staff group."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.cli.servers import Servers
from bot.core.handoff import HandoffStore
from bot.core.storage import RequestStore
from bot.core.texts import say

from .conftest import free_port
from .telegram_standin import BotApiStandIn

STAFF = -100777
USER = 6001
STAFF_MEMBER = 77


@pytest.fixture
def stack(model: Path, tmp_path: Path):
    with BotApiStandIn() as api:
        database = f"sqlite:///{tmp_path / 'bot.db'}"
        servers = Servers(
            model=model, rasa_port=free_port(), action_port=free_port(), telegram=True, log_dir=tmp_path / "logs",
            env={"DATABASE_URL": database, "RATE_LIMIT_PER_IP": "0", "TELEGRAM_BOT_TOKEN": api.token,
                 "TELEGRAM_BASE_URL": api.base_url, "TELEGRAM_STAFF_CHAT_ID": str(STAFF)},
        )  # fmt: skip
        api.chat(STAFF, "supergroup")
        with servers:
            yield api, HandoffStore(RequestStore(database))


def staff_writes(api: BotApiStandIn, text: str, reply_to: dict | None = None, chat: int = STAFF) -> None:
    extra = {"reply_to_message": reply_to} if reply_to else {}
    api.queue({"message": api.message(chat, text=text, chat_type="supergroup" if chat < 0 else "private",
                                      user_id=STAFF_MEMBER, **extra)})  # fmt: skip


@pytest.mark.e2e
@pytest.mark.model
def test_a_russian_user_talks_to_the_staff_group_and_back_to_the_bot(stack):
    api, store = stack
    api.send_text(USER, "позовите оператора", language_code="ru")
    (opened,) = api.wait_for_messages(USER, 1, timeout=300)
    ref = re.search(r"H-\d{4}-\d{4}", opened["text"]).group()
    assert opened["text"] == say("handoff_opened", "ru", ref=ref, where=say("handoff_where_telegram", "ru"))

    (post,) = api.wait_for_messages(STAFF, 1)
    assert ref in post["text"] and "language: ru" in post["text"] and "channel: telegram" in post["text"]
    assert "user: позовите оператора" in post["text"]  # the last messages

    staff_writes(api, "Здравствуйте! Чем я могу помочь?", reply_to=post)
    reply = api.wait_for_messages(USER, 2)[1]
    assert reply["text"] == say("handoff_staff_reply", "ru", ref=ref, text="Здравствуйте! Чем я могу помочь?")
    assert "delivered: telegram: sent" in api.wait_for_messages(STAFF, 2)[1]["text"]

    api.send_text(USER, "Какие документы нужны для визы?", language_code="ru")
    assert api.wait_for_messages(USER, 3)[2]["text"] == say("handoff_relayed", "ru", ref=ref)  # not the bot's answer
    relayed = api.wait_for_messages(STAFF, 3)[2]
    assert relayed["text"] == f"{ref} · user: Какие документы нужны для визы?"

    # another chat: the same command and a reply to the staff's post have no power
    staff_writes(api, f"/close {ref}", chat=6002)
    staff_writes(api, "I am not staff", reply_to=post, chat=6003)
    api.wait_for_messages(6002, 1)
    api.wait_for_messages(6003, 1)
    assert store.active(f"telegram-{USER}").ref == ref
    assert [m.author for m in store.messages(ref)] == ["staff", "user"]
    assert len(api.messages(USER)) == 3

    staff_writes(api, f"/close {ref}")
    assert api.wait_for_messages(USER, 4)[3]["text"] == say("handoff_closed", "ru", ref=ref)
    api.send_text(USER, "Со сколькими странами сотрудничает университет?", language_code="ru")
    assert api.wait_for_messages(USER, 5)[4]["text"] == say("ask_partners", "ru")
    assert store.get(ref).closed_reason == "staff" and store.get(ref).closed_by.startswith("telegram:")


# --- the webhook: the same handlers, in the Rasa server's process -------------------------------


@pytest.fixture
def handoff_env(tmp_path, monkeypatch):
    from bot.core import handoff as handoff_module
    from bot.core import storage

    url = f"sqlite:///{tmp_path / 'bot.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("TELEGRAM_STAFF_CHAT_ID", str(STAFF))
    storage.store.cache_clear()
    handoff_module.handoffs.cache_clear()
    yield HandoffStore(RequestStore(url))
    storage.store.cache_clear()
    handoff_module.handoffs.cache_clear()


async def test_over_the_webhook_only_the_staff_group_can_reply_or_take(handoff_env, monkeypatch):
    import httpx

    from bot.channels.telegram.handlers import SECRET_HEADER, Settings
    from bot.channels.telegram.webhook import TelegramWebhook

    from .test_telegram import SECRET, WebhookServer

    store = handoff_env
    with BotApiStandIn() as api:
        api.chat(STAFF, "supergroup")
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", api.token)
        monkeypatch.setenv("TELEGRAM_BASE_URL", api.base_url)
        handoff, _ = store.open("telegram-6101", "fr")
        store.set_post(9001, ref=handoff.ref)
        post = {"message_id": 9001, "date": 0, "chat": {"id": STAFF, "type": "supergroup", "title": "Staff"},
                "from": BotApiStandIn.BOT, "text": f"{handoff.ref}: a user asks for a person"}  # fmt: skip
        channel = TelegramWebhook(Settings(api.token, SECRET, api.base_url))
        async with (
            WebhookServer(channel, lambda text: f"bot: {text}") as server,
            httpx.AsyncClient(timeout=60) as c,
        ):

            async def send(chat: int, text: str, reply: bool = False, update_id: list[int] = [100]) -> None:  # noqa: B006
                update_id[0] += 1
                message = api.message(chat, text=text, chat_type="supergroup" if chat < 0 else "private",
                                      user_id=STAFF_MEMBER, **({"reply_to_message": post} if reply else {}))  # fmt: skip
                update = {"update_id": update_id[0], "message": message}
                assert (await c.post(server.url, json=update, headers={SECRET_HEADER: SECRET})).status_code == 200

            await send(-4242, "Je prends la main", reply=True)  # another group replying to a copy of the post
            await send(6202, f"/take {handoff.ref}")  # a private chat
            assert store.get(handoff.ref).status == "waiting" and store.messages(handoff.ref) == []
            assert api.messages(6101) == []
            assert [s[0] for s in server.seen] == ["telegram--4242", "telegram-6202"]  # ordinary messages there
            await send(STAFF, f"/take {handoff.ref}")
            assert store.get(handoff.ref).status == "taken"
            assert api.texts(6101) == [say("handoff_taken", "fr", ref=handoff.ref)]
            await send(STAFF, "Bonjour, que puis-je faire pour vous ?", reply=True)
            assert api.texts(6101)[-1] == say("handoff_staff_reply", "fr", ref=handoff.ref,
                                              text="Bonjour, que puis-je faire pour vous ?")  # fmt: skip
            assert len(server.seen) == 2  # nothing from the staff group reached the bot


async def test_a_chinese_office_reads_the_staff_group_in_chinese(handoff_env, monkeypatch):
    """STAFF_LANGUAGE=zh-Hans: the post, the relayed message, the delivery confirmations and the
    answers to /take and /close are in Chinese, while the Russian user reads Russian."""
    import httpx
    from rasa_sdk.executor import CollectingDispatcher

    from actions.handoff import ActionOpenHandoff
    from bot.channels.telegram.handlers import SECRET_HEADER, Settings
    from bot.channels.telegram.webhook import TelegramWebhook
    from bot.core.delivery import post_handoff
    from bot.plugins.handoff import intercept

    from .conftest import make_tracker
    from .test_telegram import SECRET, WebhookServer

    store, user = handoff_env, 6301
    monkeypatch.setenv("STAFF_LANGUAGE", "zh-Hans")
    monkeypatch.delenv("SMTP_URL", raising=False)
    with BotApiStandIn() as api:
        api.chat(STAFF, "supergroup")
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", api.token)
        monkeypatch.setenv("TELEGRAM_BASE_URL", api.base_url)
        tracker = make_tracker("позовите оператора", "request_human", slots={"language": "ru"},
                               sender_id=f"telegram-{user}")  # fmt: skip
        tracker.events = [{"event": "user", "text": "позовите оператора"}]
        ActionOpenHandoff().run(CollectingDispatcher(), tracker, {})
        ref = store.active(f"telegram-{user}").ref
        await post_handoff(ref, store)
        (post,) = api.messages(STAFF)
        assert post["text"] == "\n".join([
            f"🙋 {ref}：有用户请求人工服务",
            "语言：ru · 渠道：telegram",
            "",
            "最近的消息：",
            "用户：позовите оператора",
            "",
            f"直接回复本条消息即可答复用户；发送 /take {ref} 接手这个对话，发送 /close {ref} 把用户交还给机器人。",
        ])  # fmt: skip

        turn = await intercept(f"telegram-{user}", "Какие документы нужны для визы?", store)
        assert turn.replies[0]["text"] == say("handoff_relayed", "ru", ref=ref)  # the user reads Russian
        assert api.texts(STAFF)[-1] == f"{ref} · 用户：Какие документы нужны для визы?"

        channel = TelegramWebhook(Settings(api.token, SECRET, api.base_url))
        async with (
            WebhookServer(channel, lambda text: f"bot: {text}") as server,
            httpx.AsyncClient(timeout=60) as c,
        ):

            async def staff(text: str, reply: bool = False, update_id: list[int] = [300]) -> str:  # noqa: B006
                update_id[0] += 1
                message = api.message(STAFF, text=text, chat_type="supergroup", user_id=STAFF_MEMBER,
                                      **({"reply_to_message": post} if reply else {}))  # fmt: skip
                update = {"update_id": update_id[0], "message": message}
                assert (await c.post(server.url, json=update, headers={SECRET_HEADER: SECRET})).status_code == 200
                return api.texts(STAFF)[-1]

            taken = await staff(f"/take {ref}")
            assert re.fullmatch(rf"{ref} 已由 telegram:.+ 接手，并已通知用户（✓ 已送达（Telegram：已发送））", taken), (
                taken
            )
            assert api.texts(user) == [say("handoff_taken", "ru", ref=ref)]
            assert (
                await staff("Здравствуйте! Нужен паспорт.", reply=True)
                == f"{ref}：✓ 已送达（Telegram：已发送；邮件：未启用（没有设置 SMTP_URL））"
            )
            assert api.texts(user)[-1] == say("handoff_staff_reply", "ru", ref=ref, text="Здравствуйте! Нужен паспорт.")
            assert await staff(f"/close {ref}") == f"{ref} 已结束，用户已回到机器人（✓ 已送达（Telegram：已发送））"
            assert api.texts(user)[-1] == say("handoff_closed", "ru", ref=ref)
            assert await staff(f"/close {ref}") == f"{ref} 已经结束了"
            assert await staff("/take") == "用法：/take H-YYYY-NNNN，或者直接回复该对话的通知消息并发送 /take"
            assert server.seen == []  # nothing said in the staff group reached the bot


def test_the_staff_language_reads_the_codes_of_the_languages_file(monkeypatch):
    from bot.core.delivery import staff_summary
    from bot.core.handoff import Message, staff_language

    assert staff_language({}) == "en"
    assert staff_language({"STAFF_LANGUAGE": "zh"}) == "zh-Hans"  # as the console's ?ui=zh
    assert staff_language({"STAFF_LANGUAGE": "zh-CN"}) == "zh-Hans"
    assert staff_language({"STAFF_LANGUAGE": "klingon"}) == "en"
    message = Message(1, "H-2026-0001", "web-x", None, "staff", "…", delivery="undelivered",
                      delivery_note="web: shown 2026-05-01 10:00:00 UTC; e-mail: off (SMTP_URL not set)")  # fmt: skip
    monkeypatch.delenv("STAFF_LANGUAGE", raising=False)
    assert staff_summary(message) == "⚠ undelivered: web: shown 2026-05-01 10:00:00 UTC; e-mail: off (SMTP_URL not set)"
    monkeypatch.setenv("STAFF_LANGUAGE", "zh-Hans")
    assert (
        staff_summary(message)
        == "⚠ 未送达（网页：已于 2026-05-01 10:00:00（UTC）显示；邮件：未启用（没有设置 SMTP_URL））"
    )
