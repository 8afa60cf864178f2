"""Start and stop the action server, the Rasa server and the web chat, as `make run` and the tests do.

    with Servers(model=Path("models/njupt.tar.gz")) as servers:
        ...  # both answer at servers.rasa_url and servers.action_url

Each server runs as a child process with its log in ``var/log/``; the servers
are ready when their health endpoints answer, and stopped with SIGTERM (then
SIGKILL) on exit.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bot.core.paths import MODEL, ROOT, VAR


class ServerError(RuntimeError):
    """A server did not start; the message ends with the tail of its log."""


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError, ValueError):
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
        """endpoints.yml, pointed at this action server's port."""
        text = (ROOT / "endpoints.yml").read_text(encoding="utf-8")
        text = text.replace("http://localhost:5055/webhook", f"{self.action_url}/webhook")
        path = VAR / f"endpoints.{self.action_port}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("RASA_TELEMETRY_ENABLED", "false")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("PYTHONPATH", str(ROOT))
        env.update(self.env)
        return env

    def start(self, timeout: float = 240.0) -> Servers:
        if not self.model.exists():
            raise ServerError(f"no trained model at {self.model}: run `make train`")
        for port in (self.rasa_port, self.action_port, self.web_port):
            if port and port_in_use(self.host, port):
                raise ServerError(f"port {port} is already in use: is the bot already running?")
        if self.web_port:
            self.auth_token = self.auth_token or secrets.token_urlsafe(24)
            self.cors = self.cors or self.web_url
        env = self._env()
        action = [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(self.action_port)]
        rasa = [
            sys.executable, "-m", "rasa", "run", "--model", str(self.model),
            "--port", str(self.rasa_port), "--interface", self.host,
            "--credentials", str(ROOT / "credentials.yml"), "--endpoints", str(self._endpoints()),
        ]  # fmt: skip
        if self.auth_token:
            rasa += ["--enable-api", "--auth-token", self.auth_token]
        if self.cors:
            rasa += ["--cors", self.cors]
        self.processes = [
            Process("action server", action, f"{self.action_url}/health",
                    self.log_dir / f"actions-{self.action_port}.log", env),
            Process("Rasa server", rasa, f"{self.rasa_url}/webhooks/rest/",
                    self.log_dir / f"rasa-{self.rasa_port}.log", env),
        ]  # fmt: skip
        if self.web_port:
            web = [sys.executable, "-m", "bot.channels.web", "--host", self.web_host,
                   "--port", str(self.web_port), "--rasa-url", self.rasa_url]  # fmt: skip
            local = "127.0.0.1" if self.web_host in ("0.0.0.0", "::", "") else self.web_host
            health = f"http://{local}:{self.web_port}/api/health"
            web_env = {**env, "RASA_AUTH_TOKEN": self.auth_token or ""}
            web_log = self.log_dir / f"web-{self.web_port}.log"
            self.processes.append(Process("web chat", web, health, web_log, web_env))
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
            # the token lets it read a conversation's language (Rasa's tracker API) for its notices
            bridge_env = {**env, "RASA_AUTH_TOKEN": self.auth_token or ""}
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

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def __enter__(self) -> Servers:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
