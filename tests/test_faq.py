"""A new FAQ (a new intent) from the staff console and from `bot faq add`, on copies of the project's files.

What is written, where a developer would write it (the diff of each file is the lines added, nothing
else); an invalid FAQ changes no file and says which field is wrong; the console's form and the
command share ``bot.staff.faqdata``; `make validate`'s checks (the publish's first step) pass with a
new intent that has no held-out questions. Publishing one and asking it live is in test_publish.py.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from bot.channels.web.server import make_app
from bot.core.languages import to_traditional
from bot.core.paths import ROOT
from bot.core.ratelimit import RateLimits
from bot.core.validation import read_examples
from bot.staff.faqdata import FaqDraft, FaqFiles, FaqRejected, add_faq, read_draft
from bot.staff.service import Console

FIXTURE = Path(__file__).parent / "fixtures" / "faq_feedback.yml"
NAME = "ask_assistant_feedback"
PASSWORD = "correct horse battery staple"
NOT_COPIED = (".git", ".venv", "models", "var", "reports", "__pycache__", ".ruff_cache", ".pytest_cache")


@pytest.fixture
def files(tmp_path: Path) -> FaqFiles:
    """Copies of every file a new FAQ writes."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "docs").mkdir()
    shutil.copytree(ROOT / "data" / "nlu", tmp_path / "nlu")
    shutil.copytree(ROOT / "data" / "texts", tmp_path / "texts")
    shutil.copy(ROOT / "domain.yml", tmp_path / "domain.yml")
    shutil.copy(ROOT / "data" / "rules" / "questions.yml", tmp_path / "rules" / "questions.yml")
    shutil.copy(ROOT / "docs" / "intents.md", tmp_path / "docs" / "intents.md")
    return FaqFiles(domain=tmp_path / "domain.yml", nlu_dir=tmp_path / "nlu", texts_dir=tmp_path / "texts",
                    rules=tmp_path / "rules" / "questions.yml", intents_doc=tmp_path / "docs" / "intents.md")  # fmt: skip


def every_file(files: FaqFiles) -> dict[Path, bytes]:
    paths = [files.domain, files.rules, files.intents_doc, *files.nlu_dir.iterdir(), *files.texts_dir.iterdir()]
    return {path: path.read_bytes() for path in paths}


def added_lines(before: bytes, after: bytes) -> list[str]:
    """The lines of a diff: only additions allowed (a removed or changed line fails)."""
    diff = list(difflib.ndiff(before.decode().splitlines(), after.decode().splitlines()))
    assert not [line for line in diff if line.startswith("- ")], "a line was changed or removed"
    return [line[2:] for line in diff if line.startswith("+ ")]


def test_a_new_faq_is_written_where_a_developer_would_write_it(files: FaqFiles):
    before = every_file(files)
    draft = read_draft(FIXTURE, NAME)
    changed = add_faq(draft, files)
    after = every_file(files)
    assert added_lines(before[files.domain], after[files.domain]) == [f"  - {NAME}"]
    domain = after[files.domain].decode()
    assert domain.index(f"  - {NAME}\n") == domain.index("  - ask_visit\n") + len("  - ask_visit\n")
    assert added_lines(before[files.rules], after[files.rules]) == [
        f"- rule: answer {NAME}",
        "  steps:",
        f"  - intent: {NAME}",
        "  - action: action_answer_question",
    ]
    for code in ("en", "zh-Hans", "ru", "fr"):
        nlu = files.nlu_dir / f"{code}.yml"
        assert added_lines(before[nlu], after[nlu]) == [f"- intent: {NAME}", "  examples: |"] + [
            f"    - {e}" for e in draft.examples[code]
        ]
        assert read_examples(nlu)[NAME] == draft.examples[code]
        # after the other questions, before the conversation's intents
        text = after[nlu].decode()
        assert text.index(f"- intent: {NAME}\n") < text.index("- intent: greet\n")
        texts = yaml.safe_load(after[files.texts_dir / f"{code}.yml"])
        assert texts[NAME] == draft.answers[code]
        assert list(texts).index(NAME) == list(texts).index("ask_visit") + 1
    # Latin and Cyrillic files: folded `>-` lines; Chinese: one quoted line
    assert f"{NAME}: >-\n  Thank you for helping" in after[files.texts_dir / "en.yml"].decode()
    assert f'{NAME}: "感谢您帮助我们改进这个智能助手！' in after[files.texts_dir / "zh-Hans.yml"].decode()
    # Traditional Chinese: the conversion, so no override in its texts; its examples converted
    assert after[files.texts_dir / "zh-Hant.yml"] == before[files.texts_dir / "zh-Hant.yml"]
    hant = read_examples(files.nlu_dir / "zh-Hant.yml")[NAME]
    assert hant == [to_traditional(e) for e in draft.examples["zh-Hans"]] and "機器人" in hant[2]
    (row,) = added_lines(before[files.intents_doc], after[files.intents_doc])
    assert row.startswith(f"| `{NAME}` | how to give feedback or suggestions")
    assert set(changed) == {p for p in after if after[p] != before[p]}


