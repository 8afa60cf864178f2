"""Hostile inputs against a running bot: nothing may answer 5xx, leak memory or set a slot.

    python -m bot.tools.fuzz [--examples 10000] [--seed 1] [--out reports/fuzz.md]   (or `make fuzz`)

Starts its own stack (action server, Rasa server with its HTTP API and the
Telegram webhook, web chat) on free ports with an empty temporary database, and
a stand-in for Telegram's Bot API on the loopback, so that nothing leaves the
machine and signed updates go all the way through the bridge (with the Bot API
at a closed port the webhook would answer each one 503, "unreachable", first).
Hypothesis generates the inputs from a seed (the same seed, the same inputs):

* random Unicode of every script, control characters, empty and huge messages;
* malformed and deeply nested JSON, bodies that are not JSON, wrong content types
  and methods, senders of other channels, odd metadata;
* intents injected with entities (``/greet{"email":"a@b.c"}``,
  ``/change_language{"language":"xx"}``), through REST, the web chat and Telegram;
* forged Telegram updates (no secret, a wrong one) and, with the secret,
  malformed and replayed ones;
* the web chat's API with odd conversation ids (path traversal,
  percent-encoding, 10 kB, Unicode).

The first phase runs with the rate limits off (``RATE_LIMIT_PER_IP=0``,
``RATE_LIMIT_PER_SENDER=0``, ``MAX_IN_FLIGHT=0``) so that no 429 hides a
failure; a second, smaller one on a stack with the default limits (429s are
fine there). The run passes when no request got a 5xx or no answer, every
server answers normal questions in English and Chinese afterwards as it did
before, each process's resident memory after the run is within 10% of what it
was after a warm-up of normal messages, and no injected conversation has a
personal-data slot set (nor a language the bot does not speak). The figures go
to ``reports/fuzz.md``.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bot.channels.telegram.handlers import SECRET_HEADER
from bot.cli.servers import Servers
from bot.core.limits import MAX_MESSAGE_CHARS
from bot.core.paths import MODEL, ROOT

REPORT = ROOT / "reports" / "fuzz.md"
WEBHOOK_SECRET = "fuzz-webhook-secret"
BOT_TOKEN = "123456:fuzz-token"
NO_LIMITS = {"RATE_LIMIT_PER_IP": "0", "RATE_LIMIT_PER_SENDER": "0", "MAX_IN_FLIGHT": "0"}
MEMORY_TOLERANCE = 0.10
REQUEST_TIMEOUT = 180.0
WORKERS = 4
# The share of inputs that go all the way through Rasa (NLU, policies, actions): about 0.3 s
# each on a quiet 2-core machine, against a few milliseconds for one refused at the door.
HEAVY = 0.1

# Slots that only a form's answers (or the bot) may fill: an injected entity must never set them.
PERSONAL_SLOTS = (
    "visitor_name",
    "institution",
    "country",
    "email",
    "purpose",
    "arrival_date",
    "departure_date",
    "visit_notes",
    "office_email",
)
LANGUAGES = ("en", "zh-Hans", "zh-Hant", "ru", "fr")
INTENTS = (
    "greet",
    "goodbye",
    "thanks",
    "affirm",
    "deny",
    "cancel",
    "request_visit",
    "change_language",
    "forget_me",
    "ask_address",
    "ask_degrees",
    "out_of_scope",
    "bot_capabilities",
    "inform",
    "nlu_fallback",
    "session_start",
    "restart",
    "back",
    "",
)
ENTITY_NAMES = PERSONAL_SLOTS + (
    "language",
    "requested_slot",
    "offer",
    "last_question",
    "visit_confirmed",
    "office_question",
    "form_interruptions",
    "session_started_metadata",
)

# Normal questions: the warm-up, and what every server must still answer afterwards.
NORMAL = {
    "en": [
        "Where is the international office?",
        "what degrees can foreigners study at njupt",
        "hi",
        "Can I come and visit the department?",
        "thanks!",
    ],
    "zh-Hans": ["国际处在哪里？", "留学生可以在南邮读哪些学位？", "你好", "谢谢"],
    "zh-Hant": ["國際處在哪裡？", "你們有哪些合作院校？"],
    "ru": ["Где находится международный отдел?", "привет"],
    "fr": ["Où se trouve le bureau international ?", "bonjour"],
}
CHECKS = {"en": "Where is the international office?", "zh-Hans": "留学生可以在南邮读哪些学位？"}

# Blocks of Unicode, one or more per script (and the troublesome ones: marks, bidi, private use).
SCRIPTS = [
    (0x20, 0x7E),
    (0xA0, 0x24F),
    (0x250, 0x2FF),
    (0x300, 0x36F),
    (0x370, 0x3FF),
    (0x400, 0x52F),
    (0x530, 0x58F),
    (0x590, 0x5FF),
    (0x600, 0x6FF),
    (0x700, 0x74F),
    (0x780, 0x7BF),
    (0x900, 0x97F),
    (0x980, 0x9FF),
    (0xA00, 0xA7F),
    (0xB80, 0xBFF),
    (0xC00, 0xC7F),
    (0xD00, 0xD7F),
    (0xE00, 0xE7F),
    (0xE80, 0xEFF),
    (0xF00, 0xFFF),
    (0x1000, 0x109F),
    (0x10A0, 0x10FF),
    (0x1100, 0x11FF),
    (0x1200, 0x137F),
    (0x13A0, 0x13FF),
    (0x1680, 0x169F),
    (0x1780, 0x17FF),
    (0x1800, 0x18AF),
    (0x2000, 0x206F),
    (0x20A0, 0x20CF),
    (0x2190, 0x23FF),
    (0x2E80, 0x2FDF),
    (0x3000, 0x30FF),
    (0x3100, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xA000, 0xA4CF),
    (0xAC00, 0xD7A3),
    (0xE000, 0xF8FF),
    (0xF900, 0xFAFF),
    (0xFB00, 0xFDFF),
    (0xFE00, 0xFE0F),
    (0xFE70, 0xFEFF),
    (0xFF00, 0xFFEF),
    (0xFFF0, 0xFFFF),
    (0x10000, 0x1FFFF),
    (0x1F300, 0x1FAFF),
    (0x20000, 0x2A6DF),
    (0xE0000, 0xE007F),
    (0xF0000, 0x10FFFF),
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "application/json; charset=bogus",
    "text/plain",
    "text/html",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzz",
    "multipart/form-data",
    "application/octet-stream",
    "*/*",
    "",
    "json",
    "application/json;;;",
    "image/png",
]


# --- what is sent ------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    target: str  # "rasa" or "web"
    method: str
    path: str  # as sent on the request line (ASCII, already percent-encoded where it must be)
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Case:
    """One generated input: one request, or a short conversation sent in order."""

    kind: str
    requests: list[Request]
    injected: str | None = None  # "rest", "web" or "telegram": a conversation whose slots are read back
    sender: str | None = None  # set when the cases are numbered


def json_request(target: str, path: str, body: Any, headers: Iterable[tuple[str, str]] = ()) -> Request:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return Request(target, "POST", path, data, (("Content-Type", "application/json"), *headers))


REST = "/webhooks/rest/webhook"
TELEGRAM = "/webhooks/telegram/webhook"


# --- strategies ----------------------------------------------------------------------


@functools.cache
def scripts(max_size: int = 20) -> st.SearchStrategy[str]:
    """Texts in one script each (one choice for the script, one per character: cheap to draw)."""
    return st.one_of(
        *[st.text(st.characters(min_codepoint=low, max_codepoint=high), max_size=max_size) for low, high in SCRIPTS]
    )


@functools.cache
def huge_texts() -> st.SearchStrategy[str]:
    sizes = st.sampled_from([MAX_MESSAGE_CHARS - 1, MAX_MESSAGE_CHARS, MAX_MESSAGE_CHARS + 1, 3000, 65_000])
    unit = st.text(min_size=1, max_size=4)
    return st.builds(lambda u, n: (u * (n // len(u) + 1))[:n], unit, sizes)


@functools.cache
def injections() -> st.SearchStrategy[str]:
    intent = st.one_of(st.sampled_from(INTENTS), scripts(12))
    value = st.one_of(
        st.sampled_from(["a@b.c", "x", "xx", "fr", "zh-Hans", "Klingon", "../../etc/passwd", "2030-01-01", "yes"]),
        scripts(),
        json_values(),
    )
    entities = st.dictionaries(st.sampled_from(ENTITY_NAMES), value, max_size=4)
    listed = st.lists(
        st.builds(lambda e, v: {"entity": e, "value": v}, st.sampled_from(ENTITY_NAMES), value), max_size=3
    )
    dump = lambda data: json.dumps(data, ensure_ascii=False)  # noqa: E731
    fixed = st.sampled_from(
        [
            '/intent{"email":"a@b.c"}',
            '/change_language{"language":"xx"}',
            '/change_language{"language":"fr"}',
            '/greet{"email":"a@b.c","visitor_name":"x"}',
            '/request_visit{"visitor_name":"x","country":"y"}',
            '/affirm{"office_email":"a@b.c"}',
            '/inform{"email": "a@b.c" }',
            "/greet{",
            '/greet{"a":}',
            "/change_language",
            "/forget_me",
            "/restart",
            "/session_start",
            '/greet{"language":"zh-Hans"}',
            "/deny@0.99",
            '/affirm@2{"email":"a@b.c"}',
            "/",
            "//",
            "/greet}{",
            '/greet{"email":["a@b.c"]}',
        ]
    )
    return st.one_of(
        fixed,
        st.builds(lambda i, e: f"/{i}{dump(e)}", intent, entities),
        st.builds(lambda i, e: f"/{i}{dump(e)}", intent, listed),
        st.builds(lambda i, c, e: f"/{i}@{c}{dump(e)}", intent, st.floats(allow_nan=True), entities),
        st.builds(lambda i, e, t: f"/{i}{dump(e)[:-1]}{t}", intent, entities, st.text(max_size=5)),
    )


@functools.cache
def texts() -> st.SearchStrategy[str]:
    """Messages a hostile user types."""
    return st.one_of(
        st.text(max_size=60),
        scripts(200),
        st.text(st.characters(categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs", "Mn", "Me"]), max_size=40),
        st.sampled_from(["", " ", "\n\n", "\t", "\x00", "\u200b", "\ufeff", "\u202e", "\r\n", "\x1b[31m", "\\"]),
        huge_texts(),
        injections(),
        st.builds(lambda q, t: q + t, st.sampled_from([q for qs in NORMAL.values() for q in qs]), st.text(max_size=20)),
    )


@functools.cache
def small_texts() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=20), scripts())


@functools.cache
def json_values() -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | small_texts()
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(small_texts(), inner, max_size=4),
        max_leaves=12,
    )


@functools.cache
def deep_json() -> st.SearchStrategy[bytes]:
    depth = st.sampled_from([64, 1_000, 5_000, 20_000, 100_000])
    shape = st.sampled_from(["list", "object", "message"])

    def build(depth: int, shape: str) -> bytes:
        if shape == "list":
            return b"[" * depth + b"]" * depth
        if shape == "object":
            return b'{"a":' * depth + b"1" + b"}" * depth
        return b'{"sender":"fuzz","message":' + b"[" * depth + b"]" * depth + b"}"

    return st.builds(build, depth, shape)


@functools.cache
def malformed_json() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [
                b"",
                b"{",
                b"}",
                b"[",
                b"null",
                b"[]",
                b"{}",
                b'"text"',
                b"1e999999",
                b"-",
                b"NaN",
                b"\xff\xfe\x00",
                b'{"sender":',
                b'{"sender":"fuzz","message":"\\ud800"}',
                b'{"sender":"\\udfff","message":"hi"}',
                b'{"sender":"fuzz","message":"hi"',
                b'\xef\xbb\xbf{"sender":"fuzz","message":"hi"}',
                b'{"sender":"fuzz","sender":"other","message":"hi"}',
                b'{"sender":"fuzz","message":"\xff"}',
                b'{"sender":"fuzz","message":' + b"1" * 5000 + b"}",
                b'{"update_id":' + b"9" * 5000 + b"}",
                b'{"sender":"fuzz","message":"hi","metadata":{"language":"\\u0000"}}',
            ]
        ),
        st.builds(lambda v, n: json.dumps(v).encode()[:n], json_values(), st.integers(0, 40)),
        deep_json(),
    )


@functools.cache
def any_body() -> st.SearchStrategy[bytes]:
    return st.one_of(
        malformed_json(),
        st.builds(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"), json_values()),
    )


@functools.cache
def senders() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda n: f"fuzz-{n}", st.integers(0, 50)),
        st.builds(lambda n: f"telegram-{n}", st.integers()),
        st.builds(lambda s: f"web-{s}", st.text("abcdef0123456789", min_size=16, max_size=32)),
        st.sampled_from(["", " ", "\n", "WEB-0123456789abcdef", " telegram-1", "Telegram-1", "x" * 129, "x" * 10_000]),
        st.integers(),
        st.booleans(),
        st.none(),
        small_texts(),
        json_values(),
    )


@functools.cache
def rest_cases() -> st.SearchStrategy[Case]:
    metadata = st.one_of(
        json_values(),
        st.fixed_dictionaries(
            {"language": st.one_of(st.sampled_from(LANGUAGES + ("xx", "zh-TW", "")), small_texts(), json_values())}
        ),
    )
    body = st.fixed_dictionaries(
        {},
        optional={
            "sender": senders(),
            "message": st.one_of(texts(), json_values()),
            "metadata": metadata,
            "extra": json_values(),
        },
    )
    typed = st.builds(lambda b: Case("REST: JSON requests", [json_request("rasa", REST, b)]), body)
    raw = st.builds(
        lambda data, kind, method: Case(
            "REST: malformed bodies, content types, methods",
            [Request("rasa", method, REST, data, (("Content-Type", kind),))],
        ),
        any_body(),
        st.sampled_from(CONTENT_TYPES),
        st.sampled_from(["POST", "POST", "POST", "PUT", "GET", "DELETE", "PATCH"]),
    )
    channel = st.builds(
        lambda path, data: Case(
            "REST: other paths", [Request("rasa", "POST", path, data, (("Content-Type", "application/json"),))]
        ),
        st.sampled_from(
            [
                "/webhooks/rest/history/fuzz",
                "/webhooks/rest/history/web-0123456789abcdef",
                "/webhooks/rest/history/telegram-1",
                "/webhooks/rest/history/..%2F..%2Fetc",
                "/webhooks/rest/",
                "/webhooks/nope/webhook",
                "/conversations/fuzz/tracker",
                "/model/parse",
                "/status",
                "/webhooks/rest/webhook/../../status",
            ]
        ),
        any_body(),
    )
    history = st.builds(
        lambda sender: Case(
            "REST: history of odd ids", [Request("rasa", "GET", "/webhooks/rest/history/" + odd_path(sender))]
        ),
        odd_ids(),
    )
    return st.one_of(typed, typed, raw, channel, history)


@functools.cache
def rest_messages() -> st.SearchStrategy[Case]:
    """Well-formed REST requests with hostile texts: each goes through NLU, the policies and the actions."""
    body = st.fixed_dictionaries(
        {"sender": st.builds(lambda n: f"fuzz-{n}", st.integers(0, 50)), "message": texts()},
        optional={
            "metadata": st.fixed_dictionaries({"language": st.one_of(st.sampled_from(LANGUAGES), small_texts())})
        },
    )
    return st.builds(lambda b: Case("REST: messages", [json_request("rasa", REST, b)]), body)


@functools.cache
def injection_cases() -> st.SearchStrategy[Case]:
    """Short conversations of injected intents; their trackers are read back afterwards."""
    opening = st.sampled_from(
        [[], [], ["/request_visit"], ["I want to visit the office"], ["/out_of_scope", "/affirm"]]
    )
    conversation = st.builds(lambda first, rest: first + rest, opening, st.lists(injections(), min_size=1, max_size=2))
    language = st.one_of(st.none(), st.sampled_from(LANGUAGES + ("xx",)))
    return st.one_of(
        st.builds(lambda m, lang: _injection("rest", m, lang), conversation, language),
        st.builds(lambda m, lang: _injection("web", m, lang), conversation, language),
        st.builds(lambda m, lang: _injection("telegram", m, lang), conversation, language),
    )


def _injection(channel: str, messages: list[str], language: str | None) -> Case:
    case = Case(f"injection: {channel}", [], channel)
    case.requests = [
        Request(channel, "POST", "", m.encode("utf-8", "surrogatepass"), (("language", language or ""),))
        for m in messages
    ]
    return case  # made into real requests once the case has its sender (number_cases)


@functools.cache
def odd_ids() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(
            [
                "../../../etc/passwd",
                "..%2F..%2Fetc%2Fpasswd",
                "%2e%2e%2f%2e%2e%2f",
                "..",
                ".",
                "%00",
                "web-%00",
                "web-0123456789abcdef/../../api/health",
                "web-0123456789abcdef%2F..",
                "%252e%252e%252f",
                "web-" + "a" * 10_000,
                "x" * 10_240,
                "web-0123456789abcdef%0d%0aSet-Cookie:x",
                "web-%F0%9F%98%80" * 4,
                "web-0123456789ABCDEF",
                "web-0123456789abcdef ",
                "%ff%fe",
                "web-..........................",
                "",
                "web-0123456789abcdef?token=x",
                "web-0123456789abcdef#frag",
                "web-0123456789abcdef;x=1",
            ]
        ),
        st.builds(lambda s: "web-" + s, st.text("abcdefABCDEF0123456789-_", min_size=10, max_size=110)),
        scripts(40),
        st.text(max_size=40),
    )


def odd_path(raw: str) -> str:
    """``raw`` as it goes on the request line: kept where it is printable ASCII (so '..',
    '%2e' and '/' arrive as typed), percent-encoded elsewhere."""
    return "".join(
        c if 0x21 <= ord(c) <= 0x7E and c not in "#?" else quote(c, safe="", errors="surrogatepass") for c in raw
    )


@functools.cache
def web_cases() -> st.SearchStrategy[Case]:
    body = st.fixed_dictionaries(
        {},
        optional={
            "sender": senders(),
            "message": st.one_of(texts(), json_values()),
            "language": st.one_of(st.sampled_from(LANGUAGES + ("xx", "")), small_texts(), json_values()),
        },
    )
    message = st.builds(lambda b: Case("web: /api/message, odd fields", [json_request("web", "/api/message", b)]), body)
    raw = st.builds(
        lambda data, kind, method: Case(
            "web: malformed bodies, content types, methods",
            [Request("web", method, "/api/message", data, (("Content-Type", kind),))],
        ),
        any_body(),
        st.sampled_from(CONTENT_TYPES),
        st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE"]),
    )
    history = st.builds(
        lambda s: Case("web: /api/history/<odd id>", [Request("web", "GET", "/api/history/" + odd_path(s))]), odd_ids()
    )
    paths = st.builds(
        lambda p: Case("web: other paths", [Request("web", "GET", p)]),
        st.sampled_from(
            [
                "/",
                "/app.js",
                "/../../etc/passwd",
                "/%2e%2e/%2e%2e/etc/passwd",
                "/static/../server.py",
                "/embed.js?x=" + "a" * 5000,
                "/api/health",
                "/api",
                "/api/",
                "/api/history/",
                "/api/history",
                "/index.html",
                "/style.css/..",
                "//api/health",
                "/favicon.svg%00",
                "/" + "a" * 9000,
            ]
        ),
    )
    return st.one_of(message, raw, history, paths)


@functools.cache
def web_messages() -> st.SearchStrategy[Case]:
    """Well-formed messages of the web chat with hostile texts: each reaches Rasa."""
    valid = st.fixed_dictionaries(
        {
            "sender": st.builds(lambda s: "web-" + s, st.text("abcdef0123456789", min_size=16, max_size=32)),
            "message": texts(),
            "language": st.one_of(st.sampled_from(LANGUAGES), small_texts()),
        }
    )
    return st.builds(lambda b: Case("web: /api/message", [json_request("web", "/api/message", b)]), valid)


@functools.cache
def telegram_users() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"id": st.integers(1, 2**40), "is_bot": st.booleans(), "first_name": small_texts()},
        optional={
            "language_code": st.one_of(
                st.sampled_from(["en", "zh-hans", "zh-hant", "ru", "fr", "xx", ""]), small_texts()
            ),
            "username": small_texts(),
        },
    )


@functools.cache
def telegram_messages() -> st.SearchStrategy[dict[str, Any]]:
    chat = st.fixed_dictionaries(
        {
            "id": st.integers(-(2**52), 2**52),
            "type": st.sampled_from(["private", "private", "group", "supergroup", "channel", "weird"]),
        },
        optional={"title": small_texts()},
    )
    entity = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["bot_command", "mention", "url", "bold", "weird"]),
            "offset": st.integers(-5, 50),
            "length": st.integers(-5, 50),
        }
    )
    return st.fixed_dictionaries(
        {"message_id": st.integers(1, 2**31), "date": st.integers(0, 2**32), "chat": chat},
        optional={
            "from": telegram_users(),
            "text": texts(),
            "entities": st.lists(entity, max_size=3),
            "caption": small_texts(),
            "photo": st.just([{"file_id": "x", "file_unique_id": "y", "width": 1, "height": 1}]),
            "sticker": st.just(
                {
                    "file_id": "x",
                    "file_unique_id": "y",
                    "width": 1,
                    "height": 1,
                    "is_animated": False,
                    "is_video": False,
                    "type": "regular",
                }
            ),
            "reply_to_message": st.just({"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}),
        },
    )


@functools.cache
def telegram_updates() -> st.SearchStrategy[dict[str, Any]]:
    callback = st.fixed_dictionaries(
        {"id": small_texts(), "from": telegram_users(), "chat_instance": small_texts()},
        optional={"data": st.one_of(texts(), injections()), "message": telegram_messages()},
    )
    update_id = st.integers(-(2**40), 2**40)
    return st.one_of(
        st.builds(lambda u, m: {"update_id": u, "message": m}, update_id, telegram_messages()),
        st.builds(lambda u, m: {"update_id": u, "edited_message": m}, update_id, telegram_messages()),
        st.builds(lambda u, c: {"update_id": u, "callback_query": c}, update_id, callback),
        st.builds(
            lambda u, m: {"update_id": u, "channel_post": m, "my_chat_member": {}}, update_id, telegram_messages()
        ),
        st.builds(lambda u, v: {"update_id": u, "message": v}, st.one_of(update_id, json_values()), json_values()),
        st.dictionaries(small_texts(), json_values(), max_size=4),
    )


@functools.cache
def telegram_cases() -> tuple[st.SearchStrategy[Case], st.SearchStrategy[Case]]:
    """Requests the webhook refuses (no or a wrong secret, a malformed body), and updates it handles."""
    secrets_ = st.one_of(
        st.none(),
        st.sampled_from(["", "wrong", WEBHOOK_SECRET + "x", WEBHOOK_SECRET[:-1], WEBHOOK_SECRET.upper()]),
        st.text("abcdefghijklmnopqrstuvwxyz-_0123456789", max_size=40),
    )

    def post(data: bytes, secret: str | None, kind: str = "application/json") -> Request:
        headers = [("Content-Type", kind)] + ([(SECRET_HEADER, secret)] if secret is not None else [])
        return Request("rasa", "POST", TELEGRAM, data, tuple(headers))

    dump = lambda u: json.dumps(u, ensure_ascii=False).encode("utf-8", "surrogatepass")  # noqa: E731
    forged = st.builds(
        lambda u, s: Case("Telegram: forged (no or wrong secret)", [post(dump(u), s)]), telegram_updates(), secrets_
    )
    malformed = st.builds(
        lambda b, kind: Case("Telegram: secret, malformed body", [post(b, WEBHOOK_SECRET, kind)]),
        any_body(),
        st.sampled_from(CONTENT_TYPES),
    )
    updates = st.builds(
        lambda u: Case("Telegram: secret, generated updates", [post(dump(u), WEBHOOK_SECRET)]), telegram_updates()
    )
    replayed = st.builds(
        lambda u, n: Case("Telegram: secret, replayed updates", [post(dump(u), WEBHOOK_SECRET)] * n),
        telegram_updates(),
        st.integers(2, 3),
    )
    return (st.one_of(forged, malformed), st.one_of(updates, replayed))


def heavy_cases() -> st.SearchStrategy[Case]:
    """Inputs that go all the way through Rasa: hostile texts and injected intents."""
    return st.one_of(rest_messages(), web_messages(), telegram_cases()[1], injection_cases())


def light_cases() -> st.SearchStrategy[Case]:
    """Inputs refused at the door: bad bodies, ids, secrets, paths, methods."""
    return st.one_of(rest_cases(), web_cases(), telegram_cases()[0])


def draw_cases(strategy: st.SearchStrategy[Case], count: int, seed_value: int) -> list[Case]:
    """``count`` examples of ``strategy``, as Hypothesis draws them from ``seed_value``."""
    drawn: list[Case] = []

    @seed(seed_value)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: Case) -> None:
        drawn.append(case)

    if count > 0:
        collect()
    return drawn


def generate(count: int, seed_value: int, heavy: float = HEAVY) -> list[Case]:
    """At least ``count`` inputs (requests), drawn by Hypothesis from ``seed_value``; a share
    ``heavy`` of them goes through NLU and the actions (the rest is refused early)."""
    drawn: list[Case] = []
    round_ = 0
    while (missing := count - sum(len(c.requests) for c in drawn)) > 0:
        heavy_count = round(missing * heavy / 1.5)  # a heavy case is 1.5 requests on average
        drawn += draw_cases(heavy_cases(), heavy_count, seed_value * 1000 + round_)
        drawn += draw_cases(light_cases(), max(1, missing - heavy_count), seed_value * 1000 + round_ + 500)
        round_ += 1
    random.Random(seed_value).shuffle(drawn)
    number_cases(drawn, seed_value)
    return drawn


def number_cases(drawn: list[Case], seed_value: int) -> None:
    """Gives each injected conversation its own sender and makes its requests."""
    for index, case in enumerate(drawn):
        if not case.injected:
            continue
        messages = [
            (r.body.decode("utf-8", "surrogatepass"), dict(r.headers).get("language") or None) for r in case.requests
        ]
        if case.injected == "rest":
            case.sender = f"fuzz-injection-{seed_value}-{index}"
            case.requests = [
                json_request(
                    "rasa", REST, {"sender": case.sender, "message": m, "metadata": {"language": lang} if lang else {}}
                )
                for m, lang in messages
            ]
        elif case.injected == "web":
            case.sender = f"web-fuzzinjection{seed_value:x}x{index:08d}"
            case.requests = [
                json_request("web", "/api/message", {"sender": case.sender, "message": m, "language": lang or "en"})
                for m, lang in messages
            ]
        else:
            chat_id = 7_000_000_000 + seed_value * 100_000 + index
            case.sender = f"telegram-{chat_id}"
            user = {"id": chat_id, "is_bot": False, "first_name": "Fuzz"} | (
                {"language_code": lang} if (lang := messages[0][1]) else {}
            )
            case.requests = [
                json_request(
                    "rasa",
                    TELEGRAM,
                    {
                        "update_id": index * 10 + n,
                        "message": {
                            "message_id": n + 1,
                            "date": 1_700_000_000,
                            "chat": {"id": chat_id, "type": "private"},
                            "from": user,
                            "text": m,
                        },
                    },
                    [(SECRET_HEADER, WEBHOOK_SECRET)],
                )
                for n, (m, _) in enumerate(messages)
            ]


# --- Telegram's Bot API, stood in for on the loopback ------------------------------------------


class BotApi:
    """Answers python-telegram-bot's calls as Telegram would (getMe, sendMessage, …), and keeps the texts sent."""

    def __init__(self) -> None:
        self.sent: dict[int, list[str]] = {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    params = json.loads(raw or b"{}")
                else:
                    params = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
                data = json.dumps(owner.answer(self.path.rsplit("/", 1)[-1], params)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/bot"

    def answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "getMe":
            return {"ok": True, "result": {"id": 123456, "is_bot": True, "first_name": "Fuzz", "username": "fuzz_bot"}}
        if method in ("sendMessage", "editMessageText"):
            try:
                chat_id = int(json.loads(str(params.get("chat_id"))))
            except (TypeError, ValueError):
                chat_id = 0
            with self.lock:
                self.sent.setdefault(chat_id, []).append(str(params.get("text", "")))
            return {
                "ok": True,
                "result": {
                    "message_id": 1,
                    "date": int(time.time()),
                    "text": str(params.get("text", "")),
                    "chat": {"id": chat_id, "type": "private"},
                },
            }
        return {"ok": True, "result": True}

    def texts(self, chat_id: int) -> list[str]:
        with self.lock:
            return list(self.sent.get(chat_id, []))

    def __enter__(self) -> BotApi:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- sending --------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    status: int | None  # None: no answer (connection reset, timeout)
    request: Request
    error: str = ""
    seconds: float = 0.0


def send(
    base: dict[str, tuple[str, int]], request: Request, timeout: float = REQUEST_TIMEOUT
) -> tuple[int | None, bytes, str]:
    host, port = base[request.target]
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.putrequest(request.method, request.path or "/", skip_accept_encoding=True)
        for name, value in request.headers:
            connection.putheader(name, value)
        if request.body or request.method != "GET":
            connection.putheader("Content-Length", str(len(request.body)))
        connection.endheaders(request.body)
        answer = connection.getresponse()
        return answer.status, answer.read(), ""
    except (OSError, http.client.HTTPException) as error:
        return None, b"", f"{type(error).__name__}: {error}"
    finally:
        connection.close()


def run_cases(servers: Servers, drawn: list[Case], workers: int = WORKERS) -> list[Result]:
    base = {"rasa": (servers.host, servers.rasa_port), "web": ("127.0.0.1", servers.web_port)}

    def one(case: Case) -> list[Result]:
        results = []
        for request in case.requests:
            started = time.monotonic()
            status, _, error = send(base, request)
            results.append(Result(case.kind, status, request, error, time.monotonic() - started))
        return results

    with ThreadPoolExecutor(workers) as pool:
        return [result for results in pool.map(one, drawn) for result in results]


# --- checks ----------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory(servers: Servers) -> dict[str, int]:
    """Resident memory (kB) of each of the stack's processes, with its children."""
    return {p.name: sum(rss_kb(pid) for pid in descendants(p.popen.pid)) for p in servers.processes if p.popen}


def send_waiting(
    base: dict[str, tuple[str, int]], request: Request, patience: float = 120.0
) -> tuple[int | None, bytes, str]:
    """``send``, waited out while the answer is a 429 (the phase with the default limits)."""
    deadline = time.monotonic() + patience
    while True:
        status, data, error = send(base, request)
        if status != 429 or time.monotonic() > deadline:
            return status, data, error
        time.sleep(1)


def rest_reply(servers: Servers, sender: str, text: str, language: str | None = None) -> list[dict[str, Any]]:
    base = {"rasa": (servers.host, servers.rasa_port)}
    body = {"sender": sender, "message": text, "metadata": {"language": language} if language else {}}
    status, data, error = send_waiting(base, json_request("rasa", REST, body))
    if status != 200:
        raise AssertionError(f"REST answered {status} {error} to a normal question")
    return json.loads(data)


def web_reply(servers: Servers, sender: str, text: str, language: str) -> list[dict[str, Any]]:
    base = {"web": ("127.0.0.1", servers.web_port)}
    status, data, error = send_waiting(
        base, json_request("web", "/api/message", {"sender": sender, "message": text, "language": language})
    )
    if status != 200:
        raise AssertionError(f"the web chat answered {status} {error} to a normal question")
    return json.loads(data)


def telegram_reply(servers: Servers, api: BotApi, chat_id: int, text: str, language: str) -> list[str]:
    base = {"rasa": (servers.host, servers.rasa_port)}
    before = len(api.texts(chat_id))
    update = {
        "update_id": chat_id,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "text": text,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Fuzz", "language_code": language},
        },
    }
    status, _, error = send(base, json_request("rasa", TELEGRAM, update, [(SECRET_HEADER, WEBHOOK_SECRET)]))
    if status != 200:
        raise AssertionError(f"the Telegram webhook answered {status} {error} to a normal question")
    return api.texts(chat_id)[before:]  # the webhook answers once the replies are sent


class Answers:
    """What each server answers to the check questions: taken after the warm-up, compared after the run."""

    def __init__(self, servers: Servers, api: BotApi) -> None:
        self.servers, self.api, self.count = servers, api, 0

    def take(self) -> dict[str, Any]:
        taken = {}
        for language, question in CHECKS.items():
            self.count += 1
            tag = f"{os.getpid()}{self.count:04d}"
            rest = rest_reply(self.servers, f"fuzz-check-{tag}", question, language)
            web = web_reply(self.servers, f"web-fuzzcheck{tag}{'0' * 8}", question, language)
            telegram = telegram_reply(self.servers, self.api, 8_000_000_000 + self.count, question, language)
            taken[language] = {
                "REST": [(r.get("text"), r.get("language")) for r in rest],
                "web chat": [(r.get("text"), r.get("language")) for r in web],
                "Telegram": telegram,
            }
        return taken


def expected_language(code: str, replies: list[tuple[str | None, str | None]]) -> bool:
    return bool(replies) and all(language == code for _, language in replies)


def warm_up(servers: Servers, api: BotApi, count: int) -> None:
    """``count`` normal messages in the five languages, through the three channels."""
    questions = [(lang, q) for lang, qs in NORMAL.items() for q in qs]
    jobs = []
    for n in range(count):
        language, question = questions[n % len(questions)]
        channel = ("rest", "web", "telegram")[n % 3]
        conversation = n % 25
        jobs.append((channel, conversation, language, question))

    def one(job: tuple[str, int, str, str]) -> None:
        channel, conversation, language, question = job
        if channel == "rest":
            rest_reply(servers, f"fuzz-warm-{conversation}", question, language)
        elif channel == "web":
            web_reply(servers, f"web-fuzzwarmup{conversation:06d}xx", question, language)
        else:
            telegram_reply(servers, api, 9_000_000_000 + conversation, question, language)

    by_conversation: dict[tuple[str, int], list] = {}
    for job in jobs:
        by_conversation.setdefault(job[:2], []).append(job)
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda js: [one(j) for j in js], by_conversation.values()))


