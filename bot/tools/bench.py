"""Benchmark: the five-language model against an English-and-Chinese model, in one run.

    python -m bot.tools.bench [--messages 200]      (or `make bench`)

For each model: training time, cold start (servers spawned to the first REST
answer), p50/p95 reply latency over N sequential REST messages, and the
resident memory of the Rasa server and of the action server after the run.
Writes ``reports/bench.md`` and ``reports/bench.json`` with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bot.cli.servers import Servers
from bot.core.paths import NLU_DIR, ROOT
from bot.core.validation import read_examples
from bot.tools.datacheck import HOLDOUT_DIR

REPORTS = ROOT / "reports"
# The benchmark is one address sending as fast as it can: the rate limits would measure themselves.
NO_LIMITS = {"RATE_LIMIT_PER_IP": "0", "RATE_LIMIT_PER_SENDER": "0", "MAX_IN_FLIGHT": "0"}
VARIANTS = {"two languages (en, zh-Hans)": ["en", "zh-Hans"], "five languages": None}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        memory_kb = 0
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {memory_kb / 1024 / 1024:.0f} GiB RAM, {system}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def train(languages: list[str] | None, workdir: Path, name: str) -> tuple[Path, float]:
    data = workdir / name
    (data / "nlu").mkdir(parents=True)
    for path in NLU_DIR.glob("*.yml"):
        if languages is None or path.stem in languages:
            shutil.copy(path, data / "nlu" / path.name)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "rasa", "train", "--config", "config.yml", "--domain", "domain.yml",
         "--data", str(data / "nlu"), "data/rules", "--out", str(workdir), "--fixed-model-name", name],
        cwd=ROOT, check=True, capture_output=True,
        # a cache of its own: Rasa must not reuse components trained by `make train`
        env={**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
             "RASA_CACHE_DIRECTORY": str(workdir / f"cache-{name}")},
    )  # fmt: skip
    return workdir / f"{name}.tar.gz", time.monotonic() - started


def questions(languages: list[str] | None, count: int) -> list[str]:
    pool = []
    for path in sorted(HOLDOUT_DIR.glob("*.yml")):
        if languages is None or path.stem in languages:
            pool += [text for examples in read_examples(path).values() for text in examples]
    # A fixed mix of languages and intents, the same in every run: a seeded shuffle
    # (hash(str) is randomised per process, so it would give another mix each time).
    random.Random(20261202).shuffle(pool)
    return (pool * (count // len(pool) + 1))[:count]


def ask(url: str, sender: str, text: str) -> float:
    started = time.monotonic()
    httpx.post(url, json={"sender": sender, "message": text}, timeout=60).raise_for_status()
    return time.monotonic() - started


def measure(model: Path, texts: list[str], workdir: Path) -> dict[str, float]:
    servers = Servers(model=model, rasa_port=15105, action_port=15155, log_dir=workdir / "logs",
                      env={"DATABASE_URL": f"sqlite:///{workdir / (model.stem + '.db')}", **NO_LIMITS})  # fmt: skip
    started = time.monotonic()
    with servers:
        url = f"{servers.rasa_url}/webhooks/rest/webhook"
        ask(url, "cold-start", "hello")
        cold_start = time.monotonic() - started
        latencies = sorted(ask(url, f"bench-{i % 20}", text) for i, text in enumerate(texts))
        rasa_pid, action_pid = servers.process("Rasa server").popen.pid, servers.process("action server").popen.pid
        memory = {"rasa_rss_mb": rss_mb(rasa_pid), "actions_rss_mb": rss_mb(action_pid)}
    return {
        "cold_start_s": cold_start,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        **memory,
    }


def report(results: dict[str, dict[str, float]], messages: int) -> str:
    rows = [("training time (s)", "train_s", "{:.0f}"), ("cold start to first answer (s)", "cold_start_s", "{:.1f}"),
            ("reply latency p50 (ms)", "p50_ms", "{:.0f}"), ("reply latency p95 (ms)", "p95_ms", "{:.0f}"),
            ("Rasa server memory, RSS (MB)", "rasa_rss_mb", "{:.0f}"),
            ("action server memory, RSS (MB)", "actions_rss_mb", "{:.0f}")]  # fmt: skip
    two, five = results.values()
    lines = ["| measure | " + " | ".join(results) + " | five / two |", "|---|---:|---:|---:|"]
    for label, key, fmt in rows:
        ratio = five[key] / two[key] if two[key] else float("nan")
        lines.append(f"| {label} | {fmt.format(two[key])} | {fmt.format(five[key])} | {ratio:.2f}x |")
    return (
        f"# Benchmark\n\nMachine: {machine()}.\nMade by `make bench` on {time.strftime('%Y-%m-%d')}; "
        f"latency over {messages} sequential REST messages (held-out questions of the model's languages).\n\n"
        + "\n".join(lines) + "\n"
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        for label, languages in VARIANTS.items():
            name = "bench-" + ("all" if languages is None else "-".join(languages))
            model, seconds = train(languages, workdir, name)
            print(f"{label}: trained in {seconds:.0f} s", flush=True)
            results[label] = {"train_s": seconds, **measure(model, questions(languages, args.messages), workdir)}
            print(f"{label}: {results[label]}", flush=True)
    REPORTS.mkdir(exist_ok=True)
    text = report(results, args.messages)
    (REPORTS / "bench.md").write_text(text, encoding="utf-8")
    (REPORTS / "bench.json").write_text(json.dumps({"machine": machine(), "results": results}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
