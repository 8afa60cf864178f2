"""A new FAQ (a new intent) written as a developer writes one by hand: one implementation for
the staff console (``/staff/faq/new``) and ``bot faq add NAME --from-file FILE``.

    draft = FaqDraft(name="ask_library", description="…",
                     answers={"en": "…", "zh-Hans": "…", "ru": "…", "fr": "…"},   # zh-Hant: from zh-Hans
                     examples={"en": ["…", …], …})                               # 15 a language or more
    add_faq(draft, FaqFiles())                     # the project's files; FaqRejected: nothing written

What it writes, each where a developer would put it (after the last ``ask_…`` entry), so that
``git diff`` reads like a hand edit:

* ``domain.yml``: ``  - ask_library`` in the intents, after the other questions;
* ``data/rules/questions.yml``: the rule ``ask_library -> action_answer_question``;
* ``data/texts/<lang>.yml``: the answer under the intent's name, in each file's style
  (``bot.staff.textdata``); Traditional Chinese only as an override when it differs from
  the OpenCC conversion of the Simplified text (left empty, it is the conversion);
* ``data/nlu/<lang>.yml``: a block of the examples; Traditional Chinese examples left empty
  are the conversion of the Simplified ones;
* ``docs/intents.md``: a row of the table of intents, when the file has one.

Nothing is written unless every check passes on a copy of those files first: the name
(``ask_`` and a snake_case topic, not an intent already), each answer (not empty, the
placeholders of the facts only: ``{address}``…), the examples (at least
``MIN_TRAINING_EXAMPLES`` a language, none an example already), then the checks of
``make validate`` on the copy (``bot.core.validation``, ``load_texts().problems()``).
``FaqRejected.fields`` files each problem under the field it concerns (``name``,
``answer.<lang>``, ``examples.<lang>``), for the console to show it next to that field.
An FAQ is answered with no code: ``actions.answers`` answers every ``ask_…`` intent of
the domain that has a text. ``bot publish`` then trains it and puts it live.
"""

from __future__ import annotations

import re
import shutil
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.core.facts import FactsError
from bot.core.languages import registry, to_traditional
from bot.core.paths import DOMAIN_FILE, NLU_DIR, ROOT, RULES_DIR, TEXTS_DIR
from bot.core.texts import TextsError, fact_values, load_texts
from bot.core.validation import (
    MIN_TRAINING_EXAMPLES,
    domain_intents,
    example_problems,
    normal,
    read_example_lines,
    read_examples,
)
from bot.staff.nludata import CONTROL, EditRejected, clean_example, replace
from bot.staff.textdata import _block, _entry, clean_text

NAME = re.compile(r"^ask_[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
MAX_NAME_CHARS = 48
MAX_DESCRIPTION_CHARS = 300
RULES_FILE = RULES_DIR / "questions.yml"
INTENTS_DOC = ROOT / "docs" / "intents.md"


@dataclass
class FaqFiles:
    """The files a new FAQ is written to (the project's by default; copies in the tests)."""

    domain: Path = DOMAIN_FILE
    nlu_dir: Path = NLU_DIR
    texts_dir: Path = TEXTS_DIR
    rules: Path = RULES_FILE
    intents_doc: Path | None = INTENTS_DOC


@dataclass
class FaqDraft:
    name: str
    answers: dict[str, str]
    examples: dict[str, list[str]]
    description: str = ""


class FaqRejected(EditRejected):
    """A new FAQ that would break the data: nothing was written. ``fields``: field -> its problems."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = {k: v for k, v in fields.items() if v}
        super().__init__([f"{k}: {p}" if k else p for k, problems in self.fields.items() for p in problems])


def split_examples(text: str) -> list[str]:
    """The examples of a text field: one a line, a leading ``-`` or ``*`` taken off."""
    return [line.strip().lstrip("-*•").strip() for line in text.splitlines() if line.strip().lstrip("-*•").strip()]


def read_draft(path: Path, name: str) -> FaqDraft:
    """A draft from a YAML file (``bot faq add NAME --from-file FILE``)::

    description: what a person asks (a row of docs/intents.md)
    answers: {en: …, zh-Hans: …, ru: …, fr: …}      # zh-Hant: optional
    examples: {en: [… 15 or more …], zh-Hans: […], ru: […], fr: […]}
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise FaqRejected({"": [f"{path}: cannot read: {error}"]}) from None
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("answers"), dict)
        or not isinstance(raw.get("examples"), dict)
    ):
        raise FaqRejected({"": [f"{path}: expected `answers:` and `examples:` mappings by language"]})
    examples = {}
    for code, items in raw["examples"].items():
        examples[str(code)] = [str(e) for e in items] if isinstance(items, list) else split_examples(str(items or ""))
    answers = {str(code): str(text) for code, text in raw["answers"].items() if text is not None}
    return FaqDraft(name=name, answers=answers, examples=examples, description=str(raw.get("description") or ""))


