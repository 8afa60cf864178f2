"""The `bot` command (installed in the project's virtualenv).

    bot run     start the action server, the Rasa server and the web chat
                (http://localhost:8080/), wait until they answer, print where to
                talk to the bot; Ctrl-C stops them
    bot check   check the department data: facts, texts in every language,
                training examples for every intent in every language
    bot requests list|show|close|purge
                visit requests and questions for the office (see bot/cli/staff.py)
    bot staff add-user|list|remove
                accounts of the staff console (http://localhost:8080/staff/)
    bot inbox list|assign|todo|ignore
                the questions the bot could not answer
    bot faq add NAME --from-file FILE
                a new FAQ (a new intent): its answer in every language and its examples
    bot publish / bot rollback
                put the edited data live without a restart / the previous model and data back
    bot conversations purge --older-than DAYS
                delete the conversations idle for more than DAYS days
    bot telegram set-webhook URL
                register URL (https) as the Telegram webhook, with
                TELEGRAM_WEBHOOK_SECRET; the polling bridge then pauses
    bot telegram delete-webhook
                remove it again (the polling bridge resumes)
    bot endpoints --action-url URL
                print the endpoints file `bot run` gives Rasa, for a Rasa server
                started by other means (the lock store on Redis when REDIS_URL is set)

With TELEGRAM_BOT_TOKEN set, `bot run` also starts the Telegram bridge (long polling).
With REPLICAS=N (N > 1), DATABASE_URL (PostgreSQL) and REDIS_URL set, `bot run` starts N Rasa
servers and N action servers behind HAProxy, which listens on the usual ports.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from bot.cli import staff
from bot.cli.servers import ServerError, Servers, endpoints_file
from bot.core import privacy
from bot.core.paths import MODEL

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def run(args: argparse.Namespace) -> int:
    # Rasa's HTTP API (its admin API) is on only when RASA_AUTH_TOKEN is set.
    token = os.environ.get("RASA_AUTH_TOKEN") or None
    servers = Servers(model=args.model, rasa_port=args.rasa_port, action_port=args.action_port,
                      host=args.host, auth_token=token, web_port=args.web_port,
                      web_host=args.web_host, cors=os.environ.get("WEB_CORS_ORIGIN") or None)  # fmt: skip
    servers.telegram = bool(os.environ.get("TELEGRAM_BOT_TOKEN", "").strip())
    servers.replicas = args.replicas
    started = time.monotonic()
    if servers.replicas > 1:
        ports = ", ".join(f":{r}/:{a}" for r, a in servers.replica_addresses)
        print(f"Starting {servers.replicas} Rasa and action servers ({ports}) behind HAProxy "
              f"(:{args.rasa_port}, :{args.action_port}) and the web chat at {servers.web_url}/ …")  # fmt: skip
    else:
        print(f"Starting the action server (:{args.action_port}), the Rasa server (:{args.rasa_port}) "
              f"and the web chat at {servers.web_url}/ …")  # fmt: skip
    try:
        servers.start()
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    webhook = f"{servers.rasa_url}/webhooks/rest/webhook"
    print(f"Ready in {time.monotonic() - started:.0f} s. Talk to the bot:")
    print(f"""  curl -s {webhook} -H 'Content-Type: application/json' \\
       -d '{{"sender": "me", "message": "Where is the international office?"}}'""")
    print(f"  web chat: {servers.web_url}/   (Rasa's CORS: {servers.cors} only; set WEB_CORS_ORIGIN)")
    print(f"  staff console: {servers.web_url}/staff/   (accounts: bot staff add-user NAME)")
    print("  Rasa's HTTP API: " + ("on, with RASA_AUTH_TOKEN" if token else "off (set RASA_AUTH_TOKEN to turn it on)"))
    print(
        f"  listening on {args.host} only"
        + (" (set BOT_HOST / WEB_HOST to serve other machines)" if args.host in LOOPBACK else "")
    )
    print(f"  {telegram_status(servers)}")
    if servers.replicas > 1:
        print(f"  {servers.replicas} replicas behind HAProxy: tracker store on DATABASE_URL, lock store on REDIS_URL; "
              f"servers: {', '.join(f'{name} {state}' for name, state in servers.backends().items())}")  # fmt: skip
    print(f"Logs in {servers.log_dir}. Ctrl-C stops everything.")
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    retention = retention_days()
    next_purge = next_expiry = time.monotonic()
    restarted: dict[str, float] = {}
    try:
        while not stop:
            watch(servers, restarted)
            if retention and time.monotonic() >= next_purge:
                apply_retention(retention)
                next_purge = time.monotonic() + 86400
            if time.monotonic() >= next_expiry:
                expire_handoffs()
                next_expiry = time.monotonic() + HANDOFF_CHECK_SECONDS
            time.sleep(1)
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        print("\nStopping…")
        servers.stop()
    return 0


# A replica that exited is started again, at most once in this many seconds.
RESTART_SECONDS = 30.0


def watch(servers: Servers, restarted: dict[str, float]) -> None:
    """Raises ServerError when a process exited, except a replica (``Rasa server 2``): the others
    serve while it is started again, as systemd's ``Restart=`` would."""
    for process in servers.processes:
        if process.popen is not None and process.popen.poll() is None:
            continue
        if servers.replicas <= 1 or not process.name[-1].isdigit():
            process.check_alive()
        if time.monotonic() >= restarted.get(process.name, float("-inf")) + RESTART_SECONDS:
            print(f"warning: the {process.name} exited (see {process.log}); the other replicas serve "
                  "while it starts again", file=sys.stderr)  # fmt: skip
            restarted[process.name] = time.monotonic()
            process.start()


