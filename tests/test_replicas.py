"""Two replicas behind HAProxy (issue 12), on the real PostgreSQL and Redis: what `REPLICAS=2 make run` starts.

One stack of this module's own (free ports, a PostgreSQL database created and dropped, lock
keys under a prefix of its own in Redis, the Telegram bridge against a local Bot API stand-in),
shared by its tests; the last one kills a replica. Skipped when PostgreSQL, Redis or HAProxy is
missing, a failure instead with REQUIRE_POSTGRES set (CI, where `make test` installs HAProxy).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bot.cli.servers import SECRETS, Servers, haproxy_path
from bot.core.paths import ROOT
from bot.core.storage import RequestStore
from bot.core.texts import say
from bot.staff.publish import SWAP_HEADER, Progress, Publisher, PublishError
from bot.tools.telegram_api import BotApi

from .conftest import POSTGRES, free_port
from .test_security import LOOPBACK, _group_pids, listening_addresses

pytestmark = pytest.mark.e2e
REDIS_URL = "redis://127.0.0.1:6379/0"
NEXT_YEAR = dt.date.today().year + 1


def _missing(what: str) -> None:
    if os.environ.get("REQUIRE_POSTGRES"):
        pytest.fail(f"{what} (REQUIRE_POSTGRES is set)")
    pytest.skip(f"{what} (set REQUIRE_POSTGRES=1 to fail instead)")


def _services() -> None:
    import redis

    try:
        engine = sa.create_engine(f"{POSTGRES}/postgres", connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError:
        _missing(f"PostgreSQL is not reachable at {POSTGRES}")
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except redis.RedisError:
        _missing(f"Redis is not reachable at {REDIS_URL}")
    if not haproxy_path():
        _missing("HAProxy is not installed: `make haproxy` installs it")


@pytest.fixture(scope="module")
def stack(model: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two replicas, HAProxy, the web chat and the Telegram bridge, on a database of their own."""
    _services()
    name = f"njupt_test_{uuid.uuid4().hex[:10]}"
    prefix = f"test{uuid.uuid4().hex[:8]}"
    with BotApi() as api:
        servers = Servers(
            model=model, rasa_port=free_port(), action_port=free_port(), web_port=free_port(),
            replicas=2, replica_ports=[(free_port(), free_port()), (free_port(), free_port())],
            auth_token=os.urandom(16).hex(), lock_key_prefix=prefix, telegram=True,
            log_dir=tmp_path_factory.mktemp("replica-logs"),
            env={"DATABASE_URL": f"{POSTGRES}/{name}", "REDIS_URL": REDIS_URL, "RATE_LIMIT_PER_IP": "0",
                 "RATE_LIMIT_PER_SENDER": "0", "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_BASE_URL": api.base_url,
                 # a killed replica's ticket of a conversation's lock holds that conversation this long
                 "TICKET_LOCK_LIFETIME": "15"},
        )  # fmt: skip
        try:
            with servers:
                servers.telegram_api = api
                yield servers
        finally:
            admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.dispose()


def send(url: str, sender: str, text: str, timeout: float = 120) -> list[dict]:
    answer = httpx.post(f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=timeout)
    assert answer.status_code == 200, (answer.status_code, answer.text)
    return answer.json()


def texts(replies: list[dict]) -> str:
    return "\n".join(reply.get("text", "") for reply in replies)


def events(stack: Servers, sender: str) -> list[dict]:
    """Every stored event of the conversation, read through the load balancer (Rasa's API)."""
    url = f"{stack.rasa_url}/conversations/{sender}/tracker"
    answer = httpx.get(url, params={"token": stack.auth_token, "include_events": "ALL"}, timeout=60)
    answer.raise_for_status()
    return answer.json()["events"]


def turns(stored: list[dict]) -> list[tuple[str, list[str]]]:
    """(user text, the bot texts that followed it) for each user message, in stored order."""
    found: list[tuple[str, list[str]]] = []
    for event in stored:
        if event["event"] == "user":
            found.append((event["text"], []))
        elif event["event"] == "bot" and found:
            found[-1][1].append(event["text"])
    return found


