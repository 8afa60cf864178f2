"""Teach and publish without a restart, end to end, on a copy of the project (its own data/, models/, var/).

`bot run` starts the copy's bot (action server, Rasa, web chat with the staff console).
Then, in order, on that one running bot (two publishes in the whole suite, as training costs
minutes each; each must pass the held-out guard at the publish floor, bot.tools.evaluate.PUBLISH_FLOOR):

1. in Chromium: a French question, answered with the fallback in the public web chat, is in the
   console's inbox; the staff member adds it to the right intent (not the guess), creates a new
   FAQ in the console's form and presses Publish; once published, the question gets the right
   answer in the web chat, and the new FAQ is answered in English and in French, each in its
   language, without a restart, and the publish is a git commit by the staff member;
2. from a terminal only: another French question the bot answered with the fallback over REST
   is assigned (`bot inbox assign ID INTENT`) and published (`bot publish`); it then gets the
   right answer over REST and in the web chat's API, without a restart;
3. an answer's text edited in data/texts is what the bot says a moment later;
4. `bot rollback` puts the previous model and data back: the console's publish (the terminal's
   question unanswered again, the new FAQ still answered);
5. a publish of invalid data is refused and changes nothing live.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from bot.core.languages import to_traditional
from bot.core.paths import MODEL, ROOT
from bot.core.texts import fact_values, say
from bot.staff.faqdata import read_draft

from . import test_web
from .conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.model]
browser = test_web.browser  # the fixture: one Chromium per module

NOT_COPIED = (".git", ".venv", "models", "var", "reports", "__pycache__", ".ruff_cache", ".pytest_cache")
PASSWORD = "a long staff passphrase"
# French questions the trained model does not answer (a fallback or "no such information"),
# and the intent each should get.
CLI_QUESTION, CLI_INTENT = "vous bossez avec quelles écoles là-bas", "ask_partners"
WEB_QUESTION, WEB_INTENT = "quel genre de diplôme je peux espérer en venant", "ask_degrees"  # the guess is wrong
# The new FAQ made in the console (the fixture `bot faq add` reads too), and questions that are not its examples.
FAQ = read_draft(Path(__file__).parent / "fixtures" / "faq_feedback.yml", "ask_assistant_feedback")
FAQ_QUESTIONS = {"en": "I would like to give some feedback on this chatbot",
                 "fr": "je voudrais donner mon avis sur ce chatbot"}  # fmt: skip


def faq_answer(language: str) -> str:
    """The new FAQ's answer as the bot says it (zh-Hant: converted from zh-Hans)."""
    text = FAQ.answers.get(language) or to_traditional(FAQ.answers["zh-Hans"])
    return text.format(address=fact_values(language)["address"])


