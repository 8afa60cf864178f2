"""The staff console at /staff/, served by the web chat's server: pages made on the server, no script.

    GET  /staff/login                 the login form (the only page open without a session)
    POST /staff/login                 name, password -> the session cookie, then /staff/
    POST /staff/logout                ends the session
    GET  /staff/                      the inbox of unanswered questions (?lang=fr&days=7&status=open)
    POST /staff/inbox/{id}/assign     intent -> the question becomes an example of it (data/nlu/<lang>.yml)
    POST /staff/inbox/{id}/todo       needs a new answer (the to-do list: ?status=todo)
    POST /staff/inbox/{id}/ignore     ignored, also when the same text comes again
    GET  /staff/answers               each intent's answer in every language, its placeholders and examples
    POST /staff/answers/{intent}      new texts (a field per language), checked; errors next to the field
    GET  /staff/faq/new               the form of a new FAQ: name, answer and examples in every language
    POST /staff/faq                   creates it (bot.staff.faqdata), checked; errors next to the field
    GET  /staff/requests              visit requests and messages to the office (?status=open|closed|all)
    POST /staff/requests/{ref}/close  closes one, with a note
    GET  /staff/usage                 messages per day by language, by channel, answered / fallback /
                                      out of scope, top intents, top unanswered (SVG made here; ?days=30)
    GET  /staff/usage.csv?figure=…    each figure's numbers
    GET  /staff/facts                 every fact of data/facts/department.yml, editable
    POST /staff/facts                 the changed facts, checked; errors next to the field
    GET  /staff/handoffs              open hand-offs (talk to a person): the conversation, a reply box
    POST /staff/handoffs/{ref}/take   this staff member takes the conversation
    POST /staff/handoffs/{ref}/reply  text -> stored and delivered (Telegram, web chat, e-mail)
    POST /staff/handoffs/{ref}/close  the conversation goes back to the bot; the user is told
    GET  /staff/audit                 the audit log (who, when, what)
    GET  /staff/publish               publish: progress, the publishes made, roll back
    POST /staff/publish               validate, train, guard, swap (in the background)
    POST /staff/rollback              the previous model and data back
    GET  /staff/api/inbox             the inbox as JSON (same filters)
    POST /staff/api/inbox/{id}        {"action": "assign"|"todo"|"ignore", "intent"} with X-CSRF-Token

Nothing under /staff/ answers without a session: a page redirects to the login
form, the API answers 401. The session cookie is ``HttpOnly``, ``SameSite=Strict``,
``Path=/staff``, and ``Secure`` when the page is served over HTTPS (the request's
scheme, ``X-Forwarded-Proto: https`` from a trusted proxy, or
``STAFF_COOKIE_SECURE=1``). Every change (POST) carries the session's CSRF token
(a form field or the ``X-CSRF-Token`` header), else 403; the login form has
its own (a cookie and a field that must match). Logins are slowed down after
wrong passwords (``bot.staff.accounts``). English and Chinese (``?ui=zh``).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hmac
import html
import io
import json
import logging
import os
import secrets
import threading
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web

from bot.core.delivery import deliver, post_to_staff, smtp_settings
from bot.core.handoff import HandoffNotFound, HandoffStore, staff_say
from bot.core.languages import registry
from bot.core.ratelimit import client_ip, trusted_proxies
from bot.core.storage import RequestNotFound, RequestStore, rows
from bot.core.texts import fact_values, placeholders_of
from bot.core.validation import MIN_TRAINING_EXAMPLES
from bot.staff.accounts import LoginRefused, Session
from bot.staff.faqdata import MAX_NAME_CHARS, FaqDraft, FaqRejected, split_examples
from bot.staff.inbox import STATUSES, GroupNotFound
from bot.staff.nludata import EditRejected
from bot.staff.publish import Progress, PublishError
from bot.staff.service import Console
from bot.staff.usage import OUTCOMES, Usage, bar_chart, horizontal_bars, usage

COOKIE = "staff_session"
LOGIN_COOKIE = "staff_login"
UI_COOKIE = "staff_ui"
CSRF_HEADER = "X-CSRF-Token"
CONSOLE = web.AppKey("console", Console)
logger = logging.getLogger(__name__)
SESSION = "staff_session"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

UI = {
    "en": {
        "title": "Staff console", "login": "Log in", "name": "Name", "password": "Password",
        "wrong": "Wrong name or password.", "slowed": "Too many wrong passwords: try again in {seconds} s.",
        "expired": "The form expired: please try again.", "logout": "Log out", "inbox": "Unanswered questions",
        "todo": "To-do: needs a new answer", "audit": "Audit log", "count": "Count", "language": "Language",
        "question": "Question", "first": "First seen", "last": "Last seen", "channels": "Channels",
        "guess": "Best guess", "actions": "Actions", "add_to": "Add to {intent}", "add": "Add as example of",
        "add_button": "Add",
        "new_answer": "Needs a new answer", "ignore": "Ignore", "all_languages": "All languages",
        "period": "Period", "all_time": "All time", "days": "Last {days} days", "filter": "Filter",
        "status": "Status", "none": "Nothing here.", "assigned": "Added to {intent}: publish to make it live.",
        "todo_done": "Put on the to-do list.", "ignored": "Ignored.", "who": "Who", "when": "When",
        "what": "What", "signed_in": "Signed in as {name}", "other_ui": "中文", "other_code": "zh",
        "requests": "Requests", "usage": "Usage", "close": "Close", "note": "Note", "closed": "Closed: {ref}.",
        "per_day_language": "Messages per day, by language", "per_day_channel": "Messages per day, by channel",
        "per_day_outcome": "Answered, fallback and out of scope, share per day", "top_intents": "Top intents",
        "top_unanswered": "Top unanswered questions", "csv": "CSV", "messages": "{count} messages",
        "facts": "Facts", "field": "Field", "value": "Value", "facts_saved": "Facts saved (live in a moment).",
        "answers": "Answers", "save": "Save", "saved": "Saved: {intent} (live in a moment).",
        "placeholders": "Placeholders", "examples": "Examples ({count})", "intent": "Intent",
        "publish": "Publish", "publish_button": "Publish now", "rollback": "Roll back to the previous publish",
        "publishing": "Publishing…", "published": "Published.", "publish_failed": "Not published:",
        "busy": "A publish is already running.", "rolled_back": "Rolled back.", "history": "Publishes",
        "model": "Model", "changes": "What changed", "step": "Step", "seconds": "Seconds",
        "publish_help": "Checks the data, trains a new model in the background, checks it on the held-out "
                        "questions of every language, then puts it into the running bot without a restart.",
        "handoffs": "Talk to a person", "reply": "Reply", "send": "Send", "take": "Take",
        "taken_by": "taken by {name}", "waiting_staff": "waiting for the staff",
        "replied": "Reply to {ref} stored: {delivery}.",
        "handoff_closed": "{ref} is back with the bot; the user was told.",
        "no_smtp": "SMTP_URL is not set: nothing is sent by e-mail.",
        "new_faq": "New FAQ", "faq_name": "Name (intent)", "create": "Create the FAQ",
        "faq_name_help": "ask_ and the topic in lower-case words joined by _, e.g. ask_library_hours; not an "
                         "existing intent.",
        "faq_description": "What a person asks (a line in docs/intents.md)", "answer_in": "Answer ({code})",
        "examples_in": "Examples ({code})",
        "examples_help": "One question a line, at least {minimum}: the training data needs {minimum} examples "
                         "per intent in every language.",
        "derived_help": "May be left empty: then it is converted from {base} (OpenCC).",
        "faq_placeholders": "An answer may use the placeholders of the facts: {names}.",
        "faq_help": "A new question the bot should answer. Nothing is written unless every check passes; "
                    "publish afterwards to train it and put it live.",
        "faq_created": "Created {intent}: publish to make it live.",
        "authors": {"user": "User", "staff": "Staff", "bot": "Bot"},
        "reasons": {"fallback": "fallback", "out_of_scope": "out of scope", "low_confidence": "low confidence"},
        "statuses": {"open": "open", "assigned": "assigned", "todo": "to do", "ignored": "ignored", "all": "all"},
    },
    "zh": {
        "title": "工作人员后台", "login": "登录", "name": "用户名", "password": "密码",
        "wrong": "用户名或密码错误。", "slowed": "密码错误次数过多，请 {seconds} 秒后再试。",
        "expired": "表单已过期，请重试。", "logout": "退出登录", "inbox": "未回答的问题",
        "todo": "待办：需要新答案", "audit": "操作记录", "count": "次数", "language": "语言",
        "question": "问题", "first": "首次出现", "last": "最近出现", "channels": "渠道",
        "guess": "最佳猜测", "actions": "操作", "add_to": "添加到 {intent}", "add": "添加为此意图的例句",
        "add_button": "添加",
        "new_answer": "需要新答案", "ignore": "忽略", "all_languages": "所有语言",
        "period": "时间范围", "all_time": "全部", "days": "最近 {days} 天", "filter": "筛选",
        "status": "状态", "none": "暂无内容。", "assigned": "已添加到 {intent}：发布后生效。",
        "todo_done": "已加入待办。", "ignored": "已忽略。", "who": "操作人", "when": "时间",
        "what": "内容", "signed_in": "当前用户：{name}", "other_ui": "English", "other_code": "en",
        "requests": "申请与留言", "usage": "使用情况", "close": "关闭", "note": "备注", "closed": "已关闭：{ref}。",
        "per_day_language": "每日消息数（按语言）", "per_day_channel": "每日消息数（按渠道）",
        "per_day_outcome": "每日已回答、未理解与超出范围的比例", "top_intents": "最常见的意图",
        "top_unanswered": "最常见的未回答问题", "csv": "CSV", "messages": "共 {count} 条消息",
        "facts": "事实信息", "field": "字段", "value": "值", "facts_saved": "已保存（稍后生效）。",
        "answers": "回答", "save": "保存", "saved": "已保存：{intent}（稍后生效）。",
        "placeholders": "占位符", "examples": "例句（{count}）", "intent": "意图",
        "publish": "发布", "publish_button": "立即发布", "rollback": "回滚到上一次发布",
        "publishing": "正在发布…", "published": "已发布。", "publish_failed": "未发布：",
        "busy": "已有一次发布正在进行。", "rolled_back": "已回滚。", "history": "发布记录",
        "model": "模型", "changes": "改动", "step": "步骤", "seconds": "秒",
        "publish_help": "检查数据，在后台训练新模型，用各语言的保留测试问题检验，"
                        "然后在不重启的情况下替换正在运行的机器人的模型。",
        "handoffs": "人工服务", "reply": "回复", "send": "发送", "take": "接手",
        "taken_by": "由 {name} 接手", "waiting_staff": "等待工作人员", "replied": "已保存对 {ref} 的回复：{delivery}。",
        "handoff_closed": "{ref} 已交还给机器人，并已通知用户。", "no_smtp": "未设置 SMTP_URL：不会发送电子邮件。",
        "new_faq": "新建问答", "faq_name": "名称（意图）", "create": "创建问答",
        "faq_name_help": "以 ask_ 开头，后接用 _ 连接的小写英文单词，例如 ask_library_hours；不能与已有意图重名。",
        "faq_description": "用户会问什么（写入 docs/intents.md 的一行）", "answer_in": "回答（{code}）",
        "examples_in": "例句（{code}）",
        "examples_help": "每行一个问题，至少 {minimum} 个：训练数据要求每个意图在每种语言中至少有 {minimum} 个例句。",
        "derived_help": "可以留空：将由 {base} 自动转换（OpenCC）。",
        "faq_placeholders": "回答中可以使用事实信息的占位符：{names}。",
        "faq_help": "机器人应当回答的新问题。只有全部检查通过才会写入文件；之后请发布，以训练并上线。",
        "faq_created": "已创建 {intent}：发布后生效。",
        "authors": {"user": "用户", "staff": "工作人员", "bot": "机器人"},
        "reasons": {"fallback": "未理解", "out_of_scope": "超出范围", "low_confidence": "置信度低"},
        "statuses": {"open": "待处理", "assigned": "已分配", "todo": "待办", "ignored": "已忽略", "all": "全部"},
    },
}  # fmt: skip
PERIODS = (0, 1, 7, 30, 90)
E = html.escape


# --- sessions and the guard ----------------------------------------------------------


def is_https(request: web.Request) -> bool:
    if os.environ.get("STAFF_COOKIE_SECURE") == "1" or request.secure:
        return True
    return request.headers.get("X-Forwarded-Proto") == "https" and (request.remote or "") in trusted_proxies()


def ui_language(request: web.Request) -> str:
    chosen = request.query.get("ui") or request.cookies.get(UI_COOKIE)
    if chosen in UI:
        return chosen
    return "zh" if request.headers.get("Accept-Language", "").lower().startswith("zh") else "en"


def in_console(path: str) -> bool:
    return path == "/staff" or path.startswith("/staff/")


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """No session, no console; no CSRF token, no change."""
    if not in_console(request.path) or request.path == "/staff/login" or CONSOLE not in request.app:
        return await handler(request)
    console = request.app[CONSOLE]
    session = await asyncio.to_thread(console.accounts.session, request.cookies.get(COOKIE))
    if session is None:
        if request.method == "GET" and not request.path.startswith("/staff/api/"):
            raise web.HTTPSeeOther("/staff/login", headers=HEADERS)
        return web.json_response({"error": "not logged in"}, status=401, headers=HEADERS)
    if request.method not in ("GET", "HEAD"):
        token = request.headers.get(CSRF_HEADER)
        if token is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            token = (await request.post()).get("csrf")
        if not _same(str(token) if token is not None else None, session.csrf):
            return web.json_response({"error": "bad or missing CSRF token"}, status=403, headers=HEADERS)
    request[SESSION] = session
    return await handler(request)


# --- the pages -----------------------------------------------------------------------


def page(request: web.Request, title: str, body: str, session: Session | None = None, status: int = 200,
         head: str = ""):  # fmt: skip
    ui = ui_language(request)
    t = UI[ui]
    other = t["other_code"]
    query = urlencode({**request.query, "ui": other})
    nav = ""
    if session is not None:
        links = [("/staff/", t["inbox"]), ("/staff/?status=todo", t["todo"]), ("/staff/answers", t["answers"]),
                 ("/staff/faq/new", t["new_faq"]), ("/staff/facts", t["facts"]), ("/staff/publish", t["publish"]),
                 ("/staff/handoffs", t["handoffs"]), ("/staff/requests", t["requests"]),
                 ("/staff/usage", t["usage"]), ("/staff/audit", t["audit"])]  # fmt: skip
        items = "".join(f'<li><a href="{E(href)}">{E(label)}</a></li>' for href, label in links)
        nav = (
            f'<nav aria-label="{E(t["title"])}"><ul>{items}</ul>'
            f'<span class="who">{E(t["signed_in"].format(name=session.username))}</span>'
            f'<form method="post" action="/staff/logout"><input type="hidden" name="csrf" value="{E(session.csrf)}">'
            f'<button type="submit">{E(t["logout"])}</button></form></nav>'
        )
    document = f"""<!doctype html>