# --- where each piece goes ------------------------------------------------------------


def _after_last(lines: list[str], starts: str, ends: Callable[[str], bool]) -> int:
    """The index after the last entry whose first line starts with ``starts`` (its lines run
    while ``ends(line)`` is false), or -1 when there is none."""
    found = -1
    i = 0
    while i < len(lines):
        if lines[i].startswith(starts):
            j = i + 1
            while j < len(lines) and not ends(lines[j]):
                j += 1
            found, i = j, j
        else:
            i += 1
    return found


def _insert(source: str, starts: str, ends: Callable[[str], bool], block: list[str]) -> str:
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    at = _after_last(lines, starts, ends)
    # trailing blank lines stay after the new entry
    while at > 0 and not lines[at - 1].strip():
        at -= 1
    lines[at if at >= 0 else len(lines) : at if at >= 0 else len(lines)] = block
    return "".join(lines)


def with_domain_intent(source: str, name: str) -> str:
    """domain.yml with ``  - name`` after the last ``  - ask_…`` of the intents."""
    lines = source.splitlines(keepends=True)
    indices = [i for i, line in enumerate(lines) if re.match(r"^\s*- ask_\w+\s*$", line)]
    if indices:
        last = indices[-1]
        indent = lines[last][: len(lines[last]) - len(lines[last].lstrip())]
        lines.insert(last + 1, f"{indent}- {name}\n")
        return "".join(lines)
    start = next(i for i, line in enumerate(lines) if line.startswith("intents:"))
    lines.insert(start + 1, f"  - {name}\n")
    return "".join(lines)


def with_rule(source: str, name: str) -> str:
    block = [f"- rule: answer {name}\n", "  steps:\n", f"  - intent: {name}\n", "  - action: action_answer_question\n"]
    return _insert(source, "- rule: answer ask_", lambda line: line.startswith("- ") or not line.startswith(" "), block)


def with_examples(source: str, name: str, examples: list[str]) -> str:
    block = [f"- intent: {name}\n", "  examples: |\n"] + [f"    - {e}\n" for e in examples]
    return _insert(source, "- intent: ask_", lambda line: line.startswith("- ") or not line.startswith(" "), block)


def with_new_text(source: str, key: str, value: str) -> str:
    """A texts file with ``key: value`` after its last ``ask_…`` text, in that text's style
    (``>-`` lines, or one quoted line)."""
    lines = source.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if re.match(r"^ask_\w+:", line)]
    if not starts:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        return "".join(lines + _entry(key, value, any(line.rstrip().endswith(": >-") for line in lines)))
    start = starts[-1]
    entry = _entry(key, value, lines[start].rstrip().endswith(">-"))
    name = lines[start].split(":", 1)[0]
    _, end = _block(lines, name)
    lines[end:end] = entry
    return "".join(lines)


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "/").split())


def with_doc_row(source: str, name: str, description: str) -> str | None:
    """docs/intents.md with a row for the intent after the last ``ask_…`` row (None: no table there)."""
    lines = source.splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if line.startswith("| `ask_")]
    if not rows:
        return None
    lines.insert(rows[-1] + 1, f"| `{name}` | {_cell(description)} | the staff's answer, in data/texts |\n")
    return "".join(lines)


