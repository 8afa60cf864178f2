"""Pure helpers for the forms: dates and e-mail addresses as people type them.

No Rasa import, so they are tested in milliseconds.

Dates are read by dateparser, which knows the month and weekday names and the
relative words ("tomorrow", "下周", "lundi", "мая") of about 200 languages and
ships them inside the package (nothing is downloaded at run time). Which of its
languages serve each of the bot's languages is data: the ``dates`` field of
data/languages.yml. This module adds only what dateparser does not do, with
digits and punctuation, never the words of a language:

- numeric dates ("2027-05-10", "10.05.2027"); "05/06/2027" is ambiguous (5 June
  or 6 May) unless one of the numbers is over 12;
- ranges: two dates ("from 10 May 2027 to 14 May 2027"), or one date and a
  second day ("10–14 May 2027", "du 10 au 14 mai 2027", "10.-14. Mai 2027");
- numbers marked as year, month and day ("2027年5月10日至14日", "5月10号"), with
  the marks from data/languages.yml (``date_marks``): dateparser reads "10日"
  as "in ten days";
- a weekday in a shifted week ("下周一", "Monday next week");
- a date without its year ("May 10") is the next such date not in the past.

"Today" is the office's day (Asia/Shanghai) whatever the machine's time zone.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import yaml

from bot.core.languages import HAN, registry
from bot.core.paths import LANGUAGES_FILE

OFFICE_TZ = ZoneInfo("Asia/Shanghai")
# An answer longer than this is not a date (and is not worth parsing).
MAX_DATE_CHARS = 200
# dateparser's keys for the weekdays in its language data (its schema, not words of a language).
WEEKDAY_KEYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+$")
# 2027-05-10, 2027/5/10, 2027.05.10
_YMD = re.compile(r"(?<![\d.])(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?![\d])")
# 10.05.2027, 10/05/2027, 05-13-2027: day first unless the first number cannot be a day's month
_XXY = re.compile(r"(?<![\d.])(\d{1,2})([-/.])(\d{1,2})\2(\d{4})(?![\d])")
# "10–14 May", "10.-14. Mai", "10 au 14 mai", "May 10 to 14": two day numbers joined by a dash or one word
_DAY_PAIR = re.compile(r"(?<![\d.,:/-])(\d{1,2})\.?(?:\s*[-–—~]+\s*|\s+[^\W\d_]{1,8}\.?\s+)(\d{1,2})(?![\d:])")
_YEAR = re.compile(r"\d{4}")
# dateparser's translation of relative expressions ("in 1 day", "2 week ago")
_RELATIVE = re.compile(r"\b(?:ago|in|today|tomorrow|yesterday|now)\b")


@dataclass(frozen=True)
class DateAnswer:
    """What a date answer says: a day, a range of days, or nothing."""

    start: dt.date | None  # None: not a date
    end: dt.date | None = None  # the end of a range ("10–14 May 2027")
    ambiguous: bool = False  # e.g. "05/06/2027" read two ways: ask back once
    alternative: dt.date | None = None  # when ambiguous: start read month first (6 May for "05/06/2027")


NOT_A_DATE = DateAnswer(None)


def office_today(now: dt.datetime | None = None) -> dt.date:
    """Today in the office's time zone; ``now`` must be aware (default: the current instant)."""
    return (now or dt.datetime.now(dt.timezone.utc)).astimezone(OFFICE_TZ).date()


# --- the languages' date settings (data/languages.yml) ---------------------------


class DateLanguageError(ValueError):
    """data/languages.yml names a dateparser language that dateparser does not have."""


@dataclass(frozen=True)
class _DateLanguage:
    parsers: tuple[str, ...]  # dateparser language codes, tried in order
    marks: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None  # year, month, day marks


