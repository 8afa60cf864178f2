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

With ``replicas`` = N > 1 (``REPLICAS=2 make run``) the layout is the production one: N action
servers and N Rasa servers on the ports after ``action_port`` and ``rasa_port`` (or
``replica_ports``), Debian's HAProxy in front listening on ``rasa_port`` and ``action_port``
themselves (health checks on ``/webhooks/rest/`` and ``/health``), the tracker store on
``DATABASE_URL`` (PostgreSQL) and Rasa's lock store on ``REDIS_URL``
(``bot.plugins.locks``), so that two replicas never handle one conversation at once. Every
replica gets the same secrets; the web chat and the Telegram bridge talk to the load balancer.
HAProxy's configuration (``var/haproxy.<port>.cfg``, mode 0600) holds no secret.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from bot.core.paths import MODEL, ROOT, VAR
from bot.staff.publish import replicas_file

AUTH_TOKEN = "RASA_AUTH_TOKEN"
# Secrets shared between the processes: each is given only to those that need it.
SECRETS = (AUTH_TOKEN, "ACTION_SERVER_TOKEN", "WEB_CHANNEL_TOKEN", "TELEGRAM_CHANNEL_TOKEN", "MODEL_SWAP_TOKEN")
RUN_DIR = VAR / "run"
# The largest request body Rasa reads (Sanic's default is 100 MB): ample for a
# 20,000-character message or a Telegram update.
MAX_REQUEST_BYTES = 1024 * 1024
# Rasa's lock keys in Redis start with this (so that the bot can share a Redis server).
LOCK_KEY_PREFIX = "njupt"
# Seconds HAProxy waits for a reply: longer than a message may wait for its conversation's lock
# (Rasa's TICKET_LOCK_LIFETIME, 60 s) and then be answered.
LB_TIMEOUT = 150


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


def endpoints_file(action_url: str, redis: bool, key_prefix: str = LOCK_KEY_PREFIX) -> str:
    """endpoints.yml pointed at ``action_url``; the action server's token is read from the
    environment (Rasa expands ``${ACTION_SERVER_TOKEN}``), so the file holds no secret. With
    ``redis``, Rasa's lock store on Redis (``bot.plugins.locks``, which reads ``REDIS_URL``)."""
    endpoints = yaml.safe_load((ROOT / "endpoints.yml").read_text(encoding="utf-8"))
    endpoints["action_endpoint"] = {**endpoints["action_endpoint"], "url": action_url,
                                    "headers": {"X-Action-Token": "${ACTION_SERVER_TOKEN}"}}  # fmt: skip
    if redis:
        endpoints["lock_store"] = {"type": "bot.plugins.locks.EnvRedisLockStore", "key_prefix": key_prefix}
    text = yaml.safe_dump(endpoints, sort_keys=False)
    assert "X-Action-Token: ${ACTION_SERVER_TOKEN}" in text  # plain, or Rasa would not expand it
    return text


