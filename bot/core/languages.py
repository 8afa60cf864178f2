"""The languages the assistant speaks, and which one to answer in.

Pure helpers with no Rasa import, used by the NLU tokenizer (Chinese script
normalisation), the action server (choosing the reply language) and the
channels (normalising a language hint). The list of languages lives in
``data/languages.yml``: adding a language is a data change.

How the reply language is chosen for each message (``choose``):

1. an explicit request ("answer in Chinese", ``/lang ru``, a language button,
   the web page's selector) switches to that language;
2. once the user made such a choice, it holds: every later message is answered
   in it, whatever language it is typed in, until the next explicit request;
3. otherwise (no choice made) the language of a message whose language is
   detected confidently;
4. otherwise the conversation's current language (short or ambiguous messages:
   "ok", "NYIT?", "2027", an emoji, a name);
5. before that is known, the channel's hint (``metadata.language``);
6. otherwise the default (English).

A message confidently detected in a language the bot does not speak keeps the
language of rules 2 and 4-6 and is flagged ``unsupported``.

A sentence's language is decided by its own words: the names the facts give
(universities, programmes, the department, in every language) and acronyms are
removed before detection, so "Есть ли у NJUPT программы с Queen Mary University
of London?" is Russian.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.core.paths import LANGUAGES_FILE

logger = logging.getLogger(__name__)

# lingua's best guess is trusted when it is at least this confident and
# MIN_LEAD times as likely as the runner-up.
MIN_CONFIDENCE = 0.3
MIN_LEAD = 1.5
# Latin or Cyrillic messages with fewer letters than this keep the language.
MIN_LETTERS = 4
# Parts of the facts' names shorter than this are not removed before detection.
MIN_NAME_CHARS = 3
# A message of at most this many words (or twice as many Han characters) that
# names a language asks for it, even when the NLU did not recognise the request.
MAX_REQUEST_WORDS = 8

# CJK ideographs: Extension A, the unified block and the compatibility block.
HAN_RANGE = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
HAN = re.compile(f"[{HAN_RANGE}]")
KANA_HANGUL = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff]")
WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
# Acronyms and names that say nothing about the language: NJUPT, NYIT, APT, QMUL.
ACRONYM = re.compile(r"\b[A-Z]{2,}s?\b")
URL = re.compile(r"https?://\S+|\S+@\S+")


class LanguagesError(ValueError):
    """data/languages.yml is missing a field or has a wrong one."""


@dataclass(frozen=True)
class Language:
    code: str
    lingua: str
    script: str | None
    aliases: tuple[str, ...]
    names: tuple[str, ...]
    derive_from: str | None


@dataclass(frozen=True)
class Registry:
    languages: dict[str, Language]
    default: str
    detect_also: tuple[str, ...]

    @property
    def codes(self) -> list[str]:
        return list(self.languages)

    def normalize(self, code: object) -> str | None:
        """Map a code or alias ("zh-CN", "ru_RU", "FR") to a supported code."""
        if not isinstance(code, str) or not code.strip():
            return None
        wanted = code.strip().lower().replace("_", "-")
        for candidate in (wanted, wanted.split("-")[0]):
            for lang in self.languages.values():
                if candidate == lang.code.lower() or candidate in lang.aliases:
                    return lang.code
        return None


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LanguagesError(f"{where}: expected a list of strings")
    return tuple(v.lower() for v in value)


def load_registry(path: Path = LANGUAGES_FILE) -> Registry:
    """Read data/languages.yml, naming the file and field of any mistake."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise LanguagesError(f"{path}: cannot read: {error}") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("languages"), dict):
        raise LanguagesError(f"{path}: languages: expected a mapping of codes")
    languages = {}
    for code, spec in raw["languages"].items():
        where = f"{path}: languages.{code}"
        if not isinstance(spec, dict) or not isinstance(spec.get("lingua"), str):
            raise LanguagesError(f"{where}.lingua: expected an ISO 639-1 code such as EN")
        languages[code] = Language(
            code=code,
            lingua=spec["lingua"].upper(),
            script=spec.get("script"),
            aliases=_strings(spec.get("aliases", []), f"{where}.aliases"),
            names=_strings(spec.get("names", []), f"{where}.names"),
            derive_from=spec.get("derive_from"),
        )
        if languages[code].derive_from and languages[code].derive_from not in raw["languages"]:
            raise LanguagesError(f"{where}.derive_from: unknown language {spec['derive_from']!r}")
    default = raw.get("default", "en")
    if default not in languages:
        raise LanguagesError(f"{path}: default: {default!r} is not one of {list(languages)}")
    detect_also = tuple(c.upper() for c in _strings(raw.get("detect_also", []), f"{path}: detect_also"))
    return Registry(languages, default, detect_also)


