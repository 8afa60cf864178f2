"""`bot requests ...` and `bot conversations ...`: the office staff's commands.

    bot requests list [--status open|closed|all] [--kind visit|question|handoff] [--format table|csv|json]
    bot requests show REF                      (with its messages and every reply: who, when, what, delivery)
    bot requests reply REF --text TEXT [--as NAME]
    bot requests close REF [--note TEXT]       (a hand-off: the user is back with the bot, and told so)
    bot requests erase REF
    bot requests purge --older-than DAYS       (same as bot conversations purge)
    bot conversations purge --older-than DAYS

A reply is stored with the request, then delivered (``bot.core.delivery``): to a
Telegram user's chat, to a web chat user's page, by e-mail when ``SMTP_URL`` is set;
the command says how it went, and ``undelivered`` when it reached no one.

A purge deletes every request older than DAYS with the whole conversation it
came from, and every conversation idle for DAYS with its requests, then
compacts the database (``bot.core.privacy``).

Reads the database of ``DATABASE_URL`` (SQLite file var/bot.db by default).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import getpass
import json
import re
import sys

from bot.core import privacy
from bot.core.delivery import deliver, post_to_staff, smtp_settings, summary
from bot.core.handoff import HandoffNotFound, HandoffStore
from bot.core.storage import KINDS, RequestNotFound, RequestStore, rows

TABLE_COLUMNS = ("ref", "status", "created_at", "full_name", "institution", "email", "purpose", "arrival", "details")


# Terminal control characters (escape sequences) and bidirectional overrides in
# visitors' text are shown as nothing: they could rewrite the staff's terminal.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _text(value: object, width: int | None = None) -> str:
    text = "" if value is None else value.isoformat(" ", "minutes") if isinstance(value, dt.datetime) else str(value)
    text = " ".join(CONTROL.sub(" ", text).split())
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = _text(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def list_requests(args: argparse.Namespace) -> int:
    found = rows(RequestStore().list(status=args.status, kind=args.kind))
    if args.format == "json":
        json.dump(found, sys.stdout, ensure_ascii=False, indent=1, default=str)
        print()
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(found[0]) if found else ["ref"])
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in found)
    else:
        table = [[_text(row[c], 40) for c in TABLE_COLUMNS] for row in found]
        widths = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(TABLE_COLUMNS)]
        for line in [list(TABLE_COLUMNS)] + table:
            print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        print(f"{len(found)} request(s)")
    return 0


def show_request(args: argparse.Namespace) -> int:
    store = HandoffStore(RequestStore())
    (row,) = rows([store.request(args.ref)])
    handoff = store.find(args.ref)
    if handoff is not None:
        row |= {"handoff": handoff.status, "channel": handoff.channel, "taken_by": handoff.taken_by,
                "last_activity_at": handoff.last_activity_at, "closed_by": handoff.closed_by,
                "closed_reason": handoff.closed_reason}  # fmt: skip
    width = max(len(k) for k in row)
    for key, value in row.items():
        if key == "details" and value and "\n" in str(value):  # a hand-off's last messages, one a line
            print(
                f"{key.ljust(width)}  " + f"\n{' ' * (width + 2)}".join(_text(line) for line in str(value).splitlines())
            )
            continue
        print(f"{key.ljust(width)}  {_text(value)}")
    messages = store.messages(args.ref)
    print(f"\nmessages ({len(messages)}):" if messages else "\nno messages or replies yet")
    for message in messages:
        who = {"user": "user", "bot": "bot notice"}.get(message.author, f"reply by {_text(message.staff_name)}")
        print(f"  {_text(message.at)}  {who}: {_text(message.text)}")
        if message.author != "user":
            print(f"      {'UNDELIVERED: ' if message.delivery == 'undelivered' else ''}{_text(summary(message))}")
    return 0


def staff_name(args: argparse.Namespace) -> str:
    """Who replies or closes: --as, else the account running the command."""
    return f"cli:{args.staff or getpass.getuser()}"


def _send(message, store: HandoffStore):
    return asyncio.run(deliver(message, store))


def reply_request(args: argparse.Namespace) -> int:
    """Stores a reply to any request and delivers it; 2 when it reached no one."""
    store = HandoffStore(RequestStore())
    try:
        message = store.reply(args.ref, staff_name(args), args.text)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    message = _send(message, store)
    print(f"reply to {message.ref} stored; {_text(summary(message))}")
    if smtp_settings() is None:
        print("(SMTP_URL is not set: nothing is sent by e-mail)")
    handoff = store.find(message.ref)
    if handoff is not None and handoff.staff_post_id is not None:
        asyncio.run(post_to_staff(f"{message.ref} · reply from {staff_name(args)}: {message.text}",
                                  reply_to=handoff.staff_post_id))  # fmt: skip
    return 2 if message.delivery == "undelivered" else 0


def close_request(args: argparse.Namespace) -> int:
    requests = RequestStore()
    store = HandoffStore(requests)
    handoff = store.find(args.ref)
    if handoff is not None:
        notice = store.close(handoff.ref, staff_name(args), "staff")
        if notice is not None:
            notice = _send(notice, store)
            print(f"{handoff.ref}: the conversation is back with the bot; the user was told ({_text(summary(notice))})")
            if handoff.staff_post_id is not None:
                asyncio.run(
                    post_to_staff(f"{handoff.ref} closed by {staff_name(args)}", reply_to=handoff.staff_post_id)
                )
    request = requests.close(args.ref, args.note)
    print(f"{request.ref} closed")
    return 0


def days(text: str) -> int:
    """argparse type of --older-than: a whole number of days, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError("must be a whole number of days, 0 or more")
    return int(text)


