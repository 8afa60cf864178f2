"""`bot requests ...` and `bot conversations ...`: the office staff's commands.

    bot requests list [--status open|closed|all] [--kind visit|question] [--format table|csv|json]
    bot requests show REF
    bot requests close REF [--note TEXT]
    bot requests erase REF
    bot requests purge --older-than DAYS       (same as bot conversations purge)
    bot conversations purge --older-than DAYS

A purge deletes every request older than DAYS with the whole conversation it
came from, and every conversation idle for DAYS with its requests, then
compacts the database (``bot.core.privacy``).

Reads the database of ``DATABASE_URL`` (SQLite file var/bot.db by default).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import re
import sys

from bot.core import privacy
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
    (row,) = rows([RequestStore().get(args.ref)])
    width = max(len(k) for k in row)
    for key, value in row.items():
        print(f"{key.ljust(width)}  {_text(value)}")
    return 0


def close_request(args: argparse.Namespace) -> int:
    request = RequestStore().close(args.ref, args.note)
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
        except RequestNotFound as error:
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
    close = sub.add_parser("close", help="mark a request as handled")
    close.add_argument("ref")
    close.add_argument("--note")
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
