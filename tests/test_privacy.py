"""Personal data erased for real (issue 14): requests and the conversations that hold the
same data go together, the database file keeps no copy, exports cannot attack the staff."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from bot.cli.staff import _cell, _text
from bot.core import privacy
from bot.core.paths import ROOT
from bot.core.storage import OfficeRequest, RequestStore

EMAIL = "grace.hopper@navy.example"


def _conversation(url: str, sender: str, stamps: list[float], monkeypatch) -> None:
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.plugins.stores import EnvSQLTrackerStore

    monkeypatch.setenv("DATABASE_URL", url)
    store = EnvSQLTrackerStore(domain=Domain.empty())
    events = [UserUttered(f"my e-mail is {EMAIL}", timestamp=stamp) for stamp in stamps]
    events.append(SlotSet("email", EMAIL, timestamp=stamps[-1]))
    asyncio.run(store.save(DialogueStateTracker.from_events(sender, events)))
    store.engine.dispose()


def _request(url: str, sender: str, created: dt.datetime) -> str:
    request = OfficeRequest(kind="visit", email=EMAIL, full_name="Grace Hopper", sender_id=sender,
                            arrival=dt.date(2027, 5, 10), departure=dt.date(2027, 5, 12))  # fmt: skip
    store = RequestStore(url)
    saved = store.save(request, now=created).ref
    store.engine.dispose()
    return saved


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bot.db'}"
    return request.getfixturevalue("postgres_url")


def _count(url: str) -> tuple[int, int]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        events = connection.execute(sa.text("SELECT count(*) FROM events")).scalar()
        requests = connection.execute(sa.text("SELECT count(*) FROM office_requests")).scalar()
    engine.dispose()
    return events, requests


def test_the_retention_purge_erases_old_requests_with_their_conversations(database_url, monkeypatch):
    now, day = time.time(), 86400
    _conversation(database_url, "old-visitor", [now - 400 * day], monkeypatch)
    _conversation(database_url, "recent-visitor", [now - 400 * day, now - day], monkeypatch)  # still talking
    _request(database_url, "old-visitor", dt.datetime.utcnow() - dt.timedelta(days=10))  # a recent request...
    _request(database_url, "recent-visitor", dt.datetime.utcnow() - dt.timedelta(days=400))  # ...an old one
    erased = privacy.purge(365, url=database_url)
    # the idle conversation with its (recent) request; the old request with its (ongoing) conversation
    assert erased == privacy.Erased(requests=2, conversations=2)
    assert _count(database_url) == (0, 0)


def test_a_purged_sqlite_file_holds_no_email(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    now = time.time()
    _conversation(url, "telegram-1", [now - 400 * 86400], monkeypatch)
    _request(url, "telegram-1", dt.datetime.utcnow() - dt.timedelta(days=400))
    files = lambda: b"".join(p.read_bytes() for p in tmp_path.glob("bot.db*"))  # noqa: E731
    assert EMAIL.encode() in files()
    privacy.purge(365, url=url)
    assert EMAIL.encode() not in files()
    assert b"Grace Hopper" not in files()


def test_erasing_one_person_keeps_everyone_else(database_url, monkeypatch):
    now = time.time()
    _conversation(database_url, "web-" + "a" * 20, [now], monkeypatch)
    _conversation(database_url, "web-" + "b" * 20, [now], monkeypatch)
    ref = _request(database_url, "web-" + "a" * 20, dt.datetime.utcnow())
    _request(database_url, "web-" + "b" * 20, dt.datetime.utcnow())
    erased = privacy.erase_sender("web-" + "a" * 20, url=database_url)
    assert erased == privacy.Erased(requests=1, conversations=1)
    store = RequestStore(database_url)
    assert [r.sender_id for r in store.list(status="all")] == ["web-" + "b" * 20]
    assert ref not in [r.ref for r in store.list(status="all")]
    store.engine.dispose()


def test_staff_erase_a_request_and_its_conversation(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    _conversation(url, "telegram-7", [time.time()], monkeypatch)
    ref = _request(url, "telegram-7", dt.datetime.utcnow())
    env = {"DATABASE_URL": url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "bot.cli.main", "requests", "erase", ref], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{ref} deleted, with 1 conversation(s)" in done.stdout
    assert _count(url) == (0, 0)
    again = subprocess.run([sys.executable, "-m", "bot.cli.main", "requests", "erase", ref], capture_output=True,
                           text=True, env=env, timeout=120)  # fmt: skip
    assert again.returncode == 1 and "no request" in again.stderr


@pytest.mark.parametrize(
    "typed, shown",
    [("=HYPERLINK(\"http://evil.example\")", "'=HYPERLINK(\"http://evil.example\")"), ("+1+1", "'+1+1"),
     ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("＝1+1", "'＝1+1"), ("Ada", "Ada")],
)  # fmt: skip
def test_csv_cells_never_start_a_formula(typed, shown):
    assert _cell(typed) == shown


def test_visitors_text_cannot_drive_the_staff_terminal():
    assert _text("Ada\x1b[2J\x1b]0;owned\x07 Lovelace\u202e") == "Ada [2J ]0;owned Lovelace"


def test_sql_errors_do_not_print_the_visitors_data(tmp_path):
    store = RequestStore(f"sqlite:///{tmp_path / 'bot.db'}")
    with store.engine.begin() as connection:
        connection.exec_driver_sql("CREATE UNIQUE INDEX one_email ON office_requests (email)")
    request = OfficeRequest(kind="question", email=EMAIL, details="private question")
    store.save(request)
    with pytest.raises(sa.exc.IntegrityError) as error:
        store.save(OfficeRequest(kind="question", email=EMAIL, details="private question"))
    assert EMAIL not in str(error.value) and "private question" not in str(error.value)


def test_the_rasa_tracker_store_hides_parameters(tmp_path, monkeypatch):
    from rasa.shared.core.domain import Domain

    from bot.plugins.stores import EnvSQLTrackerStore

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    store = EnvSQLTrackerStore(domain=Domain.empty())
    assert store.engine.hide_parameters
    assert RequestStore(f"sqlite:///{tmp_path / 'other.db'}").engine.hide_parameters


# --- "forget me", end to end over the REST channel -------------------------------------------

FORGET = {
    "en": "Please delete all my data",
    "zh-Hans": "请删除我的所有数据",
    "zh-Hant": "請刪除我的所有資料",
    "ru": "Пожалуйста, удалите все мои данные",
    "fr": "Merci de supprimer toutes mes données",
}


@pytest.mark.e2e
@pytest.mark.parametrize("language", sorted(FORGET))
def test_a_user_erases_their_own_conversation_and_requests(servers, chat, language):
    import httpx

    from bot.core.texts import say

    user = chat(language_hint=language)
    user.ask(say("web_suggestion_3", language))  # a question first: the conversation holds something
    database = servers.env["DATABASE_URL"]
    _request(database, user.sender, dt.datetime.utcnow())
    assert user.ask(FORGET[language]).startswith(say("forget_confirm", language))
    assert user.ask("/affirm") == say("forget_done", language, requests=1)
    tracker = httpx.get(
        f"{servers.rasa_url}/conversations/{user.sender}/tracker", params={"token": servers.auth_token}
    ).json()
    assert [e for e in tracker["events"] if e["event"] in ("user", "bot")] == []
    store = RequestStore(database)
    assert [r for r in store.list(status="all") if r.sender_id == user.sender] == []
    store.engine.dispose()


@pytest.mark.e2e
def test_saying_no_keeps_everything(servers, chat):
    from bot.core.texts import say

    user = chat(language_hint="en")
    user.ask(FORGET["en"])
    assert user.ask("/deny") == say("ok_anything_else", "en")
    assert user.ask("/affirm") == say("nothing_to_confirm", "en")  # the offer is gone: nothing erased
    database = servers.env["DATABASE_URL"]
    events, _ = _count(database)
    assert events > 0
