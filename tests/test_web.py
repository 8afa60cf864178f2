"""The web chat (bot/channels/web/server.py and static/) in real headless Chromium, driven by Playwright.

    .venv/bin/pytest tests/test_web.py

Chromium is Debian's package (``make test`` installs it when missing: ``make
browser``), launched through ``executable_path``: Playwright downloads no
browser. The page is served by the web process of the shared ``servers``
fixture (conftest.py) in front of the real Rasa and action servers, so every
answer below comes from the trained model and the department's facts. The
assertions are on what a user sees in the page; the only waiting is
Playwright's own (``expect``).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from bot.channels.web.server import conversation
from bot.cli.servers import Servers
from bot.core.languages import detect
from bot.core.texts import say, texts
from bot.tools.screenshot import launch

from .conftest import LANGUAGES

pytestmark = pytest.mark.e2e

# Rasa answers in a second or two; a restarted Rasa server is waited for before asserting.
expect.set_options(timeout=30_000)

XSS = "<img src=x onerror=alert(1)>"
# The office's site, allowed to embed the chat (the servers fixture's WEB_FRAME_ANCESTORS).
OFFICE_SITE = "http://office.example"


# --- fixtures and helpers -----------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Browser, servers: Servers):
    """new_page(locale=, sender=, **context options): a fresh browser profile on the chat."""
    contexts = []

    def open_page(locale: str = "en-GB", sender: str | None = None, **options) -> Page:
        context = browser.new_context(locale=locale, **options)
        contexts.append(context)
        if sender:  # the same browser's storage, as after a visit: only the sender id
            stored = json.dumps(json.dumps(sender))
            context.add_init_script(f"localStorage.setItem('njupt-chat:sender', {stored})")
        page = context.new_page()
        page.goto(servers.web_url + "/")
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page) -> Page:
    return new_page()


def bot_said(page: Page):
    return page.locator(".message.bot .bubble")


def user_said(page: Page):
    return page.locator(".message.user .bubble")


def ask(page: Page, text: str) -> None:
    """Types ``text`` in the text box and presses Enter, as a user does."""
    box = page.get_by_role("textbox")
    box.fill(text)
    box.press("Enter")


def sender_of(page: Page) -> str:
    return json.loads(page.evaluate("localStorage.getItem('njupt-chat:sender')"))


# --- the page -------------------------------------------------------------------------


def test_the_page_has_the_office_name_a_welcome_and_suggestions_from_its_origin(browser, servers):
    context = browser.new_context(locale="en-US")
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.goto(servers.web_url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text(say("web_title", "en"))
    expect(page).to_have_title(say("web_page_title", "en"))
    expect(page.get_by_text(say("web_welcome", "en"))).to_be_visible()
    for n in range(1, 5):
        expect(page.get_by_role("button", name=say(f"web_suggestion_{n}", "en"))).to_be_visible()
    log = page.get_by_role("log")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(page.get_by_role("textbox", name=say("web_input_label", "en"))).to_be_visible()
    expect(page.get_by_role("button", name=say("web_send", "en"))).to_be_visible()
    expect(page.get_by_role("combobox", name=say("web_language_label", "en"))).to_have_value("auto")
    for token in (servers.auth_token, *servers.channel_tokens.values()):
        assert token and token not in page.content()
    context.close()
    # Nothing from a CDN or a font service: every request went to the chat server.
    assert requests and all(url.startswith(servers.web_url + "/") for url in requests), requests


def test_readable_on_a_phone_and_on_a_desktop(new_page):
    phone = new_page(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    expect(phone.get_by_role("heading", level=1)).to_be_visible()
    expect(phone.get_by_role("textbox")).to_be_in_viewport()
    expect(phone.get_by_role("button", name=say("web_send", "en"))).to_be_in_viewport()
    expect(phone.get_by_role("button", name=say("web_suggestion_1", "en"))).to_be_in_viewport()
    width, client = phone.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width <= client, "the page scrolls sideways on a phone"
    desktop = new_page(viewport={"width": 1440, "height": 900})
    expect(desktop.get_by_role("textbox")).to_be_in_viewport()
    box = desktop.locator(".app").bounding_box()
    assert box and box["width"] < 1000 and box["x"] > 100, "on a desktop: a centred column"


def test_asking_in_english_and_chinese_shows_the_facts_with_a_typing_indicator(page: Page):
    typing_seen: list[bool] = []

    def while_the_bot_answers(route: Route) -> None:
        typing = page.get_by_role("status").filter(has_text=say("web_typing", "en"))
        typing_seen.append(typing.is_visible())
        route.continue_()

    page.route("**/api/message", while_the_bot_answers, times=1)
    question = "What is the postal address of the international office?"
    ask(page, question)
    expect(user_said(page)).to_have_text([question])
    expect(bot_said(page)).to_have_count(1)
    expect(bot_said(page).last).to_contain_text("66 New Mofan Road")
    expect(bot_said(page).last).to_contain_text("210003")
    assert typing_seen == [True]
    expect(page.get_by_role("status")).to_be_hidden()
    # the suggestions are for the first question only
    expect(page.get_by_role("button", name=say("web_suggestion_1", "en"))).to_be_hidden()

    ask(page, "南邮和哪些国外大学合作办学？")
    expect(bot_said(page)).to_have_count(2)
    for fact in ("11", "玛丽女王", "纽约理工"):
        expect(bot_said(page).last).to_contain_text(fact)
    ask(page, "国际处的地址在哪里？")
    expect(bot_said(page)).to_have_count(3)
    expect(bot_said(page).last).to_contain_text("新模范马路66号")
    expect(page.get_by_role("textbox")).to_be_focused()


def test_a_suggested_question_is_answered(page: Page):
    page.get_by_role("button", name=say("web_suggestion_2", "en")).click()
    expect(user_said(page)).to_have_text([say("web_suggestion_2", "en")])
    expect(bot_said(page)).to_have_text([say("ask_degrees", "en")])


def test_a_quick_reply_by_keyboard_only(page: Page):
    expect(page.get_by_role("textbox")).to_be_focused()  # on a desktop the text box has the focus
    page.keyboard.type("/lang")
    page.keyboard.press("Enter")
    expect(bot_said(page)).to_have_text([say("language_choose", "en")])
    quick_replies = page.locator(".quick-replies").last.get_by_role("button")
    expect(quick_replies).to_have_text(["English", "简体中文", "繁體中文", "Русский", "Français"])
    page.keyboard.press("Shift+Tab")  # from the text box back to the last quick reply
    expect(page.get_by_role("button", name="Français")).to_be_focused()
    page.keyboard.press("Enter")
    expect(user_said(page)).to_have_text(["/lang", "Français"])
    expect(bot_said(page).last).to_have_text(say("language_switched", "fr"))
    expect(page.get_by_role("textbox")).to_be_focused()  # back in the text box
    page.keyboard.type("2027")
    page.keyboard.press("Enter")
    expect(bot_said(page).nth(2)).to_be_visible()
    assert detect(bot_said(page).nth(2).inner_text()).language == "fr"


# --- languages ------------------------------------------------------------------------


def test_automatic_language_follows_the_browser_and_is_sent_as_the_hint(new_page):
    page = new_page(locale="zh-CN")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    expect(page.get_by_role("heading", level=1)).to_have_text(say("web_title", "zh-Hans"))
    expect(page.get_by_text(say("web_welcome", "zh-Hans"))).to_be_visible()
    expect(page.get_by_role("textbox", name=say("web_input_label", "zh-Hans"))).to_have_attribute(
        "placeholder", say("web_placeholder", "zh-Hans")
    )
    with page.expect_request("**/api/message") as request:
        ask(page, "ok")  # says nothing of its language: the hint decides
    assert request.value.post_data_json["language"] == "zh-CN"
    expect(bot_said(page)).to_have_count(1)
    assert detect(bot_said(page).first.inner_text()).language == "zh-Hans"


def test_choosing_a_language_translates_the_page_and_switches_the_conversation(new_page):
    page = new_page(locale="en-GB")
    selector = page.get_by_role("combobox", name=say("web_language_label", "en"))
    expect(selector.locator("option")).to_have_text(
        [say("web_language_auto", "en"), "English", "简体中文", "繁體中文", "Русский", "Français"]
    )
    selector.select_option("ru")  # before any message: only the page and the hint change
    expect(page.get_by_role("heading", level=1)).to_have_text(say("web_title", "ru"))
    expect(page.get_by_role("button", name=say("web_send", "ru"))).to_be_visible()
    expect(page.get_by_text(say("web_welcome", "ru"))).to_be_visible()
    expect(user_said(page)).to_have_count(0)
    with page.expect_request("**/api/message") as request:
        ask(page, "NYIT?")
    assert request.value.post_data_json["language"] == "ru"
    expect(bot_said(page)).to_have_count(1)
    assert detect(bot_said(page).first.inner_text()).language == "ru"

    # during a conversation, choosing a language also tells the bot, as its language buttons do
    page.get_by_role("combobox", name=say("web_language_label", "ru")).select_option("fr")
    expect(page.get_by_role("button", name=say("web_send", "fr"))).to_be_visible()
    expect(user_said(page).last).to_have_text("Français")
    expect(bot_said(page).last).to_have_text(say("language_switched", "fr"))

    page.reload()
    expect(page.get_by_role("combobox", name=say("web_language_label", "fr"))).to_have_value("fr")
    expect(page.get_by_role("heading", level=1)).to_have_text(say("web_title", "fr"))
    page.get_by_role("combobox", name=say("web_language_label", "fr")).select_option("auto")
    expect(page.get_by_role("button", name=say("web_send", "en"))).to_be_visible()
    expect(user_said(page)).to_have_count(2)  # automatic sends nothing


# --- text is text -------------------------------------------------------------------------


def test_html_typed_by_the_user_is_shown_as_text_and_never_run(page: Page):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    ask(page, XSS)
    expect(user_said(page)).to_have_text([XSS])
    expect(bot_said(page).first).to_be_visible()  # answered (out of scope, maybe with an offer)
    expect(page.get_by_role("log").locator("img")).to_have_count(0)
    page.reload()  # and read back from the tracker store
    expect(user_said(page)).to_have_text([XSS])
    expect(bot_said(page).first).to_be_visible()
    expect(page.get_by_role("log").locator("img")).to_have_count(0)
    assert dialogs == []


def test_bot_text_is_inserted_as_text_with_only_http_links_clickable(page: Page):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    reply = ("<b>bold</b><img src=x onerror=alert(2)> See https://example.org/a?b=1. "
             "Not javascript:alert(3) nor <a href='javascript:alert(4)'>this</a>.")  # fmt: skip
    button = {"title": "<i onmouseover=alert(5)>x</i>", "payload": "/greet"}
    answer = [{"text": reply, "buttons": [button]}]
    page.route("**/api/message", lambda route: route.fulfill(json=answer), times=1)
    ask(page, "anything")
    expect(bot_said(page)).to_have_text([reply])
    links = bot_said(page).get_by_role("link")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://example.org/a?b=1")
    expect(links).to_have_text("https://example.org/a?b=1")
    expect(page.get_by_role("button", name="<i onmouseover=alert(5)>x</i>")).to_be_visible()
    expect(page.get_by_role("log").locator("b, img, i, a[href^=javascript]")).to_have_count(0)
    page.get_by_role("button", name="<i onmouseover=alert(5)>x</i>").hover()
    assert dialogs == []


# --- the conversation survives ---------------------------------------------------------------


def test_a_reload_shows_the_history_read_back_from_the_server(new_page):
    page = new_page()
    ask(page, "Which degrees can international students study for?")
    expect(bot_said(page)).to_have_count(1)
    ask(page, "/lang")
    expect(page.locator(".quick-replies button")).to_have_count(5)
    page.locator(".quick-replies").get_by_role("button", name="English").click()
    expect(bot_said(page)).to_have_count(3)
    said_by_user, said_by_bot = user_said(page).all_inner_texts(), bot_said(page).all_inner_texts()
    assert said_by_user == ["Which degrees can international students study for?", "/lang", "English"]

    page.reload()
    expect(user_said(page)).to_have_text(said_by_user)
    expect(bot_said(page)).to_have_text(said_by_bot)
    expect(page.locator(".quick-replies button")).to_have_count(5)  # still there to press
    expect(page.get_by_role("button", name=say("web_suggestion_1", "en"))).to_be_hidden()

    # another browser holding only the sender id: the history comes from Rasa's tracker store
    elsewhere = new_page(sender=sender_of(page))
    expect(user_said(elsewhere)).to_have_text(said_by_user)
    expect(bot_said(elsewhere)).to_have_text(said_by_bot)
    # a new visitor starts afresh
    stranger = new_page()
    expect(stranger.get_by_role("button", name=say("web_suggestion_1", "en"))).to_be_visible()
    expect(stranger.locator(".message")).to_have_count(0)
    assert sender_of(stranger) != sender_of(page)


def test_when_rasa_is_down_the_page_says_so_keeps_everything_and_recovers(browser: Browser, own_servers):
    servers = own_servers(web=True)
    context = browser.new_context(locale="en-GB")
    page = context.new_page()
    page.goto(servers.web_url + "/")
    ask(page, "Where is the international office?")
    expect(bot_said(page)).to_have_count(1)
    rasa = servers.process("Rasa server")
    rasa.stop()
    try:
        ask(page, "Which degrees are open to international students?")
        expect(page.get_by_role("alert")).to_have_text(say("web_unreachable", "en"))
        expect(page.locator(".message.pending")).to_contain_text(say("web_pending", "en"))
        page.get_by_role("textbox").fill(
            "What is the postal address of the international office?"
        )  # typed, not sent yet
        page.reload()
        expect(page.get_by_role("alert")).to_have_text(say("web_unreachable", "en"))
        expect(user_said(page)).to_have_text(["Which degrees are open to international students?"])
        expect(page.get_by_role("textbox")).to_have_value("What is the postal address of the international office?")
    finally:
        rasa.start()
        servers.wait_ready(240)
    # the page retries on its own: the history comes back, then the answer to the waiting message
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(user_said(page)).to_have_text(
        ["Where is the international office?", "Which degrees are open to international students?"]
    )
    expect(bot_said(page)).to_have_count(2)
    expect(bot_said(page).last).to_have_text(say("ask_degrees", "en"))
    expect(page.locator(".message.pending")).to_have_count(0)
    page.get_by_role("textbox").press("Enter")
    expect(bot_said(page)).to_have_count(3)
    expect(bot_said(page).last).to_contain_text("210003")
    context.close()


# --- the embed snippet ---------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "ru"])
def test_over_the_rate_limit_the_page_asks_to_wait_politely_and_sends_later(new_page, language):
    locale = {"en": "en-GB", "ru": "ru-RU"}[language]
    page = new_page(locale=locale)
    refused: list[str] = []

    def too_fast(route: Route) -> None:  # the server's answer over the limit, once
        refused.append(route.request.url)
        page.unroute("**/api/message", too_fast)
        route.fulfill(status=429, headers={"Retry-After": "2"}, json={"error": "too many requests"})

    page.route("**/api/message", too_fast)
    question = {"en": "Where is the international office?", "ru": "Где находится международный отдел?"}[language]
    ask(page, question)
    expect(page.get_by_role("alert")).to_have_text(say("web_rate_limited", language))
    expect(page.locator(".message.pending")).to_have_count(1)
    # after Retry-After the page sends it again by itself, and the answer comes
    expect(bot_said(page)).to_contain_text(["210003"])
    expect(page.get_by_role("alert")).to_be_hidden()
    assert len(refused) == 1


def _office_site(browser: Browser, servers: Servers, origin: str) -> Page:
    """A page of another site (``origin``, served by Playwright) with the embed snippet."""
    context = browser.new_context(locale="en-GB")
    page = context.new_page()
    html = (
        '<html lang="fr"><body><h1>Site du bureau</h1>'
        f'<script src="{servers.web_url}/embed.js" defer></script></body></html>'
    )
    page.route(f"{origin}/", lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto(f"{origin}/")
    return page


def test_the_embed_snippet_opens_the_chat_on_another_site(browser: Browser, servers: Servers):
    page = _office_site(browser, servers, OFFICE_SITE)  # listed in WEB_FRAME_ANCESTORS
    context = page.context
    opener = page.get_by_role("button", name=say("web_open_chat", "fr"))
    expect(opener).to_have_attribute("aria-expanded", "false")
    expect(page.locator("iframe")).to_have_count(0)  # nothing loaded until asked
    opener.click()
    closer = page.get_by_role("button", name=say("web_close_chat", "fr"))
    expect(closer).to_have_attribute("aria-expanded", "true")
    expect(page.locator("iframe")).to_have_attribute("title", say("web_page_title", "fr"))
    chat = page.frame_locator("iframe")
    expect(chat.get_by_role("log")).to_be_attached()
    expect(chat.get_by_text(say("web_welcome", "fr"))).to_be_visible()
    chat.get_by_role("textbox").fill("Quelle est l'adresse postale du bureau ?")
    chat.get_by_role("textbox").press("Enter")
    expect(chat.locator(".message.bot .bubble")).to_contain_text("210003")
    chat.get_by_role("textbox").press("Escape")  # in the chat: the panel closes
    expect(page.locator("iframe")).to_be_hidden()
    expect(opener).to_be_focused()
    context.close()


def test_a_site_not_listed_in_frame_ancestors_cannot_show_the_chat(browser: Browser, servers: Servers):
    page = _office_site(browser, servers, "http://elsewhere.example")
    with page.expect_console_message(lambda message: "frame-ancestors" in message.text, timeout=30_000):
        page.get_by_role("button", name=say("web_open_chat", "fr")).click()
    expect(page.frame_locator("iframe").get_by_role("log")).to_have_count(0)
    page.context.close()


# --- the API behind the page (no browser) ------------------------------------------------------


def test_the_history_is_rebuilt_from_the_tracker_events():
    buttons = [{"title": "Français", "payload": '/change_language{"language":"fr"}'}]
    yes = [{"title": "Oui", "payload": "/affirm"}]
    hint = {"language": "en-GB"}  # the interface language the page sent the message in
    events = [
        {"event": "action", "name": "action_session_start"},
        {"event": "session_started"},
        {"event": "user", "text": "/lang", "metadata": hint},
        {"event": "slot", "name": "language", "value": "en"},
        {"event": "bot", "text": "Which language?", "data": {"buttons": buttons}, "metadata": {"language": "en"}},
        {"event": "action", "name": "action_listen"},
        {"event": "user", "text": '/change_language{"language":"fr"}', "metadata": hint},
        {"event": "bot", "text": "D'accord ?", "data": {"buttons": yes}, "metadata": {"language": "fr"}},
        {"event": "user", "text": "/affirm", "metadata": hint},
        {"event": "user", "text": '/change_language{"language": "ru"}'},
        {"event": "bot", "text": "", "data": {}},
        {"event": "user", "text": XSS, "metadata": {"language": "xx"}},
        {"event": "bot", "text": "?", "data": {}, "metadata": {"language": "xx"}},
    ]
    assert conversation(events) == [
        {"role": "user", "text": "/lang", "buttons": [], "language": "en"},
        {"role": "bot", "text": "Which language?", "buttons": buttons, "language": "en"},
        {"role": "user", "text": "Français", "buttons": [], "language": "fr"},
        {"role": "bot", "text": "D'accord ?", "buttons": yes, "language": "fr"},
        {"role": "user", "text": "Oui", "buttons": [], "language": "fr"},  # the button's language
        {"role": "user", "text": "Русский", "buttons": [], "language": "ru"},
        {"role": "user", "text": XSS, "buttons": [], "language": None},
        {"role": "bot", "text": "?", "buttons": [], "language": None},
    ]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_rasa_allows_the_page_origin_only(servers: Servers):
    assert servers.cors == servers.web_url
    _, headers, _ = _get(servers.rasa_url + "/", {"Origin": servers.web_url})
    assert headers.get("Access-Control-Allow-Origin") == servers.web_url
    _, headers, _ = _get(servers.rasa_url + "/", {"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers


def test_the_web_api_reads_only_web_conversations_and_keeps_the_tokens(servers: Servers, chat):
    chat(sender="42").ask("hello")  # a conversation of another client of the REST channel
    for sender in ("42", "alice", "web-short", "web-" + "x" * 200, "telegram-42"):
        status, _, _ = _get(f"{servers.web_url}/api/history/{sender}")
        assert status == 404, sender
    status, _, _ = _get(f"{servers.rasa_url}/conversations/42/tracker")
    assert status == 401  # Rasa's admin API needs its token, which the web process does not have
    status, headers, body = _get(servers.web_url + "/")
    assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    for token in (servers.auth_token, *servers.channel_tokens.values()):
        assert token.encode() not in body


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_suggested_questions_are_answered_from_the_facts(chat, language):
    user = chat(language_hint=language)
    expected = {1: "ask_joint_programmes", 2: "ask_degrees", 3: "ask_address", 4: "ask_visit"}
    for n, key in expected.items():
        first = user.send(say(f"web_suggestion_{n}", language))[0]["text"]  # a visit answer adds an offer
        assert first == say(key, language), (n, language)


def test_every_web_text_exists_in_every_language():
    keys = {key for key in texts().by_language["en"] if key.startswith("web_")}
    assert {"web_welcome", "web_placeholder", "web_send", "web_unreachable"} <= keys
    for language in LANGUAGES:
        for key in keys:
            assert say(key, language).strip(), (key, language)
        assert not re.search(r"https?://", " ".join(say(key, language) for key in keys))
