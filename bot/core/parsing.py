"""Pure helpers for the forms: dates and e-mail addresses as people type them.

No Rasa import, so they are tested in microseconds.

Dates understood, in any of the bot's languages: "2027-05-10", "10/05/2027"
(day first, as everywhere but the US), "10.05.2027", "10 May 2027",
"May 10, 2027", "2027年5月10日", "10 mai 2027", "10 мая 2027".
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

MONTHS = {
    # English
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
    "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9, "sept": 9,
    "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
    # French
    "janvier": 1, "janv": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3, "avril": 4, "avr": 4, "mai": 5,
    "juin": 6, "juillet": 7, "juil": 7, "aout": 8, "septembre": 9, "octobre": 10, "novembre": 11,
    "decembre": 12, "dec.": 12,
    # Russian (genitive and nominative)
    "января": 1, "январь": 1, "февраля": 2, "февраль": 2, "марта": 3, "март": 3, "апреля": 4,
    "апрель": 4, "мая": 5, "май": 5, "июня": 6, "июнь": 6, "июля": 7, "июль": 7, "августа": 8,
    "август": 8, "сентября": 9, "сентябрь": 9, "октября": 10, "октябрь": 10, "ноября": 11,
    "ноябрь": 11, "декабря": 12, "декабрь": 12,
}  # fmt: skip

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+$")
_ISO = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_DMY = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$")
_CJK = re.compile(r"^(\d{4})\s*[年.]\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号號]?$")
_DAY_MONTH_YEAR = re.compile(r"^(\d{1,2})(?:er|st|nd|rd|th)?\s+([^\W\d_]+\.?)\s+(\d{4})(?:\s*(?:г\.?|года?))?$")
_MONTH_DAY_YEAR = re.compile(r"^([^\W\d_]+\.?)\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})$")


def _month(word: str) -> int | None:
    word = word.rstrip(".")
    plain = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
    return MONTHS.get(word) or MONTHS.get(plain) or MONTHS.get(plain.replace("й", "и"))


def parse_date(text: str) -> dt.date | None:
    """The date in ``text``, or None when it is not a date written in a known way."""
    text = " ".join(unicodedata.normalize("NFKC", text or "").strip().lower().replace(",", ", ").split())
    text = text.replace(" ,", ",")
    try:
        if m := _ISO.match(text) or _CJK.match(text):
            year, month, day = (int(g) for g in m.groups())
        elif m := _DMY.match(text):
            day, month, year = (int(g) for g in m.groups())
        elif m := _DAY_MONTH_YEAR.match(text):
            day, month, year = int(m.group(1)), _month(m.group(2)), int(m.group(3))
        elif m := _MONTH_DAY_YEAR.match(text):
            month, day, year = _month(m.group(1)), int(m.group(2)), int(m.group(3))
        else:
            return None
        return dt.date(year, month, day) if month else None
    except ValueError:  # 31 February and the like
        return None


def is_email(text: str) -> bool:
    return bool(EMAIL.match((text or "").strip())) and len(text.strip()) <= 254
