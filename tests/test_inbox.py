"""The inbox of unanswered questions and the edits it makes to data/nlu, on copies of the data.

Grouping and normalisation; an example added the way a developer writes it (one
line in ``git diff``); an invalid edit changes no file. The end-to-end part asks
the real servers questions the model falls back on, then works through
``bot inbox ...`` on a copy of the project.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bot.cli.servers import Servers
from bot.core.paths import DOMAIN_FILE, NLU_DIR, ROOT
from bot.core.validation import read_examples
from bot.staff.inbox import Inbox, group_id, normalise
from bot.staff.nludata import EditRejected, add_example

from .conftest import Chat

NOT_COPIED = (
    ".git",
    ".venv",
    "models",
    "var",
    "reports",
    "__pycache__",
    ".ruff_cache",
    ".pytest_cache",
    "node_modules",
)


@pytest.fixture
def nlu_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "nlu"
    shutil.copytree(NLU_DIR, copy)
    return copy


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Où est votre bureau ?", "où est votre   bureau"),
        ("你們的地址在哪裡？", "你们的地址在哪里"),
        ("ГДЕ ваш офис?!", "где ваш офис"),
        ("Ｗhere is NJUPT", "where is njupt"),  # full-width letters folded (NFKC)
    ],
)
def test_near_identical_texts_fall_into_one_group(a, b):
    assert normalise(a) == normalise(b)
    assert group_id("fr", normalise(a)) == group_id("fr", normalise(b)) != group_id("en", normalise(b))


def test_an_example_is_added_as_one_line_of_its_intent(nlu_dir):
    before = (nlu_dir / "fr.yml").read_text(encoding="utf-8").splitlines()
    add_example("fr", "ask_address", "vous êtes où exactement, les gars", nlu_dir, DOMAIN_FILE)
    after = (nlu_dir / "fr.yml").read_text(encoding="utf-8").splitlines()
    assert len(after) == len(before) + 1
    added = next(i for i, (x, y) in enumerate(zip(before + [""], after, strict=False)) if x != y)
    assert after[added] == "    - vous êtes où exactement, les gars"
    assert "vous êtes où exactement, les gars" in read_examples(nlu_dir / "fr.yml")["ask_address"]
    # every other example is where it was
    assert read_examples(NLU_DIR / "fr.yml")["ask_address"] == read_examples(nlu_dir / "fr.yml")["ask_address"][:-1]


@pytest.mark.parametrize(
    ("intent", "text", "problem"),
    [
        ("ask_fees", "combien coûtent les études", "intent 'ask_fees' is not in the domain"),
        ("ask_address", "   ", "the example is empty"),
        ("ask_address", "/greet", "cannot start with '/'"),
        ("ask_address", "[Nanjing](city) c'est où", "entity"),
        ("ask_partners", "que fait ce département ?", "is already an example of 'ask_department'"),
    ],
)
def test_an_invalid_edit_changes_no_file(nlu_dir, intent, text, problem):
    before = snapshot(nlu_dir)
    with pytest.raises(EditRejected) as rejected:
        add_example("fr", intent, text, nlu_dir, DOMAIN_FILE)
    assert any(problem in p for p in rejected.value.problems), rejected.value.problems
    assert snapshot(nlu_dir) == before


def test_an_edit_that_breaks_the_checks_changes_no_file(nlu_dir, tmp_path):
    # a domain with an intent that French has no examples of: the check of `make validate` fails
    domain = tmp_path / "domain.yml"
    domain.write_text(
        DOMAIN_FILE.read_text(encoding="utf-8").replace("  - ask_address\n", "  - ask_address\n  - ask_fees\n")
    )
    before = snapshot(nlu_dir)
    with pytest.raises(EditRejected) as rejected:
        add_example("fr", "ask_address", "vous êtes où exactement", nlu_dir, domain)
    assert any("intent 'ask_fees' has no examples" in p for p in rejected.value.problems)
    assert snapshot(nlu_dir) == before


# --- end to end: the real servers, then `bot inbox` on a copy of the project -------------------

# French questions the trained model does not understand (the fallback), and one out of scope.
FALLBACK_FR = "vous bossez avec quelles écoles là-bas"
OUT_OF_SCOPE_FR = "Combien coûtent les frais de scolarité ?"


def copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=False)
    return root


def bot(root: Path, database: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "DATABASE_URL": database}
    return subprocess.run([sys.executable, "-m", "bot.cli.main", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@pytest.mark.e2e
def test_unanswered_questions_are_grouped_and_taught_from_the_command_line(servers: Servers, tmp_path: Path):
    database = servers.env["DATABASE_URL"]
    first = Chat(servers, f"inbox-{os.urandom(6).hex()}")
    first.ask(FALLBACK_FR)
    first.ask(OUT_OF_SCOPE_FR)
    # the same question, typed differently, in the web chat
    web = {"sender": f"web-{os.urandom(12).hex()}", "message": "Vous bossez avec quelles écoles, là-bas ?"}
    assert httpx.post(f"{servers.web_url}/api/message", json=web, timeout=60).status_code == 200
    groups = {g.normal: g for g in Inbox(database).groups(language="fr")}
    assert normalise(FALLBACK_FR) in groups, list(groups)
    group = groups[normalise(FALLBACK_FR)]
    assert group.count == 2 and group.language == "fr" and set(group.reasons) & {"fallback", "out_of_scope"}
    assert group.guess == "ask_partners"  # the ranking's best after the fallback and out_of_scope
    assert sorted(group.channels) == ["rest", "web"]
    assert group.first_seen <= group.last_seen
    out = groups[normalise(OUT_OF_SCOPE_FR)]
    assert out.reasons == ["out_of_scope"]

    root = copy_project(tmp_path)
    listed = bot(root, database, "inbox", "list", "--lang", "fr", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows[group.id]["count"] == 2 and rows[group.id]["language"] == "fr"
    table = bot(root, database, "inbox", "list", "--lang", "fr")
    assert group.id in table.stdout and "group(s) of unanswered questions" in table.stdout

    ignored = bot(root, database, "inbox", "ignore", out.id)
    assert ignored.returncode == 0 and f"{out.id}: ignored" in ignored.stdout
    first.ask(OUT_OF_SCOPE_FR)  # the same text again stays ignored
    assert out.id not in {g.id for g in Inbox(database).groups(language="fr")}
    assert out.id in {g.id for g in Inbox(database).groups(language="fr", status="ignored")}

    wrong = bot(root, database, "inbox", "assign", group.id, "ask_fees")
    assert wrong.returncode == 1 and "intent 'ask_fees' is not in the domain" in wrong.stderr
    assigned = bot(root, database, "inbox", "assign", group.id, "ask_partners")
    assert assigned.returncode == 0, assigned.stderr
    fr = root / "data" / "nlu" / "fr.yml"
    assert read_examples(fr)["ask_partners"][-1] == group.text
    assert group.id not in {g.id for g in Inbox(database).groups(language="fr")}
    assert read_examples(NLU_DIR / "fr.yml") != read_examples(fr)  # the repository's own data is untouched


@pytest.mark.e2e
async def test_the_console_shows_the_inbox_and_teaches_in_one_click(servers: Servers, nlu_dir: Path):
    import aiohttp
    from aiohttp.test_utils import TestClient, TestServer

    from bot.channels.web.server import make_app
    from bot.core.ratelimit import RateLimits
    from bot.staff.service import Console

    from .test_staff import PASSWORD, login

    question = "qui forme-t-on chez vous"  # the fallback; the best guess is the right intent
    Chat(servers, f"console-{os.urandom(6).hex()}").ask(question)
    console = Console(servers.env["DATABASE_URL"], nlu_dir=nlu_dir, domain=DOMAIN_FILE)
    name = f"staff{os.urandom(3).hex()}"
    console.accounts.add_user(name, PASSWORD)
    app = make_app(servers.rasa_url, None, RateLimits(per_ip=0, per_sender=0, max_in_flight=10), console)
    client = TestClient(TestServer(app), cookie_jar=aiohttp.CookieJar(unsafe=True))
    await client.start_server()
    try:
        await login(client, name)
        page = await (await client.get("/staff/?lang=fr")).text()
        (group,) = [g for g in console.inbox.groups(language="fr") if g.normal == normalise(question)]
        assert f'data-group="{group.id}"' in page and question in page
        assert "Add to ask_training_target" in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        # an invalid choice: the error next to the question, no file changed
        before = snapshot(nlu_dir)
        wrong = await client.post(f"/staff/inbox/{group.id}/assign", data={"csrf": csrf, "intent": "ask_fees"})
        assert wrong.status == 400
        row = (await wrong.text()).split(f'data-group="{group.id}"')[1].split("</tr>")[0]
        assert "intent &#x27;ask_fees&#x27; is not in the domain" in row
        assert snapshot(nlu_dir) == before
        done = await client.post(f"/staff/inbox/{group.id}/assign", data={"csrf": csrf, "intent": group.guess,
                                                                         "back": "/staff/?lang=fr"})  # fmt: skip
        assert done.status == 200 and "Added to ask_training_target" in await done.text()
        assert str(done.url).endswith("lang=fr&done=assigned&intent=ask_training_target")
        assert read_examples(nlu_dir / "fr.yml")["ask_training_target"][-1] == question
        assert group.id not in await done.text()
        audit = await (await client.get("/staff/audit")).text()
        assert "inbox.assign" in audit and name in audit
        api = await (await client.get("/staff/api/inbox?status=assigned&lang=fr")).json()
        assert {"id": group.id, "intent": "ask_training_target", "decided_by": name}.items() <= next(
            row for row in api if row["id"] == group.id
        ).items()
    finally:
        await client.close()


# --- answers: data/texts ------------------------------------------------------------------------


@pytest.fixture
def texts_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "texts"
    shutil.copytree(ROOT / "data" / "texts", copy)
    return copy


def test_an_answer_is_replaced_in_the_files_own_style(texts_dir):
    from bot.core.texts import load_texts
    from bot.staff.textdata import set_texts

    french = "Bonne question ! Les étudiants du monde entier sont les bienvenus à NJUPT pour y préparer des diplômes de niveau {degrees}."
    chinese = "欢迎世界各地的学生来南邮攻读{degrees}学位。"
    changed = set_texts("ask_degrees", {"fr": french, "zh-Hans": chinese}, texts_dir)
    assert sorted(p.name for p in changed) == ["fr.yml", "zh-Hans.yml"]
    fr = (texts_dir / "fr.yml").read_text(encoding="utf-8")
    assert "ask_degrees: >-\n  Bonne question ! Les étudiants du monde entier sont les bienvenus à NJUPT pour\n" in fr
    assert f'ask_degrees: "{chinese}"\n' in (texts_dir / "zh-Hans.yml").read_text(encoding="utf-8")
    loaded = load_texts(texts_dir)
    assert loaded.by_language["fr"]["ask_degrees"] == french
    assert loaded.by_language["zh-Hant"]["ask_degrees"] == "歡迎世界各地的學生來南郵攻讀{degrees}學位。"  # converted
    assert loaded.problems() == []
    # every other line of the French file is as it was
    before = (ROOT / "data" / "texts" / "fr.yml").read_text(encoding="utf-8").splitlines()
    assert [line for line in fr.splitlines() if line not in before][0].startswith("  Bonne question !")


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"fr": "Nous accueillons des étudiants pour des diplômes."}, "the placeholders must be ['degrees']"),
        ({"fr": "Diplômes : {degrees} et {fees}."}, "the placeholders must be ['degrees']"),
        ({"fr": "   "}, "fr: the text is empty"),
        ({"xx": "{degrees}"}, "unknown language 'xx'"),
    ],
)
def test_an_invalid_answer_changes_no_file(texts_dir, values, problem):
    from bot.staff.textdata import set_texts

    before = snapshot(texts_dir)
    with pytest.raises(EditRejected) as rejected:
        set_texts("ask_degrees", values, texts_dir)
    assert any(problem in p for p in rejected.value.problems), rejected.value.problems
    assert snapshot(texts_dir) == before


@pytest.mark.e2e
async def test_the_usage_and_requests_pages_show_the_figures_and_the_requests(servers: Servers, nlu_dir: Path):
    import csv
    import datetime as dt
    import io

    import aiohttp
    from aiohttp.test_utils import TestClient, TestServer

    from bot.channels.web.server import make_app
    from bot.core.ratelimit import RateLimits
    from bot.core.storage import OfficeRequest, RequestStore
    from bot.staff.service import Console

    from .test_staff import PASSWORD, login

    database = servers.env["DATABASE_URL"]
    chat = Chat(servers, f"usage-{os.urandom(6).hex()}")
    unanswered = "on peut parler de mon dossier"  # the fallback, in no other test's inbox decision
    chat.ask("Where is the international office?")
    chat.ask(unanswered)
    ref = RequestStore(database).save(OfficeRequest(kind="question", email="ada@example.org",
                                                    details="=HYPERLINK(\"x\") fees?", language="en")).ref  # fmt: skip
    console = Console(database, nlu_dir=nlu_dir, domain=DOMAIN_FILE)
    name = f"staff{os.urandom(3).hex()}"
    console.accounts.add_user(name, PASSWORD)
    app = make_app(servers.rasa_url, None, RateLimits(per_ip=0, per_sender=0, max_in_flight=10), console)
    client = TestClient(TestServer(app), cookie_jar=aiohttp.CookieJar(unsafe=True))
    await client.start_server()
    try:
        assert (await client.get("/staff/usage", allow_redirects=False)).status == 303
        assert (await client.get("/staff/usage.csv?figure=top_intents", allow_redirects=False)).status == 303
        await login(client, name)
        page = await (await client.get("/staff/usage")).text()
        for figure in ("per_day_language", "per_day_channel", "per_day_outcome", "top_intents", "top_unanswered"):
            assert f'id="{figure}"' in page and f"/staff/usage.csv?figure={figure}" in page
        assert page.count("<svg") == 5 and ">ask_address<" in page
        today = dt.datetime.now(dt.timezone.utc).date().isoformat()
        reply = await client.get("/staff/usage.csv?figure=per_day_outcome")
        assert reply.headers["Content-Type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(await reply.text())))
        row = next(r for r in table if r["day"] == today)
        assert int(row["answered"]) >= 1 and int(row["fallback"]) >= 1
        languages = list(
            csv.DictReader(io.StringIO(await (await client.get("/staff/usage.csv?figure=per_day_language")).text()))
        )
        assert int(next(r for r in languages if r["day"] == today)["fr"]) >= 1
        top = await (await client.get("/staff/usage.csv?figure=top_unanswered")).text()
        assert unanswered in top

        requests = await (await client.get("/staff/requests")).text()
        assert f'data-ref="{ref}"' in requests and "ada@example.org" in requests
        csrf = re.search(r'name="csrf" value="([^"]+)"', requests).group(1)
        closed = await client.post(f"/staff/requests/{ref}/close", data={"csrf": csrf, "note": "Answered by mail"})
        assert closed.status == 200 and f"Closed: {ref}." in await closed.text()
        stored = RequestStore(database).get(ref)
        assert (stored.status, stored.note) == ("closed", "Answered by mail")
        forged = await client.post(f"/staff/requests/{ref}/close", data={"csrf": "x"})
        assert forged.status == 403
    finally:
        await client.close()
