"""python-telegram-bot's calls over aiohttp (bot/channels/telegram/request.py) behave as its own httpx ones."""

import asyncio
import json
import socket

import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import NetworkError, TimedOut

from bot.channels.telegram.request import AiohttpRequest
from bot.tools.telegram_api import BOT, BotApi

TOKEN = "123456789:AAtest_token"


async def fake_api(handler) -> tuple[web.AppRunner, str]:
    """A local server answering every Bot API method with ``handler``; its base URL."""

    async def route(request: web.Request) -> web.Response:
        if request.match_info["method"] == "getMe":  # asked by Bot.initialize
            return web.json_response({"ok": True, "result": BOT})
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/bot"


def test_messages_with_buttons_reach_the_bot_api_stand_in():
    async def talk(api: BotApi) -> tuple[str, int]:
        async with Bot(api.token, base_url=api.base_url, request=AiohttpRequest()) as bot:
            me = await bot.get_me()
            markup = InlineKeyboardMarkup([[InlineKeyboardButton("Русский", callback_data="/lang ru")]])
            sent = await bot.send_message(42, "Здравствуйте! 你好", reply_markup=markup)
            return me.username, sent.chat.id

    with BotApi() as api:
        username, chat = asyncio.run(talk(api))
        api.settle(42, quiet=0.1)
        assert (username, chat) == ("njupt_bench_bot", 42)
        assert api._answered[42] == 1


def test_files_go_as_multipart_with_the_other_parameters():
    seen: dict = {}

    async def handler(request: web.Request) -> web.Response:
        form = await request.post()
        document = form["document"]
        seen.update(method=request.match_info["method"], chat_id=form["chat_id"], caption=form["caption"],
                    filename=document.filename, content=document.file.read())  # fmt: skip
        message = {"message_id": 1, "date": 0, "chat": {"id": 7, "type": "private"}}
        return web.json_response({"ok": True, "result": message})

    async def send() -> None:
        runner, base_url = await fake_api(handler)
        try:
            async with Bot(TOKEN, base_url=base_url, request=AiohttpRequest()) as bot:
                await bot.send_document(7, document=b"visit request", filename="request.txt", caption="Визит")
        finally:
            await runner.cleanup()

    asyncio.run(send())
    assert seen == {"method": "sendDocument", "chat_id": "7", "caption": "Визит", "filename": "request.txt",
                    "content": b"visit request"}  # fmt: skip


def test_a_slow_bot_api_is_a_timeout_and_a_closed_port_a_network_error():
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"ok": True, "result": True})

    async def call_slow() -> None:
        runner, base_url = await fake_api(slow)
        try:
            request = AiohttpRequest(read_timeout=0.2, write_timeout=0.1)
            async with Bot(TOKEN, base_url=base_url, request=request) as bot:
                await bot.send_chat_action(7, "typing")
        finally:
            await runner.cleanup()

    with pytest.raises(TimedOut):
        asyncio.run(call_slow())

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]

    async def call_closed() -> None:
        async with Bot(TOKEN, base_url=f"http://127.0.0.1:{port}/bot", request=AiohttpRequest()) as bot:
            await bot.send_message(7, "hello")

    with pytest.raises(NetworkError):
        asyncio.run(call_closed())


def test_a_proxy_of_the_environment_is_used_as_httpx_used_it(monkeypatch):
    """Where Telegram is reachable only through a proxy, HTTP(S)_PROXY keeps working."""
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        body = b'{"ok": true, "result": %s}' % json.dumps(BOT).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async def ask() -> str:
        server = await asyncio.start_server(proxy, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        try:
            request = AiohttpRequest()
            await request.initialize()
            try:
                me = await Bot(TOKEN, base_url="http://api.telegram.example/bot", request=request).get_me()
            finally:
                await request.shutdown()
            return me.username
        finally:
            server.close()

    assert asyncio.run(ask()) == BOT["username"]
    assert seen and seen[0].startswith(b"POST http://api.telegram.example/bot")
