"""Where the project's files are: the one place that knows the project root."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
LANGUAGES_FILE = DATA / "languages.yml"
FACTS_FILE = DATA / "facts" / "department.yml"
TEXTS_DIR = DATA / "texts"
NLU_DIR = DATA / "nlu"
RULES_DIR = DATA / "rules"
DOMAIN_FILE = ROOT / "domain.yml"
VAR = ROOT / "var"
MODEL = ROOT / "models" / "njupt.tar.gz"
CHOICES_FILE = DATA / "choices.yml"