def replica_count(value: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= 16:
        raise argparse.ArgumentTypeError(f"REPLICAS must be a number from 1 to 16, not {value!r}")
    return int(value)


HANDOFF_CHECK_SECONDS = 60


def expire_handoffs() -> None:
    """Every minute while `bot run` runs: hand-offs quiet for HANDOFF_TIMEOUT_MINUTES go back to the
    bot, and their users are told (on Telegram at once; the web page at its next look)."""
    import asyncio

    from bot.core.delivery import deliver, post_to_staff
    from bot.core.handoff import handoffs, staff_say

    try:
        store = handoffs()
        for notice in store.expire():
            asyncio.run(deliver(notice, store))
            post = store.get(notice.ref).staff_post_id
            asyncio.run(post_to_staff(staff_say("staff_timed_out", ref=notice.ref), reply_to=post))
    except Exception:  # the bot keeps serving; the next minute tries again
        logging.getLogger(__name__).exception("closing quiet hand-offs failed")


def retention_days() -> int:
    """RETENTION_DAYS: how long requests and conversations are kept (0: for ever)."""
    value = os.environ.get("RETENTION_DAYS", str(privacy.DEFAULT_RETENTION_DAYS))
    return int(value) if value.isdigit() else privacy.DEFAULT_RETENTION_DAYS


def apply_retention(days: int) -> None:
    """The retention purge, at start and then daily while `bot run` runs."""
    try:
        erased = privacy.purge(days)
    except Exception:  # the bot keeps serving; the next day tries again
        logging.getLogger(__name__).exception("the retention purge failed")
        return
    print(f"  retention ({days} days): {erased.requests} request(s), {erased.conversations} conversation(s) erased")


def telegram_status(servers: Servers) -> str:
    from bot.channels.telegram.bridge import WEBHOOK_PATH, Settings

    settings = Settings.from_env()
    if not settings.token:
        return "Telegram: off (set TELEGRAM_BOT_TOKEN)"
    status = "Telegram: long polling, paused while a webhook is registered"
    if settings.webhook_secret:
        status += f"; webhook at {servers.rasa_url}{WEBHOOK_PATH} (bot telegram set-webhook https://…)"
    return status


def telegram_command(args: argparse.Namespace) -> int:
    import asyncio

    from telegram.error import TelegramError

    from bot.channels.telegram.bridge import Settings, TelegramSetupError, delete_webhook, set_webhook

    settings = Settings.from_env()
    try:
        if args.telegram_command == "set-webhook":
            url = asyncio.run(set_webhook(settings, args.url))
            print(f"Webhook set: Telegram now posts updates to {url} with TELEGRAM_WEBHOOK_SECRET.")
            print("Keep TELEGRAM_WEBHOOK_SECRET set for `make run`; `bot telegram delete-webhook` to poll again.")
        else:
            asyncio.run(delete_webhook(settings))
            print("Webhook removed: the bridge started by `make run` polls again.")
    except (TelegramSetupError, TelegramError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def endpoints(args: argparse.Namespace) -> int:
    print(endpoints_file(args.action_url, bool(os.environ.get("REDIS_URL", "").strip())), end="")
    return 0


def check(args: argparse.Namespace) -> int:
    from bot.core.validation import problems

    found = problems()
    for problem in found:
        print(problem)
    print("data: OK" if not found else f"data: {len(found)} problem(s)")
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="bot", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start the servers")
    run_parser.add_argument("--model", type=lambda p: __import__("pathlib").Path(p), default=MODEL)
    run_parser.add_argument("--host", default=os.environ.get("BOT_HOST", "127.0.0.1"))
    run_parser.add_argument("--rasa-port", type=int, default=5005)
    run_parser.add_argument("--action-port", type=int, default=5055)
    run_parser.add_argument("--web-host", default=os.environ.get("WEB_HOST", "127.0.0.1"))
    run_parser.add_argument("--web-port", type=int, default=int(os.environ.get("WEB_PORT", "8080")))
    run_parser.add_argument("--replicas", type=replica_count, default=os.environ.get("REPLICAS") or "1",
                            help="Rasa and action servers behind HAProxy (REPLICAS; 1: none)")  # fmt: skip
    run_parser.set_defaults(handler=run)
    commands.add_parser("check", help="check the department data").set_defaults(handler=check)
    endpoints_parser = commands.add_parser("endpoints", help="print Rasa's endpoints file (for other machines)")
    endpoints_parser.add_argument("--action-url", default="http://127.0.0.1:5055/webhook",
                                  help="the action servers' webhook (their load balancer's)")  # fmt: skip
    endpoints_parser.set_defaults(handler=endpoints)
    telegram_parser = commands.add_parser("telegram", help="register or remove the Telegram webhook")
    telegram_commands = telegram_parser.add_subparsers(dest="telegram_command", required=True)
    set_parser = telegram_commands.add_parser("set-webhook", help="register URL (https) with TELEGRAM_WEBHOOK_SECRET")
    set_parser.add_argument("url", help="e.g. https://bot.example.org/webhooks/telegram/webhook")
    telegram_commands.add_parser("delete-webhook", help="remove the webhook (polling resumes)")
    telegram_parser.set_defaults(handler=telegram_command)
    staff.add_parser(commands)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
