"""Shared fixtures: fresh trackers, the trained model, the running servers."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.cli.servers import Servers
from bot.core.languages import registry
from bot.core.paths import MODEL

# The languages the bot speaks, from data/languages.yml: a language added there is
# tested by every test parametrized over them.
LANGUAGES = registry().codes

# A sentence in each of some languages the detector knows (data/languages.yml
# `detect_also`). Tests of "a language the bot does not speak" take the first of
# these whose language data/languages.yml does not list (`unsupported()`).
OTHER_LANGUAGES = {
    "DE": "Wie komme ich zur Universität in Nanjing?",
    "ES": "¿Dónde está la oficina internacional de la universidad?",
    "IT": "Dove si trova l'ufficio per le relazioni internazionali dell'università?",
    "PT": "Onde fica o escritório de relações internacionais da universidade?",
    "NL": "Waar is het bureau voor internationale samenwerking van de universiteit?",
}


def unsupported() -> tuple[str, str]:
    """(ISO code, a sentence) of a language the detector knows and the bot does not speak."""
    reg = registry()
    spoken = {lang.lingua for lang in reg.languages.values()}
    iso = next(iso for iso in reg.detect_also if iso in OTHER_LANGUAGES and iso not in spoken)
    return iso, OTHER_LANGUAGES[iso]


def sample(table: dict[str, Any], language: str) -> Any:
    """``table[language]``: a test's hand-written sentence in that language. A language
    added to data/languages.yml without one is skipped by that test, saying so."""
    if language not in table:
        pytest.skip(f"no sample in {language} for this test: add one to its table")
    return table[language]


def make_tracker(
    text: str = "",
    intent: str | None = None,
    slots: dict[str, Any] | None = None,
    entities: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    sender_id: str = "test-user",
) -> Tracker:
    """A fresh tracker whose latest message is ``text`` classified as ``intent``."""
    return Tracker.from_dict(
        {
            "sender_id": sender_id,
            "slots": slots or {},
            "latest_message": {
                "text": text,
                "intent": {"name": intent, "confidence": 1.0} if intent else {},
                "entities": entities or [],
                "metadata": metadata or {},
            },
            "events": [],
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": "action_listen",
        }
    )


@pytest.fixture
def dispatcher() -> CollectingDispatcher:
    return CollectingDispatcher()


@pytest.fixture(scope="session")
def model() -> Path:
    if not MODEL.exists():
        pytest.fail(f"no trained model at {MODEL}: `make test` trains it first")
    return MODEL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def servers(model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real action server, Rasa server and web chat, shared by every end-to-end test.

    Never stopped or restarted by a test: a test that restarts a server starts
    its own stack (``own_servers``). Rasa's HTTP API is on with a random token
    (tests read trackers through it); the per-address rate limit is lifted, as
    the whole suite talks from one address (tests/test_security.py checks it).
    """
    database = tmp_path_factory.mktemp("db") / "bot.db"
    running = Servers(
        model=model,
        rasa_port=free_port(),
        action_port=free_port(),
        web_port=free_port(),
        auth_token=os.urandom(16).hex(),
        env={
            "DATABASE_URL": f"sqlite:///{database}",
            "RATE_LIMIT_PER_IP": "0",
            "WEB_FRAME_ANCESTORS": "'self' http://127.0.0.1:*",  # tests/test_web.py's office site
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    with running:
        yield running


@pytest.fixture
def own_servers(model: Path, tmp_path: Path):
    """A small stack of the test's own (action and Rasa servers; ``web=True`` adds the web chat),
    for tests that stop or restart servers. Started by calling it; stopped after the test."""
    started: list[Servers] = []

    def start(web: bool = False, env: dict[str, str] | None = None) -> Servers:
        stack = Servers(
            model=model,
            rasa_port=free_port(),
            action_port=free_port(),
            web_port=free_port() if web else None,
            env={"DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}", "RATE_LIMIT_PER_IP": "0", **(env or {})},
            log_dir=tmp_path / "logs",
        )
        started.append(stack)
        return stack.start()

    yield start
    for stack in started:
        stack.stop()


def post(url: str, body: Any, timeout: float = 60) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Chat:
    """One user talking to the REST channel."""

    def __init__(self, servers: Servers, sender: str, language_hint: str | None = None) -> None:
        self.url = f"{servers.rasa_url}/webhooks/rest/webhook"
        self.sender, self.hint = sender, language_hint

    def send(self, text: str) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"sender": self.sender, "message": text}
        if self.hint:
            body["metadata"] = {"language": self.hint}
        status, replies = post(self.url, body)
        assert status == 200, replies
        return replies

    def ask(self, text: str) -> str:
        """The bot's reply texts, joined."""
        return "\n".join(r.get("text", "") for r in self.send(text))


@pytest.fixture
def chat(servers: Servers, request: pytest.FixtureRequest):
    def start(language_hint: str | None = None, sender: str | None = None) -> Chat:
        return Chat(servers, sender or f"test-{os.urandom(6).hex()}", language_hint)

    return start


POSTGRES = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def postgres_url():
    """A PostgreSQL database of the test's own, created and dropped; skipped (or, with
    REQUIRE_POSTGRES set, as CI does, failed) when no server is reachable."""
    import uuid

    import sqlalchemy as sa

    try:
        engine = sa.create_engine(f"{POSTGRES}/postgres", connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
    except sa.exc.OperationalError:
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES} and REQUIRE_POSTGRES is set")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES} (set REQUIRE_POSTGRES=1 to fail instead)")
    name = f"njupt_test_{uuid.uuid4().hex[:10]}"
    yield f"{POSTGRES}/{name}"
    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def handoff_store(tmp_path, monkeypatch):
    """The hand-off store on a SQLite file of the test's own; no staff group, no e-mail, the
    staff's language the default (the process-wide stores made again for it, and after it)."""
    from bot.core import handoff as handoff_module
    from bot.core import storage
    from bot.core.handoff import HandoffStore

    url = f"sqlite:///{tmp_path / 'bot.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    for name in ("TELEGRAM_STAFF_CHAT_ID", "SMTP_URL", "STAFF_LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    storage.store.cache_clear()
    handoff_module.handoffs.cache_clear()
    yield HandoffStore(storage.RequestStore(url))
    storage.store.cache_clear()
    handoff_module.handoffs.cache_clear()