def draft_with(**changes) -> FaqDraft:
    draft = read_draft(FIXTURE, NAME)
    for key, value in changes.items():
        if key.startswith("answer_"):
            draft.answers[key[len("answer_") :].replace("_", "-")] = value
        elif key.startswith("examples_"):
            draft.examples[key[len("examples_") :].replace("_", "-")] = value
        else:
            setattr(draft, key, value)
    return draft


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"name": "library"}, "name", "must be ask_ and a topic"),
        ({"name": "ask_Library-Hours"}, "name", "must be ask_ and a topic"),
        ({"name": "ask_degrees"}, "name", "ask_degrees is an intent already"),
        ({"examples_fr": ["comment donner mon avis sur ce chatbot"] * 3}, "examples.fr", "is there twice"),
        ({"examples_ru": ["как оставить отзыв об этом чат-боте"]}, "examples.ru", "at least 15 are needed"),
        ({"examples_en": [*read_draft(FIXTURE, NAME).examples["en"][:15], "What is the address"]},
         "examples.en", "is already an example of ask_address"),
        ({"answer_fr": "   "}, "answer.fr", "the text is empty"),
        ({"answer_en": "Write to {office_email}."}, "answer.en", "unknown placeholder(s) {office_email}"),
        ({"answer_zh_Hans": "写信到 {address"}, "answer.zh-Hans", "a lone { or }"),
        ({"answer_ru": "Пишите нам."}, "answer.ru", "placeholders"),  # the others have {address}
    ],
)  # fmt: skip
def test_an_invalid_faq_changes_no_file_and_says_which_field(files: FaqFiles, changes, field, problem):
    before = every_file(files)
    with pytest.raises(FaqRejected) as rejected:
        add_faq(draft_with(**changes), files)
    assert any(problem in p for p in rejected.value.fields.get(field, [])), rejected.value.fields
    assert every_file(files) == before


@pytest.fixture
async def client(tmp_path: Path, files: FaqFiles):
    facts = tmp_path / "department.yml"
    shutil.copy(ROOT / "data" / "facts" / "department.yml", facts)
    console = Console(f"sqlite:///{tmp_path / 'bot.db'}", nlu_dir=files.nlu_dir, domain=files.domain,
                      texts_dir=files.texts_dir, facts_file=facts, faq_files=files)  # fmt: skip
    console.accounts.add_user("li", PASSWORD)
    app = make_app("http://127.0.0.1:9", "token", RateLimits(per_ip=0, per_sender=0, max_in_flight=10), console)
    test_client = TestClient(TestServer(app), cookie_jar=aiohttp.CookieJar(unsafe=True))
    await test_client.start_server()
    form = await test_client.get("/staff/login")
    token = re.search(r'name="csrf" value="([^"]+)"', await form.text()).group(1)
    await test_client.post("/staff/login", data={"csrf": token, "name": "li", "password": PASSWORD})
    yield test_client
    await test_client.close()


def form_of(draft: FaqDraft, csrf: str) -> dict[str, str]:
    fields = {"csrf": csrf, "name": draft.name, "description": draft.description}
    for code, text in draft.answers.items():
        fields[f"answer.{code}"] = text
    for code, examples in draft.examples.items():
        fields[f"examples.{code}"] = "\n".join(examples)
    return fields


