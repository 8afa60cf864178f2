"""`bot requests ...` and `bot conversations ...`: the office staff's commands.

    bot requests list [--status open|closed|all] [--kind visit|question|handoff] [--format table|csv|json]
    bot requests show REF                      (with its messages and every reply: who, when, what, delivery)
    bot requests reply REF --text TEXT [--as NAME]
    bot requests close REF [--note TEXT]       (a hand-off: the user is back with the bot, and told so)
    bot requests erase REF
    bot requests purge --older-than DAYS       (same as bot conversations purge)
    bot conversations purge --older-than DAYS
    bot staff add-user NAME [--password-stdin]   an account of the staff console (/staff/)
    bot staff list
    bot staff remove NAME
    bot inbox list [--lang L] [--days N] [--status open|todo|ignored|assigned|all] [--format table|json]
    bot inbox assign ID INTENT                  add the question as an example of INTENT (data/nlu/<lang>.yml)
    bot inbox todo ID                           needs a new answer (kept on the to-do list)
    bot inbox ignore ID                         stays ignored when the same text comes again
    bot faq add NAME --from-file FILE [--as NAME]   a new FAQ (intent, answers, examples: bot/staff/faqdata.py)
    bot publish [--as NAME] [--rasa-url URL]    validate, train, guard, swap into the running bot, record
    bot rollback [--as NAME] [--rasa-url URL]   the previous model and data back

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
from bot.core.handoff import HandoffNotFound, HandoffStore, staff_say
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
        posted = staff_say("staff_reply_from", ref=message.ref, staff=staff_name(args), text=message.text)
        asyncio.run(post_to_staff(posted, reply_to=handoff.staff_post_id))
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
                    post_to_staff(
                        staff_say("staff_closed_by", ref=handoff.ref, staff=staff_name(args)),
                        reply_to=handoff.staff_post_id,
                    )
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


def _operator() -> str:
    """Who ran a command, for the audit log: the system account."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def add_user(args: argparse.Namespace) -> int:
    from bot.staff.accounts import StaffAccounts, StaffError, check_name, check_password

    try:
        check_name(args.name)
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"Password for {args.name}: ")
            check_password(password)
            if getpass.getpass("Again: ") != password:
                raise StaffError("the two passwords differ")
        StaffAccounts().add_user(args.name, password, by=_operator())
    except StaffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.name} can now log in to the staff console (/staff/)")
    return 0


def list_users(args: argparse.Namespace) -> int:
    from bot.staff.accounts import StaffAccounts

    users = StaffAccounts().users()
    for name, created in users:
        print(f"{name}  {_text(created)}")
    print(f"{len(users)} staff account(s)")
    return 0


def remove_user(args: argparse.Namespace) -> int:
    from bot.staff.accounts import StaffAccounts, StaffError

    try:
        StaffAccounts().remove_user(args.name, by=_operator())
    except StaffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.name} removed; their sessions are closed")
    return 0


def add_staff_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("staff", help="accounts of the staff console (/staff/)")
    sub = parser.add_subparsers(dest="staff_command", required=True)
    add = sub.add_parser("add-user", help="create an account (the password is asked for)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.set_defaults(handler=add_user)
    sub.add_parser("list", help="list the accounts").set_defaults(handler=list_users)
    remove = sub.add_parser("remove", help="delete an account and close its sessions")
    remove.add_argument("name")
    remove.set_defaults(handler=remove_user)


def inbox_list(args: argparse.Namespace) -> int:
    from bot.staff.inbox import Inbox

    since = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(days=args.days) if args.days else None
    groups = Inbox().groups(language=args.lang, since=since, status=args.status)
    if args.format == "json":
        json.dump([g.as_dict() for g in groups], sys.stdout, ensure_ascii=False, indent=1)
        print()
        return 0
    columns = ("id", "count", "language", "last_seen", "channels", "guess", "status", "text")
    table = [
        [g.id, str(g.count), g.language, _text(g.last_seen), ",".join(g.channels), g.intent or g.guess or "",
         g.status, _text(g.text, 60)]
        for g in groups
    ]  # fmt: skip
    widths = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(columns)]
    for line in [list(columns)] + table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    print(f"{len(groups)} group(s) of unanswered questions")
    return 0


def inbox_decide(args: argparse.Namespace) -> int:
    from bot.staff.inbox import GroupNotFound
    from bot.staff.nludata import EditRejected
    from bot.staff.service import Console

    console = Console()
    try:
        if args.inbox_command == "assign":
            group = console.assign(args.id, args.intent, _operator())
            print(f"{group.id}: {group.text!r} added to {args.intent} in data/nlu/{group.language}.yml; "
                  "`bot publish` makes it live")  # fmt: skip
        elif args.inbox_command == "todo":
            print(f"{console.todo(args.id, _operator()).id}: on the to-do list (needs a new answer)")
        else:
            print(f"{console.ignore(args.id, _operator()).id}: ignored")
    except GroupNotFound:
        print(f"error: no inbox group {args.id!r} (bot inbox list --status all)", file=sys.stderr)
        return 1
    except EditRejected as rejected:
        for problem in rejected.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("nothing was changed", file=sys.stderr)
        return 1
    return 0


