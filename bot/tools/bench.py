"""Benchmark of the running bot, in one run on this machine: `make bench` -> reports/bench.md.

    python -m bot.tools.bench [--users 50] [--seconds 30] [--long 400] [--model models/njupt.tar.gz]

Starts the whole stack (action server, Rasa, the web chat's server, the Telegram bridge against a
local stand-in of the Bot API; a fresh SQLite tracker store; no rate limits), sends it 40
held-out questions other than those measured (what loads on first use is then loaded), and
measures:

* ``/model/parse`` p50: the NLU alone, the floor of any reply;
* one user, each message in a new conversation: p50 / p95, through the REST webhook, the web
  chat's ``/api/message`` and the Telegram bridge. Each message follows a ``/model/parse`` of
  another question, and each channel is compared with the parses taken alongside it: the speed of
  a shared machine drifts by half within a minute, and a parse measured a minute before the
  messages would compare two different machines;
* one conversation of ``--long`` messages over REST: median of the first 20 and of the last 20
  (the same 20 questions, none starting a form, so that only the conversation's length differs),
  each message after a parse as above;
* ``--users`` users at once, each in its own conversation and sending its next message as soon
  as it has the answer, for ``--seconds``: throughput, p95 and failed requests, per channel;
* the resident memory of the Rasa server and of the action server at the end;
* 1 replica against ``--replicas`` (default 2) behind HAProxy, on the same machine and the same
  stores (a PostgreSQL database of its own on the server of ``DATABASE_URL`` or 127.0.0.1:5432,
  Rasa's lock store on ``REDIS_URL`` or 127.0.0.1:6379/0): ``--users`` users at once over REST
  for ``--seconds``, and the memory of all the servers. ``--replicas 0`` leaves it out,
  ``--replicas-only`` measures only that.

Writes ``reports/bench.md`` (with the targets of issue 12) and ``reports/bench.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from bot.cli.servers import Servers, haproxy_path, port_in_use
from bot.core.paths import MODEL, ROOT
from bot.core.validation import read_examples
from bot.tools.datacheck import HOLDOUT_DIR
from bot.tools.telegram_api import BotApi

REPORTS = ROOT / "reports"
# The benchmark sends as fast as it can from one address: the rate limits would measure themselves.
NO_LIMITS = {"RATE_LIMIT_PER_IP": "0", "RATE_LIMIT_PER_SENDER": "0", "MAX_IN_FLIGHT": "0"}
NEW_CONVERSATIONS = 100
WARM_UP = 40


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        memory_kb = 0
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {memory_kb / 1024 / 1024:.0f} GiB RAM, {system}"


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MB."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += rss_mb(int(child))
    except OSError:
        pass
    return total


# Messages after which the bot no longer answers the conversation: it is erased, or a person has it.
LEAVES_THE_BOT = ("forget_me", "request_human")


# Messages that start a form: a form's turns cost more (its validation is a second action call).
START_A_FORM = ("request_visit", "affirm")


def questions(count: int, seed: int = 20261202, without: tuple[str, ...] = ()) -> list[str]:
    """Held-out questions of every language, in a fixed shuffled order (the same in every run),
    except those that take the conversation away from the bot (``LEAVES_THE_BOT``): a 400-message
    conversation would otherwise be erased or relayed to the staff part of the way; nor those of
    the intents ``without``."""
    paths = sorted(HOLDOUT_DIR.glob("*.yml"))
    pool = [
        text
        for path in paths
        for intent, texts in read_examples(path).items()
        if intent not in LEAVES_THE_BOT + without
        for text in texts
    ]
    random.Random(seed).shuffle(pool)
    return (pool * (count // len(pool) + 1))[:count]


def free_port() -> int:
    port = random.randint(20000, 40000)
    while any(port_in_use("127.0.0.1", p) for p in (port, port + 50, port + 100)):
        port = random.randint(20000, 40000)
    return port


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))] if ordered else float("nan")


def summary(latencies: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(latencies) * 1000, "p95_ms": percentile(latencies, 0.95) * 1000}


class Channel:
    """One way in: ``send(session, sender number, text)`` posts one message and checks the answer."""

    def __init__(self, name: str, url: str, body: Callable[[str, str], dict]) -> None:
        self.name, self.url, self.body = name, url, body

    async def send(self, session: aiohttp.ClientSession, sender: str, text: str) -> float:
        started = time.monotonic()
        async with session.post(self.url, json=self.body(sender, text)) as answer:
            answer.raise_for_status()
            if not await answer.json():
                raise ValueError("no reply")
        return time.monotonic() - started


def client_session(connections: int = 10) -> aiohttp.ClientSession:
    """The bench's HTTP client: the same for ``/model/parse`` and every channel, so that the
    figures compare the servers, not clients (aiohttp: about 0.5 ms a request here)."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120),
                                 connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=2.0))  # fmt: skip


