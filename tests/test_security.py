"""Exposure and limits (issue 14): what listens where, who may call what, how much.

The network checks run against the real processes of the shared ``servers``
stack; the rate limits of the web chat's API against its real aiohttp app in
front of a stand-in that never answers slowly (no Rasa needed to be refused).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.channels.web.server import make_app
from bot.cli.servers import Servers
from bot.core.ratelimit import RateLimits, client_ip
from bot.core.senders import TOKEN_HEADER, may_use
from bot.core.texts import say

from .conftest import post

LOOPBACK = {"127.0.0.1", "::1"}


def _group_pids(leader: int) -> list[int]:
    """The processes of one process group (each server runs in a session of its own)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == leader:  # the process group id
                pids.append(int(entry.name))
    return pids


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _address(hex_address: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_address)
    if not v6:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    import ipaddress

    return str(ipaddress.IPv6Address(b"".join(words)))


def listening_addresses(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that one of ``pids`` holds."""
    inodes = set().union(*(_socket_inodes(pid) for pid in pids))
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and inode in inodes:
                address, port = local.split(":")
                found.add((_address(address, v6), int(port, 16)))
    return found


def test_every_server_listens_on_the_loopback_only(servers: Servers):
    seen = set()
    for process in servers.processes:
        addresses = listening_addresses(_group_pids(process.popen.pid))
        assert addresses, process.name
        assert {address for address, _ in addresses} <= LOOPBACK, (process.name, addresses)
        seen |= {port for _, port in addresses}
    assert {servers.rasa_port, servers.action_port, servers.web_port} <= seen


def test_no_secret_is_on_a_command_line_and_each_process_gets_only_its_own(servers: Servers):
    secrets = {servers.auth_token, *servers.channel_tokens.values()}
    for process in servers.processes:
        for pid in _group_pids(process.popen.pid):
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert not any(secret in command_line for secret in secrets), process.name
    web_env = Path(f"/proc/{servers.process('web chat').popen.pid}/environ").read_bytes().decode()
    assert "WEB_CHANNEL_TOKEN=" in web_env
    for other in ("RASA_AUTH_TOKEN=", "TELEGRAM_CHANNEL_TOKEN=", "ACTION_SERVER_TOKEN="):
        assert other not in web_env


def test_the_action_server_runs_actions_only_for_rasa(servers: Servers):
    body = {"next_action": "action_finish_visit_request", "sender_id": "intruder", "tracker": {}, "domain": {}}
    assert httpx.post(f"{servers.action_url}/webhook", json=body).status_code == 403
    health = httpx.get(f"{servers.action_url}/health", headers={"Origin": "https://evil.example"})
    assert health.status_code == 200 and not any(h.startswith("access-control-") for h in health.headers)
    preflight = httpx.options(f"{servers.action_url}/webhook", headers={"Origin": "https://evil.example",
                              "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert "access-control-allow-origin" not in preflight.headers
    # and Rasa itself, which has the token, still gets its answers
    status, replies = post(f"{servers.rasa_url}/webhooks/rest/webhook", {"sender": "sec-1", "message": "hello"})
    assert status == 200 and replies[0]["text"] == say("greet", "en")


def test_the_action_server_reads_its_texts_again_only_with_the_swap_token(servers: Servers):
    """``bot publish`` has every action server reload (``POST /reload``) with the model-swap token;
    nobody else can, not even with the action server's own token."""
    url = f"{servers.action_url}/reload"
    action_token = Path(f"/proc/{servers.process('action server').popen.pid}/environ").read_bytes().decode()
    action_token = next(v.split("=", 1)[1] for v in action_token.split("\0") if v.startswith("ACTION_SERVER_TOKEN="))
    assert httpx.post(url).status_code == 403
    assert httpx.post(url, headers={"X-Model-Token": "guessed"}).status_code == 403
    assert httpx.post(url, headers={"X-Action-Token": action_token}).status_code == 403
    reply = httpx.post(url, headers={"X-Model-Token": servers.swap_token_file.read_text().strip()})
    assert (reply.status_code, reply.json()) == (200, {"reloaded": True})


@pytest.mark.parametrize(
    "sender", ["telegram-123456", "TELEGRAM-123456", "web-" + "a" * 22, " web-abcdefghijklmnopqrstuv"]
)
def test_the_rest_channel_refuses_another_channels_conversations(servers: Servers, sender):
    url = f"{servers.rasa_url}/webhooks/rest/webhook"
    status, reply = post(url, {"sender": sender, "message": "/restart"})
    assert status == 403 and "another channel" in reply["error"]
    forged = httpx.post(url, json={"sender": sender, "message": "hi"}, headers={TOKEN_HEADER: "guess"})
    assert forged.status_code == 403
    history = httpx.get(f"{servers.rasa_url}/webhooks/rest/history/{sender.strip()}")
    assert history.status_code == 404


def test_the_owning_channel_may_use_its_conversations(servers: Servers):
    sender = "web-" + os.urandom(12).hex()
    token = servers.channel_tokens["WEB_CHANNEL_TOKEN"]
    url = f"{servers.rasa_url}/webhooks/rest/webhook"
    reply = httpx.post(url, json={"sender": sender, "message": "hello"}, headers={TOKEN_HEADER: token})
    assert reply.status_code == 200 and reply.json()[0]["text"] == say("greet", "en")
    history = httpx.get(f"{servers.rasa_url}/webhooks/rest/history/{sender}", headers={TOKEN_HEADER: token})
    assert [e.get("text") for e in history.json()["events"] if e["event"] == "user"] == ["hello"]
    # the web token is no Telegram token
    other = httpx.post(url, json={"sender": "telegram-1", "message": "hi"}, headers={TOKEN_HEADER: token})
    assert other.status_code == 403


def test_a_huge_body_is_refused_before_it_is_read(servers: Servers):
    reply = httpx.post(
        f"{servers.rasa_url}/webhooks/rest/webhook",
        content=b'{"sender": "big", "message": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 413


def test_one_conversation_over_its_rate_gets_429_with_retry_after(servers: Servers):
    url = f"{servers.rasa_url}/webhooks/rest/webhook"
    statuses = []
    # A leaky bucket: a burst of per_sender passes, then it refills at per_sender a minute.
    while len(statuses) < 3 * RateLimits.per_sender and 429 not in statuses:
        reply = httpx.post(url, json={"sender": "sec-flood", "message": "hi"}, timeout=60)
        statuses.append(reply.status_code)
    assert statuses[: RateLimits.per_sender] == [200] * RateLimits.per_sender
    assert statuses[-1] == 429 and int(reply.headers["Retry-After"]) >= 1
    # another conversation is not held back
    status, _ = post(url, {"sender": "sec-other", "message": "hi"})
    assert status == 200


def test_the_web_access_log_holds_no_conversation_id(servers: Servers):
    sender = "web-" + os.urandom(12).hex()
    httpx.get(f"{servers.web_url}/api/history/{sender}")
    httpx.post(f"{servers.web_url}/api/message", json={"sender": sender, "message": "hello"}, timeout=60)
    log = (servers.log_dir / f"web-{servers.web_port}.log").read_text()
    assert "/api/history/…" in log and sender not in log


# --- the web chat's API limits, on its real app ---------------------------------------------


async def _web_client(limits: RateLimits) -> TestClient:
    # Rasa at a closed port: a request that passes the limits gets 503 "unreachable".
    client = TestClient(TestServer(make_app("http://127.0.0.1:9", "token", limits)))
    await client.start_server()
    return client


async def test_the_web_api_limits_each_address():
    client = await _web_client(RateLimits(per_ip=3, per_sender=100, max_in_flight=10))
    try:
        statuses = []
        for n in range(4):
            sender = f"web-{'a' * 20}{n}"
            reply = await client.post("/api/message", json={"sender": sender, "message": "hi"})
            statuses.append((reply.status, reply.headers.get("Retry-After")))
        assert [s for s, _ in statuses[:3]] == [503, 503, 503]
        assert statuses[3][0] == 429 and int(statuses[3][1]) >= 1
        # behind the office's proxy, each client has its own allowance
        reply = await client.post(
            "/api/message",
            json={"sender": "web-" + "b" * 20, "message": "hi"},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert reply.status == 503
    finally:
        await client.close()


async def test_the_web_api_caps_requests_in_flight():
    limits = RateLimits(per_ip=0, per_sender=0, max_in_flight=1)
    client = await _web_client(limits)
    try:
        async with limits.slot():  # one request is being answered
            reply = await client.post("/api/message", json={"sender": "web-" + "c" * 20, "message": "hi"})
            assert reply.status == 429 and reply.headers["Retry-After"] == "1"
        reply = await client.post("/api/message", json={"sender": "web-" + "c" * 20, "message": "hi"})
        assert reply.status == 503
    finally:
        await client.close()


def test_frame_ancestors_default_to_the_page_itself_and_drop_bad_entries():
    from bot.channels.web.server import frame_ancestors

    assert frame_ancestors(None) == "'self'"
    assert frame_ancestors("https://www.example.edu.cn 'self'") == "https://www.example.edu.cn 'self'"
    assert frame_ancestors("https://ok.example; script-src *") == "'self'"  # no directive injected
    assert frame_ancestors("javascript:alert(1)") == "'self'"


def test_the_client_address_comes_from_a_trusted_proxy_only():
    trusted = frozenset({"127.0.0.1"})
    assert client_ip("127.0.0.1", "198.51.100.7", trusted) == "198.51.100.7"
    assert client_ip("127.0.0.1", "10.0.0.1, 198.51.100.7, 127.0.0.1", trusted) == "198.51.100.7"
    assert client_ip("203.0.113.5", "198.51.100.7", trusted) == "203.0.113.5"  # forged by the client itself


def test_a_channel_prefix_needs_its_token(monkeypatch):
    monkeypatch.setenv("WEB_CHANNEL_TOKEN", "right")
    monkeypatch.delenv("TELEGRAM_CHANNEL_TOKEN", raising=False)
    assert may_use("alice", None) and may_use("web-x", "right")
    assert not may_use("web-x", "wrong") and not may_use("web-x", None)
    assert not may_use("telegram-1", "") and not may_use("telegram-1", None)


def test_rate_limits_refill():
    async def scenario() -> list[int | None]:
        limits = RateLimits(per_ip=0, per_sender=2, max_in_flight=0)
        return [await limits.check(sender="s") for _ in range(3)] + [await limits.check(sender="t")]

    first, second, third, other = asyncio.run(scenario())
    assert first is None and second is None and third and third >= 1 and other is None
