"""The staff console's accounts and login: `bot staff ...`, sessions, CSRF, slowed-down logins, audit.

The console's real app (the web chat's server with ``bot.channels.web.console``) on a
SQLite database of the test's own, reached over HTTP by aiohttp's test client.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from bot.channels.web.server import make_app
from bot.core.paths import DOMAIN_FILE, NLU_DIR, ROOT
from bot.core.ratelimit import RateLimits
from bot.core.storage import staff_audit_table, staff_users_table
from bot.staff.accounts import MAX_FAILURES, StaffAccounts
from bot.staff.service import Console

PASSWORD = "correct horse battery staple"


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bot.db'}"


@pytest.fixture
def nlu_dir(tmp_path: Path) -> Path:
    """A copy of data/nlu: tests that write examples never touch the repository's files."""
    copy = tmp_path / "nlu"
    shutil.copytree(NLU_DIR, copy)
    return copy


def bot(*args: str, url: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli.main", *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": url}, cwd=ROOT, timeout=120)  # fmt: skip


# --- accounts from the command line ---------------------------------------------------------


def test_staff_accounts_are_added_listed_and_removed(database):
    done = bot("staff", "add-user", "li.wei", "--password-stdin", url=database, stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert "li.wei can now log in" in done.stdout
    again = bot("staff", "add-user", "li.wei", "--password-stdin", url=database, stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "already a staff member called 'li.wei'" in again.stderr
    short = bot("staff", "add-user", "anna", "--password-stdin", url=database, stdin="short\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    listed = bot("staff", "list", url=database)
    assert listed.stdout.splitlines()[0].startswith("li.wei  ") and "1 staff account(s)" in listed.stdout
    # the password is stored as an Argon2id hash, never as typed
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        (stored,) = connection.execute(sa.select(staff_users_table.c.password_hash)).scalars()
        actions = connection.execute(sa.select(staff_audit_table.c.action, staff_audit_table.c.detail)).all()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert ("staff.add_user", "li.wei") in [tuple(a) for a in actions]
    removed = bot("staff", "remove", "li.wei", url=database)
    assert removed.returncode == 0 and "li.wei removed" in removed.stdout
    assert "0 staff account(s)" in bot("staff", "list", url=database).stdout
    assert bot("staff", "remove", "li.wei", url=database).returncode == 1


def test_the_requests_command_still_works_beside_staff(database):
    done = bot("requests", "list", url=database)
    assert done.returncode == 0 and "0 request(s)" in done.stdout


# --- the console over HTTP ------------------------------------------------------------------


@pytest.fixture
def texts_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "texts"
    shutil.copytree(ROOT / "data" / "texts", copy)
    return copy


@pytest.fixture
def facts_file(tmp_path: Path) -> Path:
    copy = tmp_path / "department.yml"
    shutil.copy(ROOT / "data" / "facts" / "department.yml", copy)
    return copy


@pytest.fixture
async def client(database, nlu_dir, texts_dir, facts_file):
    console = Console(database, nlu_dir=nlu_dir, domain=DOMAIN_FILE, texts_dir=texts_dir, facts_file=facts_file)
    console.accounts.add_user("li", PASSWORD)
    console.accounts.add_user("anna", PASSWORD)
    app = make_app("http://127.0.0.1:9", "token", RateLimits(per_ip=0, per_sender=0, max_in_flight=10), console)
    test_client = TestClient(TestServer(app), cookie_jar=aiohttp.CookieJar(unsafe=True))
    await test_client.start_server()
    yield test_client
    await test_client.close()


async def login(client: TestClient, name: str = "li", password: str = PASSWORD, **headers: str):
    form = await client.get("/staff/login")
    token = re.search(r'name="csrf" value="([^"]+)"', await form.text()).group(1)
    return await client.post("/staff/login", data={"csrf": token, "name": name, "password": password},
                             allow_redirects=False, headers=headers)  # fmt: skip


async def csrf_of(client: TestClient) -> str:
    page = await client.get("/staff/")
    return re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)


PAGES = ["/staff/", "/staff", "/staff/audit", "/staff/?status=todo", "/staff/no-such-page"]


async def test_nothing_under_staff_answers_without_a_session(client):
    for path in PAGES:
        reply = await client.get(path, allow_redirects=False)
        assert reply.status == 303 and reply.headers["Location"] == "/staff/login", path
    api = await client.get("/staff/api/inbox")
    assert api.status == 401 and await api.json() == {"error": "not logged in"}
    for path in ("/staff/inbox/0123456789/ignore", "/staff/api/inbox/0123456789", "/staff/logout"):
        reply = await client.post(path, data={"csrf": "x"}, allow_redirects=False)
        assert reply.status == 401, path
    login_page = await client.get("/staff/login")
    assert login_page.status == 200 and 'type="password"' in await login_page.text()


async def test_a_login_gives_a_strict_http_only_session_cookie(client):
    reply = await login(client)
    assert reply.status == 303 and reply.headers["Location"] == "/staff/"
    cookie = next(c for c in reply.headers.getall("Set-Cookie") if c.startswith("staff_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/staff" in cookie
    assert "Secure" not in cookie  # plain HTTP on the loopback: a Secure cookie would never come back
    page = await client.get("/staff/")
    assert page.status == 200 and "Signed in as li" in await page.text()
    assert (
        page.headers["Cache-Control"] == "no-store"
        and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    )


async def test_the_cookie_is_secure_behind_an_https_proxy(client):
    reply = await login(client, **{"X-Forwarded-Proto": "https"})
    cookie = next(c for c in reply.headers.getall("Set-Cookie") if c.startswith("staff_session="))
    assert "Secure" in cookie


async def test_a_login_without_the_forms_token_is_refused(client):
    reply = await client.post("/staff/login", data={"name": "li", "password": PASSWORD}, allow_redirects=False)
    assert reply.status == 403 and "staff_session" not in reply.cookies


async def test_a_change_with_a_forged_csrf_token_is_refused(client, database):
    await login(client)
    forged = await client.post("/staff/inbox/0123456789/ignore", data={"csrf": "forged"}, allow_redirects=False)
    assert forged.status == 403
    missing = await client.post("/staff/inbox/0123456789/ignore", allow_redirects=False)
    assert missing.status == 403
    api = await client.post("/staff/api/inbox/0123456789", json={"action": "ignore"}, headers={"X-CSRF-Token": "x"})
    assert api.status == 403
    # another staff member's token does not do either
    other = TestClient(client.server, cookie_jar=aiohttp.CookieJar(unsafe=True))  # a second browser
    await login(other, "anna")
    anna_csrf = await csrf_of(other)
    await other.session.close()
    reply = await client.post("/staff/inbox/0123456789/ignore", data={"csrf": anna_csrf}, allow_redirects=False)
    assert reply.status == 403
    # the right token reaches the handler (no such group: 404)
    right = await client.post("/staff/inbox/0123456789/ignore", data={"csrf": await csrf_of(client)})
    assert right.status == 404


async def test_after_logout_the_session_opens_nothing(client):
    await login(client)
    stolen = client.session.cookie_jar.filter_cookies(client.make_url("/staff/"))["staff_session"].value
    csrf = await csrf_of(client)
    out = await client.post("/staff/logout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/staff/login"
    replay = {"Cookie": f"staff_session={stolen}"}
    for path in PAGES:
        reply = await client.get(path, headers=replay, allow_redirects=False)
        assert reply.status == 303, path
    assert (await client.get("/staff/api/inbox", headers=replay)).status == 401
    post = await client.post("/staff/inbox/0123456789/ignore", data={"csrf": csrf}, headers=replay)
    assert post.status == 401


async def test_five_wrong_passwords_in_a_row_slow_the_next_logins_down(client, database):
    for _ in range(MAX_FAILURES):
        reply = await login(client, "li", "wrong password!")
        assert reply.status == 401 and "Wrong name or password." in await reply.text()
    slowed = await login(client, "li", PASSWORD)  # even the right password waits now
    assert slowed.status == 429 and int(slowed.headers["Retry-After"]) >= 1
    assert "Too many wrong passwords" in await slowed.text()
    assert "staff_session" not in slowed.cookies
    # another name from the same address still logs in
    assert (await login(client, "anna", PASSWORD)).status == 303
    accounts = StaffAccounts(database)
    log = [(e.username, e.action) for e in accounts.audit_log()]
    assert log.count(("li", "login.failed")) == MAX_FAILURES and ("anna", "login") in log


async def test_the_console_speaks_chinese(client):
    await login(client)
    page = await client.get("/staff/?ui=zh")
    text = await page.text()
    assert '<html lang="zh-Hans">' in text and "未回答的问题" in text and "退出登录" in text
    # the choice is kept for the next pages
    assert "<h2>操作记录</h2>" in await (await client.get("/staff/audit")).text()


async def test_answers_are_edited_side_by_side_and_errors_shown_next_to_the_field(client, texts_dir):
    await login(client)
    page = await (await client.get("/staff/answers")).text()
    section = page.split('id="answer-ask_degrees"')[1].split("</section>")[0]
    for code in ("en", "zh-Hans", "zh-Hant", "ru", "fr"):
        assert f'name="{code}" lang="{code}"' in section
    assert "Placeholders: {degrees}" in section and "Examples (" in section
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    before = {p.name: p.read_bytes() for p in texts_dir.iterdir()}
    wrong = await client.post(
        "/staff/answers/ask_degrees", data={"csrf": csrf, "fr": "Nous accueillons tout le monde."}
    )
    assert wrong.status == 400
    field = (await wrong.text()).split('id="a-ask_degrees-fr"')[1].split("</div>")[0]
    assert "the placeholders must be [&#x27;degrees&#x27;]" in field
    assert {p.name: p.read_bytes() for p in texts_dir.iterdir()} == before
    new = "Bienvenue ! Vous pouvez préparer à NJUPT des diplômes de niveau {degrees}."
    saved = await client.post("/staff/answers/ask_degrees", data={"csrf": csrf, "fr": new})
    assert saved.status == 200 and "Saved: ask_degrees" in await saved.text()
    assert "Bienvenue ! Vous pouvez préparer à NJUPT des diplômes de niveau {degrees}." in (
        texts_dir / "fr.yml"
    ).read_text(encoding="utf-8")
    assert "answer.edit" in await (await client.get("/staff/audit")).text()
    forged = await client.post("/staff/answers/ask_degrees", data={"csrf": "forged", "fr": new})
    assert forged.status == 403


def test_a_fact_is_replaced_where_it_is_and_nothing_else_changes(facts_file):
    from bot.core.facts import load_facts
    from bot.staff.factdata import fields, set_facts
    from bot.staff.nludata import EditRejected

    before = facts_file.read_text(encoding="utf-8").splitlines()
    assert set_facts({"visitors.scholar_count": "850", "department.functions[1].fr": "orientation"}, facts_file)
    after = facts_file.read_text(encoding="utf-8").splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == 2
    assert changed[0][1] == "    - {en: guidance, zh-Hans: 指导, ru: методическое руководство, fr: orientation}"
    assert changed[1][1].startswith("  scholar_count: 850 ") and "# " in changed[1][1]  # the comment stays
    facts = load_facts(facts_file)
    assert facts.scholar_count == 850 and facts.functions[1].get("fr") == "orientation"
    by_path = {f.path: f for f in fields(facts_file)}
    assert by_path["visitors.scholar_count"].number
    snapshot = facts_file.read_bytes()
    for values, problem in (
        ({"visitors.scholar_count": "many"}, "must be a whole number"),
        ({"department.name.ru": "  "}, "empty"),
        ({"nowhere.name": "x"}, "no such field"),
    ):
        with pytest.raises(EditRejected) as rejected:
            set_facts(values, facts_file)
        assert any(problem in p for p in rejected.value.problems), rejected.value.problems
        assert facts_file.read_bytes() == snapshot


async def test_facts_are_edited_in_the_console_with_errors_next_to_the_field(client, facts_file):
    await login(client)
    page = await (await client.get("/staff/facts")).text()
    assert 'name="visitors.scholar_count" value="800"' in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    snapshot = facts_file.read_bytes()
    wrong = await client.post("/staff/facts", data={"csrf": csrf, "visitors.scholar_count": "eight hundred"})
    assert wrong.status == 400
    row = (await wrong.text()).split('name="visitors.scholar_count"')[1].split("</tr>")[0]
    assert "must be a whole number" in row and 'value="eight hundred"' in row
    assert facts_file.read_bytes() == snapshot
    saved = await client.post("/staff/facts", data={"csrf": csrf, "address.postcode": "210003"})
    assert saved.status == 200 and facts_file.read_bytes() == snapshot  # unchanged value: nothing written
    saved = await client.post("/staff/facts", data={"csrf": csrf, "visitors.scholar_count": "801"})
    assert saved.status == 200 and "Facts saved" in await saved.text()
    assert "scholar_count: 801" in facts_file.read_text(encoding="utf-8")
    assert (
        "visitors.scholar_count: &#x27;800&#x27; -&gt; &#x27;801&#x27;"
        in await (await client.get("/staff/audit")).text()
    )


# --- talk to a person: the console's hand-offs page ------------------------------------------


async def test_staff_answer_a_handoff_in_the_console_and_close_it(client, database, monkeypatch):
    monkeypatch.delenv("SMTP_URL", raising=False)
    monkeypatch.delenv("TELEGRAM_STAFF_CHAT_ID", raising=False)
    from bot.core.handoff import HandoffStore, timeout_minutes
    from bot.core.storage import RequestStore
    from bot.core.texts import say

    store = HandoffStore(RequestStore(database))
    sender = "web-" + os.urandom(12).hex()
    handoff, _ = store.open(sender, "fr", transcript="user: Je voudrais parler à quelqu'un")
    store.add_user_message(handoff.ref, "Bonjour, une question sur les visites")
    assert (await client.get("/staff/handoffs", allow_redirects=False)).status == 303  # no session
    await login(client)
    listed = await (await client.get("/staff/handoffs")).text()
    assert f'data-ref="{handoff.ref}"' in listed and "Bonjour, une question sur les visites" in listed
    assert "SMTP_URL" in listed  # the console says that nothing goes by e-mail
    forged = await client.post(f"/staff/handoffs/{handoff.ref}/reply", data={"csrf": "forged", "text": "x"})
    assert forged.status == 403
    csrf = await csrf_of(client)
    answered = await client.post(f"/staff/handoffs/{handoff.ref}/reply", data={"csrf": csrf, "text": "Bonjour !"})
    assert answered.status == 200 and "Bonjour !" in await answered.text()
    (reply,) = [m for m in store.messages(handoff.ref) if m.author == "staff"]
    assert (reply.text, reply.staff_name, reply.delivery) == ("Bonjour !", "console:li", "waiting")  # for the page
    assert store.get(handoff.ref).taken_by == "console:li"
    closed = await client.post(f"/staff/handoffs/{handoff.ref}/close", data={"csrf": csrf})
    assert closed.status == 200 and f'data-ref="{handoff.ref}"' not in await closed.text()
    assert not store.get(handoff.ref).is_open and store.active(sender) is None
    told = store.messages(handoff.ref)[-1]
    assert told.text == say("handoff_closed", "fr", ref=handoff.ref, minutes=f"{timeout_minutes():g}")
    audit = await (await client.get("/staff/audit")).text()
    assert "handoff.reply" in audit and "handoff.close" in audit
