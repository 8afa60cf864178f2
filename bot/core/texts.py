"""Everything the bot says, in every language, with the facts filled in.

``data/texts/<code>.yml`` holds one file per language with the same keys as the
default language's file. A derived language (Traditional Chinese) is converted
from its base with OpenCC, then its own file overrides single keys.
``problems()`` lists every missing key, extra key or placeholder mismatch,
naming the key, the language and the file; a test fails on any of them.
"""

from __future__ import annotations

import functools
import logging
import string
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.core import facts as facts_module
from bot.core.facts import Facts, FactsError, Localized, facts, load_facts
from bot.core.languages import Registry, registry, to_traditional
from bot.core.paths import DOMAIN_FILE, FACTS_FILE, TEXTS_DIR

logger = logging.getLogger(__name__)
# libyaml when installed: the line numbers of the checks cost no time
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TextsError(ValueError):
    """A texts file cannot be read."""


def placeholders_of(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _read(path: Path) -> dict[str, str]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise TextsError(f"{path}: cannot read: {error}") from error
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise TextsError(f"{path}: expected `key: text` lines only")
    return raw


def _key_lines(path: Path) -> dict[str, int]:
    """Top-level key -> its line number (none when the file does not exist)."""
    if not path.exists():
        return {}
    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=LOADER)
    if not isinstance(root, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in root.value if isinstance(k, yaml.ScalarNode)}


@dataclass(frozen=True)
class Texts:
    by_language: dict[str, dict[str, str]]
    files: dict[str, Path]
    default: str

    def problems(self) -> list[str]:
        """Every key missing, extra or with other placeholders than the default language's,
        each with its file and line (for a missing key, the line of the default's text)."""
        reference = self.by_language[self.default]
        lines = {code: _key_lines(path) for code, path in self.files.items()}
        default_at = f"{self.files[self.default]}"
        found = []
        for language, texts in self.by_language.items():
            path = self.files[language]
            for key, text in reference.items():
                at = f"{path}:{lines[language][key]}" if key in lines[language] else str(path)
                if key not in texts:
                    found.append(
                        f"{path}: {language}: key {key!r} has no translation "
                        f"(the {self.default} text: {default_at}:{lines[self.default].get(key, 1)})"
                    )
                elif placeholders_of(texts[key]) != placeholders_of(text):
                    found.append(
                        f"{at}: {language}: key {key!r} has placeholders {sorted(placeholders_of(texts[key]))}, "
                        f"expected {sorted(placeholders_of(text))}"
                    )
            found += [
                f"{path}:{lines[language].get(key, 1)}: {language}: key {key!r} is unknown"
                for key in texts.keys() - reference.keys()
            ]
        return found

    def raw(self, key: str, language: str) -> str:
        texts = self.by_language.get(language, {})
        if key not in texts:
            logger.warning("text %s missing in %s, using %s", key, language, self.default)
            return self.by_language[self.default][key]
        return texts[key]


def load_texts(directory: Path = TEXTS_DIR, languages: Registry | None = None) -> Texts:
    languages = languages or registry()
    by_language: dict[str, dict[str, str]] = {}
    files: dict[str, Path] = {}
    for code, lang in languages.languages.items():
        files[code] = directory / f"{code}.yml"
        if lang.derive_from:
            continue
        if not files[code].exists():
            raise TextsError(f"{files[code]}: missing: every language in data/languages.yml needs one")
        by_language[code] = _read(files[code])
    for code, lang in languages.languages.items():
        if lang.derive_from:
            base = {k: to_traditional(v) for k, v in by_language[lang.derive_from].items()}
            overrides = _read(files[code]) if files[code].exists() else {}
            by_language[code] = base | overrides
    return Texts(by_language, files, languages.default)


@functools.cache
def _texts() -> Texts:
    return load_texts()


def texts() -> Texts:
    """The texts, read once per process and again when their files or the facts change (``reload_if_changed``)."""
    reload_if_changed()
    return _texts()


# How often a process looks at the data files' times (a publish is live within this).
RELOAD_CHECK_SECONDS = 1.0
_watch: dict[str, object] = {"checked": 0.0, "signature": None}


def _signature() -> tuple:
    files = sorted(TEXTS_DIR.glob("*.yml")) + [FACTS_FILE, DOMAIN_FILE]
    found = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def reload_if_changed(now: float | None = None) -> bool:
    """Reads the texts, facts and the domain's intents again when their files changed (a staff
    member published an edit), at most once per ``RELOAD_CHECK_SECONDS``. Files that do not load
    keep the old texts and facts (logged): a running bot never answers from broken data."""
    now = time.monotonic() if now is None else now
    if now - float(_watch["checked"]) < RELOAD_CHECK_SECONDS:
        return False
    _watch["checked"] = now
    signature = _signature()
    if _watch["signature"] is None or signature == _watch["signature"]:
        _watch["signature"] = signature
        return False
    _watch["signature"] = signature
    return not _reload()


