"""Which option a typed answer picks (bot/core/choices.py): pure, no Rasa, in every language."""

import pytest

from bot.core.choices import ChoicesError, choices, load_choices, problems
from bot.core.texts import say

from .conftest import LANGUAGES


def pick(question: str, text: str) -> str | None:
    return choices().question(question).pick(text)


def test_the_data_has_phrases_for_every_option_in_every_language():
    assert problems() == []


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    "question", ["purpose", "summary", "field", "visit_offer", "question_offer", "office_question"]
)
def test_every_button_title_picks_its_own_option(question, language):
    asked = choices().question(question)
    for option in asked.options:
        assert asked.pick(asked.title(option, language)) == option, (question, option, language)


@pytest.mark.parametrize(
    "text, option",
    [
        ("TO GIVE A LECTURE!!!", "lecture"),  # case and punctuation
        ("lectures", "lecture"),  # another form of the word
        ("做個報告", "lecture"),  # Traditional characters
        ("прочитать лекцию", "lecture"),  # Russian inflection
        ("conferences", "conference"),
        ("Conférences", "lecture"),  # French: a conférence is a lecture...
        ("assister à une conférence", "conference"),  # ...inside a longer phrase of another option it gives way
        ("attend a conference", "conference"),  # English "conference" is not French "conférence"
    ],
)
def test_normalisation(text, option):
    assert pick("purpose", text) == option


def test_an_answer_that_fits_two_options_or_none_picks_nothing():
    assert choices().question("purpose").fits("a talk at your conference") == {"lecture", "conference"}
    assert pick("purpose", "a talk at your conference") is None
    assert pick("purpose", "to see the campus") is None
    assert pick("summary", "") is None


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_options_in_words(language):
    words = choices().question("summary").in_words(language)
    for key in ("button_confirm", "button_change", "button_cancel"):
        assert say(key, language) in words


def test_a_mistake_in_the_data_names_the_file_and_field(tmp_path):
    broken = tmp_path / "choices.yml"
    broken.write_text("questions:\n  purpose:\n    lecture:\n      title: purpose_lecture\n      en: [yes, no]\n")
    with pytest.raises(ChoicesError, match=r"choices.yml: questions.purpose.lecture.en: .*quote yes"):
        load_choices(broken)
    broken.write_text("questions:\n  purpose:\n    lecture:\n      title: purpose_lecture\n      xx: [talk]\n")
    with pytest.raises(ChoicesError, match=r"questions.purpose.lecture: \['xx'\] are not languages"):
        load_choices(broken)