<html lang="{"zh-Hans" if ui == "zh" else "en"}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{E(title)} · {E(t["title"])}</title><link rel="stylesheet" href="/staff.css">
<link rel="icon" href="/favicon.svg" type="image/svg+xml">{head}</head>
<body><header><h1>{E(t["title"])}</h1><a class="ui" href="?{E(query)}" lang="{"en" if other == "en" else "zh-Hans"}">{
        E(t["other_ui"])
    }</a>{nav}</header>
<main><h2>{E(title)}</h2>{body}</main></body></html>"""
    response = web.Response(text=document, content_type="text/html", status=status, headers=HEADERS)
    if request.query.get("ui") in UI:
        response.set_cookie(UI_COOKIE, request.query["ui"], path="/", samesite="Strict", max_age=365 * 86400)
    return response


def login_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    t = UI[ui_language(request)]
    token = secrets.token_urlsafe(24)
    alert = f'<p class="error" role="alert">{E(error)}</p>' if error else ""
    body = f"""{alert}<form method="post" action="/staff/login" class="login">
<input type="hidden" name="csrf" value="{token}">
<label>{E(t["name"])} <input name="name" autocomplete="username" required maxlength="64" autofocus></label>
<label>{E(t["password"])} <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">{E(t["login"])}</button></form>"""
    response = page(request, t["login"], body, status=status)
    response.set_cookie(LOGIN_COOKIE, token, path="/staff/login", httponly=True, samesite="Strict",
                        secure=is_https(request), max_age=3600)  # fmt: skip
    return response


