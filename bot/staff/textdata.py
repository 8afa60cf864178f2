"""Edits of what the bot says (``data/texts/<lang>.yml``) as a developer writes them.

A text is replaced where it is, in the file's own style: ``key: >-`` and lines
of at most 80 characters in the Latin and Cyrillic files, ``key: "…"`` on one line
in the Chinese ones. Traditional Chinese is converted from Simplified: a
Traditional text is written to ``zh-Hant.yml`` only when it differs from the
conversion (an override), and removed from it when it no longer does. Every edit
is checked first on a copy with the checks of ``make validate`` (every language
has every key, with the same placeholders); one that fails changes no file
(``EditRejected``, each problem with its file and line). The action server reads
the texts again when their files change (``bot.core.texts.reload_if_changed``).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import textwrap
from pathlib import Path

from bot.core.languages import registry, to_traditional
from bot.core.paths import TEXTS_DIR
from bot.core.texts import TextsError, load_texts, placeholders_of
from bot.staff.nludata import CONTROL, EditRejected, replace

MAX_TEXT_CHARS = 2000
KEY_LINE = re.compile(r"^([A-Za-z0-9_]+):")


def _block(lines: list[str], key: str) -> tuple[int, int] | None:
    """The lines [start, end) of ``key``'s entry: its line and the indented lines after it."""
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{key}:")), None)
    if start is None:
        return None
    end = start + 1
    while end < len(lines):
        indented = lines[end].startswith((" ", "\t"))
        blank_inside = not lines[end].strip() and end + 1 < len(lines) and lines[end + 1].startswith((" ", "\t"))
        if not (indented or blank_inside):
            break
        end += 1
    return start, end


def _entry(key: str, value: str, folded: bool) -> list[str]:
    if folded and "\n" not in value and not value.startswith(("'", '"', "{", "[", "&", "*", "!", "|", ">", "%", "@")):
        wrapped = textwrap.wrap(value, width=78, break_long_words=False, break_on_hyphens=False)
        return [f"{key}: >-\n"] + [f"  {line}\n" for line in wrapped]
    return [f"{key}: {json.dumps(value, ensure_ascii=False)}\n"]


def with_text(source: str, key: str, value: str | None) -> str:
    """The file's text with ``key`` set to ``value`` (None: removed), in the file's style."""
    lines = source.splitlines(keepends=True)
    found = _block(lines, key)
    folded = any(line.rstrip().endswith(": >-") for line in lines)
    if found is not None:
        start, end = found
        folded = lines[start].rstrip().endswith(">-") or (folded and lines[start].rstrip() == f"{key}:")
        lines[start:end] = [] if value is None else _entry(key, value, folded)
    elif value is not None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines += _entry(key, value, folded)
    return "".join(lines)


def clean_text(value: str) -> str:
    value = CONTROL.sub(" ", value.replace("\r\n", "\n")).strip()
    value = " ".join(value.split())
    if not value:
        raise EditRejected(["the text is empty"])
    if len(value) > MAX_TEXT_CHARS:
        raise EditRejected([f"the text is longer than {MAX_TEXT_CHARS} characters"])
    return value


def set_texts(key: str, values: dict[str, str], texts_dir: Path = TEXTS_DIR) -> list[Path]:
    """Sets ``key`` in each language of ``values``; checks all of them together; returns the files changed."""
    reg = registry()
    current = load_texts(texts_dir)
    if key not in current.by_language[reg.default]:
        raise EditRejected([f"{texts_dir / (reg.default + '.yml')}: no text {key!r}"])
    problems: list[str] = []
    cleaned: dict[str, str] = {}
    for language, value in values.items():
        if language not in reg.languages:
            problems.append(f"unknown language {language!r}")
            continue
        try:
            cleaned[language] = clean_text(value)
        except EditRejected as rejected:
            problems += [f"{language}: {p}" for p in rejected.problems]
    if problems:
        raise EditRejected(problems)
    edited: dict[str, str] = {}
    for language, value in cleaned.items():
        lang = reg.languages[language]
        path = texts_dir / f"{language}.yml"
        source = edited.get(path.name, path.read_text(encoding="utf-8") if path.exists() else "")
        if lang.derive_from:
            base = cleaned.get(lang.derive_from, current.by_language[lang.derive_from][key])
            override = None if value == to_traditional(base) else value
            edited[path.name] = with_text(source, key, override)
        elif value != current.by_language[language][key]:
            edited[path.name] = with_text(source, key, value)
    edited = {name: text for name, text in edited.items() if text != _read(texts_dir / name)}
    if not edited:
        return []
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch)
        for path in texts_dir.glob("*.yml"):
            shutil.copy(path, copy / path.name)
        for name, text in edited.items():
            (copy / name).write_text(text, encoding="utf-8")
        try:
            checked = load_texts(copy)
            problems = checked.problems()
            reference = placeholders_of(current.by_language[reg.default][key])  # they stay as they are
            for language in cleaned:
                if placeholders_of(checked.by_language[language][key]) != reference:
                    problems.append(f"{language}: the placeholders must be {sorted(reference)}")
        except TextsError as error:
            problems = [str(error)]
        problems = [p.replace(str(copy), str(texts_dir)) for p in problems]
    if problems:
        raise EditRejected(problems)
    for name, text in edited.items():
        replace(texts_dir / name, text)
    return [texts_dir / name for name in edited]


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""
