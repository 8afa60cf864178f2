"""The department's facts, read from ``data/facts/department.yml``.

One typed loader with no Rasa import. Every mistake in the file is reported
with the file and the field, e.g. ``department.yml: partners.countries[2].ru:
missing``. Names exist in each base language of ``data/languages.yml``;
languages derived from another (Traditional Chinese) are converted on demand.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.core.languages import Registry, registry, to_traditional
from bot.core.paths import FACTS_FILE


class FactsError(ValueError):
    """The facts file is missing a field, or a field has the wrong type."""


@dataclass(frozen=True)
class Localized:
    """One name or phrase in every base language."""

    values: Mapping[str, str]

    def get(self, language: str, languages: Registry | None = None) -> str:
        if language in self.values:
            return self.values[language]
        lang = (languages or registry()).languages.get(language)
        if lang and lang.derive_from in self.values:
            return to_traditional(self.values[lang.derive_from])
        return self.values[(languages or registry()).default]


Names = tuple[Localized, ...]


@dataclass(frozen=True)
class Facts:
    university: Localized
    university_short: Localized
    department: Localized
    functions: Names
    partner_country_count: int
    partner_countries: Names
    partner_areas: Names
    contact_areas: Names
    scholar_count: int
    programme_university_count: int
    named_universities: Names
    programme_field: Localized
    college: Localized
    master_partners: Names
    undergraduate_fields: Names
    degrees: Names
    apt_since: int
    apt_programme_count: int
    apt_country_count: int
    street: Localized
    city: Localized
    postcode: str
    country: Localized


class _Reader:
    """Reads typed values by dotted path, naming the file and field on error."""

    def __init__(self, path: Path, raw: Any, languages: list[str]) -> None:
        self.path, self.raw, self.languages = path, raw, languages

    def _fail(self, field: str, problem: str) -> FactsError:
        return FactsError(f"{self.path}: {field}: {problem}")

    def _value(self, field: str) -> Any:
        node = self.raw
        for part in field.split("."):
            if not isinstance(node, dict) or part not in node:
                raise self._fail(field, "missing")
            node = node[part]
        return node

    def number(self, field: str) -> int:
        value = self._value(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self._fail(field, f"expected a whole number, found {value!r}")
        return value

    def text(self, field: str) -> str:
        value = self._value(field)
        if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
            raise self._fail(field, f"expected text, found {value!r}")
        return str(value)

    def _localized(self, value: Any, field: str) -> Localized:
        if not isinstance(value, dict):
            raise self._fail(field, "expected a name in each language, e.g. {en: ..., zh-Hans: ...}")
        for language in self.languages:
            text = value.get(language)
            if not isinstance(text, str) or not text.strip():
                raise self._fail(f"{field}.{language}", "missing")
        return Localized({k: v for k, v in value.items() if isinstance(v, str)})

    def localized(self, field: str) -> Localized:
        return self._localized(self._value(field), field)

    def names(self, field: str) -> Names:
        value = self._value(field)
        if not isinstance(value, list) or not value:
            raise self._fail(field, "expected a non-empty list")
        return tuple(self._localized(item, f"{field}[{i}]") for i, item in enumerate(value))


def load_facts(path: Path = FACTS_FILE, languages: Registry | None = None) -> Facts:
    """Read and check the facts file."""
    languages = languages or registry()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise FactsError(f"{path}: cannot read: {error}") from error
    if not isinstance(raw, dict):
        raise FactsError(f"{path}: expected a mapping at the top")
    base = [code for code, lang in languages.languages.items() if not lang.derive_from]
    r = _Reader(path, raw, base)
    return Facts(
        university=r.localized("university.name"),
        university_short=r.localized("university.short"),
        department=r.localized("department.name"),
        functions=r.names("department.functions"),
        partner_country_count=r.number("partners.country_count"),
        partner_countries=r.names("partners.countries"),
        partner_areas=r.names("partners.areas"),
        contact_areas=r.names("partners.contact_areas"),
        scholar_count=r.number("visitors.scholar_count"),
        programme_university_count=r.number("joint_programmes.university_count"),
        named_universities=r.names("joint_programmes.named_universities"),
        programme_field=r.localized("joint_programmes.field"),
        college=r.localized("joint_programmes.college"),
        master_partners=r.names("joint_programmes.master_partners"),
        undergraduate_fields=r.names("joint_programmes.undergraduate_fields"),
        degrees=r.names("degrees_for_international_students"),
        apt_since=r.number("apt.since"),
        apt_programme_count=r.number("apt.programme_count"),
        apt_country_count=r.number("apt.country_count"),
        street=r.localized("address.street"),
        city=r.localized("address.city"),
        postcode=r.text("address.postcode"),
        country=r.localized("address.country"),
    )


@functools.cache
def facts() -> Facts:
    """The facts, read once per process."""
    return load_facts()