async def login_form(request: web.Request) -> web.Response:
    return login_page(request)


async def login(request: web.Request) -> web.Response:
    t = UI[ui_language(request)]
    form = await request.post()
    if not _same(str(form.get("csrf") or ""), request.cookies.get(LOGIN_COOKIE)):
        return login_page(request, t["expired"], status=403)
    name, password = str(form.get("name") or "").strip(), str(form.get("password") or "")
    ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), trusted_proxies())
    try:
        session = await asyncio.to_thread(request.app[CONSOLE].accounts.login, name, password, ip)
    except LoginRefused as refused:
        response = login_page(request, t["slowed"].format(seconds=refused.retry_after), status=429)
        response.headers["Retry-After"] = str(refused.retry_after)
        return response
    if session is None:
        return login_page(request, t["wrong"], status=401)
    response = web.HTTPSeeOther("/staff/", headers=HEADERS)
    lifetime = int((session.expires_at - dt.datetime.utcnow()).total_seconds())
    response.set_cookie(COOKIE, session.token, path="/staff", httponly=True, samesite="Strict",
                        secure=is_https(request), max_age=lifetime)  # fmt: skip
    response.del_cookie(LOGIN_COOKIE, path="/staff/login")
    return response


async def logout(request: web.Request) -> web.Response:
    await asyncio.to_thread(request.app[CONSOLE].accounts.logout, request.cookies.get(COOKIE, ""))
    response = web.HTTPSeeOther("/staff/login", headers=HEADERS)
    response.del_cookie(COOKIE, path="/staff")
    return response


def _filters(request: web.Request) -> tuple[str | None, int, str]:
    language = request.query.get("lang")
    language = language if language in registry().languages else None
    days = request.query.get("days", "")
    status = request.query.get("status", "open")
    return language, int(days) if days.isdigit() else 0, status if status in STATUSES else "open"


async def _groups(request: web.Request):
    language, days, status = _filters(request)
    since = dt.datetime.utcnow() - dt.timedelta(days=days) if days else None
    return await asyncio.to_thread(request.app[CONSOLE].inbox.groups, language, since, status)


def _intent_options(intents: list[str], chosen: str | None) -> str:
    return "".join(f"<option{' selected' if i == chosen else ''}>{E(i)}</option>" for i in intents)