def tracker_slots(servers: Servers, sender: str) -> dict[str, Any]:
    base = {"rasa": (servers.host, servers.rasa_port)}
    path = f"/conversations/{quote(sender, safe='')}/tracker?token={quote(servers.auth_token or '')}"
    status, data, error = send(base, Request("rasa", "GET", path))
    if status != 200:
        raise AssertionError(f"Rasa's tracker API answered {status} {error}")
    return json.loads(data).get("slots") or {}


def injected_slots(servers: Servers, drawn: list[Case]) -> tuple[int, list[str]]:
    """How many injected conversations were read back, and every slot that should not be set."""
    problems, read = [], 0
    for case in drawn:
        if not case.sender:
            continue
        slots = tracker_slots(servers, case.sender)
        read += 1
        for slot in PERSONAL_SLOTS:
            if slots.get(slot) not in (None, ""):
                problems.append(f"{case.sender}: {slot}={slots[slot]!r} after {[r.body[:80] for r in case.requests]}")
        if slots.get("language") not in (None, *LANGUAGES):
            problems.append(f"{case.sender}: language={slots['language']!r}")
    return read, problems


# --- a phase, the report ----------------------------------------------------------------


@dataclass
class Outcome:
    """What one phase sent, what came back, and the checks after it."""

    name: str
    limits: str
    results: list[Result] = field(default_factory=list)
    memory_before: dict[str, int] = field(default_factory=dict)
    memory_after: dict[str, int] = field(default_factory=dict)
    injected_read: int = 0
    injected_problems: list[str] = field(default_factory=list)
    answers_before: dict[str, Any] = field(default_factory=dict)
    answers_after: dict[str, Any] = field(default_factory=dict)
    answer_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    check_memory: bool = True

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status is None or r.status >= 500]

    @property
    def memory_problems(self) -> list[str]:
        if not self.check_memory:
            return []
        return [
            f"{name}: {self.memory_before[name] / 1024:.0f} MB -> {after / 1024:.0f} MB"
            for name, after in self.memory_after.items()
            if after > self.memory_before.get(name, 0) * (1 + MEMORY_TOLERANCE)
        ]

    @property
    def passed(self) -> bool:
        return not (self.failures or self.injected_problems or self.answer_problems or self.memory_problems)