# --- the checks ------------------------------------------------------------------------


def _placeholder_problems(text: str, known: set[str]) -> list[str]:
    try:
        names = [n for _, n, spec, conv in string.Formatter().parse(text) if n is not None]
    except ValueError:
        return ["a lone { or } (use {address}, {department}… or no braces)"]
    unknown = sorted({n for n in names if n not in known})
    if unknown:
        return [f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; known: "
                f"{', '.join('{' + k + '}' for k in sorted(known))}"]  # fmt: skip
    return []


def check_draft(draft: FaqDraft, files: FaqFiles) -> tuple[dict[str, list[str]], dict[str, str], dict[str, list[str]]]:
    """(problems by field, the cleaned answers, the cleaned examples by language)."""
    reg = registry()
    problems: dict[str, list[str]] = {}
    name = draft.name.strip()
    if not NAME.match(name) or len(name) > MAX_NAME_CHARS:
        problems.setdefault("name", []).append(
            f"must be ask_ and a topic in lower-case words joined by _ (ask_library_hours), at most {MAX_NAME_CHARS} "
            "characters"
        )
    elif name in domain_intents(files.domain):
        problems.setdefault("name", []).append(f"{name} is an intent already ({files.domain})")
    else:
        existing = load_texts(files.texts_dir).by_language[reg.default]
        if name in existing:
            problems.setdefault("name", []).append(f"{name} is the name of a text already (data/texts)")
    description = " ".join(CONTROL.sub(" ", draft.description).split())
    if len(description) > MAX_DESCRIPTION_CHARS:
        problems.setdefault("description", []).append(f"longer than {MAX_DESCRIPTION_CHARS} characters")
    try:
        known = set(fact_values(reg.default))
    except (FactsError, TextsError, KeyError) as error:
        known = set()
        problems.setdefault("", []).append(f"the facts cannot be read: {error}")
    answers: dict[str, str] = {}
    for code, lang in reg.languages.items():
        value = draft.answers.get(code, "")
        if lang.derive_from and not value.strip():
            continue  # the conversion of its base language
        try:
            answers[code] = clean_text(value)
        except EditRejected as rejected:
            problems.setdefault(f"answer.{code}", []).extend(rejected.problems)
            continue
        problems.setdefault(f"answer.{code}", []).extend(_placeholder_problems(answers[code], known))
    unknown = sorted(set(draft.answers) - set(reg.codes)) + sorted(set(draft.examples) - set(reg.codes))
    if unknown:
        problems.setdefault("", []).append(f"unknown language(s): {', '.join(unknown)}")
    examples: dict[str, list[str]] = {}
    for code, lang in reg.languages.items():
        given = [e for e in draft.examples.get(code, []) if e.strip()]
        if lang.derive_from and not given:
            given = [to_traditional(e) for e in examples.get(lang.derive_from, [])]
        cleaned, seen, field_problems = [], set(), []
        for text in given:
            try:
                text = clean_example(text)
            except EditRejected as rejected:
                field_problems += [f"{text[:60]!r}: {p}" for p in rejected.problems]
                continue
            if normal(text) in seen:
                field_problems.append(f"{text!r} is there twice")
                continue
            seen.add(normal(text))
            cleaned.append(text)
        path = files.nlu_dir / f"{code}.yml"
        if path.exists():
            for intent, rows in read_example_lines(path).items():
                for text, line in rows:
                    if normal(text) in seen:
                        field_problems.append(f"{text!r} is already an example of {intent} ({path}:{line})")
        if len(cleaned) < MIN_TRAINING_EXAMPLES:
            field_problems.append(f"{len(cleaned)} example(s): at least {MIN_TRAINING_EXAMPLES} are needed")
        examples[code] = cleaned
        problems.setdefault(f"examples.{code}", []).extend(field_problems)
    return {k: v for k, v in problems.items() if v}, answers, examples