@functools.cache
def registry() -> Registry:
    return load_registry()


# --- Chinese scripts ---------------------------------------------------------


@functools.cache
def _opencc(config: str):
    import opencc  # opencc-python-reimplemented: dictionaries ship in the package

    return opencc.OpenCC(config)


# OpenCC here is pure Python (about 50 µs for a short phrase): the texts converted again and again
# (language names, the answers' facts) are converted once.
CONVERTED = 4096


@functools.lru_cache(maxsize=CONVERTED)
def to_simplified(text: str) -> str:
    """Traditional to Simplified Chinese, character for character (same length)."""
    return _opencc("t2s").convert(text) if HAN.search(text) else text


@functools.lru_cache(maxsize=CONVERTED)
def to_traditional(text: str) -> str:
    """Simplified to Traditional Chinese (Taiwan standard characters)."""
    return _opencc("s2tw").convert(text) if HAN.search(text) else text


def chinese_script(text: str) -> str | None:
    """'Hant' or 'Hans' when the characters tell, None when they are common to both."""
    han = "".join(HAN.findall(text))
    traditional = sum(1 for a, b in zip(han, to_simplified(han), strict=False) if a != b)
    simplified = sum(1 for a, b in zip(han, _opencc("s2t").convert(han), strict=False) if a != b)
    if traditional > simplified:
        return "Hant"
    if simplified > traditional:
        return "Hans"
    return None


# --- detection -----------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """What a message's text says about its language.

    ``language`` is a supported code, ``"zh"`` for Chinese of either script when
    the characters do not tell, or None. ``unsupported`` is the ISO code of a
    confidently detected language the bot does not speak.
    """

    language: str | None = None
    unsupported: str | None = None


@functools.cache
def _detector():
    from lingua import IsoCode639_1, LanguageDetectorBuilder
    from lingua import Language as LinguaLanguage

    reg = registry()
    isos = {lang.lingua for lang in reg.languages.values()} | set(reg.detect_also)
    langs = [LinguaLanguage.from_iso_code_639_1(getattr(IsoCode639_1, iso)) for iso in sorted(isos)]
    # Models load on first use, per script: lingua needs n-gram models only to tell apart
    # languages that share an alphabet, so those of a script of their own (Arabic, Thai,
    # Hangul, ...) are never loaded. The same answers as preloading all, in 100 MB less.
    return LanguageDetectorBuilder.from_languages(*langs).build()


# One sentence per alphabet that several languages share: detecting them at start loads the
# models that messages will need, so that no user waits for them.
WARM_UP_SENTENCES = ("Where is the international office?", "Где находится международный отдел?")


def warm_up() -> None:
    """Load the detector's models and the OpenCC dictionaries now rather than on the first message."""
    for sentence in WARM_UP_SENTENCES:
        _detector().compute_language_confidence_values(sentence)
    chinese_script("预热")


# A letter that is not Han: names end where such letters do ("和Queen Mary有" is one).
_NAME_EDGE = f"[^\\W\\d_{HAN_RANGE}]"
_PARENTHESES = re.compile(r"[(（][^)）]*[)）]")


def _name_pattern(name: str) -> str:
    parts = [re.escape(p) for p in re.findall(rf"[{HAN_RANGE}]+|[^\W_{HAN_RANGE}]+", name)]
    return rf"(?<!{_NAME_EDGE})" + r"[\W_]*".join(parts) + rf"(?!{_NAME_EDGE})"


@functools.cache
def _known_names() -> re.Pattern[str] | None:
    """The names of data/facts/department.yml (universities, programmes, the
    department), in every language: words that say nothing of a sentence's
    language. Each comma-separated part on its own, without parentheses:
    "Queen Mary, University of London (UK)" gives "Queen Mary" and "University
    of London", so that "Queen Mary University of London" is found too."""
    from bot.core.facts import FactsError, facts  # facts read languages.yml: imported late

    try:
        known = facts()
    except FactsError as error:
        logger.warning("no names to ignore in language detection: %s", error)
        return None
    values = [known.university, known.university_short, known.department, known.college,
              *known.named_universities, *known.master_partners]  # fmt: skip
    parts = set()
    for value in values:
        for text in {value.get(code) for code in registry().codes}:
            for part in _PARENTHESES.sub(",", text).split(","):
                if len(part.strip()) >= MIN_NAME_CHARS:
                    parts.add(part.strip())
    if not parts:
        return None
    names = sorted(parts, key=len, reverse=True)  # the longest name first
    return re.compile("|".join(_name_pattern(name) for name in names), re.IGNORECASE)


