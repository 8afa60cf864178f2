"""The requests table on SQLite and on the real PostgreSQL server, and the staff command."""

import asyncio
import concurrent.futures
import datetime as dt
import json
import multiprocessing
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import sqlalchemy as sa

from bot.cli.servers import ROOT, Process, answers
from bot.core import privacy, storage
from bot.core.storage import OfficeRequest, RequestNotFound, RequestStore

from .conftest import free_port


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A database of the test's own: a SQLite file, or a PostgreSQL database created and dropped."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bot.db'}"
    return request.getfixturevalue("postgres_url")


def visit(name: str = "Ada Lovelace", arrival: dt.date = dt.date(2027, 5, 10)) -> OfficeRequest:
    return OfficeRequest(kind="visit", email="ada@uni.example", full_name=name, institution="Uni",
                         country="UK", purpose="lecture", arrival=arrival, departure=arrival, details="AI")  # fmt: skip


def test_saved_requests_get_references_and_can_be_listed_shown_and_closed(database_url):
    store = RequestStore(database_url)
    first, second = store.save(visit()), store.save(visit("Alan Turing"))
    question = store.save(OfficeRequest(kind="question", email="a@b.example", details="What about fees?"),
                          now=dt.datetime(2026, 11, 29, 8, 0))  # fmt: skip
    assert (first.ref, second.ref, question.ref) == ("V-2027-0001", "V-2027-0002", "Q-2026-0001")
    assert [r.ref for r in store.list()] == ["V-2027-0001", "V-2027-0002", "Q-2026-0001"]
    assert [r.ref for r in store.list(kind="question")] == ["Q-2026-0001"]
    assert store.get("v-2027-0002").full_name == "Alan Turing"
    closed = store.close("V-2027-0001", note="answered by mail")
    assert (closed.status, closed.note) == ("closed", "answered by mail")
    assert [r.ref for r in store.list(status="closed")] == ["V-2027-0001"]
    assert len(store.list(status="all")) == 3
    with pytest.raises(RequestNotFound):
        store.get("V-1999-0001")


def test_purge_deletes_only_old_requests(database_url):
    store = RequestStore(database_url)
    now = dt.datetime(2027, 1, 1)
    store.save(visit(), now=now - dt.timedelta(days=400))
    store.save(visit("Recent"), now=now - dt.timedelta(days=10))
    assert store.purge(older_than_days=365, now=now) == 1
    assert [r.full_name for r in store.list(status="all")] == ["Recent"]


def test_the_schema_is_upgraded_without_losing_requests(database_url, monkeypatch):
    RequestStore(database_url).save(visit())

    def add_a_column(connection):
        connection.execute(sa.text("ALTER TABLE office_requests ADD COLUMN phone_allowed BOOLEAN"))

    latest = len(storage.MIGRATIONS) + 1
    monkeypatch.setattr(storage, "MIGRATIONS", storage.MIGRATIONS + [add_a_column])
    upgraded = RequestStore(database_url)
    assert upgraded.upgrade() == latest
    assert [r.full_name for r in upgraded.list()] == ["Ada Lovelace"]
    assert RequestStore(database_url).upgrade() == latest  # applied once only


def _add_a_column(connection) -> None:
    """A migration that fails when applied twice (the column exists the second time), and
    slow, so that every process has read the old version before the first one commits."""
    time.sleep(0.5)
    connection.execute(sa.text("ALTER TABLE office_requests ADD COLUMN phone_allowed BOOLEAN"))


def _start_with_a_new_migration(url: str, barrier) -> None:
    storage.MIGRATIONS.append(_add_a_column)
    barrier.wait(60)
    RequestStore(url)


def test_processes_starting_at_once_apply_each_migration_once(database_url):
    RequestStore(database_url).save(visit())
    context = multiprocessing.get_context("fork")  # the children inherit nothing but this module's state
    barrier = context.Barrier(4)
    starts = [context.Process(target=_start_with_a_new_migration, args=(database_url, barrier)) for _ in range(4)]
    for start in starts:
        start.start()
    for start in starts:
        start.join(120)
    assert [start.exitcode for start in starts] == [0, 0, 0, 0]
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(sa.select(storage.schema_table.c.version)).scalars().all() == [
            len(storage.MIGRATIONS) + 1
        ]
        assert connection.execute(sa.text("SELECT full_name, phone_allowed FROM office_requests")).all() == [
            ("Ada Lovelace", None)
        ]
    engine.dispose()


def _save_many(url: str, worker: int, count: int) -> None:
    store = RequestStore(url)
    for i in range(count):
        store.save(visit(f"worker {worker} visitor {i}"))


def test_two_processes_writing_at_once_lose_nothing_and_share_no_reference(database_url):
    RequestStore(database_url)  # schema created first, as the first start does
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(database_url, w, 25)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    saved = RequestStore(database_url).list(status="all")
    assert len(saved) == 50
    assert len({r.ref for r in saved}) == 50
    assert sorted(r.ref for r in saved) == [f"V-2027-{n:04d}" for n in range(1, 51)]


def bot(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli.main", "requests", *args], capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": url}, timeout=120)  # fmt: skip