def purge(args: argparse.Namespace) -> int:
    """Both purges erase requests and conversations together: one holds what the other does."""
    erased = privacy.purge(args.older_than)
    print(
        f"{erased.requests} request(s) and {erased.conversations} conversation(s) "
        f"older than {args.older_than} days deleted; the database was compacted"
    )
    return 0


def erase_request(args: argparse.Namespace) -> int:
    erased = privacy.erase_request(args.ref)
    if not erased.requests:
        raise RequestNotFound(args.ref)
    print(f"{args.ref} deleted, with {erased.conversations} conversation(s); the database was compacted")
    return 0


def handle_not_found(handler):
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (RequestNotFound, HandoffNotFound) as error:
            print(f"error: no request {error.args[0]!r}", file=sys.stderr)
            return 1

    return run


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("requests", help="visit requests and messages to the office")
    sub = parser.add_subparsers(dest="requests_command", required=True)
    listing = sub.add_parser("list", help="list requests")
    listing.add_argument("--status", choices=["open", "closed", "all"], default="open")
    listing.add_argument("--kind", choices=sorted(KINDS))
    listing.add_argument("--format", choices=["table", "csv", "json"], default="table")
    listing.set_defaults(handler=list_requests)
    show = sub.add_parser("show", help="everything about one request")
    show.add_argument("ref")
    show.set_defaults(handler=handle_not_found(show_request))
    reply = sub.add_parser("reply", help="answer a request; the user gets it in their chat or by e-mail")
    reply.add_argument("ref")
    reply.add_argument("--text", required=True)
    reply.add_argument("--as", dest="staff", metavar="NAME", help="who replies (default: your user name)")
    reply.set_defaults(handler=handle_not_found(reply_request))
    close = sub.add_parser("close", help="mark a request as handled; a hand-off goes back to the bot")
    close.add_argument("ref")
    close.add_argument("--note")
    close.add_argument("--as", dest="staff", metavar="NAME", help="who closes (default: your user name)")
    close.set_defaults(handler=handle_not_found(close_request))
    erase = sub.add_parser("erase", help="delete a request and its conversation now (a person's demand)")
    erase.add_argument("ref")
    erase.set_defaults(handler=handle_not_found(erase_request))
    purge_help = "delete requests and conversations older than DAYS (personal data)"
    purge_parser = sub.add_parser("purge", help=purge_help)
    purge_parser.add_argument("--older-than", type=days, required=True, metavar="DAYS")
    purge_parser.set_defaults(handler=purge)

    parser = commands.add_parser("conversations", help="the conversations kept in the tracker store")
    sub = parser.add_subparsers(dest="conversations_command", required=True)
    purge_parser = sub.add_parser("purge", help=purge_help)
    purge_parser.add_argument("--older-than", type=days, required=True, metavar="DAYS")
    purge_parser.set_defaults(handler=purge)