async def sequential(channel: Channel, texts: list[str], sender: Callable[[int], str]) -> list[float]:
    async with client_session() as session:
        return [await channel.send(session, sender(i), text) for i, text in enumerate(texts)]


async def parse_once(session: aiohttp.ClientSession, url: str, text: str) -> float:
    """Seconds of one ``/model/parse`` of ``text``."""
    started = time.monotonic()
    async with session.post(url, json={"text": text}) as answer:
        answer.raise_for_status()
        await answer.json()
    return time.monotonic() - started


Send = Callable[[aiohttp.ClientSession, int, str], Awaitable[float]]


async def paired(send: Send, texts: list[str], parse_url: str) -> tuple[list[float], list[float]]:
    """(seconds of each message, seconds of each parse): each message ``send(session, i, text)``
    follows a ``/model/parse`` of the question half the list away, on the same client (a question
    is parsed after its own message: nothing a parse leaves behind helps a message)."""
    messages, parsed = [], []
    async with client_session() as session:
        for i, text in enumerate(texts):
            parsed.append(await parse_once(session, parse_url, texts[(i + len(texts) // 2) % len(texts)]))
            messages.append(await send(session, i, text))
    return messages, parsed


def channel_sender(channel: Channel, sender: Callable[[int], str]) -> Send:
    return lambda session, i, text: channel.send(session, sender(i), text)


def telegram_sender(api: BotApi, first_chat: int) -> Send:
    async def send(_session: aiohttp.ClientSession, i: int, text: str) -> float:
        latency = await asyncio.to_thread(api.ask, first_chat + i, text)
        await asyncio.to_thread(api.settle, first_chat + i, 0.15)  # the rest of the reply
        return latency

    return send


async def at_once(channel: Channel, users: int, seconds: float, tag: str) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    texts = questions(500)
    async with client_session(users + 10) as session:
        started = time.monotonic()
        deadline = started + seconds

        async def user(number: int) -> None:
            nonlocal failures
            turn = 0
            while time.monotonic() < deadline:
                text = texts[(number * 7 + turn) % 500]
                try:
                    latencies.append(await channel.send(session, f"{tag}{number:04d}", text))
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    failures += 1
                turn += 1

        await asyncio.gather(*(user(n) for n in range(users)))
        elapsed = time.monotonic() - started
    return {"throughput": len(latencies) / elapsed, **summary(latencies), "failures": failures,
            "latencies": latencies, "elapsed": elapsed}  # fmt: skip


def brief(load: dict) -> dict:
    """A load's figures without its raw latencies."""
    return {key: value for key, value in load.items() if key not in ("latencies", "elapsed")}


def telegram_concurrent(api: BotApi, users: int, seconds: float, first_chat: int) -> dict[str, float]:
    texts = questions(500)
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds

    def user(number: int) -> None:
        nonlocal failures
        turn = 0
        while time.monotonic() < deadline:
            try:
                latencies.append(api.ask(first_chat + number, texts[(number * 7 + turn) % 500], timeout=30))
            except TimeoutError:
                failures += 1
            turn += 1

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(users) as pool:
        list(pool.map(user, range(users)))
    elapsed = time.monotonic() - started
    return {"throughput": len(latencies) / elapsed, **summary(latencies), "failures": failures}


def run(args: argparse.Namespace, workdir: Path) -> dict:
    results: dict = {"machine": machine(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    port = free_port()
    token = secrets.token_urlsafe(16)
    with BotApi() as api:
        env = {"DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}", "TELEGRAM_BOT_TOKEN": api.token,
               "TELEGRAM_BASE_URL": api.base_url, **NO_LIMITS}  # fmt: skip
        servers = Servers(model=args.model, rasa_port=port, action_port=port + 50, web_port=port + 100,
                          log_dir=workdir / "logs", env=env, auth_token=token, telegram=True)  # fmt: skip
        started = time.monotonic()
        with servers:
            results["start_s"] = time.monotonic() - started
            rest = Channel("REST webhook", f"{servers.rasa_url}/webhooks/rest/webhook",
                           lambda sender, text: {"sender": sender, "message": text})  # fmt: skip
            web = Channel("web chat /api/message", f"http://127.0.0.1:{port + 100}/api/message",
                          lambda sender, text: {"sender": f"web-bench{sender:0>16}", "message": text})  # fmt: skip
            api.ask(1, "hello", timeout=300)  # the bridge polls: ready when it answers
            # Other questions than those measured, in every language: what loads on first use (the
            # language detector's models of each alphabet, TensorFlow's code) is loaded before any figure.
            warm_up = questions(NEW_CONVERSATIONS + WARM_UP)[-WARM_UP:]
            asyncio.run(sequential(rest, warm_up, lambda i: f"warm-up-{i}"))

            texts = questions(NEW_CONVERSATIONS)
            parse_url = f"{servers.rasa_url}/model/parse?token={token}"
            senders = {
                rest.name: channel_sender(rest, lambda i: f"new-{i}"),
                web.name: channel_sender(web, lambda i: f"new{i}"),
                "Telegram bridge": telegram_sender(api, 1000),
            }
            results["new"] = {}
            for name, send in senders.items():
                messages, alongside = asyncio.run(paired(send, texts, parse_url))
                results["new"][name] = {**summary(messages), "parse_p50_ms": statistics.median(alongside) * 1000}
                if name == rest.name:  # the NLU with nothing else running: the limit's parse p50
                    results["parse"] = summary(alongside)
            print("parse", results["parse"], flush=True)
            print("new", results["new"], flush=True)

            # The last 20 messages are the first 20 again, and no message starts a form: what the two
            # medians compare is the length of the conversation, not which questions fell at its start
            # and end, nor whether a form was open then.
            texts_long = questions(args.long, seed=7, without=START_A_FORM)
            texts_long = texts_long[: args.long - 20] + texts_long[:20]
            long, alongside = asyncio.run(paired(channel_sender(rest, lambda i: "long-conversation"), texts_long,
                                                 parse_url))  # fmt: skip
            results["long"] = {"messages": args.long, "first20_ms": statistics.median(long[:20]) * 1000,
                               "last20_ms": statistics.median(long[-20:]) * 1000,
                               "first20_parse_ms": statistics.median(alongside[:20]) * 1000,
                               "last20_parse_ms": statistics.median(alongside[-20:]) * 1000}  # fmt: skip
            print("long", results["long"], flush=True)

            results["users"] = args.users
            results["concurrent"] = {
                rest.name: brief(asyncio.run(at_once(rest, args.users, args.seconds, "user-"))),
                web.name: brief(asyncio.run(at_once(web, args.users, args.seconds, "user"))),
                "Telegram bridge": telegram_concurrent(api, args.users, args.seconds, 100000),
            }
            print("concurrent", results["concurrent"], flush=True)
            results["rasa_rss_mb"] = rss_mb(servers.process("Rasa server").popen.pid)
            results["actions_rss_mb"] = rss_mb(servers.process("action server").popen.pid)
            results["seconds"] = args.seconds
    return results


DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def replica_services() -> tuple[str, str]:
    """(a PostgreSQL server's URL, a Redis URL) for the replica comparison; ValueError says what is missing."""
    import redis
    import sqlalchemy as sa

    server = sa.engine.make_url(os.environ.get("DATABASE_URL") or DEFAULT_POSTGRES)
    if server.get_backend_name() != "postgresql":
        server = sa.engine.make_url(DEFAULT_POSTGRES)
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    try:
        engine = sa.create_engine(server.set(database="postgres"), connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError as error:
        raise ValueError(f"no PostgreSQL at {server.host}:{server.port}") from error
    try:
        redis.Redis.from_url(redis_url, socket_timeout=3).ping()
    except redis.RedisError as error:
        raise ValueError(f"no Redis at {redis_url}") from error
    if not haproxy_path():
        raise ValueError("no HAProxy (make haproxy installs it)")
    return server.render_as_string(hide_password=False), redis_url


ROUNDS = 4  # the load alternates between the two stacks, so that a change of the machine's load hits both


def run_replicas(args: argparse.Namespace, workdir: Path) -> dict:
    """``args.users`` users at once over REST, on 1 replica and on ``args.replicas`` behind HAProxy:
    both stacks running, the load sent to one then the other, ``ROUNDS`` times."""
    import contextlib

    import sqlalchemy as sa

    try:
        server, redis_url = replica_services()
    except ValueError as error:
        print(f"replicas: not measured: {error}", flush=True)
        return {"skipped": str(error)}
    counts = (1, args.replicas)
    names = {count: f"njupt_bench_{secrets.token_hex(5)}" for count in counts}
    stacks: dict[int, Servers] = {}
    for count in counts:
        url = sa.engine.make_url(server).set(database=names[count]).render_as_string(hide_password=False)
        port = free_port()
        ports = [(port + 1 + i, port + 51 + i) for i in range(count)]
        stacks[count] = Servers(model=args.model, rasa_port=port, action_port=port + 50, replicas=count,
                                replica_ports=ports if count > 1 else [], log_dir=workdir / f"logs-{count}",
                                env={"DATABASE_URL": url, "REDIS_URL": redis_url, **NO_LIMITS},
                                lock_key_prefix=f"bench{count}")  # fmt: skip
    measured: dict = {"count": args.replicas, "users": args.users, "seconds": args.seconds}
    latencies: dict[int, list[float]] = {count: [] for count in counts}
    elapsed = dict.fromkeys(counts, 0.0)
    failures = dict.fromkeys(counts, 0)
    try:
        with contextlib.ExitStack() as running:
            for count in counts:
                running.enter_context(stacks[count])
            body = lambda sender, text: {"sender": sender, "message": text}  # noqa: E731
            rest = {n: Channel("REST webhook", f"{stacks[n].rasa_url}/webhooks/rest/webhook", body) for n in counts}
            for count in counts:
                asyncio.run(sequential(rest[count], ["hello"] * 4, lambda i: f"warm-up-{i}"))
            for turn in range(ROUNDS):
                for count in counts:
                    load = asyncio.run(at_once(rest[count], args.users, args.seconds / ROUNDS, f"r{count}-{turn}-"))
                    latencies[count] += load["latencies"]
                    elapsed[count] += load["elapsed"]
                    failures[count] += load["failures"]
            for count in counts:
                rss = sum(rss_mb(p.popen.pid) for p in stacks[count].processes if p.name != "load balancer")
                measured[str(count)] = {"throughput": len(latencies[count]) / elapsed[count], "rss_mb": rss,
                                        **summary(latencies[count]), "failures": failures[count]}  # fmt: skip
                print(f"{count} replica(s)", measured[str(count)], flush=True)
    finally:
        admin = sa.create_engine(sa.engine.make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for name in names.values():
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
    return measured


def replicas_report(r: dict) -> list[str]:
    if "skipped" in r:
        return [f"1 replica against several: not measured ({r['skipped']}).", ""]
    one, many = r["1"], r[str(r["count"])]
    lines = [
        f"| {r['users']} users at once over REST, {r['seconds']:.0f} s in {ROUNDS} rounds taken in turn, "
        "PostgreSQL and Redis | msg/s | p50 | p95 "
        "| failed | resident memory |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, m in (("1 replica", one), (f"{r['count']} replicas behind HAProxy", many)):
        lines.append(f"| {label} | {m['throughput']:.1f} | {m['p50_ms']:.0f} ms | {m['p95_ms']:.0f} ms "
                     f"| {m['failures']} | {m['rss_mb'] / 1024:.2f} GB |")  # fmt: skip
    ratio = many["throughput"] / one["throughput"] if one["throughput"] else float("nan")
    lines += ["", f"{r['count']} replicas serve {ratio:.2f}× the messages of 1 on this machine.", ""]
    return lines


def check(ok: bool) -> str:
    return "yes" if ok else "**no**"


def report(r: dict) -> str:
    if "parse" not in r:  # --replicas-only
        head = ["# Benchmark", "", f"Machine: {r['machine']}. Made on {r['date']} (one run; model {r['model']}).", ""]
        return "\n".join(head + replicas_report(r["replicas"]))
    parse = r["parse"]["p50_ms"]
    limit = r["cores"] * 1000 / parse
    lines = [
        "# Benchmark",
        "",
        f"Machine: {r['machine']}. Made by `make bench` on {r['date']} (one run; model {r['model']}).",
        f"Servers started in {r['start_s']:.0f} s. SQLite tracker store, no rate limits.",
        "",
        f"`/model/parse` p50 (the NLU alone, taken alongside the REST messages: the other channels' servers and "
        f"the Bot API stand-in slow the parses taken alongside theirs): **{parse:.2f} ms**; NLU-bound limit "
        f"{r['cores']} cores × 1000 / {parse:.2f} ms = {limit:.0f} msg/s.",
        "",
        "Each message below followed a `/model/parse` of another question; each channel is compared with "
        "the parse p50 taken alongside it.",
        "",
        "| one user, each message a new conversation | p50 | p95 | parse p50 alongside | p50 / parse "
        "| p95 / parse | p50 ≤ 2× parse | p95 ≤ 3× parse |",
        "|---|---:|---:|---:|---:|---:|:-:|:-:|",
    ]
    for name, m in r["new"].items():
        alongside = m.get("parse_p50_ms", parse)
        lines.append(f"| {name} | {m['p50_ms']:.1f} ms | {m['p95_ms']:.1f} ms | {alongside:.2f} ms "
                     f"| {m['p50_ms'] / alongside:.2f}× | {m['p95_ms'] / alongside:.2f}× "
                     f"| {check(m['p50_ms'] <= 2 * alongside)} | {check(m['p95_ms'] <= 3 * alongside)} |")  # fmt: skip
    long = r["long"]
    ratio = long["last20_ms"] / long["first20_ms"]
    lines += [
        "",
        f"One conversation of {long['messages']} messages (REST, each after a parse as above): median of the first 20 "
        f"{long['first20_ms']:.1f} ms, of the last 20 {long['last20_ms']:.1f} ms: {ratio:.2f}× (target ≤ 1.2×: "
        f"{check(ratio <= 1.2)}). The parses alongside: {long.get('first20_parse_ms', 0):.2f} and "
        f"{long.get('last20_parse_ms', 0):.2f} ms (how much the machine's speed moved in between).",
        "",
        f"| {r['users']} users at once, {r['seconds']:.0f} s | msg/s | share of the NLU limit | p95 | failed "
        "| ≥ 30%, p95 ≤ 1 s, none failed |",
        "|---|---:|---:|---:|---:|:-:|",
    ]
    for name, m in r["concurrent"].items():
        share = m["throughput"] / limit
        ok = share >= 0.3 and m["p95_ms"] <= 1000 and m["failures"] == 0
        lines.append(f"| {name} | {m['throughput']:.1f} | {share:.0%} | {m['p95_ms']:.0f} ms | {m['failures']} "
                     f"| {check(ok)} |")  # fmt: skip
    memory = r["rasa_rss_mb"] + r["actions_rss_mb"]
    lines += [
        "",
        f"Resident memory after the run: Rasa {r['rasa_rss_mb']:.0f} MB + action server {r['actions_rss_mb']:.0f} MB "
        f"= {memory / 1024:.2f} GB (target ≤ 1.2 GB: {check(memory <= 1.2 * 1024)}).",
        "",
    ]
    if "replicas" in r:
        lines += replicas_report(r["replicas"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--long", type=int, default=400)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--replicas", type=int, default=2, help="replicas compared with 1 (0: no comparison)")
    parser.add_argument("--replicas-only", action="store_true", help="only the comparison of replicas")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        if args.replicas_only:
            results = {"machine": machine(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
        else:
            results = run(args, Path(tmp))
        if args.replicas > 1:
            results["replicas"] = run_replicas(args, Path(tmp))
    results["model"] = args.model.name
    args.out.mkdir(exist_ok=True)
    text = report(results)
    (args.out / "bench.md").write_text(text, encoding="utf-8")
    (args.out / "bench.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
