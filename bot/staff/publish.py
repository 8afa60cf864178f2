"""Publish without a restart: validate, train, check the guards, swap the model in, record it; roll back.

    publisher = Publisher()                       # the project's data/ and models/, DATABASE_URL
    record = publisher.publish("li", progress)    # bot publish, or the console's Publish button
    publisher.rollback("li")                      # bot rollback: the previous model and data

The steps, each a process of its own (as ``make validate`` and ``make train`` run them):

1. *validate*: ``python -m bot.tools.datacheck``, the checks of ``make validate``
   (facts, texts, examples in every language, the held-out set and no copy of it
   in the training data);
2. *train*: ``rasa train`` into ``models/published/`` (the epochs are the progress);
3. *guard*: ``python -m bot.tools.evaluate --guard``: the held-out accuracy and
   false accepts of every language against the publish floor (``PUBLISH_FLOOR`` of
   bot.tools.evaluate: 90% / 12% / 10%, looser than the tests' 95/5/5 so that the noise
   of a retrain does not block a publish; a refusal names each figure below it and shows
   every language's figures). The held-out questions live in the tests'
   folder, which runtime code never reads (tests/test_layout.py): the guard stays a
   developer tool that the publisher runs, as ``make`` would;
4. *swap*: every action server reads the texts, facts and intents again (``POST /reload``),
   then every Rasa server loads the new model in a thread and puts it in place
   (``bot.plugins.models``, ``MODEL_SWAP_TOKEN``), each on its own port (with REPLICAS, as
   ``bot run`` lists them in ``var/run/replicas-<port>.json``), so nothing restarts; one
   that fails fails the publish, named;
5. *record*: a row of ``staff_publishes`` (who, when, what changed, the model file, a
   snapshot of data/, domain.yml and docs/intents.md), the model copied to
   ``models/njupt.tar.gz`` (the next ``make run`` starts with it), and, in a git checkout,
   a commit of those files authored by the staff member.

A model that fails a step is not published; the record says why. One publish runs
at a time (a lock file in var/run/).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import fcntl
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from bot.core.paths import DATA, DOMAIN_FILE, MODEL, ROOT, VAR
from bot.core.storage import open_store_engine, publishes_table

logger = logging.getLogger(__name__)

PUBLISHED = ROOT / "models" / "published"
SNAPSHOTS = VAR / "publish"
LOCK_FILE = VAR / "run" / "publish.lock"
SWAP_HEADER = "X-Model-Token"
# What staff edit besides data/: a new FAQ adds its intent to domain.yml and a row to docs/intents.md.
# A publish snapshots and commits them with data/, and a rollback restores them.
EDITED_FILES = (DOMAIN_FILE, ROOT / "docs" / "intents.md")
EPOCHS = re.compile(r"Epochs:\s+(\d+)%")
# Where each step's progress starts (fraction of the whole publish).
STEPS = {"validate": 0.0, "train": 0.05, "guard": 0.8, "swap": 0.95, "record": 0.99}


class PublishError(RuntimeError):
    """A step failed: nothing was published."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output  # the step's whole output, when it is a process that failed


def guard_refusal(output: str) -> str | None:
    """Why the guard refused a model, from its output: the thresholds, each figure below them and
    every language's figures; None when the guard did not get as far as scoring."""
    lines = [line.strip() for line in output.splitlines()]
    failed = [line.removeprefix("guard failed: ") for line in lines if line.startswith("guard failed: ")]
    if not failed:
        return None
    thresholds = next((line.removeprefix("thresholds: ") for line in lines if line.startswith("thresholds: ")), "")
    figures = [line for line in lines if ": accuracy " in line and not line.startswith("thresholds: ")]
    return "\n".join([f"guard refused the model ({thresholds})", "below the threshold:",
                      *(f"  {line}" for line in failed), "figures:", *(f"  {line}" for line in figures)])  # fmt: skip