def environment(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def test_the_replicas_share_the_secrets_behind_a_load_balancer_on_the_loopback(stack: Servers):
    assert stack.backends() == {"rasa-1": "UP", "rasa-2": "UP", "actions-1": "UP", "actions-2": "UP"}
    rasa = [environment(stack.process(f"Rasa server {n}").popen.pid) for n in (1, 2)]
    actions = [environment(stack.process(f"action server {n}").popen.pid) for n in (1, 2)]
    for name in SECRETS:
        assert rasa[0][name] == rasa[1][name] != "", name
    assert actions[0]["ACTION_SERVER_TOKEN"] == actions[1]["ACTION_SERVER_TOKEN"] == rasa[0]["ACTION_SERVER_TOKEN"]
    assert all("WEB_CHANNEL_TOKEN" not in env and "RASA_AUTH_TOKEN" not in env for env in actions)
    secrets = [rasa[0][name] for name in SECRETS]
    config = stack.lb_socket.with_suffix(".cfg")
    assert config.stat().st_mode & 0o777 == 0o600
    assert not any(secret in config.read_text() for secret in secrets)
    for process in stack.processes:
        pids = _group_pids(process.popen.pid)
        for pid in pids:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert not any(secret in command_line for secret in secrets), process.name
        if process.name != "Telegram bridge":
            addresses = listening_addresses(pids)
            assert addresses and {address for address, _ in addresses} <= LOOPBACK, (process.name, addresses)
    lb = listening_addresses(_group_pids(stack.process("load balancer").popen.pid))
    assert {port for _, port in lb} == {stack.rasa_port, stack.action_port}


def test_the_web_chat_and_the_telegram_bridge_go_through_the_load_balancer(stack: Servers):
    web = f"http://127.0.0.1:{stack.web_port}"
    sender = "web-" + uuid.uuid4().hex[:22]
    for text in ("Where is the international office?", "Which countries does NJUPT cooperate with?"):
        answer = httpx.post(f"{web}/api/message", json={"sender": sender, "message": text}, timeout=120)
        assert answer.status_code == 200 and answer.json()[0]["text"], answer.text
    history = httpx.get(f"{web}/api/history/{sender}", timeout=60).json()
    assert "Where is the international office?" in str(history) and "cooperate" in str(history)
    for process in ("web chat", "Telegram bridge"):
        command = stack.process(process).command
        assert command[command.index("--rasa-url") + 1] == stack.rasa_url
    chat = 4242
    stack.telegram_api.ask(chat, "你好", timeout=120)
    stack.telegram_api.settle(chat)
    (greeting,) = [event["text"] for event in events(stack, f"telegram-{chat}") if event["event"] == "bot"][:1]
    assert greeting == say("greet", "zh-Hans")


def test_a_conversation_on_alternating_replicas_keeps_its_language_slots_and_form(stack: Servers):
    """Each message goes to the other replica (straight to its port): the second one only knows the
    conversation from PostgreSQL."""
    sender = f"alternating-{uuid.uuid4().hex[:8]}"
    script = [
        ("Could you answer in Russian please?", say("language_switched", "ru")),
        ("I want to submit a visit request", say("form_visit_start", "ru") + "\n" + say("form_ask_visitor_name", "ru")),
        ("Grace Hopper", say("form_ask_institution", "ru")),
        ("Yale University", say("form_ask_country", "ru")),
        ("USA", say("form_ask_email", "ru")),
        ("grace@yale.example", say("form_ask_purpose", "ru")),
        (say("purpose_lecture", "ru"), say("form_ask_arrival_date", "ru")),
        (f"10 May {NEXT_YEAR}", say("form_ask_departure_date", "ru")),
        (f"14 May {NEXT_YEAR}", say("form_ask_visit_notes", "ru")),
        ("Compilers", "Grace Hopper"),  # the summary
    ]  # fmt: skip
    for turn, (text, expected) in enumerate(script):
        reply = texts(send(stack.replica_url(1 + turn % 2), sender, text))
        assert reply.startswith(expected) or expected in reply, (turn, text, reply)
    saved = texts(send(stack.replica_url(1 + len(script) % 2), sender, "/affirm"))
    ref = saved.split(f"V-{NEXT_YEAR}-")[1][:4]
    assert saved == say("visit_saved", "ru", ref=f"V-{NEXT_YEAR}-{ref}")
    stored = RequestStore(stack.env["DATABASE_URL"]).get(f"V-{NEXT_YEAR}-{ref}")
    assert (stored.full_name, stored.institution, stored.email) == (
        "Grace Hopper",
        "Yale University",
        "grace@yale.example",
    )
    assert [user for user, _ in turns(events(stack, sender))] == [text for text, _ in script] + ["/affirm"]


QUESTIONS = [
    "Where is the international office?", "What is the postal address of NJUPT?", "hello",
    "Which countries does NJUPT cooperate with?", "What joint programmes are there?", "thank you",
    "Tell me about the APT training base", "Can foreign students get a doctor's degree?",
    "How many visiting scholars come to NJUPT?", "What does the department do?", "Who are you?",
    "Does NJUPT have foreign experts?", "What is the NJUPT-NYIT International College?", "bye",
    "Does NJUPT host international conferences?", "Which universities are partners?", "hi there",
    "What degrees can international students study for?", "What is the education philosophy?", "ok thanks",
]  # fmt: skip


def test_twenty_messages_of_one_sender_at_once_are_all_answered_and_stored_in_order(stack: Servers):
    """Through the load balancer, so both replicas take some: Redis's lock makes them wait their turn."""
    sender = f"burst-{uuid.uuid4().hex[:8]}"
    numbered = [f"{text} ({n})" for n, text in enumerate(QUESTIONS, 1)]
    start = threading.Barrier(len(numbered))

    def one(text: str) -> list[str]:
        start.wait()
        return [reply["text"] for reply in send(stack.rasa_url, sender, text) if "text" in reply]

    before = stack.served()
    with concurrent.futures.ThreadPoolExecutor(len(numbered)) as pool:
        replies = dict(zip(numbered, pool.map(one, numbered), strict=True))
    after = stack.served()
    assert all(after[f"rasa-{n}"] > before[f"rasa-{n}"] for n in (1, 2)), (before, after)
    assert all(replies.values()), replies
    stored = turns(events(stack, sender))
    assert sorted(user for user, _ in stored) == sorted(numbered)  # each once: none lost, none twice
    for user, answered in stored:  # each turn's answers follow its message, before the next one
        assert answered == replies[user], user


def test_a_publish_swaps_the_model_of_every_replica_and_reloads_every_action_server(stack: Servers, model: Path):
    """The swap step of `bot publish` with an already trained model (a copy under models/published/): each
    Rasa server is reached on its own port (through the load balancer, only one would take the model),
    each action server reads the texts again, and a replica that fails fails the publish, named."""
    published = ROOT / "models" / "published" / f"njupt-replicas-{uuid.uuid4().hex[:8]}.tar.gz"
    published.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model, published)
    token = stack.swap_token_file.read_text().strip()

    def model_of(number: int) -> str:
        status = httpx.get(
            f"{stack.replica_url(number)}/webhooks/model/status", headers={SWAP_HEADER: token}, timeout=30
        )
        return status.json()["model"]

    publisher = Publisher(rasa_url=stack.rasa_url, engine=sa.create_engine("sqlite://"))
    try:
        assert publisher.targets() == [
            (stack.replica_url(n), f"http://127.0.0.1:{actions}")
            for n, (_, actions) in enumerate(stack.replica_addresses, 1)
        ]
        assert {model_of(1), model_of(2)} == {model.name}
        progress = Progress()
        publisher._swap(published, progress)
        assert (model_of(1), model_of(2)) == (published.name, published.name)
        assert progress.message == "the new model is live on 2 Rasa server(s)"
        for number in (1, 2):  # each replica answers with it, straight to its port
            reply = texts(
                send(
                    stack.replica_url(number),
                    f"swapped-{number}-{uuid.uuid4().hex[:6]}",
                    "Where is the international office?",
                )
            )
            assert reply == say("ask_address", "en")
        assert publisher.reload_actions() == 2
        # an action server that refuses (here: a wrong token) or a Rasa server that is not there fails it
        wrong = Publisher(rasa_url=stack.rasa_url, swap_token="not-the-token", engine=publisher.engine)
        with pytest.raises(PublishError, match=r"reload: 2 of 2 action server\(s\) failed: action server 1 .* 403"):
            wrong.reload_actions()
        gone = f"http://127.0.0.1:{free_port()}"
        missing = Publisher(rasa_url=stack.rasa_url, engine=publisher.engine,
                            replicas=[(stack.replica_url(1), None), (gone, None)])  # fmt: skip
        with pytest.raises(PublishError, match=rf"swap: 1 of 2 Rasa server\(s\) failed: replica 2 \({gone}\)"):
            missing._swap(model, Progress())
        assert (model_of(1), model_of(2)) == (model.name, published.name)
    finally:
        publisher._swap(model, Progress())  # the trained model again on both, for the next tests
        published.unlink(missing_ok=True)
    assert (model_of(1), model_of(2)) == (model.name, model.name)