def test_the_staff_command(tmp_path):
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    store = RequestStore(url)
    store.save(visit())
    store.save(OfficeRequest(kind="question", email="q@x.example", details="Is there a bus, to the campus?"))
    listing = bot("list", "--format", "csv", url=url)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.strip().splitlines()
    assert lines[0].startswith("ref,") and len(lines) == 3
    assert "Ada Lovelace" in lines[1] and '"Is there a bus, to the campus?"' in lines[2]
    as_json = json.loads(bot("list", "--kind", "visit", "--format", "json", url=url).stdout)
    assert [r["full_name"] for r in as_json] == ["Ada Lovelace"]
    table = bot("list", url=url).stdout
    assert "V-2027-0001" in table and "2 request(s)" in table
    assert "ada@uni.example" in bot("show", "V-2027-0001", url=url).stdout
    assert bot("close", "V-2027-0001", "--note", "done", url=url).returncode == 0
    assert "V-2027-0001" not in bot("list", url=url).stdout
    assert "V-2027-0001" in bot("list", "--status", "closed", url=url).stdout
    missing = bot("show", "V-1999-0001", url=url)
    assert missing.returncode == 1 and "no request" in missing.stderr
    purged = bot("purge", "--older-than", "0", url=url)
    assert purged.returncode == 0 and "2 request(s) and 0 conversation(s) older than 0 days deleted" in purged.stdout
    assert "0 request(s)" in bot("list", "--status", "all", url=url).stdout


def test_bot_conversations_purge_deletes_idle_conversations_whole(database_url, monkeypatch, tmp_path):
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.plugins.stores import EnvSQLTrackerStore

    monkeypatch.setenv("DATABASE_URL", database_url)
    now, day = time.time(), 86400
    talks = {"old": [now - 400 * day, now - 399 * day], "ongoing": [now - 400 * day, now - day], "new": [now - day]}
    store = EnvSQLTrackerStore(domain=Domain.empty())
    for sender, stamps in talks.items():
        said = [UserUttered(f"my e-mail is {sender}@uni.example", timestamp=stamp) for stamp in stamps]
        asyncio.run(store.save(DialogueStateTracker.from_events(sender, said)))
    purge = [sys.executable, "-m", "bot.cli.main", "conversations", "purge", "--older-than"]
    refused = subprocess.run([*purge, "-5"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "whole number of days" in refused.stderr
    purged = subprocess.run([*purge, "365"], capture_output=True, text=True, timeout=120)
    assert purged.returncode == 0, purged.stderr
    assert "0 request(s) and 1 conversation(s) older than 365 days deleted" in purged.stdout
    store = EnvSQLTrackerStore(domain=Domain.empty())
    assert sorted(asyncio.run(store.keys())) == ["new", "ongoing"]
    ongoing = asyncio.run(store.retrieve("ongoing"))
    assert [e.text for e in ongoing.events if isinstance(e, UserUttered)] == ["my e-mail is ongoing@uni.example"] * 2
    assert privacy.purge(0, url=f"sqlite:///{tmp_path / 'no-conversations-yet.db'}") == privacy.Erased()


def test_two_action_servers_saving_at_once_lose_nothing(tmp_path):
    """Two real action-server processes run the saving action at the same time."""
    from rasa.shared.core.domain import Domain

    domain = Domain.load(ROOT / "domain.yml").as_dict()  # Rasa sends it to this action (send_domain)
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    RequestStore(url)
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    ports = [free_port(), free_port()]
    servers = [Process(f"action server {p}", [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(p)],
                       f"http://127.0.0.1:{p}/health", tmp_path / f"actions-{p}.log", env) for p in ports]  # fmt: skip
    for server in servers:
        server.start()
    try:
        for server in servers:
            for _ in range(120):
                server.check_alive()
                if answers(server.health_url):
                    break
                time.sleep(0.5)

        def finish(i: int) -> int:
            slots = {"visitor_name": f"Visitor {i}", "institution": "Uni", "country": "UK", "email": f"v{i}@uni.example",
                     "purpose": "lecture", "arrival_date": "2030-05-10", "departure_date": "2030-05-11",
                     "visit_notes": "", "visit_confirmed": True, "language": "en"}  # fmt: skip
            body = {"next_action": "action_finish_visit_request", "sender_id": f"s{i}", "version": "3.6.2",
                    "domain": domain, "tracker": {"sender_id": f"s{i}", "slots": slots, "latest_message": {},
                                              "events": [], "paused": False, "followup_action": None,
                                              "active_loop": {}, "latest_action_name": "visit_form"}}  # fmt: skip
            request = urllib.request.Request(f"http://127.0.0.1:{ports[i % 2]}/webhook",
                                             data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})  # fmt: skip
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(finish, range(40))) == {200}
    finally:
        for server in servers:
            server.stop()
    saved = RequestStore(url).list()
    assert len(saved) == 40
    assert sorted(r.ref for r in saved) == [f"V-2030-{n:04d}" for n in range(1, 41)]
    assert {r.full_name for r in saved} == {f"Visitor {i}" for i in range(40)}
