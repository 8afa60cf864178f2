"""The README's screenshots of the web chat: docs/screenshot.png (a conversation) and
docs/handoff.png (talking to a person: a French user and a staff member's reply).

    python -m bot.tools.screenshot [--url http://localhost:8080] [--out docs/screenshot.png]
    python -m bot.tools.screenshot --handoff      (docs/handoff.png)
    (or `make screenshot`, which makes both)

Without ``--url`` it starts its own action, Rasa and web servers on free ports
with an empty database, so the picture is the same every time; with it, it uses
a running ``make run``. Drives Debian's Chromium (``apt-get install chromium``;
``fonts-wqy-microhei`` or ``fonts-noto-cjk`` for the Chinese) through
Playwright: no browser download. The tests launch Chromium the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bot.cli.servers import Servers
from bot.core.paths import MODEL, ROOT

OUT = ROOT / "docs" / "screenshot.png"
HANDOFF_OUT = ROOT / "docs" / "handoff.png"
STAFF_REPLY = (
    "Bonjour ! Je suis au bureau international. Pour votre séjour de recherche, pouvez-vous préciser vos dates ?"
)
# The machine has no internet: without these Chromium keeps trying to reach Google.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    """Debian's Chromium, or CHROMIUM=/path/to/chromium."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise SystemExit("Chromium is missing: apt-get install -y chromium")
    return path


def launch(playwright):
    """A headless Chromium from the system's package (Playwright downloads nothing)."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)


def converse(page, url: str) -> None:
    """A short conversation: a suggested question, a question in Chinese, quick replies."""
    from playwright.sync_api import expect

    page.goto(url)
    bot = page.locator(".message.bot .bubble")
    page.locator("#suggestions button").first.click()
    expect(bot).to_have_count(1, timeout=60_000)
    page.get_by_role("textbox").fill("留学生可以在南邮读哪些学位？")
    page.keyboard.press("Enter")
    expect(bot).to_have_count(2, timeout=60_000)
    page.get_by_role("textbox").fill("/lang")
    page.keyboard.press("Enter")
    expect(page.locator(".quick-replies button")).to_have_count(5, timeout=60_000)
    page.get_by_role("textbox").fill("Can I study for a PhD?")  # a draft: the text box in use
    page.evaluate("document.getElementById('scroller').scrollTop = 1e6")


def converse_handoff(page, url: str, database: str) -> None:
    """A French user asks for a person; a staff member's reply (as `bot requests reply` sends it) appears."""
    from playwright.sync_api import expect

    from bot.core.delivery import deliver
    from bot.core.handoff import HandoffStore
    from bot.core.storage import RequestStore

    page.goto(url)
    page.get_by_role("textbox").fill("Je voudrais parler à quelqu'un du bureau, s'il vous plaît")
    page.keyboard.press("Enter")
    banner = page.locator("#handoff")
    expect(banner).to_be_visible(timeout=60_000)
    ref = re.search(r"H-\d{4}-\d{4}", banner.inner_text()).group()
    store = HandoffStore(RequestStore(database))
    reply = store.reply(ref, "cli:office", STAFF_REPLY)
    with ThreadPoolExecutor(1) as thread:  # Playwright's own event loop runs in this one
        thread.submit(asyncio.run, deliver(reply, store)).result()
    expect(page.locator(".message.staff")).to_have_count(1, timeout=60_000)
    page.get_by_role("textbox").fill("Du 10 au 14 mai 2027")  # a draft: the text box in use
    page.evaluate("document.getElementById('scroller').scrollTop = 1e6")


def take(url: str, out: Path, database: str | None = None) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            viewport = {"width": 1000, "height": 860}
            locale = "fr-FR" if database else "en-GB"
            page = browser.new_page(viewport=viewport, locale=locale, device_scale_factor=1)
            if database:
                converse_handoff(page, url, database)
            else:
                converse(page, url)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running web chat (default: start the servers here)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--handoff", action="store_true", help="talking to a person (docs/handoff.png)")
    args = parser.parse_args(argv)
    args.out = args.out or (HANDOFF_OUT if args.handoff else OUT)
    if args.url:
        database = (
            (os.environ.get("DATABASE_URL") or "sqlite:///" + str(ROOT / "var" / "bot.db")) if args.handoff else None
        )
        take(args.url.rstrip("/") + "/", args.out, database)
    else:
        with tempfile.TemporaryDirectory(prefix="screenshot-") as tmp:
            database = f"sqlite:///{Path(tmp) / 'bot.db'}"
            servers = Servers(
                model=args.model,
                rasa_port=free_port(),
                action_port=free_port(),
                web_port=free_port(),
                log_dir=Path(tmp) / "logs",
                env={"DATABASE_URL": database},
            )
            with servers:
                take(servers.web_url + "/", args.out, database if args.handoff else None)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
