"""The web chat's accessibility: WCAG 2.2 AA, checked by axe-core and by the tests below.

    .venv/bin/pytest tests/test_web_a11y.py

axe-core 4.x is vendored in ``tests/vendor/axe-core/`` (``axe.min.js`` and its
licence, MPL-2.0, from the npm package; see the README there). The tests run it
in the page with Playwright's ``evaluate`` (the DevTools protocol), so the page
is served with its own Content-Security-Policy, unchanged: no inline script, no
CDN. Every axe rule that is on by default runs, plus ``target-size`` (WCAG 2.2,
2.5.8), and a test passes only with no violation at all, whatever its impact.

What axe cannot judge is measured here from the page itself: the ``lang`` of
each message, the language selector sending one switch per choice, 44x44 touch
targets, and contrasts computed from the computed CSS colours. Chromium and the
servers are those of tests/test_web.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from bot.core.texts import say

from . import test_web
from .conftest import LANGUAGES
from .test_web import ask, bot_said, user_said

pytestmark = pytest.mark.e2e

# The fixtures of tests/test_web.py: one Chromium for this module, a fresh profile per page.
browser, new_page, page = test_web.browser, test_web.new_page, test_web.page

AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
AXE_OPTIONS = {"rules": {"target-size": {"enabled": True}}, "resultTypes": ["violations"]}

LOCALES = {"en": "en-GB", "zh-Hans": "zh-CN", "zh-Hant": "zh-TW", "ru": "ru-RU", "fr": "fr-FR"}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True}
SMALL_PHONE = {"viewport": {"width": 320, "height": 568}, "is_mobile": True, "has_touch": True}
SCREENS = {"desktop": DESKTOP, "375x740": PHONE, "320x568": SMALL_PHONE}

# A question of the first language; one of another language for each interface language.
OTHER_LANGUAGE = {
    "en": "国际处的地址在哪里？",
    "zh-Hans": "What is the postal address of the international office?",
    "zh-Hant": "Quelle est l'adresse postale du bureau international ?",
    "ru": "南邮和哪些国外大学合作办学？",
    "fr": "Какие степени могут получить иностранные студенты?",
}
LANGUAGE_NAMES = {"en": "English", "zh-Hans": "简体中文", "zh-Hant": "繁體中文", "ru": "Русский", "fr": "Français"}


# --- helpers ------------------------------------------------------------------------


def axe_violations(page: Page) -> list[str]:
    """axe-core's violations on the page as it is, one line each (empty: none)."""
    page.evaluate(AXE)
    result = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
    return [
        f"{v['id']} ({v['impact']}): {v['help']}: {[n['target'] for n in v['nodes']]}" for v in result["violations"]
    ]


def watch_csp(page: Page) -> list[str]:
    """Content-Security-Policy violations reported by the page (none expected: axe runs outside it)."""
    reports: list[str] = []
    page.on("console", lambda m: reports.append(m.text) if "Content Security Policy" in m.text else None)
    return reports


def converse(page: Page, language: str) -> None:
    """A suggested question (the interface language), one in another language, then quick replies."""
    page.get_by_role("button", name=say("web_suggestion_3", language)).click()
    expect(bot_said(page)).to_have_count(1)
    ask(page, OTHER_LANGUAGE[language])
    expect(bot_said(page)).to_have_count(2)
    ask(page, "/lang")
    expect(page.locator(".quick-replies").last.get_by_role("button")).to_have_count(5)


def languages_of(page: Page, selector: str) -> list[str]:
    return page.locator(selector).evaluate_all("elements => elements.map(e => e.lang)")


def channel(color: str) -> tuple[float, ...]:
    """'rgb(1, 2, 3)' or 'rgba(1, 2, 3, 0.5)' to (r, g, b, alpha)."""
    values = [float(v) for v in re.findall(r"[\d.]+", color)]
    return (*values[:3], values[3] if len(values) > 3 else 1.0)


