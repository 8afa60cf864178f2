"""Which option of a question a typed answer picks, in any of the bot's languages.

People type instead of pressing buttons: "to give a lecture", "a talk", "做个报告", "лекцию",
"une conférence". ``choices().question("purpose").pick(text)`` says which option such an
answer fits, or None when it fits none or several. The options and the words for each, per
language, are data (``data/choices.yml``, with the button titles from ``data/texts``), so
adding a language or a synonym needs no code.

How an answer is compared with a phrase, per language: Unicode NFKC, case folded, Chinese in
Simplified characters (each character one word), the language's small words skipped, each
word reduced to its stem (Snowball), accents dropped. A phrase matches where its words follow
each other in the answer. No Rasa import: tested in microseconds.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import snowballstemmer
import yaml

from bot.core.languages import HAN_RANGE, registry, to_simplified
from bot.core.paths import CHOICES_FILE
from bot.core.texts import Texts, say, texts

# A Chinese character, or a run of letters and digits (apostrophes and hyphens split words).
TOKEN = re.compile(f"[{HAN_RANGE}]|[^\\W_{HAN_RANGE}]+")


class ChoicesError(ValueError):
    """data/choices.yml is missing a field or has a wrong one."""


def _plain(word: str) -> str:
    """``word`` without accents or other combining marks ("é" -> "e", "й" -> "и")."""
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")


@dataclass(frozen=True)
class Analyzer:
    """Turns a text into comparable words for one language."""

    stemmer: str | None
    skip: frozenset[str]

    @functools.cached_property
    def _stem(self):
        return snowballstemmer.stemmer(self.stemmer).stemWord if self.stemmer else (lambda word: word)

    def words(self, text: str) -> list[tuple[int, str, str]]:
        """(position in the text, stem, stem without accents) of each word that is not skipped."""
        folded = to_simplified(unicodedata.normalize("NFKC", text).casefold())
        stems = [
            (i, self._stem(token)) for i, token in enumerate(TOKEN.findall(folded)) if _plain(token) not in self.skip
        ]
        return [(i, stem, _plain(stem)) for i, stem in stems]


@dataclass(frozen=True)
class Question:
    """A question's options, each with its phrases per language."""

    name: str
    # option -> language -> phrases, each as (stems, stems without accents)
    phrases: dict[str, dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]]]
    titles: dict[str, str]  # option -> its button title's key in data/texts
    analyzers: dict[str, Analyzer]

    @property
    def options(self) -> list[str]:
        return list(self.phrases)

    def fits(self, text: str) -> set[str]:
        """Every option that ``text`` fits, once phrases inside longer ones have given way.

        A phrase matches without accents ("conference" typed for "conférence"); where phrases
        of two options match the same words, the one that matches with its accents wins
        (English "conference" is not French "conférence").
        """
        spans: list[tuple[int, int, bool, str]] = []  # (start, end, exact, option) in the text's words
        for language, analyzer in self.analyzers.items():
            words = analyzer.words(text or "")
            plain = [p for _, _, p in words]
            for option, by_language in self.phrases.items():
                for stems, plain_stems in by_language.get(language, ()):
                    size = len(plain_stems)
                    for i in range(len(plain) - size + 1):
                        if tuple(plain[i : i + size]) == plain_stems:
                            exact = tuple(w[1] for w in words[i : i + size]) == stems
                            spans.append((words[i][0], words[i + size - 1][0] + 1, exact, option))

        def beaten(start: int, end: int, exact: bool, option: str) -> bool:
            return any(
                o != option and s <= start and end <= e and (e - s > end - start or (ex and not exact))
                for s, e, ex, o in spans
            )

        return {span[3] for span in spans if not beaten(*span)}

    def whole(self, text: str) -> str | None:
        """The option one of whose phrases is the whole of ``text`` (skipped words aside), or None:
        "back to the bot!" is the option, "the bot said something else" is not."""
        for language, analyzer in self.analyzers.items():
            plain = tuple(p for _, _, p in analyzer.words(text or ""))
            for option, by_language in self.phrases.items():
                if plain and any(plain == plain_stems for _, plain_stems in by_language.get(language, ())):
                    return option
        return None

    def pick(self, text: str) -> str | None:
        """The one option ``text`` fits, or None (no option, or more than one)."""
        found = self.fits(text)
        return found.pop() if len(found) == 1 else None

    def title(self, option: str, language: str) -> str:
        """The option's button title in ``language``."""
        return say(self.titles[option], language)

    def in_words(self, language: str) -> str:
        """The options as a sentence says them: '“Yes, send it”, “Change an answer” or “Cancel”'."""
        quoted = [say("quoted_option", language, option=self.title(o, language)) for o in self.options]
        if len(quoted) == 1:
            return quoted[0]
        return say("list_separator", language).join(quoted[:-1]) + say("list_last_or", language) + quoted[-1]


