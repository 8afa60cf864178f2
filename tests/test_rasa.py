"""Rasa's own checks: the training data validates, the conversation tests pass."""

import os
import subprocess
import sys
from pathlib import Path

from bot.cli.servers import ROOT

ENV = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}


def rasa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rasa", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_rasa_data_validate_finds_no_problem():
    result = rasa("data", "validate", "--config", "config.yml", "--domain", "domain.yml",
                  "--data", "data/nlu", "data/rules", "--fail-on-warnings")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_conversation_tests_pass(model: Path, tmp_path: Path):
    result = rasa("test", "core", "--model", str(model), "--stories", "tests/conversations",
                  "--out", str(tmp_path), "--fail-on-prediction-errors")  # fmt: skip
    failed = tmp_path / "failed_test_stories.yml"
    details = failed.read_text() if failed.exists() else result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, details
