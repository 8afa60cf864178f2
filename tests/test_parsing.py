"""Reading dates as people write them (bot/core/parsing.py), in every language, with a fixed today."""

import datetime as dt
import time

import pytest
import yaml

from bot.core import languages, parsing
from bot.core.parsing import DateAnswer, office_today, parse_date, read_dates

from .conftest import LANGUAGES

TODAY = dt.date(2026, 12, 2)  # a Wednesday
MONDAY = dt.date(2026, 12, 7)  # the next Monday, and the Monday of next week
TOMORROW = dt.date(2026, 12, 3)
MAY_10, MAY_14 = dt.date(2027, 5, 10), dt.date(2027, 5, 14)

SINGLE = {  # 10 May 2027, as people write it in each language
    "en": ["10 May 2027", "May 10, 2027", "2027-05-10", "10th May 2027", "on 10 May 2027 please"],
    "zh-Hans": ["2027年5月10日", "2027年5月10号", "2027-05-10", "2027 年 5 月 10 日"],
    "zh-Hant": ["2027年5月10日", "2027年5月10號", "2027-05-10"],
    "ru": ["10 мая 2027", "10 мая 2027 г.", "10 мая 2027 года", "2027-05-10", "с 10 мая 2027"],
    "fr": ["10 mai 2027", "le 10 mai 2027", "lundi 10 mai 2027", "2027-05-10", "10 mai 2027 svp"],
}
RANGE = {  # 10 to 14 May 2027
    "en": ["from 10 May 2027 to 14 May 2027", "10–14 May 2027", "10-14 May 2027", "May 10–14, 2027",
           "from 10 to 14 May 2027", "2027-05-10 to 2027-05-14"],
    "zh-Hans": ["2027年5月10日至14日", "2027年5月10日到5月14日", "2027年5月10号-14号", "5月10日至5月14日"],
    "zh-Hant": ["2027年5月10日至14日", "2027年5月10日到5月14日", "5月10號到14號"],
    "ru": ["с 10 по 14 мая 2027", "10–14 мая 2027", "с 10 мая 2027 по 14 мая 2027"],
    "fr": ["du 10 au 14 mai 2027", "10-14 mai 2027", "du 10 mai 2027 au 14 mai 2027"],
}  # fmt: skip
RELATIVE = {  # (text, the day it means when today is TODAY)
    "en": [("next Monday", MONDAY), ("Monday next week", MONDAY), ("tomorrow", TOMORROW), ("May 10", MAY_10),
           ("in 3 days", dt.date(2026, 12, 5))],
    "zh-Hans": [("下周一", MONDAY), ("明天", TOMORROW), ("5月10号", MAY_10), ("5月10日", MAY_10)],
    "zh-Hant": [("下週一", MONDAY), ("明天", TOMORROW), ("5月10號", MAY_10), ("5月10日", MAY_10)],
    "ru": [("в следующий понедельник", MONDAY), ("завтра", TOMORROW), ("10 мая", MAY_10)],
    "fr": [("lundi prochain", MONDAY), ("demain", TOMORROW), ("10 mai", MAY_10), ("le 10 mai", MAY_10)],
}  # fmt: skip
NOT_DATES = ["next year maybe", "", "   ", "🙂👍", "🗓️", "soon", "next week", "May 2027", "2027", "31 February 2027",
             "31.02.2027", "10 Foo 2027", "I have 10 questions", "x" * 20_000]  # fmt: skip


def rows(table):
    return [
        (language, *([item] if isinstance(item, str) else item)) for language, items in table.items() for item in items
    ]


@pytest.mark.parametrize("language, text", rows(SINGLE))
def test_a_single_date(language, text):
    assert read_dates(text, language, TODAY) == DateAnswer(MAY_10)


@pytest.mark.parametrize("language, text", rows(RANGE))
def test_a_range_fills_both_dates(language, text):
    assert read_dates(text, language, TODAY) == DateAnswer(MAY_10, MAY_14)


@pytest.mark.parametrize("language, text, expected", rows(RELATIVE))
def test_relative_and_partial_dates(language, text, expected):
    assert read_dates(text, language, TODAY) == DateAnswer(expected)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("text", NOT_DATES)
def test_what_is_not_a_date(language, text):
    assert read_dates(text, language, TODAY) == DateAnswer(None)


@pytest.mark.parametrize("language", LANGUAGES)
def test_numbers_that_could_be_day_or_month_are_asked_back(language):
    answer = read_dates("05/06/2027", language, TODAY)
    assert answer == DateAnswer(dt.date(2027, 6, 5), ambiguous=True, alternative=dt.date(2027, 5, 6))
    assert read_dates("13/06/2027", language, TODAY) == DateAnswer(dt.date(2027, 6, 13))  # a day over 12
    assert read_dates("06/13/2027", language, TODAY) == DateAnswer(dt.date(2027, 6, 13))
    assert read_dates("06.06.2027", language, TODAY) == DateAnswer(dt.date(2027, 6, 6))  # both readings agree


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_year_left_out_is_the_next_such_day_not_in_the_past(language):
    text = {"en": "May 10", "zh-Hans": "5月10号", "zh-Hant": "5月10號", "ru": "10 мая", "fr": "10 mai"}[language]
    assert read_dates(text, language, dt.date(2027, 5, 10)).start == dt.date(2027, 5, 10)  # today counts
    assert read_dates(text, language, dt.date(2027, 5, 11)).start == dt.date(2028, 5, 10)
    assert read_dates(text, language, dt.date(2027, 1, 1)).start == dt.date(2027, 5, 10)