def blend(top: tuple[float, ...], bottom: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    return (*(alpha * t + (1 - alpha) * b for t, b in zip(top[:3], bottom[:3], strict=True)), 1.0)


def luminance(rgb: tuple[float, ...]) -> float:
    def linear(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


# In the page: the opaque colours behind an element (from `start`, itself or its parent, up):
# the first background colour, or every colour of a gradient.
BACKGROUNDS_JS = """
(el, start) => {
  for (let node = start === "self" ? el : el.parentElement; node; node = node.parentElement) {
    const style = getComputedStyle(node);
    const image = style.backgroundImage.match(/rgba?\\([^)]*\\)/g);
    if (image) return image;
    if (!/^rgba\\(.*,\\s*0\\)$/.test(style.backgroundColor) && style.backgroundColor !== "transparent") {
      return [style.backgroundColor];
    }
  }
  return ["rgb(255, 255, 255)"];
}
"""

# In the page: what has the keyboard focus, its focus ring, and the colours around the ring.
FOCUS_JS = (
    """
() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const inside = parseFloat(style.outlineOffset) < 0;
  return {
    what: el.tagName + (el.id ? "#" + el.id : "") + " " + (el.className || "") + " " + el.textContent.slice(0, 30),
    visible: el.matches(":focus-visible"),
    style: style.outlineStyle,
    width: parseFloat(style.outlineWidth),
    color: style.outlineColor,
    around: ("""
    + BACKGROUNDS_JS
    + """)(el, inside ? "self" : "parent"),
  };
}
"""
)


# --- axe ------------------------------------------------------------------------------


def assert_no_violation_on_every_screen(page: Page, when: str) -> None:
    for screen, options in SCREENS.items():
        page.set_viewport_size(options["viewport"])
        assert not (found := axe_violations(page)), f"{when}, {screen}:\n" + "\n".join(found)


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_axe_violation_at_load_and_after_a_conversation_in_two_languages(new_page, language):
    """In each interface language, on a desktop and at 375x740 and 320x568 (the same page
    resized; with a touch screen: test_touch_targets_are_at_least_44_by_44_on_a_touch_screen)."""
    page = new_page(locale=LOCALES[language], **DESKTOP)
    csp = watch_csp(page)
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(page.get_by_role("button", name=say("web_suggestion_1", language))).to_be_visible()
    assert_no_violation_on_every_screen(page, f"{language} at load")
    page.set_viewport_size(DESKTOP["viewport"])
    converse(page, language)
    assert_no_violation_on_every_screen(page, f"{language} after a conversation")
    assert csp == []


def test_no_axe_violation_while_the_bot_cannot_be_reached(new_page):
    page = new_page()
    page.route("**/api/message", lambda route: route.fulfill(status=503, json={"error": "unreachable"}))
    ask(page, "Where is the international office?")
    expect(page.get_by_role("alert")).to_have_text(say("web_unreachable", "en"))
    expect(page.locator(".message.pending")).to_contain_text(say("web_pending", "en"))
    assert not (found := axe_violations(page)), "\n".join(found)


# --- the language of each message -----------------------------------------------------


def test_each_message_has_the_lang_of_its_text_and_keeps_its_speaker_label(new_page):
    page = new_page(locale="en-GB")
    ask(page, "What is the postal address of the international office?")
    expect(bot_said(page)).to_have_count(1)
    ask(page, "南邮和哪些国外大学合作办学？")  # Chinese typed in an English interface
    expect(bot_said(page)).to_have_count(2)
    ask(page, "Какие степени могут получить иностранные студенты?")
    expect(bot_said(page)).to_have_count(3)
    # The user's messages: the interface language, unless the script says Chinese or Russian.
    # The bot's: the language it answered in (its tag from /api/message).
    assert languages_of(page, ".message.user") == ["en", "zh", "ru"]
    assert languages_of(page, ".message.bot") == ["en", "zh-Hans", "ru"]
    assert set(languages_of(page, ".message .speaker")) == {"en"}

    # The interface in French: the switch is a message in French; earlier labels stay English.
    page.get_by_role("combobox", name=say("web_language_label", "en")).select_option("fr")
    expect(bot_said(page)).to_have_count(4)
    expect(bot_said(page).last).to_have_text(say("language_switched", "fr"))
    assert languages_of(page, ".message.user") == ["en", "zh", "ru", "fr"]
    assert languages_of(page, ".message.bot") == ["en", "zh-Hans", "ru", "fr"]
    speakers = page.locator(".message .speaker")
    assert languages_of(page, ".message .speaker") == ["en"] * 6 + ["fr"] * 2
    expect(speakers).to_have_text(
        [say("web_you", "en"), say("web_bot", "en")] * 3 + [say("web_you", "fr"), say("web_bot", "fr")]
    )

    ask(page, "/lang")  # quick replies: each language's name in its own language
    buttons = page.locator(".quick-replies").last.get_by_role("button")
    expect(buttons).to_have_text(list(LANGUAGE_NAMES.values()))
    assert buttons.evaluate_all("elements => elements.map(e => e.lang)") == list(LANGUAGE_NAMES)
    assert languages_of(page, ".quick-replies") == ["fr"]  # its name, "Suggested replies", is French
    buttons.filter(has_text="Русский").click()
    expect(bot_said(page)).to_have_count(6)
    expect(bot_said(page).last).to_have_text(say("language_switched", "ru"))
    users, bots = languages_of(page, ".message.user"), languages_of(page, ".message.bot")
    assert users == ["en", "zh", "ru", "fr", "fr", "ru"] and bots[-1] == "ru"

    page.reload()  # read back from the tracker: the same languages
    expect(bot_said(page)).to_have_count(6)
    assert languages_of(page, ".message.user") == users
    assert languages_of(page, ".message.bot") == bots
    assert not (found := axe_violations(page)), "\n".join(found)


def test_a_chinese_interface_tags_chinese_messages_with_its_own_script(new_page):
    page = new_page(locale="zh-TW")
    page.get_by_role("button", name=say("web_suggestion_2", "zh-Hant")).click()
    expect(bot_said(page)).to_have_count(1)
    ask(page, "國際處的地址在哪裡？")
    expect(bot_said(page)).to_have_count(2)
    ask(page, "Где находится международный офис?")
    expect(bot_said(page)).to_have_count(3)
    assert languages_of(page, ".message.user") == ["zh-Hant", "zh-Hant", "ru"]
    assert languages_of(page, ".message.bot") == ["zh-Hant", "zh-Hant", "ru"]


# --- the language selector ---------------------------------------------------------------


def test_choosing_a_language_with_the_keyboard_sends_one_switch(new_page):
    page = new_page(locale="en-GB")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.post_data_json["message"]) if r.url.endswith("/api/message") else None)
    ask(page, "What is the postal address of the international office?")
    expect(bot_said(page)).to_have_count(1)
    selector = page.get_by_role("combobox")  # named "Language", then "Язык"
    for _ in range(10):  # from the text box back to the selector, by the keyboard alone
        page.keyboard.press("Shift+Tab")
        if selector.evaluate("el => el === document.activeElement"):
            break
    for _ in range(4):  # Automatic, English, 简体中文, 繁體中文, Русский
        page.keyboard.press("ArrowDown")
    expect(selector).to_have_value("ru")
    # Stepping through the options changes nothing yet: no message, the page still in English.
    expect(user_said(page)).to_have_count(1)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.keyboard.press("Enter")
    expect(user_said(page).last).to_have_text("Русский")
    expect(bot_said(page)).to_have_count(2)
    expect(bot_said(page).last).to_have_text(say("language_switched", "ru"))
    expect(page.locator("html")).to_have_attribute("lang", "ru")

    page.keyboard.press("ArrowDown")  # Français ...
    page.keyboard.press("Escape")  # ... no: back to Русский
    expect(selector).to_have_value("ru")
    page.keyboard.press("ArrowUp")  # 繁體中文, committed by leaving the selector
    page.keyboard.press("Tab")
    expect(user_said(page).last).to_have_text("繁體中文")
    expect(bot_said(page)).to_have_count(3)
    switches = [m for m in sent if m.startswith("/change_language")]
    assert switches == ['/change_language{"language":"ru"}', '/change_language{"language":"zh-Hant"}']
    assert len(sent) == 3