async def inbox_page(request: web.Request, notice: str = "", errors: dict[str, list[str]] | None = None,
                     status: int = 200) -> web.Response:  # fmt: skip
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    language, days, chosen_status = _filters(request)
    groups = await _groups(request)
    intents = request.app[CONSOLE].intents()
    csrf = E(session.csrf)
    back = E(request.path_qs)
    languages = "".join(
        f'<option value="{E(c)}"{" selected" if c == language else ""}>{E(c)}</option>' for c in registry().codes
    )
    periods = "".join(
        f'<option value="{d}"{" selected" if d == days else ""}>'
        f"{E(t['days'].format(days=d) if d else t['all_time'])}</option>"
        for d in PERIODS
    )
    statuses = "".join(
        f'<option value="{s}"{" selected" if s == chosen_status else ""}>{E(t["statuses"][s])}</option>'
        for s in STATUSES
    )
    filters = f"""<form method="get" action="/staff/" class="filters">
<label>{E(t["language"])} <select name="lang"><option value="">{E(t["all_languages"])}</option>
{languages}</select></label>
<label>{E(t["period"])} <select name="days">{periods}</select></label>
<label>{E(t["status"])} <select name="status">{statuses}</select></label>
<button type="submit">{E(t["filter"])}</button></form>"""
    rows = []
    for g in groups:
        actions = ""
        if g.status in ("open", "todo"):
            one_click = (
                f'<form method="post" action="/staff/inbox/{E(g.id)}/assign"><input type="hidden" name="csrf" '
                f'value="{csrf}"><input type="hidden" name="back" value="{back}"><input type="hidden" name="intent" '
                f'value="{E(g.guess)}"><button type="submit" class="primary">{E(t["add_to"].format(intent=g.guess))}'
                "</button></form>"
                if g.guess
                else ""
            )
            actions = (
                one_click + f'<form method="post" action="/staff/inbox/{E(g.id)}/assign" class="pick">'
                f'<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="back" value="{back}">'
                f'<label>{E(t["add"])} <select name="intent">{_intent_options(intents, g.guess)}</select></label>'
                f'<button type="submit">{E(t["add_button"])}</button></form>'
            )
            for action, label in (("todo", t["new_answer"]), ("ignore", t["ignore"])):
                if action == "todo" and g.status == "todo":
                    continue
                actions += (
                    f'<form method="post" action="/staff/inbox/{E(g.id)}/{action}"><input type="hidden" name="csrf" '
                    f'value="{csrf}"><input type="hidden" name="back" value="{back}">'
                    f'<button type="submit">{E(label)}</button></form>'
                )
        problems = (errors or {}).get(g.id, [])
        error = "".join(f'<p class="error" role="alert">{E(p)}</p>' for p in problems)
        reasons = ", ".join(t["reasons"].get(r, r) for r in g.reasons)
        lang_attr = E(g.language)
        rows.append(
            f'<tr id="g-{E(g.id)}" data-group="{E(g.id)}"><td class="n">{g.count}</td><td>{E(g.language)}</td>'
            f'<td><span lang="{lang_attr}" class="question">{E(g.text)}</span><br><small>{E(reasons)} · '
            f"{E(t['statuses'].get(g.status, g.status))}{(' → ' + E(g.intent)) if g.intent else ''}</small>{error}</td>"
            f"<td>{E(g.first_seen.isoformat(' ', 'minutes'))}</td><td>{E(g.last_seen.isoformat(' ', 'minutes'))}</td>"
            f"<td>{E(', '.join(g.channels))}</td><td>{E(g.guess or '—')}</td>"
            f'<td class="actions">{actions}</td></tr>'
        )
    head = "".join(
        f'<th scope="col">{E(t[k])}</th>'
        for k in ("count", "language", "question", "first", "last", "channels", "guess", "actions")
    )
    table = (
        f'<table class="inbox"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        if rows
        else f"<p>{E(t['none'])}</p>"
    )
    notice_html = f'<p class="notice" role="status">{E(notice)}</p>' if notice else ""
    title = t["todo"] if chosen_status == "todo" else t["inbox"]
    return page(request, title, notice_html + filters + table, session, status=status)


async def inbox(request: web.Request) -> web.Response:
    t = UI[ui_language(request)]
    done = request.query.get("done")
    notice = ""
    if done == "assigned":
        notice = t["assigned"].format(intent=request.query.get("intent", ""))
    elif done == "todo":
        notice = t["todo_done"]
    elif done == "ignored":
        notice = t["ignored"]
    return await inbox_page(request, notice)


def _decide(console: Console, group: str, action: str, intent: str, username: str) -> None:
    if action == "assign":
        console.assign(group, intent, username)
    elif action == "todo":
        console.todo(group, username)
    elif action == "ignore":
        console.ignore(group, username)
    else:
        raise EditRejected([f"unknown action {action!r}"])