def _strings(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@functools.cache
def _date_languages() -> dict[str, _DateLanguage]:
    from dateparser.languages.loader import default_loader

    raw = yaml.safe_load(LANGUAGES_FILE.read_text(encoding="utf-8"))["languages"]
    result = {}
    for code, spec in raw.items():
        where = f"{LANGUAGES_FILE}: languages.{code}"
        parsers = _strings(spec.get("dates", code.split("-")[0].lower()))
        for parser in parsers:
            try:
                default_loader.get_locale(parser)
            except ValueError as error:
                raise DateLanguageError(f"{where}.dates: dateparser has no language {parser!r}") from error
        marks = spec.get("date_marks")
        if marks is not None:
            try:
                marks = tuple(_strings(marks[part]) for part in ("year", "month", "day"))
            except (KeyError, TypeError) as error:
                raise DateLanguageError(f"{where}.date_marks: expected year, month and day marks") from error
        result[code] = _DateLanguage(parsers, marks)
    return result


def _language(language: str | None) -> _DateLanguage:
    reg = registry()
    languages = _date_languages()
    own = languages[reg.normalize(language) or reg.default]
    default = languages[reg.default]
    # People also write in the default language (English) whatever the conversation's.
    extra = tuple(p for p in default.parsers if p not in own.parsers)
    return _DateLanguage(own.parsers + extra, own.marks)


# --- dateparser ------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    words: str  # as written in the message
    translated: str  # dateparser's English rendering
    date: dt.date | None
    period: str  # day, week, month, year


@functools.lru_cache(maxsize=4)
def _dateparser(today: dt.date):
    from dateparser import conf
    from dateparser.date import DateDataParser

    options = {
        # a naive base at noon: no time zone, neither the machine's nor any other, comes into play
        "RELATIVE_BASE": dt.datetime.combine(today, dt.time(12)),
        "PREFER_DATES_FROM": "future",
        "RETURN_AS_TIMEZONE_AWARE": False,
        "PARSERS": ["relative-time", "absolute-time"],  # no Unix timestamps
    }
    return conf.settings.replace(**options), DateDataParser(languages=["en"], settings=options)


def _search(text: str, parsers: tuple[str, ...], today: dt.date) -> list[_Found]:
    """The date expressions dateparser finds in ``text``, in the first language that finds any."""
    from dateparser.languages.loader import default_loader

    settings, english = _dateparser(today)
    for code in parsers:
        try:
            # dateparser's own search: translate into English, then parse each piece in English
            translated, words = default_loader.get_locale(code).translate_search(text, settings=settings)
        except IndexError:  # dateparser 1.2 stumbles on some Chinese texts
            continue
        found = []
        for english_text, original in zip(translated, words, strict=False):
            data = english.get_date_data(english_text)
            if not data.date_obj and len(english_text.split()) > 2 and len(original.split()) > 2:
                # a first word read as a unit ("с 10 мая": "second 10 may"): read the rest
                english_rest, original_rest = english_text.split(maxsplit=1)[1], original.split(maxsplit=1)[1]
                rest = english.get_date_data(english_rest)
                if rest.date_obj:
                    data, english_text, original = rest, english_rest, original_rest
            date = data.date_obj.date() if data.date_obj else None
            found.append(_Found(original.strip(), english_text, date, data.period))
        if any(f.date for f in found) or any(_weekday_in(f.translated) is not None for f in found):
            return found
    return []


def _weekday_in(translated: str) -> int | None:
    for index, key in enumerate(WEEKDAY_KEYS):
        if re.search(rf"\b{key}\b", translated):
            return index
    return None


def _weekday_named(text: str, parsers: tuple[str, ...]) -> int | None:
    """The one weekday named in ``text``, by dateparser's names ("周一" in "下周一")."""
    from dateparser.languages.loader import default_loader

    named = set()
    lowered = text.lower()
    for code in parsers:
        info = default_loader.get_locale(code).info
        for index, key in enumerate(WEEKDAY_KEYS):
            for name in info.get(key, []):
                name = name.lower()
                if HAN.search(name):
                    hit = name in lowered
                else:
                    hit = re.search(rf"(?<![^\W\d_]){re.escape(name)}(?![^\W\d_])", lowered)
                if hit:
                    named.add(index)
    return named.pop() if len(named) == 1 else None


def _in_shifted_week(found: list[_Found], text: str, parsers: tuple[str, ...], today: dt.date) -> dt.date | None:
    """The weekday in the week that a relative week names: "下周一", "Monday next week"."""
    for f in found:
        shift = f.date if f.date and f.period == "week" else None
        if shift is None and f.date is None and _weekday_in(f.translated) is not None:
            # "monday in 1 week": parse the week alone
            week_only = re.sub(rf"\b(?:{'|'.join(WEEKDAY_KEYS)})\b", " ", f.translated)
            _, english = _dateparser(today)
            data = english.get_date_data(week_only)
            shift = data.date_obj.date() if data.date_obj and data.period == "week" else None
        if shift is None:
            continue
        weekday = _weekday_named(text, parsers)
        if weekday is None and f.date is None:
            weekday = _weekday_in(f.translated)
        if weekday is not None:
            return shift - dt.timedelta(days=shift.weekday()) + dt.timedelta(days=weekday)
    return None


def _next_not_past(date: dt.date, after: dt.date) -> dt.date:
    """The day and month of ``date`` in the first year that is not before ``after``."""
    for year in range(after.year, after.year + 9):  # 29 February comes back within 8 years
        try:
            candidate = date.replace(year=year)
        except ValueError:
            continue
        if candidate >= after:
            return candidate
    return date


def _implied_year(f: _Found) -> bool:
    return bool(re.search(r"\d", f.words)) and not _YEAR.search(f.words) and not _RELATIVE.search(f.translated)


def _days(text: str, lang: _DateLanguage, today: dt.date) -> list[dt.date]:
    """The days that ``text`` names, in order, by dateparser (years implied filled in)."""
    found = _search(text, lang.parsers, today)
    shifted = _in_shifted_week(found, text, lang.parsers, today)
    if shifted:
        return [shifted]
    days = []
    for f in found:
        if f.date is None or f.period != "day" or f.words.isdigit():
            continue  # "next year", "May 2027", "next week", a bare "14": not a day
        date = f.date
        if _implied_year(f):
            date = _next_not_past(date, days[0] if days else today)
        days.append(date)
    return days


# --- the structure around the words ------------------------------------------------


def _numeric(text: str) -> DateAnswer | None:
    readings = []  # (day-first date, month-first date or None)
    for m in sorted([*_YMD.finditer(text), *_XXY.finditer(text)], key=lambda m: m.start()):
        try:
            if len(m.group(1)) == 4:
                readings.append((dt.date(int(m.group(1)), int(m.group(3)), int(m.group(4))), None))
                continue
            first, second, year = int(m.group(1)), int(m.group(3)), int(m.group(4))
            if first > 12 or second > 12 or first == second:
                day, month = (second, first) if second > 12 else (first, second)
                readings.append((dt.date(year, month, day), None))
            else:
                readings.append((dt.date(year, second, first), dt.date(year, first, second)))
        except ValueError:  # 31.02.2027
            return NOT_A_DATE
    if not readings:
        return None
    (start, other), end = readings[0], (readings[1][0] if len(readings) > 1 else None)
    ambiguous = any(alt for _, alt in readings[:2])
    return DateAnswer(start, end, ambiguous, other)


def _marked(text: str, lang: _DateLanguage, today: dt.date) -> DateAnswer | None:
    """Numbers marked as year, month and day: "2027年5月10日至14日", "5月10号到5月14号"."""
    if not lang.marks:
        return None
    year, month, day = ("|".join(map(re.escape, marks)) for marks in lang.marks)
    pattern = rf"(?<!\d)(?:(\d{{4}})\s*(?:{year})\s*)?(?:(\d{{1,2}})\s*(?:{month})\s*)?(\d{{1,2}})\s*(?:{day})"
    dates: list[dt.date] = []
    for m in re.finditer(pattern, text):
        if not dates and not m.group(2):
            return None  # "10日" alone: no month to read it in
        previous = dates[-1] if dates else None
        try:
            date = dt.date(
                int(m.group(1) or (previous or today).year),
                int(m.group(2) or previous.month),  # type: ignore[union-attr]
                int(m.group(3)),
            )
        except ValueError:
            return NOT_A_DATE
        if not m.group(1):
            date = _next_not_past(date, previous or today)
        dates.append(date)
    if not dates:
        return None
    return DateAnswer(dates[0], dates[1] if len(dates) > 1 else None)


def _day_pair(text: str, lang: _DateLanguage, today: dt.date) -> DateAnswer | None:
    """One date and a second day: "10–14 May 2027" is 10 May 2027 to 14 May 2027."""
    for m in _DAY_PAIR.finditer(text):
        first, second = int(m.group(1)), int(m.group(2))
        if not 1 <= first < second <= 31:
            continue
        head, tail = text[: m.start()], text[m.end() :]
        start, end = _day_with(first, head, tail, lang, today), _day_with(second, head, tail, lang, today)
        if start and end and start < end:
            return DateAnswer(start, end)
    return None


def _day_with(day: int, head: str, tail: str, lang: _DateLanguage, today: dt.date) -> dt.date | None:
    """The date that ``day`` makes with the words around it ("May " 10 ", 2027"; 10 " мая 2027")."""
    for text in (f"{head}{day}{tail}", f"{day}{tail}"):  # "с 10 мая" reads "с" as "second": try without
        days = _days(text, lang, today)
        if days and days[0].day == day:
            return days[0]
    return None


def read_dates(text: str, language: str, today: dt.date | None = None) -> DateAnswer:
    """The day or range of days that ``text`` names, read in ``language`` (a code or alias).

    ``today`` defaults to today in the office's time zone (Asia/Shanghai).
    """
    text = " ".join(unicodedata.normalize("NFKC", text or "").split())
    if not text or len(text) > MAX_DATE_CHARS or not any(c.isalnum() for c in text):
        return NOT_A_DATE
    today = today or office_today()
    lang = _language(language)
    for reader in (lambda: _numeric(text), lambda: _marked(text, lang, today), lambda: _day_pair(text, lang, today)):
        answer = reader()
        if answer is not None:
            return answer
    days = _days(text, lang, today)
    if not days:
        return NOT_A_DATE
    return DateAnswer(days[0], days[1] if len(days) > 1 else None)


def warm_up() -> None:
    """Load dateparser's language data now (about two seconds) rather than on the first date answer."""
    for code in registry().codes:
        read_dates("10 May 2027", code)


def parse_date(text: str, language: str | None = None) -> dt.date | None:
    """The (first) date in ``text``, or None; any of the bot's languages when none is given.

    Kept for callers that want one date; an ambiguous "05/06/2027" is read day first.
    """
    for code in [language] if language else registry().codes:
        answer = read_dates(text, code)
        if answer.start:
            return answer.start
    return None


def is_email(text: str) -> bool:
    return bool(EMAIL.match((text or "").strip())) and len(text.strip()) <= 254
