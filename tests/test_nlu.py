"""The NLU: the tokenizer, and the model on held-out questions it was never trained on."""

from pathlib import Path

import pytest

from bot.evaluate import LanguageResult, evaluate, score
from bot.nlu import split

from .conftest import LANGUAGES

MIN_ACCURACY = 0.92
MAX_OUT_OF_SCOPE_FALSE_ACCEPTS = 0.05


@pytest.mark.parametrize(
    "text, words",
    [
        ("NJUPT的地址是什么", ["njupt", "的", "地址", "是", "什么"]),
        ("請問國際處地址在哪裡", ["请问", "国际", "处", "地址", "在", "哪里"]),  # Traditional folded
        ("What is 南邮's address?", ["what", "is", "南邮", "s", "address"]),
        ("Où est l’adresse ?", ["où", "est", "l’adresse"]),
        ("По-русски, пожалуйста", ["по-русски", "пожалуйста"]),
        ("😀😀", []),
    ],
)
def test_the_tokenizer_segments_every_language(text, words):
    assert [w for w, _ in split(text)] == words



def test_scoring_counts_a_fallback_on_an_out_of_scope_question_as_right():
    result = score("en", [("fees?", "out_of_scope", "nlu_fallback"), ("hi", "greet", "greet"),
                          ("visa?", "out_of_scope", "ask_address"), ("bye", "goodbye", "thanks")])  # fmt: skip
    assert result.accuracy == 0.5
    assert result.out_of_scope_false_accepts == 0.5
    assert result.confusions[0][2] == 1


@pytest.fixture(scope="module")
def held_out(model: Path) -> dict[str, LanguageResult]:
    return evaluate(model)


@pytest.mark.model
@pytest.mark.parametrize("language", LANGUAGES)
def test_held_out_accuracy_per_language(held_out, language):
    result = held_out[language]
    errors = "\n".join(f"  {t!r}: expected {e}, got {p}" for t, e, p in result.errors)
    assert result.accuracy >= MIN_ACCURACY, f"{language}: {result.accuracy:.1%}\n{errors}"


@pytest.mark.model
@pytest.mark.parametrize("language", LANGUAGES)
def test_out_of_scope_questions_are_not_given_a_topic_answer(held_out, language):
    result = held_out[language]
    assert result.out_of_scope_false_accepts <= MAX_OUT_OF_SCOPE_FALSE_ACCEPTS, (
        f"{language}: {result.out_of_scope_false_accepts:.1%} of out-of-scope questions got a topic's answer"
    )