def test_a_range_across_the_new_year():
    assert read_dates("28 December to 3 January", "en", TODAY) == DateAnswer(dt.date(2026, 12, 28), dt.date(2027, 1, 3))
    assert read_dates("12月28日至1月3日", "zh-Hans", TODAY) == DateAnswer(dt.date(2026, 12, 28), dt.date(2027, 1, 3))


def test_next_weekday_is_after_today():
    monday = dt.date(2026, 12, 7)
    assert read_dates("next Monday", "en", monday).start == dt.date(2026, 12, 14)
    assert read_dates("下周一", "zh-Hans", dt.date(2026, 12, 6)).start == monday  # on Sunday: tomorrow


# --- a sixth language: data only -----------------------------------------------------------


@pytest.fixture
def with_german(tmp_path, monkeypatch):
    """data/languages.yml plus German, as the README's "Adding a language" adds it: no date words in code."""
    data = yaml.safe_load(parsing.LANGUAGES_FILE.read_text(encoding="utf-8"))
    data["languages"]["de"] = {"lingua": "DE", "aliases": ["de-de"], "names": ["german", "deutsch"]}
    data["detect_also"] = [c for c in data["detect_also"] if c != "DE"]
    path = tmp_path / "languages.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(parsing, "LANGUAGES_FILE", path)
    monkeypatch.setattr(parsing, "registry", lambda: languages.load_registry(path))
    parsing._date_languages.cache_clear()
    yield
    parsing._date_languages.cache_clear()


@pytest.mark.parametrize(
    "text, expected",
    [("10. Mai 2027", DateAnswer(MAY_10)), ("10.-14. Mai 2027", DateAnswer(MAY_10, MAY_14)),
     ("vom 10. bis 14. Mai 2027", DateAnswer(MAY_10, MAY_14)), ("nächsten Montag", DateAnswer(MONDAY)),
     ("morgen", DateAnswer(TOMORROW)), ("10. Mai", DateAnswer(MAY_10)), ("vielleicht nächstes Jahr", DateAnswer(None))],
)  # fmt: skip
def test_a_sixth_language_reads_dates_from_data_alone(with_german, text, expected):
    assert read_dates(text, "de", TODAY) == expected


# --- time zones, limits and the old API ------------------------------------------------------


@pytest.fixture
def machine_time_zone(monkeypatch):
    def set_zone(name):
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


SAMPLES = ["tomorrow", "next Monday", "May 10", "10–14 May 2027", "05/06/2027"]


def test_the_machines_time_zone_changes_nothing(machine_time_zone):
    results = []
    for zone in ("UTC", "Pacific/Kiritimati", "America/Adak", "Asia/Shanghai"):  # UTC+14 ... UTC-10
        machine_time_zone(zone)
        results.append([read_dates(text, "en", TODAY) for text in SAMPLES])
        results.append([read_dates(text, "en") for text in SAMPLES])  # today: the office's
    assert results[0] == results[2] == results[4] == results[6]
    assert results[1] == results[3] == results[5] == results[7]


def test_today_is_the_offices_day():
    late_evening_utc = dt.datetime(2026, 12, 2, 20, 0, tzinfo=dt.timezone.utc)  # 04:00 on 3 Dec in Nanjing
    assert office_today(late_evening_utc) == dt.date(2026, 12, 3)
    assert office_today(dt.datetime(2026, 12, 2, 15, 59, tzinfo=dt.timezone.utc)) == dt.date(2026, 12, 2)


@pytest.mark.parametrize("text", ["x" * 20_000, "10 May 2027 " * 2_000, "5" * 20_000, "年月日" * 7_000])
def test_a_long_message_is_not_a_date_and_is_not_even_searched(text, monkeypatch):
    monkeypatch.setattr(parsing, "_search", lambda *args: pytest.fail("searched a 20,000-character message"))
    assert read_dates(text, "en", TODAY) == DateAnswer(None)


@pytest.mark.parametrize("language", ["EN-us", "zh_TW", "zh-CN", "ru-RU", "fr-CA", "xx", None])
def test_language_codes_and_aliases(language):
    assert read_dates("2027-05-10", language, TODAY).start == MAY_10


# The forms' callers: one date, in any of the bot's languages (moved here from tests/test_forms.py).
@pytest.mark.parametrize("text", ["2027-05-10", "10/05/2027", "10.05.2027", "May 10, 2027", "10 May 2027",
                                  "2027年5月10日", "10 mai 2027", "10 мая 2027", "10 мая 2027 г."])  # fmt: skip
def test_parse_date_reads_every_language_and_common_formats(text):
    assert parse_date(text) == MAY_10


@pytest.mark.parametrize("text", ["next week", "31 February 2027", "2027", "10 Foo 2027", ""])
def test_parse_date_of_what_is_not_a_date(text):
    assert parse_date(text) is None


def test_an_unknown_dateparser_language_is_named_with_its_file_and_field(tmp_path, monkeypatch):
    data = yaml.safe_load(parsing.LANGUAGES_FILE.read_text(encoding="utf-8"))
    data["languages"]["ru"]["dates"] = "xx-nowhere"
    path = tmp_path / "languages.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(parsing, "LANGUAGES_FILE", path)
    parsing._date_languages.cache_clear()
    try:
        with pytest.raises(parsing.DateLanguageError, match=r"languages\.yml: languages\.ru\.dates: .*'xx-nowhere'"):
            read_dates("10 мая 2027", "ru", TODAY)
    finally:
        monkeypatch.undo()
        parsing._date_languages.cache_clear()