@dataclass
class Progress:
    """What a publish is doing, for the console's page and the terminal."""

    step: str = "waiting"
    fraction: float = 0.0
    message: str = ""
    log: list[str] = field(default_factory=list)
    done: bool = False
    failed: bool = False
    record: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)  # the held-out guard's figures, one line a language

    def steps(self) -> str:
        """The seconds each step took: "validate 4.1 s, train 212.0 s, guard 35.2 s, swap 3.0 s"."""
        return ", ".join(f"{step} {seconds:.1f} s" for step, seconds in self.timings.items())

    def at(self, step: str, within: float = 0.0, message: str = "") -> None:
        steps = list(STEPS)
        end = STEPS[steps[steps.index(step) + 1]] if step != steps[-1] else 1.0
        self.step, self.fraction = step, STEPS[step] + (end - STEPS[step]) * min(max(within, 0.0), 1.0)
        if message:
            self.message = message


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _relative(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}  # no secret reaches a step
    return env | {"PYTHONPATH": str(ROOT), "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}


def snapshot_data(path: Path) -> None:
    """data/, domain.yml and docs/intents.md as a .tar.gz (the files staff edit; rollback restores them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        archive.add(DATA, arcname="data")
        for edited in EDITED_FILES:
            if edited.exists():
                archive.add(edited, arcname=_relative(edited))


def _files_of(snapshot: Path | None) -> dict[str, str]:
    if snapshot is None or not snapshot.exists():
        return {}
    found = {}
    with tarfile.open(snapshot) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith((".yml", ".yaml", ".md")):
                found[member.name] = archive.extractfile(member).read().decode("utf-8", errors="replace")
    return found


def changes_between(before: Path | None, after: Path) -> str:
    """What changed in data/ between two snapshots: one line per file, lines added and removed."""
    old, new = _files_of(before), _files_of(after)
    lines = []
    for name in sorted(old.keys() | new.keys()):
        if old.get(name) == new.get(name):
            continue
        diff = list(difflib.unified_diff(old.get(name, "").splitlines(), new.get(name, "").splitlines(), lineterm=""))
        added = sum(1 for d in diff if d.startswith("+") and not d.startswith("+++"))
        removed = sum(1 for d in diff if d.startswith("-") and not d.startswith("---"))
        lines.append(f"{name} +{added} -{removed}")
    return "\n".join(lines) or "no change to data/"


def restore_data(snapshot: Path) -> None:
    """data/ as it was in ``snapshot`` (files of data/ that are not in it are removed), and
    domain.yml and docs/intents.md when the snapshot has them."""
    edited = {_relative(path) for path in EDITED_FILES}
    with tarfile.open(snapshot) as archive:
        members = [m for m in archive.getmembers()
                   if m.name == "data" or m.name.startswith("data/") or m.name in edited]  # fmt: skip
        if any(".." in Path(m.name).parts or m.issym() or m.islnk() for m in members):
            raise PublishError(f"{snapshot}: unexpected paths")
        scratch = VAR / "publish" / "restore"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        archive.extractall(scratch, members=members)
    for path in sorted(DATA.rglob("*"), reverse=True):
        if path.is_file() and not (scratch / path.relative_to(ROOT)).exists():
            path.unlink()
    for path in [*(scratch / "data").rglob("*"), *(scratch / name for name in sorted(edited))]:
        if not path.exists():
            continue
        target = ROOT / path.relative_to(scratch)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists() or target.read_bytes() != path.read_bytes():
            os.replace(path, target)
    shutil.rmtree(scratch, ignore_errors=True)


def read_swap_token(rasa_port: int) -> str | None:
    """The model-swap token: MODEL_SWAP_TOKEN, else the file ``bot run`` left (var/run/, owner only)."""
    if os.environ.get("MODEL_SWAP_TOKEN"):
        return os.environ["MODEL_SWAP_TOKEN"]
    path = VAR / "run" / f"model-swap-{rasa_port}.token"
    return path.read_text().strip() if path.exists() else None


def replicas_file(rasa_port: int) -> Path:
    """Where ``bot run`` lists the Rasa and action servers behind ``rasa_port`` (one, or each replica)."""
    return VAR / "run" / f"replicas-{rasa_port}.json"


def read_replicas(rasa_port: int) -> list[tuple[str, str | None]]:
    """(Rasa URL, action server URL) of each replica ``bot run`` started behind ``rasa_port``; [] if none."""
    try:
        listed = json.loads(replicas_file(rasa_port).read_text(encoding="utf-8"))
        return [(str(r["rasa"]), str(r["actions"]) if r.get("actions") else None) for r in listed]
    except (OSError, ValueError, KeyError, TypeError):
        return []


class Publisher:
    """Publishes data/ to the Rasa server at ``rasa_url``."""

    def __init__(self, rasa_url: str | None = None, swap_token: str | None = None, url: str | None = None,
                 engine: sa.engine.Engine | None = None,
                 replicas: list[tuple[str, str | None]] | None = None) -> None:  # fmt: skip
        self.rasa_url = (rasa_url or os.environ.get("RASA_URL") or "http://127.0.0.1:5005").rstrip("/")
        self.port = httpx.URL(self.rasa_url).port or 5005
        self.swap_token = swap_token or read_swap_token(self.port)
        self.engine = engine or open_store_engine(url)
        self.replicas = replicas

    def targets(self) -> list[tuple[str, str | None]]:
        """(Rasa URL, action server URL) of every replica, each reached directly on its own port (with
        REPLICAS, ``rasa_url`` is the load balancer, which would give the new model to one of them):
        those given, else those ``bot run`` listed (``replicas_file``), else ``rasa_url`` alone."""
        return self.replicas or read_replicas(self.port) or [(self.rasa_url, None)]

    # --- the record ------------------------------------------------------------------

    def history(self, limit: int = 50) -> list[dict]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(publishes_table).order_by(publishes_table.c.id.desc()).limit(limit))
            return [dict(row._mapping) for row in rows]

    def _record(self, **values) -> dict:
        values.setdefault("at", _now())
        with self.engine.begin() as connection:
            key = connection.execute(publishes_table.insert().values(**values)).inserted_primary_key[0]
        return {**values, "id": key}

    def _live(self) -> list[dict]:
        """The publishes that can be rolled back to, newest first (the baseline last)."""
        return [r for r in self.history(1000) if r["status"] in ("published", "baseline")]

    def baseline(self) -> dict:
        """The state before the first publish (the model of ``make train`` and data/ as it was), recorded once."""
        live = self._live()
        if live:
            return live[-1]
        stamp = _now().strftime("%Y%m%d-%H%M%S")
        model = PUBLISHED / f"njupt-baseline-{stamp}.tar.gz"
        model.parent.mkdir(parents=True, exist_ok=True)
        if MODEL.exists():
            shutil.copy2(MODEL, model)
        snapshot = SNAPSHOTS / f"baseline-{stamp}-data.tar.gz"
        snapshot_data(snapshot)
        kept = _relative(model) if MODEL.exists() else None
        return self._record(username="system", status="baseline", model=kept, data_snapshot=_relative(snapshot),
                            changes="the state before the first publish")  # fmt: skip

    # --- the steps -------------------------------------------------------------------

    def _run(self, step: str, command: list[str], progress: Progress, timeout: float) -> str:
        """Runs one step's process; its output (last lines) in the progress log."""
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, env=_environment(), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        output = io.StringIO()
        buffer = b""
        assert process.stdout is not None
        while True:
            chunk = process.stdout.read1(4096) if hasattr(process.stdout, "read1") else process.stdout.read(4096)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for raw in lines:
                line = raw.decode("utf-8", errors="replace").strip()
                if not line:
                    continue
                output.write(line + "\n")
                if (match := EPOCHS.search(line)) and step == "train":
                    progress.at("train", int(match.group(1)) / 100, f"training: {match.group(1)}% of the epochs")
                elif "Starting to train component" in line and step == "train":
                    progress.message = "training: " + line.split("component", 1)[1].strip(" '.")
                else:
                    progress.log = (progress.log + [line])[-30:]
            if time.monotonic() - started > timeout:
                process.kill()
                raise PublishError(f"{step}: took longer than {timeout:.0f} s")
        code = process.wait()
        progress.timings[step] = round(time.monotonic() - started, 1)
        text = output.getvalue()
        if code != 0:
            tail = [line for line in text.splitlines() if line.strip()][-12:]
            raise PublishError(f"{step} failed:\n" + "\n".join(tail), output=text)
        return text

    def _swap(self, model: Path, progress: Progress) -> None:
        """Every action server reads the texts and facts again, then every Rasa server takes the model;
        ``PublishError`` naming each replica that failed."""
        if not self.swap_token:
            raise PublishError(
                "swap: no MODEL_SWAP_TOKEN (start the bot with `bot run`, which makes one, on this machine)"
            )
        started = time.monotonic()
        self.reload_actions()  # first: a new FAQ's text is there before the model can predict it
        targets = self.targets()
        failures = []
        for number, (rasa, _) in enumerate(targets, 1):
            try:
                reply = httpx.post(f"{rasa}/webhooks/model/swap", json={"model": _relative(model)},
                                   headers={SWAP_HEADER: self.swap_token}, timeout=600)  # fmt: skip
            except httpx.HTTPError as error:
                failures.append(f"replica {number} ({rasa}): cannot be reached ({error})")
                continue
            if reply.status_code != 200:
                failures.append(
                    f"replica {number} ({rasa}): refused the model ({reply.status_code} {reply.text[:200]})"
                )
        if failures:
            raise PublishError(f"swap: {len(failures)} of {len(targets)} Rasa server(s) failed: " + "; ".join(failures))
        progress.timings["swap"] = round(time.monotonic() - started, 1)
        progress.message = f"the new model is live on {len(targets)} Rasa server(s)"

    def reload_actions(self) -> int:
        """Every action server reads the texts, facts and the domain's intents again (``POST /reload``);
        the number reloaded. ``PublishError`` naming each that failed or kept the old texts."""
        actions = [(n, url) for n, (_, url) in enumerate(self.targets(), 1) if url]
        failures = []
        for number, url in actions:
            try:
                reply = httpx.post(f"{url}/reload", headers={SWAP_HEADER: self.swap_token or ""}, timeout=60)
            except httpx.HTTPError as error:
                failures.append(f"action server {number} ({url}): cannot be reached ({error})")
                continue
            if reply.status_code != 200:
                failures.append(f"action server {number} ({url}): {reply.status_code} {reply.text[:300]}")
        if failures:
            raise PublishError(f"reload: {len(failures)} of {len(actions)} action server(s) failed: "
                               + "; ".join(failures))  # fmt: skip
        return len(actions)

    def _commit(self, username: str, message: str) -> str | None:
        """A git commit of data/ authored by the staff member, when the project is a git checkout."""
        git = shutil.which("git")
        if git is None or not (ROOT / ".git").exists():
            return None
        env = _environment() | {"GIT_AUTHOR_NAME": username, "GIT_AUTHOR_EMAIL": f"{username}@staff.invalid"}
        env.setdefault("GIT_COMMITTER_NAME", "njupt-bot publish")
        env.setdefault("GIT_COMMITTER_EMAIL", "publish@staff.invalid")

        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([git, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

        paths = ["data"] + [_relative(path) for path in EDITED_FILES if path.exists()]
        run("add", "--all", "--", *paths)
        if run("diff", "--cached", "--quiet", "--", *paths).returncode == 0:
            return None  # nothing to commit
        done = run("commit", "--quiet", "-m", message, "--", *paths)
        if done.returncode != 0:
            logger.warning("publish: git commit failed: %s", done.stderr.strip()[:300])
            return None
        return run("rev-parse", "HEAD").stdout.strip() or None

    # --- publish and roll back -------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self):
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        with LOCK_FILE.open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PublishError("another publish or rollback is running") from None
            yield

    def publish(self, username: str, progress: Progress | None = None) -> dict:
        """Validates, trains, guards, swaps and records; ``PublishError`` when a step fails."""
        progress = progress or Progress()
        started = time.monotonic()
        try:
            with self._lock():
                previous = self.baseline() if not self._live() else self._live()[0]
                progress.at("validate", 0, "checking the data (make validate)")
                self._run("validate", [sys.executable, "-m", "bot.tools.datacheck"], progress, timeout=300)
                stamp = _now().strftime("%Y%m%d-%H%M%S")
                name = f"njupt-{stamp}"
                progress.at("train", 0, "training the model")
                self._run("train", [sys.executable, "-m", "rasa", "train", "--config", "config.yml", "--domain",
                                    "domain.yml", "--data", "data/nlu", "data/rules", "--out", str(PUBLISHED),
                                    "--fixed-model-name", name], progress, timeout=1800)  # fmt: skip
                model = PUBLISHED / f"{name}.tar.gz"
                progress.at("guard", 0, "checking the held-out questions of every language")
                try:
                    report = self._run("guard", [sys.executable, "-m", "bot.tools.evaluate", "--guard", "--model",
                                                 str(model)], progress, timeout=900)  # fmt: skip
                except PublishError as error:
                    refusal = guard_refusal(error.output)
                    if refusal is None:
                        raise
                    raise PublishError(refusal, output=error.output) from None
                progress.at("swap", 0, "putting the new model into the running bot")
                self._swap(model, progress)
                progress.at("record", 0, "recording the publish")
                snapshot = SNAPSHOTS / f"{stamp}-data.tar.gz"
                snapshot_data(snapshot)
                changes = changes_between(ROOT / previous["data_snapshot"] if previous.get("data_snapshot") else None,
                                          snapshot)  # fmt: skip
                temporary = MODEL.with_suffix(".publishing")
                shutil.copy2(model, temporary)
                os.replace(temporary, MODEL)
                commit = self._commit(username, f"Publish by {username}: {changes.splitlines()[0]}")
                seconds = round(time.monotonic() - started, 1)
                progress.figures = [line for line in report.splitlines()
                                    if ": accuracy " in line and not line.startswith("thresholds: ")]  # fmt: skip
                detail = f"timings {progress.timings}; " + "; ".join(progress.figures)
                record = self._record(username=username, status="published", model=_relative(model),
                                      data_snapshot=_relative(snapshot), changes=changes, detail=detail,
                                      git_commit=commit, seconds=seconds)  # fmt: skip
        except PublishError as error:
            progress.failed, progress.done, progress.message = True, True, str(error)
            self._record(username=username, status="failed", changes="", detail=str(error)[:4000],
                         seconds=round(time.monotonic() - started, 1))  # fmt: skip
            raise
        progress.at("record", 1, f"published in {record['seconds']:.0f} s ({progress.steps()})")
        progress.done, progress.record = True, record
        return record

    def rollback(self, username: str) -> dict:
        """Back to the model and data of the publish before the latest one (or the baseline)."""
        with self._lock():
            live = self._live()
            if len(live) < 2:
                raise PublishError("nothing to roll back: no publish since the baseline")
            latest, previous = live[0], live[1]
            if not previous.get("model") or not (ROOT / previous["model"]).exists():
                raise PublishError(f"the previous model {previous.get('model')} is missing")
            self._swap(ROOT / previous["model"], Progress())
            restore_data(ROOT / previous["data_snapshot"])
            self.reload_actions()
            shutil.copy2(ROOT / previous["model"], MODEL.with_suffix(".publishing"))
            os.replace(MODEL.with_suffix(".publishing"), MODEL)
            with self.engine.begin() as connection:
                connection.execute(publishes_table.update().where(publishes_table.c.id == latest["id"])
                                   .values(status="rolled_back"))  # fmt: skip
            commit = self._commit(username, f"Roll back by {username} to publish {previous['id']}")
            return self._record(username=username, status="rollback", model=previous["model"],
                                data_snapshot=previous["data_snapshot"], changes=f"back to publish {previous['id']}",
                                detail=f"undid publish {latest['id']}", git_commit=commit)  # fmt: skip
