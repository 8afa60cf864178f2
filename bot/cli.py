"""The `bot` command (installed in the project's virtualenv).

    bot run     start the action server and the Rasa server, wait until both
                answer, print where to talk to the bot; Ctrl-C stops both
    bot check   check the department data: facts, texts in every language,
                training examples for every intent in every language
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from bot.servers import MODEL, ServerError, Servers


def run(args: argparse.Namespace) -> int:
    token = os.environ.get("RASA_AUTH_TOKEN") or None
    servers = Servers(model=args.model, rasa_port=args.rasa_port, action_port=args.action_port,
                      host=args.host, auth_token=token)  # fmt: skip
    started = time.monotonic()
    print(f"Starting the action server (:{args.action_port}) and the Rasa server (:{args.rasa_port})…")
    try:
        servers.start()
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    webhook = f"{servers.rasa_url}/webhooks/rest/webhook"
    print(f"Ready in {time.monotonic() - started:.0f} s. Talk to the bot:")
    print(f"""  curl -s {webhook} -H 'Content-Type: application/json' \\
       -d '{{"sender": "me", "message": "Where is the international office?"}}'""")
    print(f"  .venv/bin/rasa shell --model {args.model} --endpoints endpoints.yml   (in another terminal)")
    print("  HTTP API: " + ("enabled (RASA_AUTH_TOKEN)" if token else "off (set RASA_AUTH_TOKEN to enable it)"))
    print(f"Logs in {servers.log_dir}. Ctrl-C stops everything.")
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop:
            for process in servers.processes:
                process.check_alive()
            time.sleep(1)
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        print("\nStopping…")
        servers.stop()
    return 0


def check(args: argparse.Namespace) -> int:
    from bot.coverage import problems

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
    run_parser.set_defaults(handler=run)
    commands.add_parser("check", help="check the department data").set_defaults(handler=check)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