def haproxy_path() -> str | None:
    """HAProxy's executable (Debian installs it in /usr/sbin), or None."""
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.access(p, os.X_OK)), None)


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
    ready: Callable[[], bool] | None = None  # instead of health_url (the load balancer)

    def is_ready(self) -> bool:
        if self.ready is not None:
            return self.ready()
        return self.health_url is None or answers(self.health_url)

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
    # Replicas behind HAProxy (see the module's docstring): 1 is the plain layout.
    replicas: int = 1
    replica_ports: list[tuple[int, int]] = field(default_factory=list)  # (Rasa, action server) each
    lock_key_prefix: str = LOCK_KEY_PREFIX  # alphanumeric
    processes: list[Process] = field(default_factory=list)
    channel_tokens: dict[str, str] = field(default_factory=dict)
    lb_socket: Path | None = None

    @property
    def rasa_url(self) -> str:
        """Where the clients talk to Rasa: the Rasa server, or the load balancer in front of the replicas."""
        return f"http://{self.host}:{self.rasa_port}"

    @property
    def action_url(self) -> str:
        return f"http://{self.host}:{self.action_port}"

    @property
    def web_url(self) -> str:
        """The chat page's origin as a browser on this machine opens it."""
        local = self.web_host in ("127.0.0.1", "0.0.0.0", "::", "", "localhost")
        return f"http://{'localhost' if local else self.web_host}:{self.web_port}"

    def _endpoints(self, env: dict[str, str]) -> Path:
        """The endpoints file of this start (``endpoints_file``), under var/."""
        redis = bool(env.get("REDIS_URL", "").strip())
        path = VAR / f"endpoints.{self.action_port}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(endpoints_file(f"{self.action_url}/webhook", redis, self.lock_key_prefix), encoding="utf-8")
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

    @property
    def replica_addresses(self) -> list[tuple[int, int]]:
        """(Rasa port, action server port) of each replica."""
        if self.replicas <= 1:
            return [(self.rasa_port, self.action_port)]
        if self.replica_ports:
            return list(self.replica_ports)
        return [(self.rasa_port + i, self.action_port + i) for i in range(1, self.replicas + 1)]

    def replica_url(self, number: int) -> str:
        """The Rasa server of replica ``number`` (from 1), bypassing the load balancer."""
        return f"http://{self._local}:{self.replica_addresses[number - 1][0]}"

    @property
    def _local(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    def _check_replicas(self, env: dict[str, str]) -> None:
        """Replicas share the conversations: a database server, Redis and HAProxy are needed."""
        if len(self.replica_addresses) != self.replicas:
            raise ServerError(f"{self.replicas} replicas but {len(self.replica_ports)} replica ports")
        database = env.get("DATABASE_URL", "")
        if not database or database.startswith("sqlite"):
            raise ServerError(
                "REPLICAS needs DATABASE_URL on a database server shared by the replicas, "
                "e.g. postgresql://postgres@127.0.0.1:5432/njupt_bot"
            )
        if not env.get("REDIS_URL", "").strip():
            raise ServerError("REPLICAS needs REDIS_URL for Rasa's lock store, e.g. redis://127.0.0.1:6379/0")
        if not haproxy_path():
            raise ServerError("REPLICAS needs HAProxy: as root, apt-get install -y haproxy (make run does)")

    def _haproxy(self) -> Process:
        """HAProxy in front of the replicas: Rasa on ``rasa_port``, the action servers on
        ``action_port``. Resends a request whose server could not be reached or closed without
        answering to another server (a killed Rasa had stored nothing of a message it had not
        finished handling)."""
        stem = VAR / f"haproxy.{self.rasa_port}"
        self.lb_socket = stem.with_suffix(".sock")
        rasa = "\n".join(f"    server rasa-{i} {self._local}:{r}" for i, (r, _) in enumerate(self.replica_addresses, 1))
        actions = "\n".join(
            f"    server actions-{i} {self._local}:{a}" for i, (_, a) in enumerate(self.replica_addresses, 1)
        )
        config = HAPROXY_CONFIG.format(
            socket=self.lb_socket, host=self.host, rasa_port=self.rasa_port, action_port=self.action_port,
            timeout=LB_TIMEOUT, rasa_servers=rasa, action_servers=actions,
        )  # fmt: skip
        path = stem.with_suffix(".cfg")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(config)
        os.chmod(path, 0o600)
        command = [haproxy_path() or "haproxy", "-f", str(path), "-db"]
        log = self.log_dir / f"haproxy-{self.rasa_port}.log"
        return Process("load balancer", command, None, log, self._env(), ready=self.all_backends_up)

    def _stats(self) -> list[list[str]]:
        """The load balancer's servers, one CSV row each (HAProxy's ``show stat``), from its stats socket."""
        try:
            with socket.socket(socket.AF_UNIX) as connection:
                connection.settimeout(2)
                connection.connect(str(self.lb_socket))
                connection.sendall(b"show stat\n")
                data = b""
                while chunk := connection.recv(65536):
                    data += chunk
        except OSError:
            return []
        rows = [line.split(",") for line in data.decode(errors="replace").splitlines() if line and line[0] != "#"]
        return [row for row in rows if len(row) > 17 and row[1] not in ("FRONTEND", "BACKEND")]

    def backends(self) -> dict[str, str]:
        """Each server of the load balancer and its state by the health checks ("UP", "DOWN")."""
        return {row[1]: row[17].split(" ")[0] for row in self._stats()}

    def served(self) -> dict[str, int]:
        """Each server of the load balancer and how many requests it was given."""
        return {row[1]: int(row[7] or 0) for row in self._stats()}

    def all_backends_up(self) -> bool:
        states = self.backends()
        return len(states) == 2 * self.replicas and all(state == "UP" for state in states.values())

    def start(self, timeout: float = 240.0) -> Servers:
        if not self.model.exists():
            raise ServerError(f"no trained model at {self.model}: run `make train`")
        env, shared = self._env(), self._secrets()
        if self.replicas > 1:
            self._check_replicas(env)
        ports = [self.rasa_port, self.action_port, self.web_port]
        ports += [port for pair in self.replica_addresses for port in pair] if self.replicas > 1 else []
        for port in ports:
            if port and port_in_use(self._local, port):
                raise ServerError(f"port {port} is already in use: is the bot already running?")
        if self.web_port:
            self.cors = self.cors or self.web_url
        self.channel_tokens = {name: shared[name] for name in ("WEB_CHANNEL_TOKEN", "TELEGRAM_CHANNEL_TOKEN")}
        endpoints = self._endpoints(env)
        # the model-swap token also lets `bot publish` have each action server read the texts again (POST /reload)
        action_env = {**env, "ACTION_SERVER_TOKEN": shared["ACTION_SERVER_TOKEN"],
                      "MODEL_SWAP_TOKEN": shared["MODEL_SWAP_TOKEN"]}  # fmt: skip
        rasa_env = {**env, **shared, "SANIC_REQUEST_MAX_SIZE": str(MAX_REQUEST_BYTES)}
        self.processes = []
        replicated = self.replicas > 1
        for number, (rasa_port, action_port) in enumerate(self.replica_addresses, 1):
            suffix = f" {number}" if replicated else ""
            action = [sys.executable, "-m", "actions", "--host", self.host, "--port", str(action_port)]
            rasa = [
                sys.executable, "-m", "bot.cli.rasa_server", "--model", str(self.model),
                "--port", str(rasa_port), "--interface", self.host,
                "--credentials", str(ROOT / "credentials.yml"), "--endpoints", str(endpoints),
            ]  # fmt: skip
            if self.cors:
                rasa += ["--cors", self.cors]
            self.processes += [
                Process(f"action server{suffix}", action, f"http://{self._local}:{action_port}/health",
                        self.log_dir / f"actions-{action_port}.log", action_env),
                Process(f"Rasa server{suffix}", rasa, f"http://{self._local}:{rasa_port}/webhooks/rest/",
                        self.log_dir / f"rasa-{rasa_port}.log", rasa_env),
            ]  # fmt: skip
        if replicated:
            self.processes.append(self._haproxy())
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
        self._write_replicas()
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
                if process.is_ready():
                    waiting.remove(process)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(p.name for p in waiting)
                raise ServerError(f"{names} not ready after {timeout:.0f} s; see {self.log_dir}")
            if waiting:
                time.sleep(0.5)

    def process(self, name: str) -> Process:
        """The process called ``name`` ("action server", "Rasa server", "web chat", "Telegram bridge"; with
        replicas "action server 1", "Rasa server 1", …, "load balancer")."""
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

    def _write_replicas(self) -> None:
        """The Rasa and action servers behind ``rasa_port``, each by its own port, for ``bot publish``:
        it swaps the model of every Rasa server and has every action server read the texts again."""
        listed = [{"rasa": f"http://{self._local}:{r}", "actions": f"http://{self._local}:{a}"}
                  for r, a in self.replica_addresses]  # fmt: skip
        path = replicas_file(self.rasa_port)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(listed, indent=1) + "\n", encoding="utf-8")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.swap_token_file.unlink(missing_ok=True)
        replicas_file(self.rasa_port).unlink(missing_ok=True)

    def __enter__(self) -> Servers:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# HAProxy 2.6 (Debian 12). Only failed requests are logged, without the client's address or
