"""Edits of the training examples (``data/nlu/<lang>.yml``) as a developer writes them.

An example is added as one more ``    - text`` line at the end of its intent's
``examples: |`` block (a new block at the end of the file when the language has
none for that intent), so ``git diff`` shows one line. Every edit is made on a
copy first and checked with the checks of ``make validate``
(``bot.core.validation``: the file reads as Rasa NLU YAML, every intent is in
domain.yml and has enough examples in every language), and the text must not be
an example already; an edit that fails changes no file (``EditRejected`` lists
the problems, each with file and line). The file is then replaced atomically.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from bot.core.paths import DOMAIN_FILE, NLU_DIR
from bot.core.validation import MIN_TRAINING_EXAMPLES, domain_intents, example_problems, normal, read_example_lines

MAX_EXAMPLE_CHARS = 300
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class EditRejected(ValueError):
    """An edit that would break the data: nothing was written."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def clean_example(text: str) -> str:
    """An example as one line of a block scalar, or ``EditRejected``."""
    text = " ".join(CONTROL.sub(" ", text).split())
    problems = []
    if not text:
        problems.append("the example is empty")
    if len(text) > MAX_EXAMPLE_CHARS:
        problems.append(f"the example is longer than {MAX_EXAMPLE_CHARS} characters")
    if text.startswith("/"):
        problems.append("an example cannot start with '/' (Rasa reads it as an intent)")
    if re.search(r"\]\s*[({]", text):
        problems.append("an example cannot contain '](' or ']{' (Rasa reads it as an entity)")
    if problems:
        raise EditRejected(problems)
    return text


def _with_example(source: str, intent: str, text: str) -> str:
    """The file's text with ``text`` added at the end of ``intent``'s examples."""
    lines = source.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == f"- intent: {intent}"), None)
    if start is None:
        block = f"- intent: {intent}\n  examples: |\n    - {text}\n"
        return source + ("" if source.endswith("\n") else "\n") + block
    last = start
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if lines[i].startswith("- ") or (stripped and not lines[i].startswith(" ")):
            break  # the next block
        if lines[i].startswith("    - "):
            last = i
    if last == start:  # `examples: |` with no line yet
        last = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("examples:"))
    if not lines[last].endswith("\n"):
        lines[last] += "\n"
    lines.insert(last + 1, f"    - {text}\n")
    return "".join(lines)


def check_directory(directory: Path, intents: list[str]) -> list[str]:
    """The problems ``make validate`` finds in a folder of NLU files."""
    found = []
    for path in sorted(directory.glob("*.yml")):
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            found.append(f"{path}: not valid YAML: {error}")
    return found or example_problems(directory, MIN_TRAINING_EXAMPLES, intents)


def add_example(language: str, intent: str, text: str, nlu_dir: Path = NLU_DIR, domain: Path = DOMAIN_FILE) -> Path:
    """Adds ``text`` as an example of ``intent`` in ``nlu_dir/<language>.yml``; returns the file."""
    text = clean_example(text)
    intents = domain_intents(domain)
    path = nlu_dir / f"{language}.yml"
    if intent not in intents:
        raise EditRejected([f"{domain}: intent {intent!r} is not in the domain"])
    if not path.exists():
        raise EditRejected([f"{path}: no training file for language {language!r}"])
    for other, rows in read_example_lines(path).items():
        for example, line in rows:
            if normal(example) == normal(text):
                raise EditRejected([f"{path}:{line}: {text!r} is already an example of {other!r}"])
    edited = _with_example(path.read_text(encoding="utf-8"), intent, text)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch)
        for other in nlu_dir.glob("*.yml"):
            shutil.copy(other, copy / other.name)
        (copy / path.name).write_text(edited, encoding="utf-8")
        problems = [p.replace(str(copy / path.name), str(path)) for p in check_directory(copy, intents)]
        if text not in [e for e, _ in read_example_lines(copy / path.name).get(intent, [])]:
            problems.append(f"{path}: the example would not be read back as an example of {intent!r}")
    if problems:
        raise EditRejected(problems)
    replace(path, edited)
    return path


def replace(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (a reader sees the old file or the new one)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
