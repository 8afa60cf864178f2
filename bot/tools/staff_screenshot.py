"""The README's screenshots of the staff console: the inbox and the usage page.

    python -m bot.tools.staff_screenshot [--out docs/staff-inbox.png]   (or `make staff-screenshot`)
    (the usage page goes next to it: docs/staff-usage.png)

Starts its own servers on free ports with an empty database, asks the bot a few
questions it cannot answer (in four languages, some twice, over REST and the web
chat), makes a staff account, logs in in Debian's Chromium and takes the inbox and
the usage page.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from pathlib import Path

import httpx

from bot.cli.servers import Servers
from bot.core.paths import MODEL, ROOT
from bot.staff.accounts import StaffAccounts
from bot.tools.screenshot import free_port, launch

OUT = ROOT / "docs" / "staff-inbox.png"
# Questions the model falls back on or finds out of scope, as visitors would type them.
QUESTIONS = [
    ("rest", "quel genre de diplôme je peux espérer en venant"),
    ("web", "Quel genre de diplôme je peux espérer en venant ?"),
    ("web", "vous bossez avec quelles écoles là-bas"),
    ("rest", "How much are the tuition fees?"),
    ("web", "how much are the tuition fees"),
    ("web", "How much are the tuition fees ?"),
    ("rest", "宿舍多少钱一个月？"),
    ("web", "留学生宿舍多少钱一个月"),
    ("rest", "Сколько стоит обучение?"),
    ("web", "qui forme-t-on chez vous"),
    # and questions it answers, for the usage page
    ("web", "Where is the international office?"),
    ("web", "国际处的地址在哪里？"),
    ("rest", "Quels diplômes puis-je préparer à NJUPT ?"),
    ("web", "Which universities does NJUPT run joint programmes with?"),
    ("web", "南邮和哪些大学有联合硕士项目？"),
    ("rest", "С какими странами сотрудничает NJUPT?"),
    ("web", "Hello!"),
    ("web", "Can I study for a PhD at NJUPT?"),
]


def ask(servers: Servers, channel: str, text: str) -> None:
    if channel == "web":
        body = {"sender": f"web-{secrets.token_hex(12)}", "message": text}
        httpx.post(f"{servers.web_url}/api/message", json=body, timeout=60).raise_for_status()
    else:
        body = {"sender": f"screenshot-{secrets.token_hex(4)}", "message": text}
        httpx.post(f"{servers.rasa_url}/webhooks/rest/webhook", json=body, timeout=60).raise_for_status()


def take(servers: Servers, out: Path, database: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    password = secrets.token_urlsafe(16)
    StaffAccounts(database).add_user("li.wei", password, by="screenshot")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 820}, locale="en-GB", device_scale_factor=1)
            page.goto(f"{servers.web_url}/staff/")
            page.get_by_label("Name").fill("li.wei")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("table.inbox tbody tr").first).to_be_visible()
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            page.get_by_role("link", name="Usage").click()
            expect(page.locator("svg.chart").first).to_be_visible()
            page.screenshot(path=str(out.with_name("staff-usage.png")), full_page=True)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--model", type=Path, default=MODEL)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="staff-screenshot-") as tmp:
        database = f"sqlite:///{Path(tmp) / 'bot.db'}"
        servers = Servers(model=args.model, rasa_port=free_port(), action_port=free_port(), web_port=free_port(),
                          log_dir=Path(tmp) / "logs", env={"DATABASE_URL": database})  # fmt: skip
        with servers:
            for channel, text in QUESTIONS:
                ask(servers, channel, text)
            take(servers, args.out, database)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