async def decide(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    form = await request.post()
    group, action = request.match_info["id"], request.match_info["action"]
    intent = str(form.get("intent") or "")
    try:
        await asyncio.to_thread(_decide, request.app[CONSOLE], group, action, intent, session.username)
    except GroupNotFound:
        raise web.HTTPNotFound(text="no such group", headers=HEADERS) from None
    except EditRejected as rejected:
        return await inbox_page(request, errors={group: rejected.problems}, status=400)
    raise web.HTTPSeeOther(_back(str(form.get("back") or ""), action, intent), headers=HEADERS)


def _back(back: str, action: str, intent: str) -> str:
    """The inbox page the form was on (its filters kept), with what was done; never another site."""
    url = urlsplit(back)
    path = url.path if url.path.startswith("/staff/") and not (url.scheme or url.netloc) else "/staff/"
    query = [(k, v) for k, v in parse_qsl(url.query) if k not in ("done", "intent")]
    query += [("done", {"assign": "assigned", "todo": "todo", "ignore": "ignored"}[action])]
    query += [("intent", intent)] if action == "assign" else []
    return f"{path}?{urlencode(query)}"


async def api_inbox(request: web.Request) -> web.Response:
    return web.json_response([g.as_dict() for g in await _groups(request)], headers=HEADERS)


async def api_decide(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    try:
        body = json.loads(await request.read())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return web.json_response({"error": 'expected {"action": "assign"|"todo"|"ignore", "intent"}'}, status=400)
    try:
        await asyncio.to_thread(_decide, request.app[CONSOLE], request.match_info["id"], str(body.get("action")),
                                str(body.get("intent") or ""), session.username)  # fmt: skip
    except GroupNotFound:
        return web.json_response({"error": "no such group"}, status=404, headers=HEADERS)
    except EditRejected as rejected:
        return web.json_response({"error": "rejected", "problems": rejected.problems}, status=400, headers=HEADERS)
    group = await asyncio.to_thread(request.app[CONSOLE].inbox.get, request.match_info["id"])
    return web.json_response(group.as_dict(), headers=HEADERS)


async def audit(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    entries = await asyncio.to_thread(request.app[CONSOLE].accounts.audit_log)
    rows = "".join(
        f"<tr><td>{E(e.at.isoformat(' ', 'seconds'))}</td><td>{E(e.username)}</td><td>{E(e.action)}</td>"
        f"<td>{E(e.detail)}</td></tr>"
        for e in entries
    )
    head = "".join(f'<th scope="col">{E(t[k])}</th>' for k in ("when", "who", "actions", "what"))
    return page(request, t["audit"], f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>", session)


def _mentions(problem: str, code: str) -> bool:
    return problem.startswith(f"{code}:") or f"/{code}.yml" in problem or f" {code}: " in problem


def _problems_by_language(problems: list[str], languages: list[str]) -> dict[str, list[str]]:
    """Each problem under the language it concerns (its file or its prefix), else under ""."""
    found: dict[str, list[str]] = {}
    for problem in problems:
        language = next((c for c in sorted(languages, key=len, reverse=True) if _mentions(problem, c)), "")
        found.setdefault(language, []).append(problem)
    return found


async def answers_page(
    request: web.Request,
    notice: str = "",
    errors: dict[str, list[str]] | None = None,
    edited: tuple[str, dict[str, str]] | None = None,
    status: int = 200,
) -> web.Response:
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    console: Console = request.app[CONSOLE]
    codes = registry().codes
    csrf = E(session.csrf)
    parts = [f'<p class="notice" role="status">{E(notice)}</p>'] if notice else []
    for intent, texts_by_language, examples in await asyncio.to_thread(console.answers):
        values = edited[1] if edited and edited[0] == intent else texts_by_language
        problems = errors if edited and edited[0] == intent else {}
        placeholders = sorted(placeholders_of(texts_by_language[registry().default]))
        fields = []
        for code in codes:
            field_id = f"a-{intent}-{code}"
            error = "".join(f'<p class="error" role="alert">{E(p)}</p>' for p in (problems or {}).get(code, []))
            listed = "".join(f"<li>{E(e)}</li>" for e in examples.get(code, []))
            fields.append(
                f'<div class="field"><label for="{E(field_id)}">{E(code)}</label>'
                f'<textarea id="{E(field_id)}" name="{E(code)}" lang="{E(code)}" rows="5">{E(values.get(code, ""))}'
                f"</textarea>{error}<details><summary>{E(t['examples'].format(count=len(examples.get(code, []))))}"
                f'</summary><ul lang="{E(code)}">{listed}</ul></details></div>'
            )
        general = "".join(f'<p class="error" role="alert">{E(p)}</p>' for p in (problems or {}).get("", []))
        parts.append(
            f'<section class="answer" id="answer-{E(intent)}"><h3>{E(intent)}</h3>'
            f"<p>{E(t['placeholders'])}: {E(' '.join('{' + p + '}' for p in placeholders) or '—')}</p>{general}"
            f'<form method="post" action="/staff/answers/{E(intent)}"><input type="hidden" name="csrf" value="{csrf}">'
            f'<div class="languages">{"".join(fields)}</div><button type="submit">{E(t["save"])}</button>'
            "</form></section>"
        )
    return page(request, t["answers"], "".join(parts), session, status=status)


async def answers_view(request: web.Request) -> web.Response:
    t = UI[ui_language(request)]
    saved, created = request.query.get("saved", ""), request.query.get("created", "")
    notice = t["saved"].format(intent=saved) if saved else t["faq_created"].format(intent=created) if created else ""
    return await answers_page(request, notice)


def _errors(problems: list[str]) -> str:
    return "".join(f'<p class="error" role="alert">{E(p)}</p>' for p in problems)


async def faq_page(request: web.Request, values: dict[str, str] | None = None,
                   errors: dict[str, list[str]] | None = None, status: int = 200) -> web.Response:  # fmt: skip
    """The form of a new FAQ: its name, then for each language its answer and its examples."""
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    values, errors = values or {}, errors or {}
    reg = registry()
    names = await asyncio.to_thread(lambda: sorted(fact_values(reg.default)))
    parts = [f"<p>{E(t['faq_help'])}</p>", _errors(errors.get("", []))]
    parts.append(
        f'<form method="post" action="/staff/faq" class="faq">'
        f'<input type="hidden" name="csrf" value="{E(session.csrf)}">'
        f'<div class="field"><label for="faq-name">{E(t["faq_name"])}</label>'
        f'<input id="faq-name" name="name" value="{E(values.get("name", ""))}" maxlength="{MAX_NAME_CHARS}" '
        f'pattern="ask_[a-z][a-z0-9_]*" required aria-describedby="faq-name-help">'
        f'<small id="faq-name-help">{E(t["faq_name_help"])}</small>{_errors(errors.get("name", []))}</div>'
        f'<div class="field"><label for="faq-description">{E(t["faq_description"])}</label>'
        f'<input id="faq-description" name="description" value="{E(values.get("description", ""))}" size="80" '
        f'maxlength="300">{_errors(errors.get("description", []))}</div>'
        f"<p>{E(t['faq_placeholders'].format(names=' '.join('{' + n + '}' for n in names)))}</p>"
    )
    fields = []
    for code, lang in reg.languages.items():
        derived = f" {t['derived_help'].format(base=lang.derive_from)}" if lang.derive_from else ""
        required = "" if lang.derive_from else " required"
        help_id = f"faq-examples-{code}-help"
        fields.append(
            f'<fieldset class="language" lang="{E(code)}"><legend>{E(code)}</legend>'
            f'<div class="field"><label for="faq-answer-{E(code)}">{E(t["answer_in"].format(code=code))}</label>'
            f'<textarea id="faq-answer-{E(code)}" name="answer.{E(code)}" lang="{E(code)}" rows="4"{required}>'
            f"{E(values.get(f'answer.{code}', ''))}</textarea>"
            f"{f'<small>{E(derived.strip())}</small>' if derived else ''}{_errors(errors.get(f'answer.{code}', []))}"
            f'</div><div class="field"><label for="faq-examples-{E(code)}">{E(t["examples_in"].format(code=code))}'
            f'</label><textarea id="faq-examples-{E(code)}" name="examples.{E(code)}" lang="{E(code)}" rows="10"'
            f'{required} aria-describedby="{help_id}">{E(values.get(f"examples.{code}", ""))}</textarea>'
            f'<small id="{help_id}">{E(t["examples_help"].format(minimum=MIN_TRAINING_EXAMPLES) + derived)}</small>'
            f"{_errors(errors.get(f'examples.{code}', []))}</div></fieldset>"
        )
    parts.append("".join(fields) + f'<button type="submit" class="primary">{E(t["create"])}</button></form>')
    return page(request, t["new_faq"], "".join(parts), session, status=status)


async def faq_form(request: web.Request) -> web.Response:
    return await faq_page(request)


async def faq_create(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    form = await request.post()
    values = {key: str(value) for key, value in form.items() if key != "csrf"}
    codes = registry().codes
    draft = FaqDraft(
        name=values.get("name", "").strip(),
        description=values.get("description", ""),
        answers={code: values.get(f"answer.{code}", "") for code in codes},
        examples={code: split_examples(values.get(f"examples.{code}", "")) for code in codes},
    )
    try:
        await asyncio.to_thread(request.app[CONSOLE].add_faq, draft, session.username)
    except FaqRejected as rejected:
        return await faq_page(request, values, rejected.fields, status=400)
    raise web.HTTPSeeOther(f"/staff/answers?{urlencode({'created': draft.name})}#answer-{draft.name}",
                           headers=HEADERS)  # fmt: skip


async def answer_save(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    console: Console = request.app[CONSOLE]
    intent = request.match_info["intent"]
    if intent not in console.intents():
        raise web.HTTPNotFound(text="no such intent", headers=HEADERS)
    form = await request.post()
    values = {code: str(form[code]) for code in registry().codes if code in form}
    try:
        await asyncio.to_thread(console.set_answer, intent, values, session.username)
    except EditRejected as rejected:
        errors = _problems_by_language(rejected.problems, registry().codes)
        return await answers_page(request, errors=errors, edited=(intent, values), status=400)
    raise web.HTTPSeeOther(f"/staff/answers?{urlencode({'saved': intent})}#answer-{intent}", headers=HEADERS)


async def facts_page(request: web.Request, notice: str = "", errors: dict[str, list[str]] | None = None,
                     edited: dict[str, str] | None = None, status: int = 200) -> web.Response:  # fmt: skip
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    found = await asyncio.to_thread(request.app[CONSOLE].facts)
    rows = []
    for n, f in enumerate(found):
        value = (edited or {}).get(f.path, f.value)
        error = "".join(f'<p class="error" role="alert">{E(p)}</p>' for p in (errors or {}).get(f.path, []))
        kind = ' inputmode="numeric"' if f.number else ""
        rows.append(f'<tr id="fact-{n}"><th scope="row"><label for="f-{n}">{E(f.path)}</label></th>'
                    f'<td><input id="f-{n}" name="{E(f.path)}" value="{E(value)}"{kind} size="60">'
                    f"{error}</td></tr>")  # fmt: skip
    general = "".join(f'<p class="error" role="alert">{E(p)}</p>' for p in (errors or {}).get("", []))
    notice_html = f'<p class="notice" role="status">{E(notice)}</p>' if notice else ""
    body = (f'{notice_html}{general}<form method="post" action="/staff/facts"><input type="hidden" name="csrf" '
            f'value="{E(session.csrf)}"><table class="facts"><thead><tr><th scope="col">{E(t["field"])}</th>'
            f'<th scope="col">{E(t["value"])}</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'<p><button type="submit" class="primary">{E(t["save"])}</button></p></form>')  # fmt: skip
    return page(request, t["facts"], body, session, status=status)


async def facts_view(request: web.Request) -> web.Response:
    notice = UI[ui_language(request)]["facts_saved"] if request.query.get("saved") else ""
    return await facts_page(request, notice)


async def facts_save(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    console: Console = request.app[CONSOLE]
    form = await request.post()
    known = {f.path for f in await asyncio.to_thread(console.facts)}
    values = {k: str(v) for k, v in form.items() if k in known}
    try:
        await asyncio.to_thread(console.set_facts, values, session.username)
    except EditRejected as rejected:
        errors: dict[str, list[str]] = {}
        for problem in rejected.problems:
            field = next((k for k in sorted(known, key=len, reverse=True) if k in problem), "")
            errors.setdefault(field, []).append(problem)
        return await facts_page(request, errors=errors, edited=values, status=400)
    raise web.HTTPSeeOther("/staff/facts?saved=1", headers=HEADERS)


FIGURES = ("per_day_language", "per_day_channel", "per_day_outcome", "top_intents")


def _usage(request: web.Request) -> Usage:
    days = request.query.get("days", "30")
    since = dt.datetime.utcnow() - dt.timedelta(days=int(days)) if days.isdigit() and int(days) else None
    return usage(request.app[CONSOLE].accounts.engine, since)


async def usage_page(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    figures = await asyncio.to_thread(_usage, request)
    days = request.query.get("days", "30")
    periods = "".join(
        f'<option value="{d}"{" selected" if str(d) == days else ""}>'
        f"{E(t['days'].format(days=d) if d else t['all_time'])}</option>"
        for d in PERIODS
    )
    query = urlencode({"days": days})
    parts = [f'<form method="get" action="/staff/usage" class="filters"><label>{E(t["period"])} <select name="days">'
             f'{periods}</select></label><button type="submit">{E(t["filter"])}</button></form>',
             f"<p>{E(t['messages'].format(count=figures.total))}</p>"]  # fmt: skip
    charts = {
        "per_day_language": bar_chart(figures.days, figures.series(figures.by_language), t["per_day_language"]),
        "per_day_channel": bar_chart(figures.days, figures.series(figures.by_channel), t["per_day_channel"]),
        "per_day_outcome": bar_chart(
            figures.days,
            {o: figures.series(figures.by_outcome).get(o, [0] * len(figures.days)) for o in OUTCOMES},
            t["per_day_outcome"],
            shares=True,
        ),  # fmt: skip
        "top_intents": horizontal_bars(figures.intents.most_common(10), t["top_intents"]),
    }
    for name, svg in charts.items():
        parts.append(f'<section class="figure" id="{name}"><h3>{E(t[name])} '
                     f'<a href="/staff/usage.csv?figure={name}&amp;{E(query)}" download>{E(t["csv"])}</a></h3>{svg}'
                     "</section>")  # fmt: skip
    since = dt.datetime.utcnow() - dt.timedelta(days=int(days)) if days.isdigit() and int(days) else None
    top = (await asyncio.to_thread(request.app[CONSOLE].inbox.groups, None, since, "open"))[:10]
    rows = [(f"{g.language}: {g.text}", g.count) for g in top]
    parts.append(f'<section class="figure" id="top_unanswered"><h3>{E(t["top_unanswered"])} '
                 f'<a href="/staff/usage.csv?figure=top_unanswered&amp;{E(query)}" download>{E(t["csv"])}</a></h3>'
                 f'{horizontal_bars(rows, t["top_unanswered"])}</section>')  # fmt: skip
    return page(request, t["usage"], "".join(parts), session)


async def usage_csv(request: web.Request) -> web.Response:
    name = request.query.get("figure", "")
    if name == "top_unanswered":
        days = request.query.get("days", "30")
        since = dt.datetime.utcnow() - dt.timedelta(days=int(days)) if days.isdigit() and int(days) else None
        groups = await asyncio.to_thread(request.app[CONSOLE].inbox.groups, None, since, "open")
        header, rows = (
            ["id", "language", "text", "count", "first_seen", "last_seen", "channels", "guess"],
            [
                [g.id, g.language, g.text, g.count, g.first_seen, g.last_seen, " ".join(g.channels), g.guess or ""]
                for g in groups
            ],
        )
    elif name in FIGURES:
        header, rows = (await asyncio.to_thread(_usage, request)).table(name)
    else:
        raise web.HTTPNotFound(text="no such figure", headers=HEADERS)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([[_csv_cell(v) for v in row] for row in rows])
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}.csv"'})  # fmt: skip


def _csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text (a visitor's question never runs as a formula)."""
    text = value.isoformat(" ", "seconds") if isinstance(value, dt.datetime) else str(value)
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


async def requests_page(request: web.Request, notice: str = "") -> web.Response:
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    status = request.query.get("status", "open")
    status = status if status in ("open", "closed", "all") else "open"
    found = await asyncio.to_thread(lambda: rows(RequestStore(request.app[CONSOLE].url).list(status=status)))
    csrf = E(session.csrf)
    columns = ("ref", "status", "created_at", "full_name", "institution", "country", "email", "purpose", "arrival",
               "departure", "details", "note")  # fmt: skip
    head = "".join(f'<th scope="col">{E(c)}</th>' for c in columns) + f'<th scope="col">{E(t["actions"])}</th>'
    body = []
    for row in found:
        close = (
            f'<form method="post" action="/staff/requests/{E(row["ref"])}/close"><input type="hidden" name="csrf" '
            f'value="{csrf}"><label>{E(t["note"])} <input name="note" maxlength="500"></label>'
            f'<button type="submit">{E(t["close"])}</button></form>'
            if row["status"] == "open"
            else ""
        )
        cells = "".join(f"<td>{E('' if row[c] is None else str(row[c]))}</td>" for c in columns)
        body.append(f'<tr data-ref="{E(row["ref"])}">{cells}<td class="actions">{close}</td></tr>')
    statuses = "".join(f'<option value="{s}"{" selected" if s == status else ""}>{E(t["statuses"].get(s, s))}'
                       "</option>" for s in ("open", "closed", "all"))  # fmt: skip
    filters = (f'<form method="get" action="/staff/requests" class="filters"><label>{E(t["status"])} '
               f'<select name="status">{statuses}</select></label>'
               f'<button type="submit">{E(t["filter"])}</button></form>')  # fmt: skip
    notice_html = f'<p class="notice" role="status">{E(notice)}</p>' if notice else ""
    table = (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        if body
        else (f"<p>{E(t['none'])}</p>")
    )
    return page(request, t["requests"], notice_html + filters + table, session)


async def requests_view(request: web.Request) -> web.Response:
    ref = request.query.get("closed", "")
    return await requests_page(request, UI[ui_language(request)]["closed"].format(ref=ref) if ref else "")


async def request_close(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    form = await request.post()
    ref, note = request.match_info["ref"], str(form.get("note") or "").strip()[:500] or None
    console: Console = request.app[CONSOLE]
    try:
        closed = await asyncio.to_thread(lambda: RequestStore(console.url).close(ref, note))
    except RequestNotFound:
        raise web.HTTPNotFound(text="no such request", headers=HEADERS) from None
    console.accounts.audit(session.username, "request.close", f"{closed.ref}")
    raise web.HTTPSeeOther(f"/staff/requests?{urlencode({'closed': closed.ref})}", headers=HEADERS)


class PublishJob:
    """The publish running in this process's background (one at a time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.progress: Progress | None = None
        self.thread: threading.Thread | None = None

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, console: Console, username: str) -> bool:
        with self.lock:
            if self.running():
                return False
            self.progress = progress = Progress()

            def work() -> None:
                try:
                    console.publish(username, progress)
                except PublishError:
                    pass  # the progress says why
                except Exception as error:  # the console shows it; the server keeps serving
                    logger.exception("publish failed")
                    progress.failed, progress.done, progress.message = True, True, f"{type(error).__name__}: {error}"

            self.thread = threading.Thread(target=work, name="publish", daemon=True)
            self.thread.start()
            return True


JOB = web.AppKey("publish_job", PublishJob)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


async def publish_page(request: web.Request, notice: str = "", status: int = 200) -> web.Response:
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    job: PublishJob = request.app[JOB]
    progress = job.progress
    head, parts = "", [f"<p>{E(t['publish_help'])}</p>"]
    if notice:
        parts.append(f'<p class="notice" role="status">{E(notice)}</p>')
    if progress is not None:
        if job.running():
            head = '<meta http-equiv="refresh" content="2">'
            parts.append(
                f'<section class="progress" aria-live="polite"><h3>{E(t["publishing"])}</h3>'
                f'<progress max="100" value="{progress.fraction * 100:.0f}">{progress.fraction:.0%}</progress> '
                f'<span class="percent">{progress.fraction:.0%}</span>'
                f'<p>{E(t["step"])}: <strong class="step">{E(progress.step)}</strong> · {E(progress.message)}</p>'
                f"<pre>{E(chr(10).join(progress.log[-8:]))}</pre></section>"
            )
        elif progress.failed:
            parts.append(f'<div class="error" role="alert" id="publish-result">{E(t["publish_failed"])}'
                         f"<pre>{E(progress.message)}</pre></div>")  # fmt: skip
        else:
            parts.append(f'<p class="notice" role="status" id="publish-result">{E(t["published"])} '
                         f"{E(progress.message)}</p>")  # fmt: skip
    csrf = E(session.csrf)
    disabled = " disabled" if job.running() else ""
    parts.append(
        f'<form method="post" action="/staff/publish"><input type="hidden" name="csrf" value="{csrf}">'
        f'<button type="submit" class="primary"{disabled}>{E(t["publish_button"])}</button></form>'
        f'<form method="post" action="/staff/rollback"><input type="hidden" name="csrf" value="{csrf}">'
        f'<button type="submit"{disabled}>{E(t["rollback"])}</button></form>'
    )
    history = await asyncio.to_thread(request.app[CONSOLE].publisher.history)
    rows = "".join(
        f"<tr><td>{E(r['at'].isoformat(' ', 'seconds'))}</td><td>{E(r['username'])}</td><td>{E(r['status'])}</td>"
        f"<td>{E(r['model'] or '')}</td><td><pre>{E(r['changes'] or r['detail'] or '')}</pre></td>"
        f"<td>{_seconds(r['seconds'])}</td></tr>"
        for r in history
    )
    head_row = "".join(
        f'<th scope="col">{E(t[k])}</th>' for k in ("when", "who", "status", "model", "changes", "seconds")
    )
    parts.append(f'<h3>{E(t["history"])}</h3><table class="publishes"><thead><tr>{head_row}</tr></thead>'
                 f"<tbody>{rows}</tbody></table>")  # fmt: skip
    return page(request, t["publish"], "".join(parts), session, status=status, head=head)


async def publish_view(request: web.Request) -> web.Response:
    t = UI[ui_language(request)]
    notice = {"rolled_back": t["rolled_back"]}.get(request.query.get("done", ""), "")
    return await publish_page(request, notice)


async def publish_start(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    if not request.app[JOB].start(request.app[CONSOLE], session.username):
        return await publish_page(request, UI[ui_language(request)]["busy"], status=409)
    raise web.HTTPSeeOther("/staff/publish", headers=HEADERS)


async def rollback(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    if request.app[JOB].running():
        return await publish_page(request, t["busy"], status=409)
    try:
        await asyncio.to_thread(request.app[CONSOLE].rollback, session.username)
    except PublishError as error:
        return await publish_page(request, f"{t['publish_failed']} {error}", status=400)
    raise web.HTTPSeeOther("/staff/publish?done=rolled_back", headers=HEADERS)


async def root_redirect(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/staff/", headers=HEADERS)


def add_routes(app: web.Application, console: Console) -> None:
    """The console's routes; the app must have ``guard`` among its middlewares."""
    app[CONSOLE] = console
    app[JOB] = PublishJob()
    app.router.add_get("/staff", root_redirect)
    app.router.add_get("/staff/login", login_form)
    app.router.add_post("/staff/login", login)
    app.router.add_post("/staff/logout", logout)
    app.router.add_get("/staff/", inbox)
    app.router.add_post("/staff/inbox/{id}/{action:assign|todo|ignore}", decide)
    app.router.add_get("/staff/audit", audit)
    app.router.add_get("/staff/facts", facts_view)
    app.router.add_post("/staff/facts", facts_save)
    app.router.add_get("/staff/usage", usage_page)
    app.router.add_get("/staff/usage.csv", usage_csv)
    app.router.add_get("/staff/requests", requests_view)
    app.router.add_post("/staff/requests/{ref}/close", request_close)
    app.router.add_get("/staff/answers", answers_view)
    app.router.add_post("/staff/answers/{intent}", answer_save)
    app.router.add_get("/staff/faq/new", faq_form)
    app.router.add_post("/staff/faq", faq_create)
    app.router.add_get("/staff/publish", publish_view)
    app.router.add_post("/staff/publish", publish_start)
    app.router.add_post("/staff/rollback", rollback)
    app.router.add_get("/staff/handoffs", handoffs_view)
    app.router.add_post("/staff/handoffs/{ref}/{action:take|reply|close}", handoff_action)
    app.router.add_get("/staff/api/inbox", api_inbox)
    app.router.add_post("/staff/api/inbox/{id}", api_decide)


# --- talk to a person ----------------------------------------------------------------


def _handoff_store(console: Console) -> HandoffStore:
    return HandoffStore(RequestStore(console.url))


async def handoffs_page(request: web.Request, notice: str = "") -> web.Response:
    """The open hand-offs, newest activity first: each conversation and a reply box."""
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    store = _handoff_store(request.app[CONSOLE])

    def load():
        found = sorted(store.list_open(), key=lambda h: h.last_activity_at, reverse=True)
        return [(h, store.messages(h.ref)) for h in found]

    found = await asyncio.to_thread(load)
    csrf = f'<input type="hidden" name="csrf" value="{E(session.csrf)}">'
    parts = [] if smtp_settings() is not None else [f'<p class="notice">{E(t["no_smtp"])}</p>']
    for handoff, messages in found:
        state = t["taken_by"].format(name=handoff.taken_by) if handoff.taken_by else t["waiting_staff"]
        lines = "".join(
            f'<li class="{E(m.author)}"><span class="who">{E(t["authors"].get(m.author, m.author))}'
            f"{' · ' + E(m.staff_name) if m.staff_name else ''} · {E(m.at.isoformat(' ', 'minutes'))}</span> "
            f'<span lang="{E(m.language or handoff.lang)}">{E(m.text)}</span>'
            f"{' <em>(' + E(m.delivery) + ')</em>' if m.delivery else ''}</li>"
            for m in messages
        )
        action = f"/staff/handoffs/{E(handoff.ref)}"
        take = (
            ""
            if handoff.taken_by == f"console:{session.username}"
            else (
                f'<form method="post" action="{action}/take">{csrf}<button type="submit">{E(t["take"])}</button></form>'
            )
        )
        parts.append(
            f'<section class="handoff" data-ref="{E(handoff.ref)}" aria-label="{E(handoff.ref)}">'
            f"<h3>{E(handoff.ref)} · {E(handoff.channel)} · {E(handoff.lang)} · {E(state)}</h3><ol>{lines}</ol>"
            f'<form method="post" action="{action}/reply">{csrf}<label>{E(t["reply"])} '
            f'<textarea name="text" rows="3" maxlength="4000" required></textarea></label>'
            f'<button type="submit">{E(t["send"])}</button></form>{take}'
            f'<form method="post" action="{action}/close">{csrf}<button type="submit">{E(t["close"])}</button></form>'
            "</section>"
        )
    if not found:
        parts.append(f"<p>{E(t['none'])}</p>")
    notice_html = f'<p class="notice" role="status">{E(notice)}</p>' if notice else ""
    return page(request, t["handoffs"], notice_html + "".join(parts), session)


async def handoffs_view(request: web.Request) -> web.Response:
    return await handoffs_page(request, request.query.get("notice", "")[:300])


async def handoff_action(request: web.Request) -> web.Response:
    """Take, reply to or close a hand-off; a reply is delivered at once, as `bot requests reply` does."""
    session: Session = request[SESSION]
    t = UI[ui_language(request)]
    console: Console = request.app[CONSOLE]
    ref, action = request.match_info["ref"], request.match_info["action"]
    store = _handoff_store(console)
    staff = f"console:{session.username}"
    try:
        handoff = await asyncio.to_thread(store.get, ref)
    except HandoffNotFound:
        raise web.HTTPNotFound(text="no such hand-off", headers=HEADERS) from None
    if action == "take":
        _, told = await asyncio.to_thread(store.take, handoff.ref, staff)
        if told is not None:
            await deliver(told, store)
        notice = t["taken_by"].format(name=staff)
    elif action == "reply":
        text = str((await request.post()).get("text") or "").strip()[:4000]
        if not text:
            raise web.HTTPSeeOther("/staff/handoffs", headers=HEADERS)
        message = await asyncio.to_thread(store.reply, handoff.ref, staff, text)
        message = await deliver(message, store)
        if handoff.staff_post_id is not None:
            posted = staff_say("staff_reply_from", ref=handoff.ref, staff=staff, text=text)
            await post_to_staff(posted, reply_to=handoff.staff_post_id)
        notice = t["replied"].format(ref=handoff.ref, delivery=message.delivery or "")
    else:
        closed = await asyncio.to_thread(store.close, handoff.ref, staff, "staff")
        if closed is not None:
            await deliver(closed, store)
        if handoff.staff_post_id is not None:
            await post_to_staff(
                staff_say("staff_closed_by", ref=handoff.ref, staff=staff), reply_to=handoff.staff_post_id
            )
        notice = t["handoff_closed"].format(ref=handoff.ref)
    console.accounts.audit(session.username, f"handoff.{action}", handoff.ref)
    raise web.HTTPSeeOther(f"/staff/handoffs?{urlencode({'notice': notice})}", headers=HEADERS)