def compare_answers(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    problems = []
    for language, channels in after.items():
        for channel, replies in channels.items():
            if channel != "Telegram" and not expected_language(language, replies):
                problems.append(f"{channel} ({language}): replies not in {language}: {replies}")
            if not replies:
                problems.append(f"{channel} ({language}): no reply")
            elif replies != before[language][channel]:
                problems.append(f"{channel} ({language}): {replies} after the run, {before[language][channel]} before")
    return problems


def run_phase(
    name: str,
    drawn: list[Case] | Callable[[], list[Case]],
    model: Path,
    env: dict[str, str],
    limits: str,
    warm: int,
    check_memory: bool = True,
    log_dir: Path | None = None,
    progress: Callable[[str], None] = print,
) -> Outcome:
    """One stack, warmed up, then the inputs; ``drawn`` may be a function that draws them,
    called while the servers start."""
    phase = Outcome(name, limits, check_memory=check_memory)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp, BotApi() as api, ThreadPoolExecutor(1) as drawing:
        pending = drawing.submit(drawn) if callable(drawn) else None
        stack = Servers(
            model=model,
            rasa_port=free_port(),
            action_port=free_port(),
            web_port=free_port(),
            auth_token=os.urandom(16).hex(),
            log_dir=log_dir or Path(tmp) / "logs",
            env={
                "DATABASE_URL": f"sqlite:///{Path(tmp) / 'bot.db'}",
                "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
                "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "TELEGRAM_BASE_URL": api.base_url,
                **env,
            },
        )
        progress(f"[{name}] starting the servers")
        with stack:
            answers = Answers(stack, api)
            progress(f"[{name}] warm-up: {warm} normal messages")
            warm_up(stack, api, warm)
            phase.answers_before = answers.take()
            phase.memory_before = memory(stack)
            drawn = pending.result() if pending else drawn
            progress(f"[{name}] sending {sum(len(c.requests) for c in drawn)} inputs")
            started = time.monotonic()
            phase.results = run_cases(stack, drawn)
            phase.seconds = time.monotonic() - started
            for process in stack.processes:
                process.check_alive()
            phase.answers_after = answers.take()
            phase.answer_problems = compare_answers(phase.answers_before, phase.answers_after)
            phase.memory_after = memory(stack)
            phase.injected_read, phase.injected_problems = injected_slots(stack, drawn)
    return phase


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def show(statuses: Counter) -> str:
    """``200: 12, 400: 3, none: 1`` (none: no answer)."""
    return ", ".join(f"{status or 'none'}: {n}" for status, n in sorted(statuses.items(), key=lambda x: x[0] or 0))


def report(phases: list[Outcome], seed_value: int, seconds: float) -> str:
    lines = [
        "# Hostile inputs (`make fuzz`)",
        "",
        f"Seed {seed_value}; {sum(len(p.results) for p in phases)} inputs in {seconds / 60:.1f} min; "
        f"{'PASSED' if all(p.passed for p in phases) else 'FAILED'}.",
        "",
    ]
    for phase in phases:
        statuses = Counter(r.status for r in phase.results)
        lines += [
            f"## {phase.name} ({phase.limits})",
            "",
            f"{len(phase.results)} inputs in {phase.seconds:.0f} s; 5xx or no answer: {len(phase.failures)}; "
            f"statuses: {show(statuses)}.",
            "",
            "| kind | inputs | statuses | slowest |",
            "| --- | ---: | --- | ---: |",
        ]
        kinds: dict[str, Counter] = {}
        slowest: Counter = Counter()
        for result in phase.results:
            kinds.setdefault(result.kind, Counter())[result.status] += 1
            slowest[result.kind] = max(slowest[result.kind], result.seconds)
        for kind, counter in sorted(kinds.items()):
            lines.append(f"| {kind} | {sum(counter.values())} | {show(counter)} | {slowest[kind]:.1f} s |")
        lines += ["", "| process | memory after warm-up | after the run | change |", "| --- | ---: | ---: | ---: |"]
        for name, before in phase.memory_before.items():
            after = phase.memory_after.get(name, 0)
            change = 100 * (after - before) / max(before, 1)
            lines.append(f"| {name} | {before / 1024:.0f} MB | {after / 1024:.0f} MB | {change:+.1f}% |")
        lines += [
            "",
            f"Injected conversations read back: {phase.injected_read}; slots set by injection: "
            f"{len(phase.injected_problems)}. Normal questions (en, zh) answered as before by REST, "
            f"the web chat and Telegram: {'yes' if not phase.answer_problems else 'NO'}.",
            "",
        ]
        problems = (
            [
                f"{r.kind}: {r.status or r.error} for {r.request.method} {r.request.target}"
                f"{r.request.path[:80]} {r.request.body[:120]!r}"
                for r in phase.failures[:20]
            ]
            + phase.injected_problems[:20]
            + phase.answer_problems
            + phase.memory_problems
        )
        if problems:
            lines += ["Problems:", ""] + [f"- {p}" for p in problems] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="inputs of the main phase (limits off)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limited", type=int, default=1000, help="inputs of the phase with the default limits")
    parser.add_argument("--warm-up", type=int, default=200)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    started = time.monotonic()
    print(f"generating {args.examples} inputs (seed {args.seed})")
    limited = args.limited
    phases = [
        run_phase(
            "limits off",
            lambda: generate(args.examples, args.seed),
            args.model,
            NO_LIMITS,
            "RATE_LIMIT_PER_IP=0, RATE_LIMIT_PER_SENDER=0, MAX_IN_FLIGHT=0",
            args.warm_up,
        )
    ]
    if limited > 0:
        phases.append(
            run_phase(
                "default limits",
                lambda: generate(limited, args.seed + 1_000),
                args.model,
                {},
                "RATE_LIMIT_PER_IP, RATE_LIMIT_PER_SENDER and MAX_IN_FLIGHT unset",
                args.warm_up,
            )
        )
    text = report(phases, args.seed, time.monotonic() - started)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0 if all(p.passed for p in phases) else 1


if __name__ == "__main__":
    sys.exit(main())
