"""Start and stop the bot's processes, as `make run` and the tests do.

    with Servers(model=Path("models/njupt.tar.gz"), web_port=8080) as servers:
        ...  # they answer at servers.rasa_url, servers.action_url, servers.web_url

The processes: the action server (``python -m actions``), the Rasa server
(``python -m bot.cli.rasa_server``), the web chat (``python -m bot.channels.web``)
when ``web_port`` is set, and the Telegram bridge (``python -m
bot.channels.telegram``) when ``telegram`` is set. Each runs as a child process
with its log in ``var/log/``; they are ready when their health endpoints answer,
and stopped with SIGTERM (then SIGKILL) on exit.

Every server listens on ``host`` (default 127.0.0.1, the loopback only). The
secrets they share are made here at each start and passed in the environment of
the processes that need them, never on a command line: the action server's
token (Rasa sends it), each channel's token (``bot.core.senders``: the web chat
and the Telegram bridge get only their own), Rasa's HTTP API token
(``auth_token``; the API is off without one), and the model-swap token
(``MODEL_SWAP_TOKEN``, ``bot.plugins.models``: Rasa and the web chat's server, which
runs the staff console; ``bot publish`` reads it from ``var/run/model-swap-<rasa
port>.token``, readable by its owner only, removed at stop).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from bot.core.paths import MODEL, ROOT, VAR

AUTH_TOKEN = "RASA_AUTH_TOKEN"
# Secrets shared between the processes: each is given only to those that need it.
SECRETS = (AUTH_TOKEN, "ACTION_SERVER_TOKEN", "WEB_CHANNEL_TOKEN", "TELEGRAM_CHANNEL_TOKEN", "MODEL_SWAP_TOKEN")
RUN_DIR = VAR / "run"
# The largest request body Rasa reads (Sanic's default is 100 MB): ample for a
# 20,000-character message or a Telegram update.
MAX_REQUEST_BYTES = 1024 * 1024


class ServerError(RuntimeError):
    """A server did not start; the message ends with the tail of its log."""


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Process:
    name: str
    command: list[str]
    health_url: str | None  # None: ready once started (the Telegram bridge)
    log: Path
    env: dict[str, str]
    popen: subprocess.Popen | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def check_alive(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            raise ServerError(f"the {self.name} exited; its log {self.log}:\n{_tail(self.log)}")

    def stop(self, grace: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


@dataclass
class Servers:
    """The action server and the Rasa server, started together."""

    model: Path = MODEL
    rasa_port: int = 5005
    action_port: int = 5055
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = VAR / "log"
    auth_token: str | None = None
    cors: str | None = None
    # The web chat (bot/web.py) as a third process when set; it reads Rasa's
    # tracker API, so a random auth token is made when none is given, and
    # Rasa's CORS defaults to the page's origin only.
    web_port: int | None = None
    web_host: str = "127.0.0.1"
    # The Telegram bridge (bot/telegram.py, long polling; needs TELEGRAM_BOT_TOKEN)
    # as another process, started once Rasa answers.
    telegram: bool = False
    processes: list[Process] = field(default_factory=list)
    channel_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def rasa_url(self) -> str:
        return f"http://{self.host}:{self.rasa_port}"

    @property
    def action_url(self) -> str:
        return f"http://{self.host}:{self.action_port}"

    @property
    def web_url(self) -> str:
        """The chat page's origin as a browser on this machine opens it."""
        local = self.web_host in ("127.0.0.1", "0.0.0.0", "::", "", "localhost")
        return f"http://{'localhost' if local else self.web_host}:{self.web_port}"

    def _endpoints(self) -> Path:
        """endpoints.yml, pointed at this action server; its token is read from the environment
        (Rasa expands ``${ACTION_SERVER_TOKEN}``), so the file holds no secret."""
        endpoints = yaml.safe_load((ROOT / "endpoints.yml").read_text(encoding="utf-8"))
        endpoints["action_endpoint"] = {
            "url": f"{self.action_url}/webhook",
            "headers": {"X-Action-Token": "${ACTION_SERVER_TOKEN}"},
        }
        text = yaml.safe_dump(endpoints, sort_keys=False)
        assert "X-Action-Token: ${ACTION_SERVER_TOKEN}" in text  # plain, or Rasa would not expand it
        path = VAR / f"endpoints.{self.action_port}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SECRETS}
        env.setdefault("RASA_TELEMETRY_ENABLED", "false")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("PYTHONPATH", str(ROOT))
        env.update(self.env)
        return env

    def _secrets(self) -> dict[str, str]:
        """The shared secrets: from the environment when set there, else random for this start."""
        made = {name: os.environ.get(name) or secrets.token_urlsafe(24) for name in SECRETS if name != AUTH_TOKEN}
        if self.auth_token:
            made[AUTH_TOKEN] = self.auth_token
        return made

    def start(self, timeout: float = 240.0) -> Servers:
        if not self.model.exists():
            raise ServerError(f"no trained model at {self.model}: run `make train`")
        for port in (self.rasa_port, self.action_port, self.web_port):
            if port and port_in_use(self.host, port):
                raise ServerError(f"port {port} is already in use: is the bot already running?")
        if self.web_port:
            self.cors = self.cors or self.web_url
        env, shared = self._env(), self._secrets()
        self.channel_tokens = {name: shared[name] for name in ("WEB_CHANNEL_TOKEN", "TELEGRAM_CHANNEL_TOKEN")}
        action = [sys.executable, "-m", "actions", "--host", self.host, "--port", str(self.action_port)]
        action_env = {**env, "ACTION_SERVER_TOKEN": shared["ACTION_SERVER_TOKEN"]}
        rasa = [
            sys.executable, "-m", "bot.cli.rasa_server", "--model", str(self.model),
            "--port", str(self.rasa_port), "--interface", self.host,
            "--credentials", str(ROOT / "credentials.yml"), "--endpoints", str(self._endpoints()),
        ]  # fmt: skip
        if self.cors:
            rasa += ["--cors", self.cors]
        rasa_env = {**env, **shared, "SANIC_REQUEST_MAX_SIZE": str(MAX_REQUEST_BYTES)}
        self.processes = [
            Process("action server", action, f"{self.action_url}/health",
                    self.log_dir / f"actions-{self.action_port}.log", action_env),
            Process("Rasa server", rasa, f"{self.rasa_url}/webhooks/rest/",
                    self.log_dir / f"rasa-{self.rasa_port}.log", rasa_env),
        ]  # fmt: skip
        if self.web_port:
            web = [sys.executable, "-m", "bot.channels.web", "--host", self.web_host,
                   "--port", str(self.web_port), "--rasa-url", self.rasa_url]  # fmt: skip
            local = "127.0.0.1" if self.web_host in ("0.0.0.0", "::", "") else self.web_host
            health = f"http://{local}:{self.web_port}/api/health"
            web_env = {**env, "WEB_CHANNEL_TOKEN": shared["WEB_CHANNEL_TOKEN"],
                       "MODEL_SWAP_TOKEN": shared["MODEL_SWAP_TOKEN"], "RASA_URL": self.rasa_url}  # fmt: skip
            web_log = self.log_dir / f"web-{self.web_port}.log"
            self.processes.append(Process("web chat", web, health, web_log, web_env))
        self._write_swap_token(shared["MODEL_SWAP_TOKEN"])
        for process in self.processes:
            process.start()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        if self.telegram:  # after Rasa answers, so that no waiting update gets an apology
            bridge = [sys.executable, "-m", "bot.channels.telegram", "--rasa-url", self.rasa_url]
            log = self.log_dir / f"telegram-{self.rasa_port}.log"
            bridge_env = {**env, "TELEGRAM_CHANNEL_TOKEN": shared["TELEGRAM_CHANNEL_TOKEN"]}
            self.processes.append(Process("Telegram bridge", bridge, None, log, bridge_env))
            self.processes[-1].start()
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(self.processes)
        while waiting:
            for process in list(waiting):
                process.check_alive()
                if process.health_url is None or answers(process.health_url):
                    waiting.remove(process)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(p.name for p in waiting)
                raise ServerError(f"{names} not ready after {timeout:.0f} s; see {self.log_dir}")
            if waiting:
                time.sleep(0.5)

    def process(self, name: str) -> Process:
        """The process called ``name`` ("action server", "Rasa server", "web chat", "Telegram bridge")."""
        found = [process for process in self.processes if process.name == name]
        if not found:
            raise KeyError(f"no {name} in {[p.name for p in self.processes]}")
        return found[0]

    @property
    def swap_token_file(self) -> Path:
        return swap_token_file(self.rasa_port)

    def _write_swap_token(self, token: str) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        path = self.swap_token_file
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(token)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.swap_token_file.unlink(missing_ok=True)

    def __enter__(self) -> Servers:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def swap_token_file(rasa_port: int) -> Path:
    """Where ``bot run`` leaves the model-swap token of the Rasa server on ``rasa_port``."""
    return RUN_DIR / f"model-swap-{rasa_port}.token"