def test_a_replica_killed_during_a_load_keeps_the_bot_serving_and_no_event_is_lost(stack: Servers):
    """Six users write in turn; replica 2 is killed (SIGKILL) in the middle. HAProxy's health checks
    take it out; a request it could not pass or that got no answer is sent again to replica 1."""
    users = [f"killed-{n}-{uuid.uuid4().hex[:6]}" for n in range(6)]
    messages = [f"{text} [{n}]" for n, text in enumerate(QUESTIONS[:8])]
    progress = threading.Semaphore(0)
    failures: list[str] = []
    resent: list[str] = []

    def converse(sender: str) -> None:
        for text in messages:
            for attempt in range(2):  # as the web page does, a 502 (the answer was cut) is sent again once
                answer = httpx.post(f"{stack.rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": text},
                                    timeout=180)  # fmt: skip
                if answer.status_code != 502 or attempt:
                    break
                resent.append(f"{sender}: {text}")
            if answer.status_code != 200 or not answer.json():
                failures.append(f"{sender}: {text}: {answer.status_code} {answer.text[:80]}")
            progress.release()

    with concurrent.futures.ThreadPoolExecutor(len(users)) as pool:
        running = [pool.submit(converse, sender) for sender in users]
        for _ in range(len(users) * 2):  # a third of the load answered, then the kill
            assert progress.acquire(timeout=180)
        victim = stack.process("Rasa server 2").popen
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
        deadline = time.monotonic() + 30
        while stack.backends().get("rasa-2") != "DOWN":
            assert time.monotonic() < deadline, stack.backends()
            time.sleep(0.2)
        for future in running:
            future.result(timeout=600)
    assert not failures, failures
    # at most the messages whose answers the kill cut, one per user (each has one in flight);
    # HAProxy resent those that had not reached the dying replica
    senders = [line.split(":", 1)[0] for line in resent]
    assert len(senders) == len(set(senders)), resent
    assert stack.backends()["rasa-1"] == "UP"
    for sender in users:
        stored = [user for user, _ in turns(events(stack, sender))]
        # a message killed after Rasa stored its turn but before the answer left would be sent
        # again and stored twice in a row: allowed, as a repeated message is not a lost one
        collapsed = [text for i, text in enumerate(stored) if i == 0 or stored[i - 1] != text]
        assert collapsed == messages, (sender, stored)


