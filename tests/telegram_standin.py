"""Stand-ins for the tests of the Telegram bridge: Telegram's Bot API and Rasa's REST channel.

Both are real HTTP servers on 127.0.0.1, each in a thread of the test process, so
python-telegram-bot (in the test or in a ``bot run`` child process) talks HTTP to them:

    with BotApiStandIn() as telegram:
        env = {"TELEGRAM_BOT_TOKEN": telegram.token, "TELEGRAM_BASE_URL": telegram.base_url}
        telegram.send_text(42, "Where is the office?", language_code="en")
        (reply,) = telegram.wait_for_messages(42, 1)

``BotApiStandIn`` implements getMe, getUpdates (long polling), sendMessage,
answerCallbackQuery, getWebhookInfo, setWebhook and deleteWebhook, records every
call, queues users' updates, and can answer a method with an error (a 429 with
``retry_after``). ``RasaStandIn`` answers ``POST /webhooks/rest/webhook`` with
whatever the test scripts, and can be slow or stopped.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

# Form fields python-telegram-bot sends JSON-encoded (everything else is a plain string).
JSON_FIELDS = {"chat_id", "offset", "limit", "timeout", "reply_markup", "allowed_updates",
               "drop_pending_updates", "max_connections", "show_alert", "cache_time", "commands"}  # fmt: skip
MAX_POLL_SECONDS = 5.0


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _params(self) -> dict[str, Any]:
        parts = urlsplit(self.path)
        params: dict[str, Any] = dict(parse_qsl(parts.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        kind = self.headers.get("Content-Type", "")
        if body and kind.startswith("application/json"):
            data = json.loads(body)
            params.update(data if isinstance(data, dict) else {"events": data})
        elif body:
            for key, value in parse_qsl(body.decode(), keep_blank_values=True):
                params[key] = json.loads(value) if key in JSON_FIELDS else value
        return params

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: a long poll cancelled at shutdown, a timed-out request

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        owner = self.server.owner  # type: ignore[attr-defined]
        status, body = owner.handle(self.path, self._params(), dict(self.headers))
        self._reply(status, body)


class _HttpStandIn:
    def __init__(self) -> None:
        self.server: _Server | None = None
        self.port = 0

    def start(self, port: int = 0) -> None:
        self.server = _Server(("127.0.0.1", port or self.port), _Handler)
        self.server.owner = self  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def handle(self, path: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        raise NotImplementedError

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class BotApiStandIn(_HttpStandIn):
    """Telegram's Bot API, as much of it as the bridge uses."""

    TOKEN = "123456789:AAstand-in_token_for_tests_only"
    BOT = {"id": 123456789, "is_bot": True, "first_name": "NJUPT assistant", "username": "njupt_test_bot",
           "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}  # fmt: skip

    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.username = self.BOT["username"]
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sent: list[dict[str, Any]] = []  # the messages sendMessage created
        self.webhook: dict[str, Any] = {"url": ""}
        self._updates: list[dict[str, Any]] = []
        self._failures: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._ids = {"update": 1, "message": 1, "query": 1}
        self._condition = threading.Condition()

    @property
    def base_url(self) -> str:
        """TELEGRAM_BASE_URL: python-telegram-bot appends the token."""
        return f"http://127.0.0.1:{self.port}/bot"

    # --- what the test does ------------------------------------------------------------

    def fail(self, method: str, status: int, description: str, **parameters: Any) -> None:
        """The next call of ``method`` gets this error (e.g. 429 with retry_after=1)."""
        with self._condition:
            self._failures.setdefault(method, []).append((status, {"description": description, **parameters}))

    def queue(self, update: dict[str, Any]) -> int:
        with self._condition:
            update_id = self._ids["update"]
            self._ids["update"] += 1
            self._updates.append({"update_id": update_id, **update})
            self._condition.notify_all()
        return update_id

    def user(self, user_id: int, language_code: str | None = None) -> dict[str, Any]:
        user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        if language_code:
            user["language_code"] = language_code
        return user

    def chat(self, chat_id: int, chat_type: str = "private") -> dict[str, Any]:
        chat = {"id": chat_id, "type": chat_type}
        chat.update({"first_name": f"User{chat_id}"} if chat_type == "private" else {"title": "Study group"})
        self._chats[chat_id] = chat
        return chat

    def _entities(self, text: str) -> list[dict[str, Any]]:
        entities = []
        command = re.match(r"/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?", text)
        if command:
            entities.append({"type": "bot_command", "offset": 0, "length": len(command.group())})
        for mention in re.finditer(r"(?<![/\w])@[A-Za-z0-9_]{5,}", text):
            entities.append({"type": "mention", "offset": _utf16(text[: mention.start()]),
                             "length": _utf16(mention.group())})  # fmt: skip
        return entities

    def message(self, chat_id: int, *, user_id: int | None = None, language_code: str | None = None,
                chat_type: str = "private", text: str | None = None, **content: Any) -> dict[str, Any]:  # fmt: skip
        """A user's message; ``content`` is e.g. sticker={...} or reply_to_message={...}."""
        with self._condition:
            message_id = self._ids["message"]
            self._ids["message"] += 1
        message = {
            "message_id": message_id, "date": int(time.time()), "chat": self.chat(chat_id, chat_type),
            "from": self.user(user_id or abs(chat_id), language_code), **content,
        }  # fmt: skip
        if text is not None:
            message["text"] = text
            if self._entities(text):
                message["entities"] = self._entities(text)
        return message

    def send_text(self, chat_id: int, text: str, **kwargs: Any) -> int:
        """A user writes ``text`` (commands and @mentions get their entities)."""
        return self.queue({"message": self.message(chat_id, text=text, **kwargs)})

    def press(self, sent: dict[str, Any], title: str, language_code: str | None = None,
              user_id: int | None = None) -> tuple[int, str]:  # fmt: skip
        """A user presses the button ``title`` under the bot's message ``sent``; (update id, query id)."""
        buttons = [b for row in sent["reply_markup"]["inline_keyboard"] for b in row if b["text"] == title]
        assert buttons, f"no button {title!r}"
        with self._condition:
            query_id = f"query-{self._ids['query']}"
            self._ids["query"] += 1
        chat_id = sent["chat"]["id"]
        query = {"id": query_id, "from": self.user(user_id or abs(chat_id), language_code), "message": sent,
                 "chat_instance": f"instance-{chat_id}", "data": buttons[0]["callback_data"]}  # fmt: skip
        return self.queue({"callback_query": query}), query_id

    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        """What the bot sent to ``chat_id``, in order."""
        with self._condition:
            return [m for m in self.sent if m["chat"]["id"] == chat_id]

    def texts(self, chat_id: int) -> list[str]:
        return [m["text"] for m in self.messages(chat_id)]

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self._condition:
            return [params for name, params in self.calls if name == method]

    def wait_for_messages(self, chat_id: int, count: int, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Blocks until the bot has sent ``count`` messages to ``chat_id``; for a bot in another process."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while len([m for m in self.sent if m["chat"]["id"] == chat_id]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"chat {chat_id}: {self.texts_unlocked(chat_id)} after {timeout:.0f} s")
                self._condition.wait(left)
            return [m for m in self.sent if m["chat"]["id"] == chat_id]

    def texts_unlocked(self, chat_id: int) -> list[str]:
        return [m["text"] for m in self.sent if m["chat"]["id"] == chat_id]

    # --- the Bot API -----------------------------------------------------------------

    def handle(self, path: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        match = re.fullmatch(r"/bot(?P<token>[^/]+)/(?P<method>\w+)", urlsplit(path).path)
        if not match:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        if match["token"] != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method = match["method"]
        with self._condition:
            self.calls.append((method, params))
            self._condition.notify_all()
            failures = self._failures.get(method)
            if failures:
                status, error = failures.pop(0)
                description = error.pop("description")
                return status, {"ok": False, "error_code": status, "description": description,
                                **({"parameters": error} if error else {})}  # fmt: skip
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": f"Not Found: method {method} not found"}
        result = handler(params)
        if isinstance(result, tuple):
            return result
        return 200, {"ok": True, "result": result}

    def _api_getMe(self, params: dict[str, Any]) -> Any:
        return self.BOT

    def _api_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), MAX_POLL_SECONDS)
        with self._condition:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self.webhook["url"] and time.monotonic() < deadline:
                self._condition.wait(deadline - time.monotonic())
            if self.webhook["url"]:
                conflict = "Conflict: can't use getUpdates method while webhook is active"
                return 409, {"ok": False, "error_code": 409, "description": conflict}
            return list(self._updates[: int(params.get("limit") or 100)])

    def _api_sendMessage(self, params: dict[str, Any]) -> Any:
        chat_id = int(params["chat_id"])
        text = params.get("text") or ""
        if not text.strip():
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
        if _utf16(text) > 4096:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
        with self._condition:
            message_id = self._ids["message"]
            self._ids["message"] += 1
            message = {"message_id": message_id, "date": int(time.time()), "from": self.BOT,
                       "chat": self._chats.get(chat_id, {"id": chat_id, "type": "private"}), "text": text}  # fmt: skip
            if params.get("reply_markup"):
                message["reply_markup"] = params["reply_markup"]
            self.sent.append(message)
            self._condition.notify_all()
        return message

    def _api_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        return True

    def _api_sendChatAction(self, params: dict[str, Any]) -> Any:
        if params.get("action") not in {"typing", "upload_photo", "upload_document", "find_location"}:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: wrong parameter action"}
        return True

    def _api_setMyCommands(self, params: dict[str, Any]) -> Any:
        commands, language = params.get("commands"), params.get("language_code") or ""
        valid = isinstance(commands, list) and 0 < len(commands) <= 100 and all(
            re.fullmatch(r"[a-z0-9_]{1,32}", c.get("command", "")) and 1 <= len(c.get("description", "")) <= 256
            for c in commands
        )  # fmt: skip
        if not valid or not re.fullmatch(r"([a-z]{2})?", language):
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: invalid commands"}
        return True

    def _api_getWebhookInfo(self, params: dict[str, Any]) -> Any:
        with self._condition:
            return {"url": self.webhook["url"], "has_custom_certificate": False, "pending_update_count": 0}

    def _api_setWebhook(self, params: dict[str, Any]) -> Any:
        with self._condition:
            self.webhook = dict(params)
            self._condition.notify_all()  # a waiting getUpdates ends with 409, as on Telegram
        return True

    def _api_deleteWebhook(self, params: dict[str, Any]) -> Any:
        with self._condition:
            self.webhook = {"url": ""}
        return True


class RasaStandIn(_HttpStandIn):
    """Rasa with its REST channel and the Telegram channel's conversation endpoints.

    ``reply(body)`` gives the replies; ``delay`` makes it slow. Each conversation has a
    state as Rasa's tracker gives it (``slots``, ``active_loop``). Like the actions, the
    stand-in sets the ``language`` slot to the language of the last reply that carried
    one; a test's ``reply`` can change the rest (``rasa.tracker(sender)["active_loop"] =
    {"name": "visit_form"}``). As on Rasa, ``telegram-`` conversations need the channel's
    token (``X-Channel-Token: TOKEN``): ``POST /webhooks/rest/webhook`` refuses them
    without it (403), and ``GET /webhooks/telegram/conversations/<sender>`` and ``POST
    .../<sender>/events`` (slot and active_loop events) answer 404.
    """

    TOKEN = "telegram-channel-token-stand-in"

    def __init__(self, reply: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None) -> None:
        super().__init__()
        self.reply = reply or (lambda body: [{"text": f"Answer to {body['message']}"}])
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.trackers: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tracker(self, sender: str) -> dict[str, Any]:
        return self.trackers.setdefault(sender, {"sender_id": sender, "slots": {"language": None}, "active_loop": {}})

    def handle(self, path: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        token = {k.lower(): v for k, v in headers.items()}.get("x-channel-token")
        conversation = re.fullmatch(r"/webhooks/telegram/conversations/(?P<sender>[^/]+)(?P<events>/events)?",
                                    urlsplit(path).path)  # fmt: skip
        if conversation:
            sender = unquote(conversation["sender"])
            if token != self.TOKEN or not sender.startswith("telegram-"):
                return 404, {"error": "unknown conversation"}
            state = self.tracker(sender)
            for event in params.get("events", []) if conversation["events"] else []:
                if event["event"] == "slot":
                    state["slots"][event["name"]] = event["value"]
                elif event["event"] == "active_loop":
                    state["active_loop"] = {"name": event["name"]} if event["name"] else {}
                else:
                    return 400, {"error": "expected slot or active_loop events"}
            return 200, state
        if urlsplit(path).path != "/webhooks/rest/webhook":
            return 404, {"error": "not found"}
        if str(params.get("sender", "")).startswith("telegram-") and token != self.TOKEN:
            return 403, {"error": "this conversation belongs to another channel"}
        self.requests.append(params)
        if self.delay:
            time.sleep(self.delay)
        replies = self.reply(params)
        for reply in replies:
            if reply.get("language"):
                self.tracker(params["sender"])["slots"]["language"] = reply["language"]
        return 200, replies