# the URL (a URL can name a conversation), and the servers going down and up. A server is out
# after 2 failed checks a second apart, back after 2 good ones.
HAPROXY_CONFIG = """\
# Written by bot/cli/servers.py at each start with REPLICAS; edits are lost.
global
    stats socket {socket} mode 600 level user
    log stderr format raw local0 info

defaults
    mode http
    log global
    # failed requests only, without the client's address or the URL
    option dontlog-normal
    log-format "%tr %ft %b/%s status=%ST time=%Tt ms termination=%tsc retries=%rc"
    option forwardfor
    option redispatch
    retries 3
    retry-on conn-failure empty-response
    timeout connect 3s
    timeout client {timeout}s
    timeout server {timeout}s
    timeout http-request 10s
    timeout queue 30s
    default-server check inter 1s fastinter 500ms downinter 1s rise 2 fall 2

frontend rasa
    bind {host}:{rasa_port}
    default_backend rasa

backend rasa
    balance leastconn
    option httpchk GET /webhooks/rest/
{rasa_servers}

frontend actions
    bind {host}:{action_port}
    default_backend actions

backend actions
    balance leastconn
    option httpchk GET /health
{action_servers}
"""


def swap_token_file(rasa_port: int) -> Path:
    """Where ``bot run`` leaves the model-swap token of the Rasa server on ``rasa_port``."""
    return RUN_DIR / f"model-swap-{rasa_port}.token"