def _lock_stores(count: int, monkeypatch: pytest.MonkeyPatch) -> list:
    """``count`` lock stores on Redis, as ``count`` replicas have, under a key prefix of their own."""
    import redis
    from rasa.utils.endpoints import EndpointConfig

    from bot.plugins.locks import EnvRedisLockStore

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except redis.RedisError:
        _missing(f"Redis is not reachable at {REDIS_URL}")
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    prefix = f"test{uuid.uuid4().hex[:8]}"
    return [EnvRedisLockStore(EndpointConfig(key_prefix=prefix)) for _ in range(count)]


def test_replicas_taking_tickets_at_once_never_share_one(monkeypatch):
    """Rasa's own RedisLockStore gave 171 distinct tickets for 400 taken this way."""
    stores, tickets = _lock_stores(4, monkeypatch), []
    start = threading.Barrier(len(stores))

    def take(store) -> None:
        start.wait()
        tickets.extend(store.issue_ticket("one-conversation", 60) for _ in range(100))

    with concurrent.futures.ThreadPoolExecutor(len(stores)) as pool:
        list(pool.map(take, stores))
    assert sorted(tickets) == list(range(400))
    assert len(stores[0].get_lock("one-conversation").tickets) == 400
    stores[0].red.delete(stores[0].key_prefix + "one-conversation")


