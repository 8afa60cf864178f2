"""Checks that every language has everything the bot needs: facts, texts, training examples.

``problems()`` returns every problem found, in one run, one line each, starting
with the file and line (``data/facts/department.yml:27: ...``) and naming the
language and the key, field or intent; ``bot check`` (and ``make validate``)
prints them, and a test fails on any. No Rasa import: it runs in a second.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.core import choices
from bot.core.facts import FactsError, load_facts
from bot.core.languages import LanguagesError, Registry, registry
from bot.core.paths import DOMAIN_FILE, FACTS_FILE, NLU_DIR
from bot.core.texts import LOADER, TextsError, load_texts

MIN_TRAINING_EXAMPLES = 15


def domain_intents(path: Path = DOMAIN_FILE) -> list[str]:
    return list(yaml.safe_load(path.read_text(encoding="utf-8"))["intents"])


def read_examples(path: Path) -> dict[str, list[str]]:
    """Intent -> examples of a Rasa NLU YAML file."""
    return {intent: [text for text, _ in rows] for intent, rows in read_example_lines(path).items()}


def read_example_lines(path: Path) -> dict[str, list[tuple[str, int]]]:
    """Intent -> (example, line number) of a Rasa NLU YAML file, in file order."""
    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=LOADER)
    examples: dict[str, list[tuple[str, int]]] = {}
    nlu = _child(root, "nlu")
    for block in nlu.value if isinstance(nlu, yaml.SequenceNode) else []:
        intent, node = _child(block, "intent"), _child(block, "examples")
        if not isinstance(intent, yaml.ScalarNode):
            continue
        rows = examples.setdefault(intent.value, [])
        if not isinstance(node, yaml.ScalarNode):
            continue
        # a block scalar (`examples: |`) starts on the line after its indicator
        first = node.start_mark.line + (2 if node.style in ("|", ">") else 1)
        for offset, line in enumerate(node.value.splitlines()):
            text = line.strip()[2:].strip()
            if text:
                rows.append((text, first + offset))
    return examples


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for name, value in node.value:
            if isinstance(name, yaml.ScalarNode) and name.value == key:
                return value
    return None


def normal(text: str) -> str:
    """An example as compared for copies: lower case, single spaces."""
    return " ".join(text.lower().split())


def example_problems(directory: Path, minimum: int, intents: list[str]) -> list[str]:
    """Every language has a file in ``directory`` with ``minimum`` examples of every intent."""
    found = []
    for code in registry().codes:
        path = directory / f"{code}.yml"
        if not path.exists():
            found.append(f"{path}: {code}: missing (every language of data/languages.yml needs one)")
            continue
        examples = read_example_lines(path)
        lines = _intent_lines(path)
        for intent in intents:
            count = len(examples.get(intent, []))
            if intent not in examples:
                found.append(f"{path}: {code}: intent {intent!r} has no examples, needs {minimum}")
            elif count < minimum:
                found.append(f"{path}:{lines[intent]}: {code}: intent {intent!r} has {count} examples, needs {minimum}")
        found += [
            f"{path}:{lines[i]}: {code}: intent {i!r} is not in domain.yml" for i in examples.keys() - set(intents)
        ]
    return found


def _intent_lines(path: Path) -> dict[str, int]:
    """Intent -> the line of its first `- intent:` in a Rasa NLU YAML file."""
    nlu = _child(yaml.compose(path.read_text(encoding="utf-8"), Loader=LOADER), "nlu")
    lines: dict[str, int] = {}
    for block in nlu.value if isinstance(nlu, yaml.SequenceNode) else []:
        intent = _child(block, "intent")
        if isinstance(intent, yaml.ScalarNode):
            lines.setdefault(intent.value, block.start_mark.line + 1)
    return lines


def fact_name_problems(path: Path = FACTS_FILE, languages: Registry | None = None) -> list[str]:
    """Every name in the facts file (a mapping with a name in the default language)
    that lacks a base language of data/languages.yml, with its line."""
    languages = languages or registry()
    base = [code for code, lang in languages.languages.items() if not lang.derive_from]
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=LOADER)
    except (OSError, yaml.YAMLError) as error:
        return [f"{path}: cannot read: {error}"]
    found: list[str] = []

    def walk(node: yaml.Node | None, field: str) -> None:
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{field}[{index}]")
        elif isinstance(node, yaml.MappingNode):
            keys = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            if languages.default in keys and keys.keys() <= set(languages.codes):
                for code in base:
                    value = keys.get(code)
                    if not isinstance(value, yaml.ScalarNode) or not str(value.value).strip():
                        found.append(f"{path}:{node.start_mark.line + 1}: {field}.{code}: missing ({code} name)")
                return
            for key, value in keys.items():
                walk(value, f"{field}.{key}" if field else key)

    walk(root, "")
    return found


def problems() -> list[str]:
    """Every problem of the languages, facts, texts, typed options and training examples, in one run."""
    try:
        registry()
    except LanguagesError as error:
        return [str(error)]
    found = fact_name_problems()
    if not found:
        try:
            load_facts()
        except FactsError as error:
            found.append(str(error))
    try:
        found += load_texts().problems()
    except TextsError as error:
        found.append(str(error))
    found += choices.problems()
    return found + example_problems(NLU_DIR, MIN_TRAINING_EXAMPLES, domain_intents())
