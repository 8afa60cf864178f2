"""NLU pipeline component: one tokenizer for every language the bot speaks.

Rasa's ``JiebaTokenizer`` only accepts ``language: zh`` and the whitespace
tokenizer cannot split Chinese, so ``config.yml`` uses this one:

* Traditional Chinese is folded to Simplified first (OpenCC t2s, one character
  for one character), so one model understands both scripts;
* runs of Han characters are segmented with jieba (its dictionary ships in the
  package), everything else is split into words;
* tokens are lower-cased; offsets point into the original text;
* each Latin or Cyrillic word gets its Snowball stem as its lemma (Russian for
  Cyrillic; French or English for Latin, by the message's language), so the
  word features see "университета" and "университет" as one word.

Char n-gram features (``CountVectorsFeaturizer`` with ``char_wb``) then make
the model robust to typos and to words jieba segments differently.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.tokenizers.tokenizer import Token, Tokenizer
from rasa.shared.nlu.training_data.message import Message

from bot.languages import HAN, to_simplified

# A run of Han characters, or a word of letters/digits (with inner ' or -).
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
PIECE = re.compile(rf"[{_HAN}]+|[^\W_{_HAN}]+(?:['’-][^\W_{_HAN}]+)*")


STEMMED = re.compile(r"[a-zà-ÿœæа-яё]", re.IGNORECASE)
CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)


@functools.cache
def _stemmer(language: str):
    import snowballstemmer  # pure Python, the rules ship in the package

    return snowballstemmer.stemmer(language)


@functools.cache
def _english_or_french():
    from lingua import Language, LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.FRENCH).build()


def latin_stemmer_language(text: str) -> str:
    """'french' when the message reads as French, else 'english'."""
    from lingua import Language

    return "french" if _english_or_french().detect_language_of(text) == Language.FRENCH else "english"


def stem(word: str, latin_language: str) -> str:
    if not STEMMED.search(word):
        return word
    return _stemmer("russian" if CYRILLIC.search(word) else latin_language).stemWord(word)


@functools.cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def split(text: str) -> list[tuple[str, int]]:
    """Words of ``text`` with their start offsets, Chinese segmented by jieba."""
    folded = to_simplified(text)
    if len(folded) != len(text):  # never seen, but offsets must stay right
        folded = text
    pieces: list[tuple[str, int]] = []
    for match in PIECE.finditer(folded):
        piece, start = match.group(), match.start()
        if HAN.match(piece):
            for word, offset, _ in _jieba().tokenize(piece):
                pieces.append((word, start + offset))
        else:
            pieces.append((piece.lower(), start))
    return pieces


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=False)
class MultilingualTokenizer(Tokenizer):
    """jieba for Han text, word split for the rest, Traditional folded to Simplified."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "intent_tokenization_flag": False,
            "intent_split_symbol": "_",
            "token_pattern": None,
            "prefix_separator_symbol": None,
        }

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> MultilingualTokenizer:
        return cls(config)

    def tokenize(self, message: Message, attribute: str) -> list[Token]:
        text = message.get(attribute) or ""
        latin = latin_stemmer_language(text)
        tokens = [Token(word, start, lemma=stem(word, latin)) for word, start in split(text)]
        # Like Rasa's own tokenizers: a text with no words (emoji only) is one token.
        tokens = tokens or [Token(text, 0)]
        return self._apply_token_pattern(tokens)
