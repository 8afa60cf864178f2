"""Checks that every language has everything: texts, training and test examples.

``problems()`` returns one line per problem, naming the file, the language and
the key or intent; ``bot check`` (and ``make validate``) prints them, and a test
fails on any. No Rasa import: it runs in a second.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.languages import LanguagesError, registry

ROOT = Path(__file__).resolve().parent.parent
NLU_DIR = ROOT / "data" / "nlu"
HOLDOUT_DIR = ROOT / "tests" / "nlu_holdout"
MIN_TRAINING_EXAMPLES = 15
MIN_HOLDOUT_EXAMPLES = 8


def domain_intents(path: Path = ROOT / "domain.yml") -> list[str]:
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


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def example_problems(directory: Path, minimum: int, intents: list[str]) -> list[str]:
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


def leak_problems() -> list[str]:
    """Held-out questions must never be in the training data."""
    training = {_normal(e) for path in NLU_DIR.glob("*.yml") for ex in read_examples(path).values() for e in ex}
    found = []
    for path in sorted(HOLDOUT_DIR.glob("*.yml")):
        for intent, examples in read_examples(path).items():
            found += [f"{path}: {intent}: {e!r} is also a training example" for e in examples if _normal(e) in training]
    return found


def problems() -> list[str]:
    from actions.facts import FactsError, load_facts
    from actions.texts import TextsError, load_texts

    try:
        registry()
        load_facts()
        found = load_texts().problems()
    except (LanguagesError, FactsError, TextsError) as error:
        return [str(error)]
    intents = domain_intents()
    found += example_problems(NLU_DIR, MIN_TRAINING_EXAMPLES, intents)
    found += example_problems(HOLDOUT_DIR, MIN_HOLDOUT_EXAMPLES, intents)
    return found + leak_problems()
