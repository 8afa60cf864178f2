"""A model swap under load: failed requests and latency while the running Rasa server takes a new model.

    python -m bot.tools.swapbench [--users 10] [--way swap|put]   (make swapbench)

Starts its own stack (action server, Rasa server; free ports, an empty database),
has ``--users`` users send questions in a loop over the REST channel (each one waits
for its answer, as a person does), and after a warm-up swaps the model: ``swap``
through the staff's model-swap channel (``bot.plugins.models``: loaded in a thread,
what ``bot publish`` does) or ``put`` through Rasa's own ``PUT /model`` (loaded on the
server's event loop). Prints the requests, the failures, p50 and p95 before, during
and after the swap, and how long the swap took; writes ``reports/swap.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bot.cli.servers import Servers
from bot.core.paths import MODEL, ROOT
from bot.plugins.models import TOKEN_HEADER

QUESTIONS = [
    "Where is the international office?",
    "国际处的地址在哪里？",
    "Какие совместные программы есть у NJUPT?",
    "Quels diplômes puis-je préparer à NJUPT ?",
    "How many countries does NJUPT cooperate with?",
    "南邮和哪些大学有联合硕士项目？",
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run(users: int, way: str, warmup: float, after: float) -> dict:
    model = ROOT / "models" / "published" / "swapbench.tar.gz"
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(MODEL, model)  # the same model under another name: the swap costs the same
    with tempfile.TemporaryDirectory() as scratch:
        token = secrets.token_urlsafe(16)
        servers = Servers(rasa_port=free_port(), action_port=free_port(), auth_token=token,
                          env={"DATABASE_URL": f"sqlite:///{scratch}/bot.db", "RATE_LIMIT_PER_IP": "0",
                               "RATE_LIMIT_PER_SENDER": "0"}, log_dir=Path(scratch) / "logs")  # fmt: skip
        with servers:
            swap_token = servers.swap_token_file.read_text().strip()
            url = f"{servers.rasa_url}/webhooks/rest/webhook"
            samples: list[tuple[float, float, bool]] = []  # start, seconds, ok
            stop = asyncio.Event()
            async with httpx.AsyncClient(timeout=60) as client:

                async def user(n: int) -> None:
                    i = 0
                    while not stop.is_set():
                        start = time.monotonic()
                        try:
                            body = {
                                "sender": f"swapbench-{n}-{i // 20}",
                                "message": QUESTIONS[(n + i) % len(QUESTIONS)],
                            }
                            reply = await client.post(url, json=body)
                            ok = reply.status_code == 200 and bool(reply.json())
                        except httpx.HTTPError:
                            ok = False
                        samples.append((start, time.monotonic() - start, ok))
                        i += 1

                tasks = [asyncio.create_task(user(n)) for n in range(users)]
                await asyncio.sleep(warmup)
                swap_start = time.monotonic()
                if way == "swap":
                    reply = await client.post(f"{servers.rasa_url}/webhooks/model/swap", json={"model": str(model)},
                                              headers={TOKEN_HEADER: swap_token}, timeout=600)  # fmt: skip
                else:
                    reply = await client.put(f"{servers.rasa_url}/model", params={"token": token},
                                             json={"model_file": str(model)}, timeout=600)  # fmt: skip
                swap_end = time.monotonic()
                assert reply.status_code in (200, 204), reply.text
                await asyncio.sleep(after)
                stop.set()
                await asyncio.gather(*tasks)
    model.unlink(missing_ok=True)

    def window(a: float, b: float) -> list[tuple[float, float, bool]]:
        return [s for s in samples if a <= s[0] < b or (s[0] < a and s[0] + s[1] > a)]

    before = [s for s in samples if s[0] + s[1] <= swap_start]
    during = window(swap_start, swap_end)
    later = [s for s in samples if s[0] >= swap_end]
    summary = {
        "way": way, "users": users, "requests": len(samples), "failed": sum(1 for s in samples if not s[2]),
        "swap_seconds": round(swap_end - swap_start, 2),
    }  # fmt: skip
    for name, part in (("before", before), ("during", during), ("after", later)):
        seconds = [s[1] for s in part]
        summary[name] = {"requests": len(part), "failed": sum(1 for s in part if not s[2]),
                         "p50_ms": round(p(seconds, 0.5) * 1000), "p95_ms": round(p(seconds, 0.95) * 1000),
                         "max_ms": round(max(seconds, default=0) * 1000)}  # fmt: skip
    summary["mean_ms"] = round(statistics.mean(s[1] for s in samples) * 1000) if samples else 0
    return summary


def markdown(results: list[dict]) -> str:
    lines = ["| way | users | swap | requests | failed | p50 / p95 before | p50 / p95 / max during | p95 after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        b, d, a = r["before"], r["during"], r["after"]
        lines.append(f"| {r['way']} | {r['users']} | {r['swap_seconds']} s | {r['requests']} | {r['failed']} "
                     f"| {b['p50_ms']} / {b['p95_ms']} ms | {d['p50_ms']} / {d['p95_ms']} / {d['max_ms']} ms "
                     f"| {a['p95_ms']} ms |")  # fmt: skip
    return "# A model swap under load\n\nMade by `make swapbench`.\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--way", choices=["swap", "put", "both"], default="both")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--after", type=float, default=10.0)
    args = parser.parse_args(argv)
    results = []
    for way in ["swap", "put"] if args.way == "both" else [args.way]:
        results.append(asyncio.run(run(args.users, way, args.warmup, args.after)))
        print(results[-1], flush=True)
    report = markdown(results)
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports" / "swap.md").write_text(report, encoding="utf-8")
    print(report)
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
