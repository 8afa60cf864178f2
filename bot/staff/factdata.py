"""Edits of the department's facts (``data/facts/department.yml``) in place.

Every scalar of the file (a name in one language, a number, the postcode) is a
*field* with a dotted path (``partners.countries[2].fr``) and its line. An edit
replaces the field's characters in the file and nothing else, so the comments, the
flow mappings and the order stay as a developer wrote them and ``git diff`` shows one
line per field. The edited file is checked first (``bot.core.facts.load_facts``,
``bot.core.validation.fact_name_problems``, numbers stay numbers); a failing edit
changes no file (``EditRejected``, each problem with the field it concerns).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.core.facts import FactsError, load_facts
from bot.core.paths import FACTS_FILE
from bot.core.texts import LOADER
from bot.core.validation import fact_name_problems
from bot.staff.nludata import CONTROL, EditRejected, replace

PLAIN = re.compile(r"[^\s\"'#:{}\[\],&*!|>%@`-][^\"#:{}\[\],]*")


@dataclass(frozen=True)
class Field:
    path: str
    value: str
    line: int
    number: bool
    start: int  # character offsets of the scalar in the file
    end: int


def fields(path: Path = FACTS_FILE) -> list[Field]:
    """Every scalar of the facts file, in file order."""
    source = path.read_text(encoding="utf-8")
    found: list[Field] = []

    def walk(node: yaml.Node, where: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, f"{where}.{key.value}" if where else str(key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{where}[{index}]")
        elif isinstance(node, yaml.ScalarNode):
            number = node.tag.endswith(":int") or (node.style is None and node.value.isdigit())
            found.append(Field(where, node.value, node.start_mark.line + 1, number, node.start_mark.index,
                               node.end_mark.index))  # fmt: skip

    walk(yaml.compose(source, Loader=LOADER), "")
    return found


def _scalar(value: str, number: bool) -> str:
    if number:
        return value
    if PLAIN.fullmatch(value) and value == value.strip() and not value.isdigit():
        return value
    return json.dumps(value, ensure_ascii=False)


def set_facts(values: dict[str, str], path: Path = FACTS_FILE) -> bool:
    """Sets the fields of ``values`` (path -> new text); returns whether the file changed."""
    by_path = {f.path: f for f in fields(path)}
    problems, changes = [], []
    for name, raw in values.items():
        field = by_path.get(name)
        if field is None:
            problems.append(f"{name}: no such field")
            continue
        value = " ".join(CONTROL.sub(" ", raw).split())
        if value == field.value:
            continue
        if not value:
            problems.append(f"{name}: empty")
        elif field.number and not value.isdigit():
            problems.append(f"{name}: must be a whole number")
        else:
            changes.append((field, _scalar(value, field.number)))
    if problems:
        raise EditRejected([f"{path}:{by_path[p.split(':')[0]].line}: {p}" if p.split(":")[0] in by_path else p
                            for p in problems])  # fmt: skip
    if not changes:
        return False
    source = path.read_text(encoding="utf-8")
    for field, text in sorted(changes, key=lambda c: c[0].start, reverse=True):
        source = source[: field.start] + text + source[field.end :]
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder) / path.name
        scratch.write_text(source, encoding="utf-8")
        try:
            found = fact_name_problems(scratch)
            if not found:
                try:
                    load_facts(scratch)
                except FactsError as error:
                    found = [str(error)]
            edited = {f.path for f in fields(scratch)}
            found += [f"{f.path}: would not read back" for f, _ in changes if f.path not in edited]
        except yaml.YAMLError as error:
            found = [f"{path}: not valid YAML: {error}"]
    if found:
        raise EditRejected([p.replace(str(scratch), str(path)) for p in found])
    replace(path, source)
    return True
