"""`bot requests ...` and `bot conversations ...`: the office staff's commands.

    bot requests list [--status open|closed|all] [--kind visit|question] [--format table|csv|json]
    bot requests show REF
    bot requests close REF [--note TEXT]
    bot requests purge --older-than DAYS
    bot conversations purge --older-than DAYS

Reads the database of ``DATABASE_URL`` (SQLite file var/bot.db by default).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
import time

from bot.core.database import open_engine
from bot.core.storage import KINDS, RequestNotFound, RequestStore, rows

TABLE_COLUMNS = ("ref", "status", "created_at", "full_name", "institution", "email", "purpose", "arrival", "details")


def _text(value: object, width: int | None = None) -> str:
    text = "" if value is None else value.isoformat(" ", "minutes") if isinstance(value, dt.datetime) else str(value)
    text = " ".join(text.split())
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def list_requests(args: argparse.Namespace) -> int:
    found = rows(RequestStore().list(status=args.status, kind=args.kind))
    if args.format == "json":
        json.dump(found, sys.stdout, ensure_ascii=False, indent=1, default=str)
        print()
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(found[0]) if found else ["ref"])
        writer.writeheader()
        writer.writerows({k: _text(v) for k, v in row.items()} for row in found)
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


def purge_requests(args: argparse.Namespace) -> int:
    count = RequestStore().purge(args.older_than)
    print(f"{count} request(s) older than {args.older_than} days deleted")
    return 0


def purge_conversations(older_than_days: int, url: str | None = None, now: float | None = None) -> int:
    """Deletes the conversations with no event in the last ``older_than_days`` days; returns how many.

    A conversation is deleted whole (Rasa's ``events`` table, all rows of its
    sender), never cut short: one still going on keeps its beginning.
    """
    import sqlalchemy as sa

    engine = open_engine(url)
    try:
        if not sa.inspect(engine).has_table("events"):
            return 0  # no conversation yet
        events = sa.Table("events", sa.MetaData(), autoload_with=engine)
        cutoff = (time.time() if now is None else now) - older_than_days * 86400
        stale = (
            sa.select(events.c.sender_id).group_by(events.c.sender_id).having(sa.func.max(events.c.timestamp) < cutoff)
        )  # fmt: skip
        with engine.begin() as connection:
            senders = connection.execute(stale).scalars().all()
            connection.execute(events.delete().where(events.c.sender_id.in_(stale.scalar_subquery())))
        return len(senders)
    finally:
        engine.dispose()


def purge_conversations_command(args: argparse.Namespace) -> int:
    count = purge_conversations(args.older_than)
    print(f"{count} conversation(s) idle for more than {args.older_than} days deleted")
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
    purge = sub.add_parser("purge", help="delete requests older than DAYS (personal data)")
    purge.add_argument("--older-than", type=days, required=True, metavar="DAYS")
    purge.set_defaults(handler=purge_requests)

    parser = commands.add_parser("conversations", help="the conversations kept in the tracker store")
    sub = parser.add_subparsers(dest="conversations_command", required=True)
    purge = sub.add_parser("purge", help="delete conversations idle for more than DAYS (personal data)")
    purge.add_argument("--older-than", type=days, required=True, metavar="DAYS")
    purge.set_defaults(handler=purge_conversations_command)
