"""The data checks of ``make validate``: the bot's data (``bot.core.validation``)
plus the held-out exam in ``tests/nlu_holdout/``: enough questions per intent in
every language, enough near-miss questions (``tests/nlu_holdout/near_miss/``, all
``out_of_scope``) in every language, and none of them copied into the training data.

    python -m bot.tools.datacheck
"""

from __future__ import annotations

import sys

from bot.core import validation
from bot.core.paths import NLU_DIR, ROOT
from bot.core.validation import domain_intents, example_problems, normal, read_examples

HOLDOUT_DIR = ROOT / "tests" / "nlu_holdout"
# Questions that name something the bot knows but ask for what the brief does not
# give ("who is the director of the department?"): all out_of_scope, counted apart.
NEAR_MISS_DIR = HOLDOUT_DIR / "near_miss"
MIN_HOLDOUT_EXAMPLES = 8
MIN_NEAR_MISS_EXAMPLES = 12


def leak_problems() -> list[str]:
    """Held-out questions must never be in the training data."""
    training = {normal(e) for path in NLU_DIR.glob("*.yml") for ex in read_examples(path).values() for e in ex}
    found = []
    for path in sorted(HOLDOUT_DIR.glob("*.yml")) + sorted(NEAR_MISS_DIR.glob("*.yml")):
        for intent, examples in read_examples(path).items():
            found += [f"{path}: {intent}: {e!r} is also a training example" for e in examples if normal(e) in training]
    return found


def problems() -> list[str]:
    found = validation.problems()
    found += example_problems(HOLDOUT_DIR, MIN_HOLDOUT_EXAMPLES, domain_intents())
    found += example_problems(NEAR_MISS_DIR, MIN_NEAR_MISS_EXAMPLES, ["out_of_scope"])
    return found + leak_problems()


def main() -> int:
    found = problems()
    for problem in found:
        print(problem)
    print("data and held-out set: OK" if not found else f"{len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