# --- touch targets --------------------------------------------------------------------


TARGETS_JS = """
() => [...document.querySelectorAll("button, select, input, textarea, a[href], [tabindex]")]
  .filter((el) => el.getClientRects().length && !el.closest(".bubble")) // links in a text: inline, exempt
  .map((el) => {
    const box = el.getBoundingClientRect();
    return { what: el.tagName + " " + el.textContent.trim().slice(0, 30), width: box.width, height: box.height };
  })
"""


@pytest.mark.parametrize("screen", ["375x740", "320x568"])
def test_touch_targets_are_at_least_44_by_44_on_a_touch_screen(new_page, screen):
    page = new_page(locale="ru-RU", **SCREENS[screen])
    assert page.evaluate("matchMedia('(pointer: coarse)').matches")
    expect(page.get_by_role("button", name=say("web_suggestion_1", "ru"))).to_be_visible()
    at_load = page.evaluate(TARGETS_JS)
    assert not (found := axe_violations(page)), "\n".join(found)
    converse(page, "ru")
    after = page.evaluate(TARGETS_JS)
    assert not (found := axe_violations(page)), "\n".join(found)
    assert len(after) >= 9  # the selector, the log, 5 quick replies, the text box, Send
    small = [t for t in at_load + after if t["width"] < 44 or t["height"] < 44]
    assert small == []