class Project:
    """The copy and its running bot."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rasa_port, self.action_port, self.web_port = free_port(), free_port(), free_port()
        self.database = f"sqlite:///{root / 'var' / 'bot.db'}"
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.root), "DATABASE_URL": self.database, "RATE_LIMIT_PER_IP": "0",
                "RASA_URL": f"http://127.0.0.1:{self.rasa_port}", "RASA_TELEMETRY_ENABLED": "false",
                "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip

    @property
    def web_url(self) -> str:
        return f"http://localhost:{self.web_port}"

    def bot(self, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bot.cli.main", *args], cwd=self.root, env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def start(self) -> None:
        log = (self.root / "bot-run.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli.main", "run", "--rasa-port", str(self.rasa_port),
             "--action-port", str(self.action_port), "--web-port", str(self.web_port)],
            cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while b"Ready in" not in (self.root / "bot-run.log").read_bytes():
            assert self.process.poll() is None, (self.root / "bot-run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "bot run did not get ready"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def replies(self, text: str, sender: str) -> list[dict]:
        reply = httpx.post(f"http://127.0.0.1:{self.rasa_port}/webhooks/rest/webhook",
                           json={"sender": sender, "message": text}, timeout=60)  # fmt: skip
        assert reply.status_code == 200, reply.text
        return reply.json()

    def ask(self, text: str, sender: str) -> str:
        return "\n".join(m.get("text", "") for m in self.replies(text, sender))

    def ask_web(self, text: str) -> list[dict]:
        """Through the web chat's server (/api/message), as the page sends it."""
        sender = "web-" + os.urandom(12).hex()
        reply = httpx.post(f"{self.web_url}/api/message", json={"sender": sender, "message": text}, timeout=60)
        assert reply.status_code == 200, reply.text
        return reply.json()


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.invalid",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.invalid"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, model: Path):
    root = tmp_path_factory.mktemp("publish") / "project"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=False)
    (root / "models").mkdir()
    shutil.copy2(MODEL, root / "models" / MODEL.name)
    git(root, "init", "--quiet")
    git(root, "add", "--all")
    git(root, "commit", "--quiet", "-m", "the project as cloned")
    running = Project(root)
    added = running.bot("staff", "add-user", "li.wei", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    running.start()
    yield running
    running.stop()


def fallback(language: str = "fr") -> str:
    return say("nlu_fallback", language)


def unanswered(reply: str, language: str = "fr") -> bool:
    """The bot's "not understood" or "no such information" answer: what lands in the inbox."""
    return reply == fallback(language) or reply.startswith(say("out_of_scope", language))


def test_1_staff_teach_create_a_faq_and_publish_in_the_console_and_it_is_live_without_restart(project, browser):
    chat = browser.new_context(locale="fr-FR").new_page()
    chat.goto(project.web_url + "/")
    chat.get_by_role("textbox").fill(WEB_QUESTION)
    chat.get_by_role("textbox").press("Enter")
    expect(chat.locator(".message.bot .bubble").first).to_be_visible(timeout=60_000)
    assert unanswered("\n".join(chat.locator(".message.bot .bubble").all_inner_texts()))
    for language, question in FAQ_QUESTIONS.items():  # no such answer yet
        assert project.ask(question, f"faq-before-{language}") != faq_answer(language)

    staff = browser.new_context(locale="fr-FR").new_page()
    staff.goto(project.web_url + "/staff/")
    assert staff.url.endswith("/staff/login")
    staff.get_by_label("Name").fill("li.wei")
    staff.get_by_label("Password").fill(PASSWORD)
    staff.get_by_role("button", name="Log in").click()
    expect(staff.get_by_text("Signed in as li.wei")).to_be_visible()
    staff.locator("select[name=lang]").select_option("fr")
    staff.get_by_role("button", name="Filter").click()
    row = staff.locator("tr", has_text=WEB_QUESTION)
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(5)).to_have_text("web")  # the channel
    row.get_by_label("Add as example of").select_option(WEB_INTENT)
    row.get_by_role("button", name="Add", exact=True).click()
    expect(staff.get_by_role("status")).to_have_text(f"Added to {WEB_INTENT}: publish to make it live.")
    expect(staff.locator("tr", has_text=WEB_QUESTION)).to_have_count(0)

    # a new FAQ: its name, its answer and examples in every language but zh-Hant (converted)
    staff.get_by_role("link", name="New FAQ").click()
    staff.get_by_label("Name (intent)").fill(FAQ.name)
    staff.get_by_label("What a person asks").fill(FAQ.description)
    for code, answer in FAQ.answers.items():
        staff.get_by_label(f"Answer ({code})").fill(answer)
        staff.get_by_label(f"Examples ({code})").fill("\n".join(FAQ.examples[code]))
    staff.get_by_role("button", name="Create the FAQ").click()
    expect(staff.get_by_role("status")).to_have_text(f"Created {FAQ.name}: publish to make it live.")
    assert f"  - {FAQ.name}\n" in (project.root / "domain.yml").read_text(encoding="utf-8")

    staff.get_by_role("link", name="Publish").click()
    started = time.monotonic()
    staff.get_by_role("button", name="Publish now").click()
    expect(staff.locator("progress")).to_be_visible()  # the progress, refreshed while it trains
    expect(staff.locator("#publish-result")).to_be_visible(timeout=1_500_000)
    expect(staff.locator("#publish-result")).to_contain_text("Published.")
    chat.get_by_role("textbox").fill(WEB_QUESTION)
    chat.get_by_role("textbox").press("Enter")
    answer = say(WEB_INTENT, "fr")
    expect(chat.locator(".message.bot .bubble").last).to_have_text(answer, timeout=60_000)
    live = time.monotonic() - started
    steps = staff.locator("#publish-result").inner_text()  # "Published. published in N s (validate … s, …)"
    print(f"\npublish to live (console): {live:.0f} s; {steps}")
    for language, question in FAQ_QUESTIONS.items():  # the new FAQ, each in its language
        (reply,) = project.replies(question, f"faq-after-{language}")
        assert (reply["text"], reply["language"]) == (faq_answer(language), language)
    chat.get_by_role("textbox").fill(FAQ_QUESTIONS["fr"])
    chat.get_by_role("textbox").press("Enter")
    expect(chat.locator(".message.bot .bubble").last).to_have_text(faq_answer("fr"), timeout=60_000)
    history = staff.locator("table.publishes tbody tr").first
    expect(history).to_contain_text("li.wei")
    expect(history).to_contain_text("domain.yml +1 -0")
    expect(history).to_contain_text("data/rules/questions.yml +4 -0")
    # a git commit by the staff member, with the domain and the list of intents
    assert git(project.root, "log", "-1", "--format=%an|%s").strip().startswith("li.wei|Publish by li.wei")
    committed = git(project.root, "show", "--stat", "--format=", "HEAD")
    assert "domain.yml" in committed and "docs/intents.md" in committed and "data/texts/en.yml" in committed
    assert project.process.poll() is None  # nothing restarted