@dataclass(frozen=True)
class Choices:
    questions: dict[str, Question]

    def question(self, name: str) -> Question:
        return self.questions[name]


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ChoicesError(f"{where}: expected a list of words (quote yes, no, on and off)")
    return value


def load_choices(path: Path = CHOICES_FILE, source: Texts | None = None) -> Choices:
    """Read data/choices.yml, naming the file and field of any mistake."""
    source = source or texts()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ChoicesError(f"{path}: cannot read: {error}") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("questions"), dict):
        raise ChoicesError(f"{path}: questions: expected a mapping of questions")
    languages = registry().languages
    analyzers = {}
    for code, spec in (raw.get("languages") or {}).items():
        where = f"{path}: languages.{code}"
        if code not in languages:
            raise ChoicesError(f"{where}: not a language of data/languages.yml")
        stemmer = spec.get("stemmer")
        if stemmer is not None and stemmer not in snowballstemmer.algorithms():
            raise ChoicesError(f"{where}.stemmer: {stemmer!r} is not one of {snowballstemmer.algorithms()}")
        analyzers[code] = Analyzer(
            stemmer, frozenset(_plain(w.casefold()) for w in _strings(spec.get("skip", []), f"{where}.skip"))
        )
    for code, lang in languages.items():
        base = lang.derive_from or code
        analyzers.setdefault(code, analyzers.get(base, Analyzer(None, frozenset())))
    questions = {}
    for name, options in raw["questions"].items():
        if not isinstance(options, dict) or not options:
            raise ChoicesError(f"{path}: questions.{name}: expected a mapping of options")
        phrases: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {}
        titles = {}
        for option, spec in options.items():
            where = f"{path}: questions.{name}.{option}"
            if not isinstance(option, str) or not isinstance(spec, dict) or not isinstance(spec.get("title"), str):
                raise ChoicesError(f"{where}: expected a quoted option name with a `title` key of data/texts")
            titles[option] = spec["title"]
            by_language = {}
            for code, analyzer in analyzers.items():
                words = _strings(spec.get(code, []), f"{where}.{code}")
                title = source.raw(spec["title"], code) if code in source.by_language else ""
                analyzed = [analyzer.words(w) for w in [*words, title]]
                forms = {(tuple(w[1] for w in a), tuple(w[2] for w in a)) for a in analyzed if a}
                by_language[code] = tuple(sorted(forms))
            unknown = set(spec) - set(analyzers) - {"title"}
            if unknown:
                raise ChoicesError(f"{where}: {sorted(unknown)} are not languages of data/languages.yml")
            phrases[option] = by_language
        questions[name] = Question(name, phrases, titles, analyzers)
    return Choices(questions)


@functools.cache
def choices() -> Choices:
    """The questions' options, read once per process."""
    return load_choices()


def problems() -> list[str]:
    """Every option without phrases in a language that has no base to borrow them from."""
    found = []
    try:
        loaded = load_choices()
    except ChoicesError as error:
        return [str(error)]
    raw = yaml.safe_load(CHOICES_FILE.read_text(encoding="utf-8"))["questions"]
    for question in loaded.questions.values():
        for option in question.options:
            for code, lang in registry().languages.items():
                if not lang.derive_from and not raw[question.name][option].get(code):
                    found.append(f"{CHOICES_FILE}: questions.{question.name}.{option} has no phrases in {code}")
    return found