# --- contrast -------------------------------------------------------------------------


def test_the_focus_ring_has_3_to_1_against_what_is_around_it(page: Page):
    reply = [
        {
            "text": "See https://example.org/a for more.",
            "buttons": [{"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}],
            "language": "en",
        }
    ]
    page.route("**/api/message", lambda route: route.fulfill(json=reply))
    ask(page, "my site is https://example.org/b")  # a link in the user's (blue) bubble too
    expect(bot_said(page)).to_have_count(1)
    seen: list[dict] = []
    for _ in range(30):  # the whole page by Tab, until the focus comes back
        page.keyboard.press("Tab")
        ring = page.evaluate(FOCUS_JS)
        if ring["what"].startswith("BODY"):
            continue  # past the last control
        if seen and ring["what"] == seen[0]["what"]:
            break
        seen.append(ring)
    kinds = {ring["what"].split()[0] for ring in seen}
    assert {"SELECT#language", "DIV#scroller", "A", "BUTTON", "INPUT#message", "BUTTON#send"} <= kinds, kinds
    for ring in seen:
        assert ring["visible"] and ring["style"] == "solid" and ring["width"] >= 2, ring
        for around in ring["around"]:
            ratio = contrast(channel(ring["color"]), channel(around))
            assert ratio >= 3, (ring["what"], ring["color"], around, round(ratio, 2))


def test_the_placeholder_and_pending_messages_have_4_5_to_1(page: Page):
    box = page.get_by_role("textbox")
    expect(box).to_have_attribute("placeholder", say("web_placeholder", "en"))
    placeholder = box.evaluate(
        "el => { const p = getComputedStyle(el, '::placeholder');"
        " return [p.color, p.opacity, getComputedStyle(el).backgroundColor]; }"
    )
    color, opacity, background = placeholder
    text = blend(channel(color), channel(background), float(opacity) * channel(color)[3])
    assert contrast(text, channel(background)) >= 4.5, placeholder

    def unreachable(route: Route) -> None:
        route.fulfill(status=503, json={"error": "unreachable"})

    page.route("**/api/message", unreachable)
    ask(page, "Where is the international office?")
    pending = page.locator(".message.pending")
    expect(pending).to_contain_text(say("web_pending", "en"))
    for part, start in ((".bubble", "self"), (".state", "parent")):
        colours = pending.locator(part).evaluate(
            "(el, start) => { let opacity = 1;"
            " for (let n = el; n; n = n.parentElement) opacity *= parseFloat(getComputedStyle(n).opacity);"
            " return [getComputedStyle(el).color, opacity, (" + BACKGROUNDS_JS + ")(el, start)]; }",
            start,
        )
        color, opacity, (background,) = colours
        under = channel(page.evaluate("() => getComputedStyle(document.querySelector('.app')).backgroundColor"))
        back = blend(channel(background), under, opacity)  # the whole message faded, if it were
        fore = blend(channel(color), under, opacity * channel(color)[3])
        assert contrast(fore, back) >= 4.5, (part, colours)


def test_the_history_has_the_language_of_each_message(new_page):
    page = new_page(locale="fr-FR")
    ask(page, "Where is the international office?")  # in English, the interface in French
    expect(bot_said(page)).to_have_count(1)
    sender = json.loads(page.evaluate("localStorage.getItem('njupt-chat:sender')"))
    history = page.evaluate("url => fetch(url).then(r => r.json())", f"/api/history/{sender}")
    # The bot's reply: the language it answered in. The user's message: the interface language
    # it was sent in (the hint; the page itself reads Chinese or Cyrillic script, not Latin).
    assert [(m["role"], m["language"]) for m in history["messages"]] == [("user", "fr"), ("bot", "en")]
