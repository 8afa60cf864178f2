"""The department data: the facts loader, the texts of every language, coverage."""

import re
from pathlib import Path

import pytest
import yaml

from bot.core.facts import FACTS_FILE, FactsError, load_facts
from bot.core.languages import Registry, load_registry
from bot.core.paths import LANGUAGES_FILE
from bot.core.texts import TextsError, fact_values, load_texts, placeholders_of, say, texts
from bot.core.validation import example_problems, fact_name_problems
from bot.tools.datacheck import leak_problems, problems

from .conftest import LANGUAGES


def test_every_language_has_every_text_and_enough_examples():
    assert problems() == []


def test_facts_match_the_brief():
    facts = load_facts()
    assert facts.partner_country_count == 16
    assert facts.scholar_count == 800
    assert facts.programme_university_count == 11
    assert (facts.apt_since, facts.apt_programme_count, facts.apt_country_count) == (1990, 20, 26)
    assert facts.postcode == "210003"
    assert facts.street.get("en") == "66 New Mofan Road"
    assert [f.get("en") for f in facts.functions] == ["management", "guidance", "coordination", "service"]
    assert len(facts.partner_countries) == 9


def broken(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "department.yml"
    text = FACTS_FILE.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("scholar_count: 800", "scholar_count: many", "visitors.scholar_count: expected a whole number"),
        ('  postcode: "210003"\n', "", "address.postcode: missing"),
        ("ru: Германия, ", "", "partners.countries[2].ru: missing"),
        ("apt:\n", "apt: [\n", "cannot read"),
    ],
)
def test_a_broken_facts_file_names_the_file_and_field(tmp_path, old, new, message):
    path = broken(tmp_path, old, new)
    with pytest.raises(FactsError) as error:
        load_facts(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_a_missing_texts_file_is_named(tmp_path):
    (tmp_path / "en.yml").write_text("greet: hi\n", encoding="utf-8")
    with pytest.raises(TextsError, match="zh-Hans.yml: missing"):
        load_texts(tmp_path)


def test_a_missing_translation_names_key_language_and_file(tmp_path):
    texts = load_texts()
    for code in ("en", "zh-Hans", "ru", "fr"):
        content = dict(texts.by_language[code])
        if code == "fr":
            del content["ask_apt"]
        (tmp_path / f"{code}.yml").write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    found = load_texts(tmp_path).problems()
    line = next(
        n for n, text in enumerate(open(tmp_path / "en.yml", encoding="utf-8"), 1) if text.startswith("ask_apt:")
    )
    assert f"fr.yml: fr: key 'ask_apt' has no translation (the en text: {tmp_path / 'en.yml'}:{line})" in "\n".join(
        found
    ), found


def with_language(tmp_path: Path, code: str = "xx") -> Registry:
    """The registry of data/languages.yml plus a language ``code``."""
    raw = yaml.safe_load(LANGUAGES_FILE.read_text(encoding="utf-8"))
    raw["languages"][code] = {"lingua": "DE", "names": [code]}
    (tmp_path / "languages.yml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return load_registry(tmp_path / "languages.yml")


def test_the_validator_lists_every_missing_fact_name_with_its_line(tmp_path):
    found = fact_name_problems(FACTS_FILE, with_language(tmp_path))
    lines = FACTS_FILE.read_text(encoding="utf-8").splitlines()
    names = [n for n, line in enumerate(lines, 1) if re.search(r"(^\s*|[{,]\s*)en:", line)]
    assert len(found) == len(names) > 30  # every name at once, not one per run
    for problem, line in zip(found, names, strict=True):
        at, field = re.fullmatch(
            rf"{re.escape(str(FACTS_FILE))}:(\d+): (\S+)\.xx: missing \(xx name\)", problem
        ).groups()
        assert int(at) in (line, line - 1), problem  # the name's line, or the line above its languages
    assert fact_name_problems(FACTS_FILE) == []


def test_the_validator_names_both_places_of_a_copied_held_out_question(tmp_path):
    training, holdout = tmp_path / "nlu", tmp_path / "holdout"
    training.mkdir(), holdout.mkdir()
    (training / "en.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi\n    - Good morning!\n', encoding="utf-8"
    )
    (holdout / "en.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hello there\n    - good  morning!\n'
        "- intent: goodbye\n  examples: |\n    - Hi\n",
        encoding="utf-8",
    )
    assert leak_problems(training, holdout) == [
        f"{holdout / 'en.yml'}:6: greet: 'good  morning!' is also a training example at {training / 'en.yml'}:6",
        f"{holdout / 'en.yml'}:9: goodbye: 'Hi' is also a training example at {training / 'en.yml'}:5",
    ]


def test_the_validator_lists_every_short_intent_with_its_line(tmp_path):
    (tmp_path / "en.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi\n- intent: goodbye\n  examples: |\n'
        "    - bye\n- intent: nonsense\n  examples: |\n    - blah\n",
        encoding="utf-8",
    )
    found = [p for p in example_problems(tmp_path, 2, ["greet", "goodbye", "thanks"]) if "en.yml" in p]
    path = tmp_path / "en.yml"
    assert found == [
        f"{path}:3: en: intent 'greet' has 1 examples, needs 2",
        f"{path}:6: en: intent 'goodbye' has 1 examples, needs 2",
        f"{path}: en: intent 'thanks' has no examples, needs 2",
        f"{path}:9: en: intent 'nonsense' is not in domain.yml",
    ]


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_welcome_lists_every_language_from_the_registry(language):
    assert "{languages}" in texts().raw("web_welcome", language)  # filled by code, never by hand
    welcome = say("web_welcome", language)
    for code in LANGUAGES:
        assert say("language_name", code) in welcome, code


def extras(key: str, language: str) -> dict[str, str]:
    """A stand-in for each placeholder that is not a fact (a reference, a user's answer)."""
    return {name: "…" for name in placeholders_of(texts().raw(key, language)) - fact_values(language).keys()}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_renders_with_the_facts(language):
    source = texts()
    for key in source.by_language["en"]:
        rendered = say(key, language, **extras(key, language))
        assert "{" not in rendered and rendered.strip(), key


@pytest.mark.parametrize(
    "language, fragments",
    [
        ("en", ["66 New Mofan Road", "Nanjing 210003", "P.R. China"]),
        ("zh-Hans", ["新模范马路66号", "南京", "210003"]),
        ("zh-Hant", ["新模範馬路66號", "南京", "210003"]),
        ("ru", ["New Mofan Road", "Нанкин", "210003"]),
        ("fr", ["66 New Mofan Road", "Nankin", "210003"]),
    ],
)
def test_the_address_in_each_language(language, fragments):
    address = fact_values(language)["address"]
    for fragment in fragments:
        assert fragment in address


def test_traditional_chinese_is_converted_from_simplified():
    assert "郵電大學" in say("ask_address", "zh-Hant")
    assert say("language_name", "zh-Hant") == "繁體中文"


# The brief gives no e-mail, web address, phone number or fee: the bot has none.
NOT_IN_THE_BRIEF = re.compile(r"\S+@(?!example\.)\S+|https?://|www\.|\+\d[\d ()-]{7,}\d|"
                              r"\b\d{3,4}[- ]\d{7,8}\b|[¥$€£]|\bRMB\b|\byuan\b|人民币|元/")  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_text_invents_contact_details(language):
    source = texts()
    for key in source.by_language["en"]:
        rendered = say(key, language, **extras(key, language))
        assert not NOT_IN_THE_BRIEF.search(rendered), (key, rendered)