def add_inbox_parser(commands: argparse._SubParsersAction) -> None:
    from bot.staff.inbox import STATUSES

    parser = commands.add_parser("inbox", help="questions the bot could not answer")
    sub = parser.add_subparsers(dest="inbox_command", required=True)
    listing = sub.add_parser("list", help="the groups of unanswered questions, most frequent first")
    listing.add_argument("--lang", help="only this language (e.g. fr, zh-Hans)")
    listing.add_argument("--days", type=days, help="only messages of the last DAYS days")
    listing.add_argument("--status", choices=STATUSES, default="open")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    listing.set_defaults(handler=inbox_list)
    assign = sub.add_parser("assign", help="add a group's question as an example of INTENT")
    assign.add_argument("id")
    assign.add_argument("intent")
    assign.set_defaults(handler=inbox_decide)
    for name, text in (("todo", "needs a new answer (the to-do list)"), ("ignore", "ignore, also when it comes again")):
        decide = sub.add_parser(name, help=text)
        decide.add_argument("id")
        decide.set_defaults(handler=inbox_decide)


def faq_add(args: argparse.Namespace) -> int:
    """A new FAQ from a YAML file, checked as the console checks it; each problem with its field."""
    from pathlib import Path

    from bot.staff.faqdata import FaqRejected, read_draft
    from bot.staff.service import Console

    try:
        draft = read_draft(Path(args.from_file), args.name)
        changed = Console().add_faq(draft, args.who or _operator())
    except FaqRejected as rejected:
        for where, problems in rejected.fields.items():
            for problem in problems:
                print(f"error: {where + ': ' if where else ''}{problem}", file=sys.stderr)
        print("nothing was changed", file=sys.stderr)
        return 1
    for path in changed:
        print(f"written: {path}")
    print(f"{args.name} created; `bot publish` trains it and puts it live")
    return 0


def add_faq_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("faq", help="a new FAQ: intent, answer in every language, examples")
    sub = parser.add_subparsers(dest="faq_command", required=True)
    add = sub.add_parser("add", help="create the FAQ NAME (ask_<topic>) from a YAML file")
    add.add_argument("name", help="the intent: ask_ and a topic in lower-case words joined by _")
    add.add_argument(
        "--from-file",
        required=True,
        metavar="FILE",
        help="description, answers (by language) and examples (by language, 15 or more each)",
    )
    add.add_argument("--as", dest="who", metavar="NAME", help="the staff member (the audit log)")
    add.set_defaults(handler=faq_add)


def _console(args: argparse.Namespace):
    from bot.staff.publish import Publisher
    from bot.staff.service import Console

    console = Console()
    console.publisher = Publisher(rasa_url=args.rasa_url, engine=console.accounts.engine)
    return console


def publish(args: argparse.Namespace) -> int:
    import threading

    from bot.staff.publish import Progress, Publisher, PublishError

    publisher, progress = Publisher(rasa_url=args.rasa_url), Progress()
    who = args.who or _operator()
    failure: list[PublishError] = []

    def work() -> None:
        try:
            publisher.publish(who, progress)
        except PublishError as error:
            failure.append(error)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    shown = ""
    while worker.is_alive():
        line = f"[{progress.fraction:4.0%}] {progress.step}: {progress.message}"
        if line != shown:
            print(line, flush=True)
            shown = line
        worker.join(1)
    if failure:
        print(f"error: not published: {failure[0]}", file=sys.stderr)
        return 1
    record = progress.record or {}
    print(f"published {record.get('model')} in {record.get('seconds')} s: {record.get('changes')}")
    print(f"steps: {progress.steps()}")
    for line in progress.figures:
        print(f"held-out guard: {line}")
    if record.get("git_commit"):
        print(f"git commit {record['git_commit'][:12]} (author {who})")
    return 0


def rollback(args: argparse.Namespace) -> int:
    from bot.staff.publish import Publisher, PublishError

    try:
        record = Publisher(rasa_url=args.rasa_url).rollback(args.who or _operator())
    except PublishError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"rolled back: {record['changes']} (model {record['model']})")
    return 0


def add_publish_parsers(commands: argparse._SubParsersAction) -> None:
    for name, handler, text in (
        ("publish", publish, "validate, train, check the guards and swap the new model into the running bot"),
        ("rollback", rollback, "put the previous model and data back"),
    ):
        parser = commands.add_parser(name, help=text)
        parser.add_argument("--as", dest="who", metavar="NAME", help="the staff member (the audit log, the git author)")
        parser.add_argument("--rasa-url", default=None, help="the running Rasa server (default RASA_URL or :5005)")
        parser.set_defaults(handler=handler)


def add_parser(commands: argparse._SubParsersAction) -> None:
    add_staff_parser(commands)
    add_inbox_parser(commands)
    add_faq_parser(commands)
    add_publish_parsers(commands)
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