def test_one_conversation_is_handled_by_one_replica_at_a_time(monkeypatch):
    """Rasa's own RedisLockStore let three in at once here, and failed two with LockError."""
    import asyncio

    stores, inside, most, done = _lock_stores(4, monkeypatch), [0], [0], []
    guard = threading.Lock()

    async def handle(store) -> None:
        for _ in range(15):
            async with store.lock("shared-conversation"):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                await asyncio.sleep(0.005)
                with guard:
                    inside[0] -= 1
                done.append(1)

    with concurrent.futures.ThreadPoolExecutor(len(stores)) as pool:
        list(pool.map(lambda store: asyncio.run(handle(store)), stores))
    assert (most[0], len(done)) == (1, 60)  # never two at once, and no LockError
    assert stores[0].get_lock("shared-conversation") is None  # the last one out deleted it


def test_bot_endpoints_prints_the_file_a_replica_on_another_machine_needs_without_a_secret():
    import subprocess
    import sys

    import yaml

    env = {**os.environ, "REDIS_URL": "redis://:s3cret-word@redis.internal:6379/2"}
    result = subprocess.run([sys.executable, "-m", "bot.cli.main", "endpoints", "--action-url",
                             "http://lb.internal:5055/webhook"], capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout
    endpoints = yaml.safe_load(result.stdout)
    assert endpoints["action_endpoint"] == {"url": "http://lb.internal:5055/webhook",
                                            "headers": {"X-Action-Token": "${ACTION_SERVER_TOKEN}"},
                                            "enable_selective_domain": True}  # fmt: skip
    assert endpoints["lock_store"] == {"type": "bot.plugins.locks.EnvRedisLockStore", "key_prefix": "njupt"}
    assert endpoints["tracker_store"] == {"type": "bot.plugins.stores.EnvSQLTrackerStore"}


def test_bot_run_starts_a_replica_again_and_stops_when_another_process_exits(tmp_path):
    import sys

    from bot.cli.main import watch
    from bot.cli.servers import Process, ServerError

    def exits(name: str) -> Process:
        process = Process(name, [sys.executable, "-c", "pass"], None, tmp_path / f"{name}.log", dict(os.environ))
        process.start()
        process.popen.wait(30)
        return process

    servers = Servers(replicas=2)
    servers.processes = [exits("Rasa server 2")]
    first, restarted = servers.processes[0].popen.pid, {}
    watch(servers, restarted)
    assert servers.processes[0].popen.pid != first and "Rasa server 2" in restarted
    servers.processes.append(exits("load balancer"))
    with pytest.raises(ServerError, match="load balancer exited"):
        watch(servers, restarted)
