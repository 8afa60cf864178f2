"""Intent accuracy per language on the held-out questions (never trained on).

    python -m bot.tools.evaluate [--model models/njupt.tar.gz] [--no-plots]
    python -m bot.tools.evaluate --guard --model CANDIDATE   (bot publish: exit 1 below the publish floor)
    python -m bot.tools.evaluate --guard --strict ...        (the same at the tests' targets)

Writes ``reports/evaluation.md`` (accuracy, macro-F1, out-of-scope and near-miss
false accepts and the most frequent confusions, per language) and ``reports/evaluation.json``;
unless ``--no-plots``, also Rasa's own report and plots (``rasa test nlu``) in
``reports/rasa/``. The tests use ``evaluate()`` to guard each language.

An out-of-scope question counts as handled when the model says ``out_of_scope``
or ``nlu_fallback`` (both make the bot say it has no such information); it is a
*false accept* when the model gives it a topic's answer instead.

Near-miss questions name something the bot knows but ask for what the brief does
not give ("who is the director of the department?", "Queen Mary 联合硕士的申请截止日期").
They live in their own files, ``tests/nlu_holdout/near_miss/<language>.yml``, all
``out_of_scope``; they are scored apart from the main held-out set: their false
accepts are reported on their own and do not count in the accuracy, the macro-F1
or the out-of-scope false accepts, which stay those of ``tests/nlu_holdout/<language>.yml``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot.core.languages import registry
from bot.core.paths import MODEL, ROOT
from bot.core.validation import read_examples
from bot.tools.datacheck import HOLDOUT_DIR, NEAR_MISS_DIR, unexamined

REPORTS = ROOT / "reports"
REJECTIONS = {"out_of_scope", "nlu_fallback"}
# The tests' targets, those of issue 11: at least 95% accuracy and at most 5% false accepts
# of each kind in every language (tests/test_nlu.py, tests/test_new_language.py hold the
# shipped data to them). One held-out question moves a language's false accepts by 4-5%.
MIN_ACCURACY = 0.95
MAX_OUT_OF_SCOPE_FALSE_ACCEPTS = 0.05
# Questions that name a known thing but ask for what the brief does not give
# ("who is the director of the department?"): tests/nlu_holdout/near_miss/.
MAX_NEAR_MISS_FALSE_ACCEPTS = 0.05


@dataclass(frozen=True)
class Thresholds:
    """What a model must reach in every language: a floor for accuracy, ceilings for false accepts."""

    name: str
    min_accuracy: float
    max_out_of_scope_false_accepts: float
    max_near_miss_false_accepts: float

    def describe(self) -> str:
        return (f"{self.name}: accuracy >= {self.min_accuracy:.0%}, out-of-scope false accepts <= "
                f"{self.max_out_of_scope_false_accepts:.0%}, near-miss false accepts <= "
                f"{self.max_near_miss_false_accepts:.0%} in every language")  # fmt: skip


TARGETS = Thresholds("the tests' targets", MIN_ACCURACY, MAX_OUT_OF_SCOPE_FALSE_ACCEPTS, MAX_NEAR_MISS_FALSE_ACCEPTS)
# What a staff publish (`bot publish`, the console's Publish) refuses a model below. Not the
# tests' targets on purpose: the tests hold the shipped data to 95/5/5, but a retrain (one
# example added, the same seed) moves a question or two, and with 20 near-miss questions in a
# language one question is 5%; a staff publish must not be blocked by that noise, while a real
# regression (several questions of a language lost) is still refused.
PUBLISH_FLOOR = Thresholds("the publish floor", min_accuracy=0.90, max_out_of_scope_false_accepts=0.12,
                           max_near_miss_false_accepts=0.10)  # fmt: skip


@dataclass
class LanguageResult:
    language: str
    examples: int
    accuracy: float
    macro_f1: float
    out_of_scope_false_accepts: float
    confusions: list[tuple[str, str, int]] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # text, expected, predicted
    near_misses: int = 0
    near_miss_false_accepts: float = 0.0
    near_miss_errors: list[tuple[str, str]] = field(default_factory=list)  # text, predicted


def correct(expected: str, predicted: str) -> bool:
    return predicted == expected or (expected == "out_of_scope" and predicted in REJECTIONS)


def score(language: str, pairs: list[tuple[str, str, str]],
          near_misses: list[tuple[str, str]] = ()) -> LanguageResult:  # fmt: skip
    """Scores (text, expected, predicted) triples of one language, and its near-miss
    questions apart as (text, predicted) pairs."""
    accepted = [(t, p) for t, p in near_misses if p not in REJECTIONS]
    right = sum(correct(e, p) for _, e, p in pairs)
    normal = [(e, e if correct(e, p) else p) for _, e, p in pairs]
    f1s = []
    for intent in sorted({e for e, _ in normal}):
        tp = sum(e == intent and p == intent for e, p in normal)
        fp = sum(e != intent and p == intent for e, p in normal) if intent != "out_of_scope" else 0
        fn = sum(e == intent and p != intent for e, p in normal)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    oos = [p for _, e, p in pairs if e == "out_of_scope"]
    false_accepts = sum(p not in REJECTIONS for p in oos)
    confusions = Counter((e, p) for _, e, p in pairs if not correct(e, p))
    return LanguageResult(
        language=language,
        examples=len(pairs),
        accuracy=right / len(pairs) if pairs else 0.0,
        macro_f1=sum(f1s) / len(f1s) if f1s else 0.0,
        out_of_scope_false_accepts=false_accepts / len(oos) if oos else 0.0,
        confusions=[(e, p, n) for (e, p), n in confusions.most_common(5)],
        errors=[(t, e, p) for t, e, p in pairs if not correct(e, p)],
        near_misses=len(near_misses),
        near_miss_false_accepts=len(accepted) / len(near_misses) if near_misses else 0.0,
        near_miss_errors=accepted,
    )


async def _predict(model: Path, texts: list[str]) -> list[str]:
    import logging

    from rasa.core.agent import Agent
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    configure_logging_and_warnings(logging.WARNING)
    configure_structlog(logging.WARNING)
    agent = Agent.load(str(model))
    predicted = []
    for text in texts:
        parsed = await agent.parse_message(text)
        predicted.append((parsed.get("intent") or {}).get("name") or "nlu_fallback")
    return predicted


def predict(model: Path, texts: list[str]) -> list[str]:
    """The intent the model gives each text (``nlu_fallback`` when it gives none)."""
    return asyncio.run(_predict(model, texts))


def evaluate(model: Path = MODEL, holdout: Path = HOLDOUT_DIR,
             near_miss: Path = NEAR_MISS_DIR) -> dict[str, LanguageResult]:  # fmt: skip
    """Parses every held-out question with the model; results per language."""
    rows = []  # language, text, expected intent, is a near miss
    for code in registry().codes:
        for intent, examples in read_examples(holdout / f"{code}.yml").items():
            rows += [(code, text, intent, False) for text in examples]
        if (near_miss / f"{code}.yml").exists():
            for intent, examples in read_examples(near_miss / f"{code}.yml").items():
                rows += [(code, text, intent, True) for text in examples]
    predicted = predict(model, [text for _, text, _, _ in rows])
    pairs: dict[str, list[tuple[str, str, str]]] = {code: [] for code, *_ in rows}
    near: dict[str, list[tuple[str, str]]] = {code: [] for code, *_ in rows}
    for (code, text, intent, is_near_miss), guess in zip(rows, predicted, strict=True):
        if is_near_miss:
            near[code].append((text, guess))
        else:
            pairs[code].append((text, intent, guess))
    return {code: score(code, pairs[code], near[code]) for code in pairs}


def markdown(results: dict[str, LanguageResult], model: Path) -> str:
    lines = [
        "| language | questions | intent accuracy | macro-F1 | out-of-scope false accepts "
        "| near-miss questions | near-miss false accepts |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        lines.append(
            f"| {r.language} | {r.examples} | {r.accuracy:.1%} | {r.macro_f1:.3f} "
            f"| {r.out_of_scope_false_accepts:.1%} | {r.near_misses} | {r.near_miss_false_accepts:.1%} |"
        )
    lines += ["", "Most frequent confusions (expected → predicted, count):", ""]
    for r in results.values():
        pairs = ", ".join(f"{e} → {p} ({n})" for e, p, n in r.confusions) or "none"
        lines.append(f"- **{r.language}**: {pairs}")
    lines += ["", "Near-miss questions given a topic's answer (question → predicted):", ""]
    for r in results.values():
        accepted = ", ".join(f"{t!r} → {p}" for t, p in r.near_miss_errors) or "none"
        lines.append(f"- **{r.language}**: {accepted}")
    return (
        f"# NLU evaluation on the held-out questions\n\nModel: `{model.name}`; questions: "
        f"`tests/nlu_holdout/`, near misses in `tests/nlu_holdout/near_miss/` (never trained on). "
        f"Made by `make evaluate`.\n\n" + "\n".join(lines) + "\n"
    )


def guard_failures(results: dict[str, LanguageResult], thresholds: Thresholds = PUBLISH_FLOOR) -> list[str]:
    """Each threshold a model fails, one line per language and measure (the figure and the threshold)."""
    t, found = thresholds, []
    for r in results.values():
        if r.accuracy < t.min_accuracy:
            found.append(f"{r.language}: held-out accuracy {r.accuracy:.1%} < {t.min_accuracy:.0%}")
        if r.out_of_scope_false_accepts > t.max_out_of_scope_false_accepts:
            found.append(f"{r.language}: out-of-scope false accepts {r.out_of_scope_false_accepts:.1%} "
                         f"> {t.max_out_of_scope_false_accepts:.0%}")  # fmt: skip
        if r.near_miss_false_accepts > t.max_near_miss_false_accepts:
            found.append(f"{r.language}: near-miss false accepts {r.near_miss_false_accepts:.1%} "
                         f"> {t.max_near_miss_false_accepts:.0%}")  # fmt: skip
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--guard", action="store_true",
                        help="check the publish floor only (no report); exit 1 if a language is below it")  # fmt: skip
    parser.add_argument("--strict", action="store_true", help="with --guard: the tests' targets, not the floor")
    args = parser.parse_args(argv)
    results = evaluate(args.model)
    if args.guard:
        thresholds = TARGETS if args.strict else PUBLISH_FLOOR
        failures = guard_failures(results, thresholds)
        print(f"thresholds: {thresholds.describe()}")
        for r in results.values():
            print(f"{r.language}: accuracy {r.accuracy:.1%}, out-of-scope false accepts "
                  f"{r.out_of_scope_false_accepts:.1%}, near-miss false accepts "
                  f"{r.near_miss_false_accepts:.1%}")  # fmt: skip
        for intent in unexamined():
            print(f"not examined: {intent} (no held-out questions yet)")
        for failure in failures:
            print(f"guard failed: {failure}")
        return 1 if failures else 0
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "evaluation.md").write_text(markdown(results, args.model), encoding="utf-8")
    (REPORTS / "evaluation.json").write_text(
        json.dumps({k: asdict(v) for k, v in results.items()}, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    print(markdown(results, args.model))
    if not args.no_plots:
        subprocess.run(
            [sys.executable, "-m", "rasa", "test", "nlu", "--model", str(args.model),
             "--nlu", str(HOLDOUT_DIR), "--out", str(REPORTS / "rasa")],
            check=True, cwd=ROOT,
        )  # fmt: skip
        print(f"Rasa's report and plots: {REPORTS / 'rasa'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
