"""NLU pipeline components: one tokenizer for every language, and DIET on a budget.

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

``HashedNgramFeaturizer`` then counts word stems, word pairs and char 1-5-grams
of each word, hashed into a fixed number of columns: the char n-grams make the
model robust to typos and to words jieba segments differently, and the fixed
width keeps the classifier the same size whatever the number of languages.

``BudgetedDIETClassifier`` is Rasa's DIET with its training length set by the
number of examples it sees, so that adding a language does not multiply the
training time (see its docstring).
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from typing import Any

import numpy as np
import scipy.sparse
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.diet_classifier import DIETClassifier
from rasa.nlu.constants import TOKENS_NAMES
from rasa.nlu.featurizers.sparse_featurizer.sparse_featurizer import SparseFeaturizer
from rasa.nlu.tokenizers.tokenizer import Token, Tokenizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from rasa.utils.tensorflow.constants import EPOCHS

from bot.core.languages import HAN, HAN_RANGE, to_simplified

logger = logging.getLogger(__name__)

# A run of Han characters, or a word of letters/digits (with inner ' or -).
PIECE = re.compile(rf"[{HAN_RANGE}]+|[^\W_{HAN_RANGE}]+(?:['’-][^\W_{HAN_RANGE}]+)*")


STEMMED = re.compile(r"[a-zà-ÿœæа-яё]", re.IGNORECASE)
CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
LATIN = re.compile(r"[a-zà-ÿœæ]", re.IGNORECASE)


@functools.cache
def _stemmer(language: str):
    import snowballstemmer  # pure Python, the rules ship in the package

    return snowballstemmer.stemmer(language)


@functools.cache
def _english_or_french():
    """lingua's low-accuracy mode (trigrams only): 16 MB in the Rasa server against 100 MB. It
    only picks the stemmer of Latin words: it agrees with the language of 4,082 of the 4,392
    English and French examples and held-out questions (high accuracy: 4,222), and the held-out
    intent accuracy stayed the same or rose (`make evaluate`, 2026-12-07; docs/performance.md)."""
    from lingua import Language, LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.FRENCH)
    return builder.with_low_accuracy_mode().build()


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
        # only Latin words need to know whether they are French or English
        latin = latin_stemmer_language(text) if LATIN.search(text) else "english"
        tokens = [Token(word, start, lemma=stem(word, latin)) for word, start in split(text)]
        # Like Rasa's own tokenizers: a text with no words (emoji only) is one token.
        tokens = tokens or [Token(text, 0)]
        return self._apply_token_pattern(tokens)


def ngrams(tokens: list[Token]) -> list[str]:
    """The features of one message: word and word-pair stems, and char 1-5-grams.

    Words count by their stem (the token's lemma); char n-grams are taken from
    each word as written, padded with spaces (like scikit-learn's ``char_wb``),
    so typos and unseen inflections still share most of their n-grams.
    """
    stems = [token.lemma for token in tokens]
    features = ["w " + stem for stem in stems] + ["b " + a + " " + b for a, b in itertools.pairwise(stems)]
    for token in tokens:
        word = f" {token.text} "
        for n in range(1, min(len(word), 5) + 1):
            features += ["c" + word[i : i + n] for i in range(len(word) - n + 1)]
    return features


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class HashedNgramFeaturizer(SparseFeaturizer, GraphComponent):
    """Word, word-pair and char n-gram counts, hashed into a fixed number of columns.

    Unlike ``CountVectorsFeaturizer`` there is no vocabulary: the width of the
    features, and so the size of the classifier's first layer and the cost of
    each training step, stays the same whatever the number of languages. DIET
    without transformer layers reads only sentence features, so the sequence it
    also asks for is a single step.
    """

    @classmethod
    def required_components(cls) -> list[type]:
        return [Tokenizer]

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {**SparseFeaturizer.get_default_config(), "columns": 2**16}

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        if not isinstance(config.get("columns"), int) or config["columns"] < 1:
            raise InvalidConfigException(f"{cls.__name__}: 'columns' must be a positive whole number.")

    def __init__(self, config: dict[str, Any], name: str) -> None:
        super().__init__(name, config)
        self.validate_config(config)
        from sklearn.feature_extraction import FeatureHasher

        self._hasher = FeatureHasher(n_features=config["columns"], input_type="string", alternate_sign=False)

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> HashedNgramFeaturizer:
        return cls(config, execution_context.node_name)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self.process(training_data.training_examples)
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        tokenized = [m for m in messages if m.get(TOKENS_NAMES[TEXT])]
        if tokenized:
            rows = self._hasher.transform(ngrams(m.get(TOKENS_NAMES[TEXT])) for m in tokenized).tocsr()
            # DIET's input layer wants a sequence too; without transformer layers
            # it reads only the sentence, so a sequence of one step will do.
            step = scipy.sparse.coo_matrix(np.ones((1, 1)))
            for row, message in enumerate(tokenized):
                self.add_features_to_message(step, rows[row].tocoo(), TEXT, message)
        return messages


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR],
    is_trainable=True,
)
class BudgetedDIETClassifier(DIETClassifier):
    """DIET trained for a budget of examples seen, not for a fixed number of passes.

    With a fixed number of epochs, every language added multiplies the training
    time. Here ``examples_seen`` sets the work: the number of epochs is that
    budget divided by the number of training examples, rounded, and kept
    between ``min_epochs`` and ``epochs``. More data means fewer passes;
    the held-out evaluation (``make evaluate``, ``tests/test_nlu.py``) checks
    that every language keeps its accuracy.
    """

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {**DIETClassifier.get_default_config(), "examples_seen": 100_000, "min_epochs": 10}

    def train(self, training_data: TrainingData) -> Resource:
        config = self.component_config
        config[EPOCHS] = epochs_for(len(training_data.intent_examples), config)
        logger.info(f"{len(training_data.intent_examples)} examples: training for {config[EPOCHS]} epochs.")
        return super().train(training_data)


def epochs_for(examples: int, config: dict[str, Any]) -> int:
    """Epochs that show about ``examples_seen`` examples, within [min_epochs, epochs]."""
    wanted = round(config["examples_seen"] / max(examples, 1))
    return max(config["min_epochs"], min(config[EPOCHS], wanted))
