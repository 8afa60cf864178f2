"""A local stand-in for Telegram's Bot API, for `make bench`: the Telegram bridge polls it.

Only what the bridge calls (getMe, getUpdates, sendMessage, sendChatAction, setMyCommands,
answerCallbackQuery, getWebhookInfo, deleteWebhook): users' messages are queued with
``send_text``; ``ask`` blocks until the bot has answered that chat.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

JSON_FIELDS = {"chat_id", "offset", "limit", "timeout", "reply_markup", "allowed_updates",
               "drop_pending_updates", "max_connections", "commands"}  # fmt: skip
MAX_POLL_SECONDS = 5.0
BOT = {"id": 123456789, "is_bot": True, "first_name": "NJUPT assistant", "username": "njupt_bench_bot"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        params: dict[str, Any] = dict(parse_qsl(parts.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if body and self.headers.get("Content-Type", "").startswith("application/json"):
            params.update(json.loads(body))
        elif body:
            for key, value in parse_qsl(body.decode(), keep_blank_values=True):
                params[key] = json.loads(value) if key in JSON_FIELDS else value
        status, answer = self.server.owner.handle(parts.path, params)  # type: ignore[attr-defined]
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


class BotApi:
    TOKEN = "123456789:AAbench_stand-in_token"

    def __init__(self) -> None:
        self.token = self.TOKEN
        self.server: _Server | None = None
        self._updates: list[dict[str, Any]] = []
        self._answered: dict[int, int] = {}  # chat id -> messages the bot sent it
        self._next = {"update": 1, "message": 1}
        self._condition = threading.Condition()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/bot"

    def __enter__(self) -> BotApi:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.owner = self  # type: ignore[attr-defined]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def ask(self, chat_id: int, text: str, timeout: float = 60.0) -> float:
        """A user of ``chat_id`` writes ``text``; seconds until the bot's first message to that chat."""
        with self._condition:
            before = self._answered.get(chat_id, 0)
            started = time.monotonic()
            user = {"id": chat_id, "is_bot": False, "first_name": f"User{chat_id}"}
            chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
            message = {"message_id": self._next["message"], "date": int(time.time()), "text": text,
                       "chat": chat, "from": user}  # fmt: skip
            self._next["message"] += 1
            self._updates.append({"update_id": self._next["update"], "message": message})
            self._next["update"] += 1
            self._condition.notify_all()
            if not self._condition.wait_for(lambda: self._answered.get(chat_id, 0) > before, timeout):
                raise TimeoutError(f"no answer to chat {chat_id} in {timeout:.0f} s")
            return time.monotonic() - started

    def settle(self, chat_id: int, quiet: float = 0.3) -> None:
        """Waits until ``chat_id`` got no new message for ``quiet`` seconds (the rest of a reply)."""
        with self._condition:
            count = -1
            while count != self._answered.get(chat_id, 0):
                count = self._answered.get(chat_id, 0)
                self._condition.wait(quiet)

    def handle(self, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        match = re.fullmatch(r"/bot(?P<token>[^/]+)/(?P<method>\w+)", path)
        if not match or match["token"] != self.token:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        method = match["method"]
        if method == "getMe":
            return 200, {"ok": True, "result": BOT}
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            deadline = time.monotonic() + min(float(params.get("timeout") or 0), MAX_POLL_SECONDS)
            with self._condition:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                while not self._updates and time.monotonic() < deadline:
                    self._condition.wait(max(0.0, deadline - time.monotonic()))
                return 200, {"ok": True, "result": list(self._updates[: int(params.get("limit") or 100)])}
        if method == "sendMessage":
            chat_id = int(params["chat_id"])
            with self._condition:
                self._answered[chat_id] = self._answered.get(chat_id, 0) + 1
                message_id = self._next["message"]
                self._next["message"] += 1
                self._condition.notify_all()
            chat = {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"}
            sent = {"message_id": message_id, "date": int(time.time()), "from": BOT, "chat": chat,
                    "text": params.get("text") or ""}  # fmt: skip
            return 200, {"ok": True, "result": sent}
        if method == "getWebhookInfo":
            return 200, {"ok": True, "result": {"url": "", "has_custom_certificate": False, "pending_update_count": 0}}
        if method in ("sendChatAction", "setMyCommands", "answerCallbackQuery", "deleteWebhook"):
            return 200, {"ok": True, "result": True}
        return 404, {"ok": False, "error_code": 404, "description": f"Not Found: method {method} not found"}
