"""Talk to a person in the web chat, in real headless Chromium: a French user asks for a
person, and `bot requests reply` appears on the open page without a reload (the delay is
measured), stays in the history after a reload, and `bot requests close` returns the user to
the bot, all on the shared stack of conftest.py."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

import pytest
from playwright.sync_api import Page, expect

from bot.cli.servers import Servers
from bot.core.handoff import HandoffStore
from bot.core.storage import RequestStore
from bot.core.texts import say

from .test_web import ask, browser, new_page, sender_of  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e
expect.set_options(timeout=30_000)
REPLIES = 5  # staff replies whose delay to the page is measured
MAX_DELAY = 6.0  # seconds: the page asks every 2 s, plus a slow shared machine


def requests(servers: Servers, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": servers.env["DATABASE_URL"]}
    env.pop("SMTP_URL", None)
    done = subprocess.run([sys.executable, "-m", "bot.cli.main", "requests", *args], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert done.returncode in (0, 2), done.stdout + done.stderr
    return done


def staff_replies(page: Page):
    return page.locator(".message.staff .bubble")


def test_a_french_user_sees_the_staff_reply_appear_and_return_to_the_bot(new_page, servers):  # noqa: F811
    page = new_page(locale="fr-FR")
    ask(page, "je voudrais parler à quelqu'un")
    banner = page.locator("#handoff")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(say("web_handoff_active", "fr"))
    ref = re.search(r"H-\d{4}-\d{4}", banner.inner_text()).group()
    opened = say("handoff_opened", "fr", ref=ref, where=say("handoff_where_web", "fr"))
    expect(page.locator(".message.bot .bubble").last).to_have_text(opened)

    delays = []
    for n in range(1, REPLIES + 1):
        text = f"Bonjour, ici le bureau international (réponse {n})."
        requests(servers, "reply", ref, "--text", text, "--as", "test")
        stored = time.monotonic()  # the reply is in the database: from now on the page may show it
        expect(staff_replies(page)).to_have_count(n)
        delays.append(time.monotonic() - stored)
        expect(staff_replies(page).last).to_have_text(say("handoff_staff_reply", "fr", ref=ref, text=text))
    print(f"staff reply -> page: median {statistics.median(delays):.2f} s, max {max(delays):.2f} s over {REPLIES}")
    assert max(delays) < MAX_DELAY, delays
    store = HandoffStore(RequestStore(servers.env["DATABASE_URL"]))
    assert all(m.delivery == "shown" for m in store.messages(ref))  # the page said it showed them

    ask(page, "Merci ! Et pour le logement ?")
    relayed = say("handoff_relayed", "fr", ref=ref)
    expect(page.locator(".message.bot .bubble").last).to_have_text(relayed)
    assert store.messages(ref)[-1].text == "Merci ! Et pour le logement ?"

    page.reload()  # the same browser, later: the staff's replies are in the history
    expect(staff_replies(page)).to_have_count(REPLIES)
    expect(page.locator("#handoff")).to_be_visible()

    requests(servers, "close", ref)
    expect(page.locator(".message.bot .bubble").last).to_have_text(say("handoff_closed", "fr", ref=ref))
    expect(page.locator("#handoff")).to_be_hidden()
    ask(page, "Quelle est l'adresse postale du bureau ?")
    expect(page.locator(".message.bot .bubble").last).to_contain_text("210003")
    assert sender_of(page).startswith("web-")


def shown(page: Page) -> list[tuple[str, str]]:
    """Every message on the page, in order: (user|bot|staff, its text)."""
    return [tuple(m) for m in page.eval_on_selector_all(
        ".message", "els => els.map(e => [e.classList.contains('staff') ? 'staff' : e.classList.contains('user') ? "
        "'user' : 'bot', e.querySelector('.bubble').textContent])")]  # fmt: skip


def test_after_a_reload_the_whole_exchange_with_the_staff_is_there_in_order(new_page, servers):  # noqa: F811
    page = new_page(locale="fr-FR")
    ask(page, "je voudrais parler à quelqu'un")
    expect(page.locator("#handoff")).to_be_visible()
    ref = re.search(r"H-\d{4}-\d{4}", page.locator("#handoff").inner_text()).group()
    staff = [f"Bonjour, ici le bureau international (message {n})." for n in (1, 2)]
    said = [
        ("user", "je voudrais parler à quelqu'un"),
        ("bot", say("handoff_opened", "fr", ref=ref, where=say("handoff_where_web", "fr"))),
    ]

    def expect_live(n: int) -> None:
        expect(page.locator(".message")).to_have_count(n)

    requests(servers, "reply", ref, "--text", staff[0], "--as", "test")
    said.append(("staff", say("handoff_staff_reply", "fr", ref=ref, text=staff[0])))
    expect_live(len(said))
    ask(page, "Merci ! Et pour le logement ?")
    said += [("user", "Merci ! Et pour le logement ?"), ("bot", say("handoff_relayed", "fr", ref=ref))]
    expect_live(len(said))
    requests(servers, "reply", ref, "--text", staff[1], "--as", "test")
    said.append(("staff", say("handoff_staff_reply", "fr", ref=ref, text=staff[1])))
    expect_live(len(said))
    assert shown(page) == said  # live, as it happened

    page.reload()
    expect_live(len(said))
    assert shown(page) == said
    expect(page.locator("#handoff")).to_be_visible()

    # the user goes back to the bot with the button, asks again, and the staff close the new one
    page.get_by_role("button", name=say("button_back_to_bot", "fr")).last.click()
    said += [("user", say("button_back_to_bot", "fr")), ("bot", say("handoff_ended_by_user", "fr", ref=ref))]
    expect_live(len(said))
    expect(page.locator("#handoff")).to_be_hidden()
    ask(page, "Je voudrais parler à une personne, s'il vous plaît")
    expect(page.locator("#handoff")).to_be_visible()
    second = re.search(r"H-\d{4}-\d{4}", page.locator("#handoff").inner_text()).group()
    assert second != ref
    said += [("user", "Je voudrais parler à une personne, s'il vous plaît"),
             ("bot", say("handoff_opened", "fr", ref=second, where=say("handoff_where_web", "fr")))]  # fmt: skip
    requests(servers, "close", second)
    said.append(("bot", say("handoff_closed", "fr", ref=second)))
    expect_live(len(said))
    expect(page.locator("#handoff")).to_be_hidden()
    assert shown(page) == said

    page.reload()
    expect_live(len(said))
    assert shown(page) == said
    expect(page.locator("#handoff")).to_be_hidden()
