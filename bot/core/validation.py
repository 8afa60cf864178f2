"""Checks that every language has everything the bot needs: facts, texts, training examples.

``problems()`` returns one line per problem, naming the file, the language and
the key or intent; ``bot check`` (and ``make validate``) prints them, and a test
fails on any. No Rasa import: it runs in a second.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.core import choices
from bot.core.facts import FactsError, load_facts
from bot.core.languages import LanguagesError, registry
from bot.core.paths import DOMAIN_FILE, NLU_DIR
from bot.core.texts import TextsError, load_texts

MIN_TRAINING_EXAMPLES = 15


def domain_intents(path: Path = DOMAIN_FILE) -> list[str]:
    return list(yaml.safe_load(path.read_text(encoding="utf-8"))["intents"])


def read_examples(path: Path) -> dict[str, list[str]]:
    """Intent -> examples of a Rasa NLU YAML file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    examples: dict[str, list[str]] = {}
    for block in data.get("nlu", []):
        if "intent" in block:
            lines = [line.strip()[2:].strip() for line in block.get("examples", "").splitlines()]
            examples.setdefault(block["intent"], []).extend(line for line in lines if line)
    return examples


def normal(text: str) -> str:
    """An example as compared for copies: lower case, single spaces."""
    return " ".join(text.lower().split())


def example_problems(directory: Path, minimum: int, intents: list[str]) -> list[str]:
    """Every language has a file in ``directory`` with ``minimum`` examples of every intent."""
    found = []
    for code in registry().codes:
        path = directory / f"{code}.yml"
        if not path.exists():
            found.append(f"{path} ({code}): missing")
            continue
        examples = read_examples(path)
        for intent in intents:
            count = len(examples.get(intent, []))
            if count < minimum:
                found.append(f"{path} ({code}): intent {intent!r} has {count} examples, needs {minimum}")
        found += [f"{path} ({code}): intent {i!r} is not in domain.yml" for i in examples.keys() - set(intents)]
    return found


def problems() -> list[str]:
    """Every problem of the languages, facts, texts, typed options and training examples."""
    try:
        registry()
        load_facts()
        found = load_texts().problems()
    except (LanguagesError, FactsError, TextsError) as error:
        return [str(error)]
    found += choices.problems()
    return found + example_problems(NLU_DIR, MIN_TRAINING_EXAMPLES, domain_intents())