async def test_a_new_faq_is_made_in_the_console_with_errors_next_to_the_fields(client, files):
    page = await client.get("/staff/faq/new")
    text = await page.text()
    assert page.status == 200 and "<h2>New FAQ</h2>" in text
    csrf = re.search(r'name="csrf" value="([^"]+)"', text).group(1)
    for code in ("en", "zh-Hans", "zh-Hant", "ru", "fr"):
        field = text.split(f'id="faq-examples-{code}"')[1].split("</div>")[0]
        assert "at least 15: the training data needs 15 examples per intent in every language" in field
    assert "converted from zh-Hans (OpenCC)" in text.split('id="faq-examples-zh-Hant"')[1].split("</div>")[0]
    assert "{address}" in text  # the placeholders an answer may use
    before = every_file(files)
    wrong = draft_with(name="ask_degrees", examples_fr=["comment donner mon avis sur ce chatbot"])
    refused = await client.post("/staff/faq", data=form_of(wrong, csrf))
    assert refused.status == 400
    shown = await refused.text()
    name_field = shown.split('id="faq-name"')[1].split("</div>")[0]
    assert "ask_degrees is an intent already" in name_field
    fr_field = shown.split('id="faq-examples-fr"')[1].split("</div>")[0]
    assert "1 example(s): at least 15 are needed" in fr_field and "comment donner mon avis" in fr_field
    assert "at least 15 are needed" not in shown.split('id="faq-examples-en"')[1].split("</div>")[0]
    assert every_file(files) == before
    forged = await client.post("/staff/faq", data=form_of(read_draft(FIXTURE, NAME), "forged"))
    assert forged.status == 403 and every_file(files) == before
    made = await client.post("/staff/faq", data=form_of(read_draft(FIXTURE, NAME), csrf))
    assert made.status == 200 and f"Created {NAME}: publish to make it live." in await made.text()
    assert f'id="answer-{NAME}"' in await made.text()  # now among the answers, to edit like the others
    assert f"  - {NAME}\n" in files.domain.read_text(encoding="utf-8")
    assert read_examples(files.nlu_dir / "fr.yml")[NAME] == read_draft(FIXTURE, NAME).examples["fr"]
    audit = await (await client.get("/staff/audit")).text()
    assert f"faq.add</td><td>{NAME}: examples en 16, zh-Hans 16, ru 16, fr 16" in audit


def project_copy(root: Path) -> Path:
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=False)
    return root


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "DATABASE_URL": f"sqlite:///{root / 'var' / 'bot.db'}"}
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_bot_faq_add_writes_the_same_and_make_validate_passes_without_held_out_questions(tmp_path: Path):
    root = project_copy(tmp_path / "project")
    bad = tmp_path / "bad.yml"
    raw = yaml.safe_load(FIXTURE.read_text(encoding="utf-8"))
    raw["examples"]["ru"] = raw["examples"]["ru"][:3]
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    before = (root / "domain.yml").read_bytes()
    refused = run(root, "-m", "bot.cli.main", "faq", "add", NAME, "--from-file", str(bad))
    assert refused.returncode == 1
    assert "error: examples.ru: 3 example(s): at least 15 are needed" in refused.stderr
    assert "nothing was changed" in refused.stderr and (root / "domain.yml").read_bytes() == before
    done = run(root, "-m", "bot.cli.main", "faq", "add", NAME, "--from-file", str(FIXTURE), "--as", "li")
    assert done.returncode == 0, done.stderr
    assert f"{NAME} created; `bot publish` trains it and puts it live" in done.stdout
    assert f"  - {NAME}\n" in (root / "domain.yml").read_text(encoding="utf-8")
    assert f"- intent: {NAME}\n" in (root / "data" / "rules" / "questions.yml").read_text(encoding="utf-8")
    # the publish's first step: the new intent has no held-out question, which is a note, not a refusal
    checked = run(root, "-m", "bot.tools.datacheck")
    assert checked.returncode == 0, checked.stdout
    assert f"note: {NAME} has no held-out questions, so the held-out guard does not examine it" in checked.stdout
    assert checked.stdout.strip().endswith("data and held-out set: OK")
    # an intent with held-out questions in one language only is still a problem
    holdout = root / "tests" / "nlu_holdout" / "fr.yml"
    holdout.write_text(holdout.read_text(encoding="utf-8") + f"- intent: {NAME}\n  examples: |\n    - un avis\n",
                       encoding="utf-8")  # fmt: skip
    partial = run(root, "-m", "bot.tools.datacheck")
    assert partial.returncode == 1 and f"intent '{NAME}' has no examples, needs 8" in partial.stdout