def add_faq(draft: FaqDraft, files: FaqFiles | None = None) -> list[Path]:
    """Writes the new FAQ to every file (see the module); the files changed. ``FaqRejected``: none."""
    files = files or FaqFiles()
    reg = registry()
    problems, answers, examples = check_draft(draft, files)
    if problems:
        raise FaqRejected(problems)
    name = draft.name.strip()
    description = " ".join(CONTROL.sub(" ", draft.description).split()) or examples[reg.default][0]
    edited: dict[Path, str] = {
        files.domain: with_domain_intent(files.domain.read_text(encoding="utf-8"), name),
        files.rules: with_rule(files.rules.read_text(encoding="utf-8"), name),
    }
    for code, lang in reg.languages.items():
        texts_file = files.texts_dir / f"{code}.yml"
        if lang.derive_from:
            base = answers[lang.derive_from]
            if code in answers and answers[code] != to_traditional(base):
                edited[texts_file] = with_new_text(texts_file.read_text(encoding="utf-8"), name, answers[code])
        else:
            edited[texts_file] = with_new_text(texts_file.read_text(encoding="utf-8"), name, answers[code])
        nlu_file = files.nlu_dir / f"{code}.yml"
        edited[nlu_file] = with_examples(nlu_file.read_text(encoding="utf-8"), name, examples[code])
    if files.intents_doc is not None and files.intents_doc.exists():
        row = with_doc_row(files.intents_doc.read_text(encoding="utf-8"), name, description)
        if row is not None:
            edited[files.intents_doc] = row
    found = _check_copy(edited, files, name)
    if found:
        raise FaqRejected(found)
    for path, text in edited.items():
        replace(path, text)
    return list(edited)


def _check_copy(edited: dict[Path, str], files: FaqFiles, name: str) -> dict[str, list[str]]:
    """The checks of ``make validate`` on a copy of the files with the edits; problems by field."""
    reg = registry()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        copies = {files.domain: root / "domain.yml", files.rules: root / "rules.yml"}
        shutil.copytree(files.nlu_dir, root / "nlu")
        shutil.copytree(files.texts_dir, root / "texts")
        for path in list(edited):
            if path.parent == files.nlu_dir:
                copies[path] = root / "nlu" / path.name
            elif path.parent == files.texts_dir:
                copies[path] = root / "texts" / path.name
        for path, text in edited.items():
            if path in copies:
                copies[path].write_text(text, encoding="utf-8")
        found: list[str] = []
        try:
            intents = domain_intents(copies[files.domain])
            rules = yaml.safe_load(copies[files.rules].read_text(encoding="utf-8"))
            steps = [r.get("steps") for r in rules.get("rules", []) if r.get("rule") == f"answer {name}"]
            if steps != [[{"intent": name}, {"action": "action_answer_question"}]]:
                found.append(f"{files.rules}: the rule of {name} would not be read back")
        except (yaml.YAMLError, AttributeError, KeyError) as error:
            intents, found = [], [f"domain or rules: not valid YAML: {error}"]
        if name not in intents:
            found.append(f"{files.domain}: {name} would not be read back as an intent")
        found += example_problems(root / "nlu", MIN_TRAINING_EXAMPLES, intents)
        for code in reg.codes:
            if len(read_examples(root / "nlu" / f"{code}.yml").get(name, [])) < MIN_TRAINING_EXAMPLES:
                found.append(f"{files.nlu_dir / (code + '.yml')}: the examples of {name} would not be read back")
        try:
            texts = load_texts(root / "texts")
            found += texts.problems()
            for code in reg.codes:
                if not texts.by_language[code].get(name):
                    found.append(f"{files.texts_dir / (code + '.yml')}: the text {name} would not be read back")
        except TextsError as error:
            found.append(str(error))
        found = [p.replace(str(root / "nlu"), str(files.nlu_dir)).replace(str(root / "texts"), str(files.texts_dir))
                 .replace(str(root), str(files.domain.parent)) for p in found]  # fmt: skip
    by_field: dict[str, list[str]] = {}
    for problem in found:
        code = next((c for c in sorted(reg.codes, key=len, reverse=True) if f"/{c}.yml" in problem), None)
        where = "" if code is None else ("examples." if str(files.nlu_dir) in problem else "answer.") + code
        by_field.setdefault(where, []).append(problem)
    return by_field
