"""The README's screenshot of the web chat in a conversation: docs/screenshot.png.

    python -m bot.tools.screenshot [--url http://localhost:8080] [--out docs/screenshot.png]
    (or `make screenshot`)

Without ``--url`` it starts its own action, Rasa and web servers on free ports
with an empty database, so the picture is the same every time; with it, it uses
a running ``make run``. Drives Debian's Chromium (``apt-get install chromium``;
``fonts-wqy-microhei`` or ``fonts-noto-cjk`` for the Chinese) through
Playwright: no browser download. The tests launch Chromium the same way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from bot.cli.servers import Servers
from bot.core.paths import MODEL, ROOT

OUT = ROOT / "docs" / "screenshot.png"
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


def take(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            viewport = {"width": 1000, "height": 860}
            page = browser.new_page(viewport=viewport, locale="en-GB", device_scale_factor=1)
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
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--model", type=Path, default=MODEL)
    args = parser.parse_args(argv)
    if args.url:
        take(args.url.rstrip("/") + "/", args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="screenshot-") as tmp:
            servers = Servers(
                model=args.model,
                rasa_port=free_port(),
                action_port=free_port(),
                web_port=free_port(),
                log_dir=Path(tmp) / "logs",
                env={"DATABASE_URL": f"sqlite:///{Path(tmp) / 'bot.db'}"},
            )
            with servers:
                take(servers.web_url + "/", args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