def without_names(text: str) -> str:
    """``text`` without the known names, acronyms, links and e-mail addresses."""
    names = _known_names()
    text = URL.sub(" ", text)
    text = names.sub(" ", text) if names else text
    return ACRONYM.sub(" ", text)


def detect(text: str) -> Detection:
    reg = registry()
    if (text or "").lstrip().startswith("/"):
        return Detection()  # a command or a button's payload says nothing of the language
    cleaned = without_names(text or "")
    han = len(HAN.findall(cleaned))
    words = WORD.findall(HAN.sub(" ", cleaned))
    letters = sum(len(w) for w in words)
    if han and not KANA_HANGUL.search(cleaned) and han >= 2 * len(words):
        # Chinese dominates (about two characters a word), mixed English or not.
        script = chinese_script(cleaned)
        for lang in reg.languages.values():
            if lang.lingua == "ZH" and lang.script == script:
                return Detection(lang.code)
        return Detection("zh")
    if not KANA_HANGUL.search(cleaned) and letters < MIN_LETTERS:
        return Detection()
    latin_text = " ".join(words) if not KANA_HANGUL.search(cleaned) else cleaned
    values = _detector().compute_language_confidence_values(latin_text)
    best, runner_up = values[0].value, values[1].value if len(values) > 1 else 0.0
    if best < MIN_CONFIDENCE or best < MIN_LEAD * runner_up:
        return Detection()
    iso = values[0].language.iso_code_639_1.name
    for lang in reg.languages.values():
        if lang.lingua == iso and iso != "ZH":
            return Detection(lang.code)
    if iso == "ZH":
        return Detection("zh")
    return Detection(unsupported=iso)


# --- explicit requests -----------------------------------------------------------


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return to_simplified(text).replace("ё", "е")


@functools.lru_cache(maxsize=CONVERTED)
def _folded_name(name: str) -> str:
    return _fold(name)


def requested_language(text: str) -> str | None:
    """The language a message names ("answer in Chinese", "/lang ru"), by the
    ``names`` of data/languages.yml; the longest name found wins."""
    reg = registry()
    folded = _fold(text or "")
    command = re.match(r"^\s*/lang(?:uage)?\s+(\S+)", folded)
    if command:
        return reg.normalize(command.group(1))
    best: tuple[int, str] | None = None
    for lang in reg.languages.values():
        for name in lang.names:
            if _folded_name(name) in folded and (best is None or len(name) > best[0]):
                best = (len(name), lang.code)
    return best[1] if best else None


def is_short(text: str) -> bool:
    """At most MAX_REQUEST_WORDS words (a Han character counting as half a word)."""
    words = len(WORD.findall(HAN.sub(" ", text or "")))
    return words + len(HAN.findall(text or "")) / 2 <= MAX_REQUEST_WORDS


# --- the choice ----------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    language: str
    reason: str  # explicit | chosen | detected | kept | hint | default
    unsupported: str | None = None


def choose(
    text: str, current: str | None, hint: object = None, explicit: str | None = None, chosen: bool = False
) -> Choice:
    """The language to answer this message in (see the module docstring).

    ``explicit`` is the language this message asks for; ``chosen`` says that the
    user asked for ``current`` earlier (and has not asked for another since).
    """
    reg = registry()
    if explicit in reg.languages:
        return Choice(explicit, "explicit")
    current = current if current in reg.languages else None
    hinted = reg.normalize(hint)
    detection = detect(text)
    if chosen and current:
        return Choice(current, "chosen", detection.unsupported)
    if detection.language == "zh":
        for candidate in (current, hinted):
            if candidate and reg.languages[candidate].lingua == "ZH":
                return Choice(candidate, "detected")
        zh = [lang.code for lang in reg.languages.values() if lang.lingua == "ZH"]
        return Choice(zh[0], "detected")
    if detection.language:
        return Choice(detection.language, "detected")
    if current:
        return Choice(current, "kept", detection.unsupported)
    if hinted:
        return Choice(hinted, "hint", detection.unsupported)
    return Choice(reg.default, "default", detection.unsupported)
