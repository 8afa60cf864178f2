"""Which language the bot answers in (bot/languages.py): the rules, one by one."""

import pytest

from bot.core.languages import choose, detect, registry, requested_language


def test_registry_lists_the_five_languages():
    assert registry().codes == ["en", "zh-Hans", "zh-Hant", "ru", "fr"]


@pytest.mark.parametrize(
    "hint, expected",
    [("zh-CN", "zh-Hans"), ("zh_TW", "zh-Hant"), ("zh-HK", "zh-Hant"), ("zh", "zh-Hans"),
     ("ru-RU", "ru"), ("fr-CA", "fr"), ("EN-us", "en"), ("de-DE", None), ("", None), (None, None), (42, None)],
)  # fmt: skip
def test_hints_are_normalized(hint, expected):
    assert registry().normalize(hint) == expected


# Rule 1: an explicit request switches the language.
@pytest.mark.parametrize(
    "text, expected",
    [("Can you answer in Chinese?", "zh-Hans"), ("请用英文回答", "en"), ("Parlez-vous français ?", "fr"),
     ("по-русски, пожалуйста", "ru"), ("можно на английском?", "en"), ("/lang ru", "ru"),
     ("/lang zh-tw", "zh-Hant"), ("改成繁體中文", "zh-Hant"), ("tu peux répondre en russe", "ru"),
     ("hello", None), ("/lang klingon", None)],
)  # fmt: skip
def test_explicit_requests_name_the_language(text, expected):
    assert requested_language(text) == expected


def test_explicit_request_wins_over_everything():
    assert choose("请用英文回答", current="zh-Hans", hint="zh-CN", explicit="en").language == "en"


# Rule 2: a confidently detected language sets it.
@pytest.mark.parametrize(
    "text, expected",
    [("Where is the international office?", "en"), ("南邮国际处在哪里", "zh-Hans"),
     ("請問國際處的地址在哪裡", "zh-Hant"), ("Какой адрес у международного отдела?", "ru"),
     ("Quelle est l'adresse du bureau international ?", "fr"), ("NJUPT的地址是什么", "zh-Hans"),
     ("What is 南邮's address?", "en")],
)  # fmt: skip
def test_confident_messages_set_the_language(text, expected):
    choice = choose(text, current="en" if expected != "en" else "ru", hint=None)
    assert (choice.language, choice.reason) == (expected, "detected")


# Rule 3: short or ambiguous messages keep the current language.
@pytest.mark.parametrize("text", ["ok", "NYIT?", "2027", "😀", "Alice", "", "   ", "QMUL"])
def test_short_or_ambiguous_messages_keep_the_language(text):
    assert detect(text).language is None
    assert choose(text, current="ru", hint="fr").language == "ru"


def test_chinese_without_script_clues_keeps_the_chinese_variant():
    # 你好 is written the same in both scripts
    assert choose("你好", current="zh-Hant", hint=None).language == "zh-Hant"
    assert choose("你好", current="en", hint="zh-TW").language == "zh-Hant"
    assert choose("你好", current=None, hint=None).language == "zh-Hans"


# Rule 4: before a confident message, the channel's hint.
def test_hint_is_used_before_the_first_confident_message():
    choice = choose("ok", current=None, hint="ru-RU")
    assert (choice.language, choice.reason) == ("ru", "hint")


# Rule 5: otherwise English.
def test_default_is_english():
    assert choose("ok", current=None, hint=None).language == "en"
    assert choose("ok", current=None, hint="de").language == "en"


# Rule 6: an unsupported language is recognised, not guessed.
@pytest.mark.parametrize(
    "text, iso",
    [("Wie komme ich zur Universität in Nanjing?", "DE"), ("日本語で話せますか", "JA"),
     ("¿Dónde está la oficina internacional de la universidad?", "ES")],
)  # fmt: skip
def test_unsupported_languages_are_recognised(text, iso):
    choice = choose(text, current=None, hint="fr")
    assert choice.unsupported == iso
    assert choice.language == "fr"  # answered in the hinted language


def test_a_conversation_that_switches_twice():
    current = None
    for text, expected in [
        ("Hello, what joint programmes do you have?", "en"),
        ("ok", "en"),
        ("南邮有哪些合作大学？", "zh-Hans"),
        ("NYIT?", "zh-Hans"),
        ("Parlez-vous français ?", "fr"),
        ("2027", "fr"),
    ]:
        explicit = requested_language(text) if "?" in text and "français" in text else None
        choice = choose(text, current=current, hint="en", explicit=explicit)
        assert choice.language == expected, text
        current = choice.language