def test_2_a_question_is_taught_and_published_from_the_terminal_and_answered_without_restart(project: Project):
    assert unanswered(project.ask(CLI_QUESTION, "cli-user"))
    listed = project.bot("inbox", "list", "--lang", "fr", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (group,) = [g for g in json.loads(listed.stdout) if g["text"] == CLI_QUESTION]
    assert group["guess"] == CLI_INTENT and group["channels"] == ["rest"]
    done = project.bot("inbox", "assign", group["id"], CLI_INTENT)
    assert done.returncode == 0, done.stderr
    assert f"    - {CLI_QUESTION}\n" in (project.root / "data" / "nlu" / "fr.yml").read_text(encoding="utf-8")
    assert unanswered(project.ask(CLI_QUESTION, "cli-user-2"))  # not live before a publish
    started = time.monotonic()
    published = project.bot("publish", "--as", "li.wei", timeout=1500)
    assert published.returncode == 0, published.stdout[-2000:] + published.stderr[-2000:]
    assert "published models/published/njupt-" in published.stdout and "data/nlu/fr.yml +1 -0" in published.stdout
    assert "] train: training" in published.stdout  # the progress, step by step
    steps = next(line for line in published.stdout.splitlines() if line.startswith("steps: "))
    print(f"\nbot publish: {time.monotonic() - started:.0f} s; {steps}")
    print("\n".join(line for line in published.stdout.splitlines() if line.startswith("held-out guard: ")))
    (rest,) = project.replies(CLI_QUESTION, "cli-user-3")
    assert (rest["text"], rest["language"]) == (say(CLI_INTENT, "fr"), "fr")
    (web,) = project.ask_web(CLI_QUESTION)
    assert (web["text"], web["language"]) == (say(CLI_INTENT, "fr"), "fr")
    assert git(project.root, "log", "-1", "--format=%an|%s").strip().startswith("li.wei|Publish by li.wei")
    # what the console published stays live
    assert project.ask(WEB_QUESTION, "console-faq-after-cli") == say(WEB_INTENT, "fr")
    assert project.ask(FAQ_QUESTIONS["en"], "faq-after-cli") == faq_answer("en")
    assert project.process.poll() is None  # nothing restarted


def test_3_an_answer_edited_in_the_console_is_live_without_a_restart(project: Project):
    texts = project.root / "data" / "texts" / "fr.yml"
    before = texts.read_text(encoding="utf-8")
    new = "Bonne question ! Les étudiants du monde entier peuvent préparer à NJUPT des diplômes de niveau {degrees}."
    with httpx.Client(base_url=project.web_url, follow_redirects=True, timeout=60) as staff:
        form = staff.get("/staff/login").text
        token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        staff.post("/staff/login", data={"csrf": token, "name": "li.wei", "password": PASSWORD}).raise_for_status()
        page = staff.get("/staff/answers").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        saved = staff.post("/staff/answers/ask_degrees", data={"csrf": csrf, "fr": new})
        assert saved.status_code == 200 and "Saved: ask_degrees" in saved.text
    assert texts.read_text(encoding="utf-8") != before
    expected = new.replace("{degrees}", say(WEB_INTENT, "fr").split("niveau ", 1)[1].rstrip("."))
    deadline = time.monotonic() + 30
    while (reply := project.ask(WEB_QUESTION, f"edit-{time.monotonic()}")) != expected:
        assert time.monotonic() < deadline, (reply, expected)
        time.sleep(0.5)
    assert project.process.poll() is None


def test_4_a_rollback_puts_the_previous_model_and_data_back(project: Project):
    done = project.bot("rollback", "--as", "li.wei", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rolled back" in done.stdout
    # the console's publish again: the terminal's question is not answered, the new FAQ is
    assert unanswered(project.ask(CLI_QUESTION, "cli-after-rollback"))
    assert project.ask(WEB_QUESTION, "console-faq-after-rollback") == say(WEB_INTENT, "fr")  # the edit of test 3 undone
    (reply,) = project.replies(FAQ_QUESTIONS["fr"], "faq-after-rollback")
    assert (reply["text"], reply["language"]) == (faq_answer("fr"), "fr")
    nlu = (project.root / "data" / "nlu" / "fr.yml").read_text(encoding="utf-8")
    assert CLI_QUESTION not in nlu and WEB_QUESTION in nlu and f"- intent: {FAQ.name}\n" in nlu
    assert f"  - {FAQ.name}\n" in (project.root / "domain.yml").read_text(encoding="utf-8")


def test_5_a_publish_of_invalid_data_is_refused_and_nothing_changes(project: Project):
    nlu = project.root / "data" / "nlu" / "fr.yml"
    before = nlu.read_text(encoding="utf-8")
    nlu.write_text(before.replace("- intent: ask_apt\n", "- intent: ask_fees\n"), encoding="utf-8")
    try:
        done = project.bot("publish", "--as", "li.wei", timeout=300)
        assert done.returncode == 1
        assert "not published: validate failed" in done.stderr and "ask_fees" in done.stderr
        assert project.ask(WEB_QUESTION, "after-refusal") == say(WEB_INTENT, "fr")  # as published
    finally:
        nlu.write_text(before, encoding="utf-8")