def reload_now() -> list[str]:
    """Reads the texts, facts and the domain's intents again at once (``bot publish`` asks every
    action server to, ``POST /reload``); the problems that kept the old ones in use, or []."""
    _watch["checked"], _watch["signature"] = time.monotonic(), _signature()
    return _reload()


def _reload() -> list[str]:
    try:
        load_facts()
        broken = load_texts().problems()
    except (TextsError, FactsError) as error:
        broken = [str(error)]
    if broken:
        logger.error("the changed texts or facts do not pass the checks, the previous ones stay in use: %s", broken[0])
        return broken
    _texts.cache_clear()
    _domain_intents.cache_clear()
    facts_module.facts.cache_clear()
    _fact_values.cache_clear()
    logger.info("texts and facts reloaded")
    return []


@functools.cache
def _domain_intents() -> tuple[str, ...]:
    try:
        intents = (yaml.load(DOMAIN_FILE.read_text(encoding="utf-8"), Loader=LOADER) or {}).get("intents") or []
    except (OSError, yaml.YAMLError, AttributeError) as error:
        logger.error("cannot read the intents of %s: %s", DOMAIN_FILE, error)
        return ()
    return tuple(i for i in intents if isinstance(i, str))


def faq_intents() -> frozenset[str]:
    """The FAQ intents: those of domain.yml named ``ask_…`` that have a text of the same name.
    Each is answered with that text (``actions.answers``): a new FAQ needs no code. Read again
    with the texts when domain.yml changes."""
    known = texts().by_language[registry().default]
    return frozenset(i for i in _domain_intents() if i.startswith("ask_") and i in known)


def join(items: list[str], language: str, source: Texts | None = None) -> str:
    """'a, b and c' in the language's own way ('a、b和c' in Chinese)."""
    source = source or texts()
    if len(items) < 2:
        return "".join(items)
    separator = source.raw("list_separator", language)
    return separator.join(items[:-1]) + source.raw("list_last_separator", language) + items[-1]


def spoken_languages(language: str, source: Texts | None = None, languages: Registry | None = None) -> str:
    """Every language of data/languages.yml by its own name (its ``language_name``),
    joined in ``language``: 'English, 简体中文, 繁體中文, Русский and Français'."""
    source = source or texts()
    return join([source.raw("language_name", code) for code in (languages or registry()).codes], language, source)


def fact_values(language: str, known: Facts | None = None, source: Texts | None = None) -> dict[str, str]:
    """The value of every placeholder filled by code, in ``language``: the facts,
    and ``{languages}``, the languages the bot speaks (from data/languages.yml)."""
    f, source = known or facts(), source or texts()

    def one(value: Localized) -> str:
        return value.get(language)

    def many(values: tuple[Localized, ...]) -> str:
        return join([v.get(language) for v in values], language, source)

    values = {
        "university": one(f.university),
        "university_short": one(f.university_short),
        "department": one(f.department),
        "functions": many(f.functions),
        "country_count": str(f.partner_country_count),
        "countries": many(f.partner_countries),
        "areas": many(f.partner_areas),
        "contact_areas": many(f.contact_areas),
        "scholar_count": str(f.scholar_count),
        "programme_university_count": str(f.programme_university_count),
        "named_universities": many(f.named_universities),
        "field": one(f.programme_field),
        "college": one(f.college),
        "master_partners": many(f.master_partners),
        "undergraduate_fields": many(f.undergraduate_fields),
        "degrees": many(f.degrees),
        "apt_since": str(f.apt_since),
        "apt_programme_count": str(f.apt_programme_count),
        "apt_country_count": str(f.apt_country_count),
        "street": one(f.street),
        "city": one(f.city),
        "postcode": f.postcode,
        "country": one(f.country),
        "languages": spoken_languages(language, source),
    }
    values["address"] = source.raw("address_format", language).format_map(values)
    return values


@functools.cache
def _fact_values(language: str) -> dict[str, str]:
    return fact_values(language)


def say(key: str, language: str, **extra: str) -> str:
    """The text ``key`` in ``language`` with the facts (and ``extra``) filled in."""
    text = texts().raw(key, language)
    if not placeholders_of(text):
        return text
    return text.format_map(_fact_values(language) | extra)
