"""Staff replies reach the user: `bot requests reply/close/show`, Telegram through the Bot API
stand-in, e-mail through a real SMTP server on the loopback (aiosmtpd), and "undelivered"
when nothing reaches the user."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import subprocess
import sys
import threading
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from bot.core import storage
from bot.core.handoff import HandoffStore
from bot.core.storage import OfficeRequest, RequestStore
from bot.core.texts import say

from .conftest import free_port
from .telegram_standin import BotApiStandIn


class Inbox:
    """aiosmtpd's handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        self.arrived.set()
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"office", b"s3cret")
    return AuthResult(success=ok)


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                            auth_require_tls=False)  # fmt: skip
    controller.start()
    inbox.port = controller.port
    yield inbox
    controller.stop()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (cryptography, as Rasa's dependencies bring it)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert, private = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    return cert, private


def bot(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("SMTP_URL", "TELEGRAM_BOT_TOKEN", "TELEGRAM_STAFF_CHAT_ID")
    }
    return subprocess.run([sys.executable, "-m", "bot.cli.main", "requests", *args], capture_output=True, text=True,
                          env={**clean, **env}, timeout=120)  # fmt: skip


@pytest.fixture
def database(tmp_path):
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    storage.store.cache_clear()
    return url, HandoffStore(RequestStore(url))


def subject(message) -> str:
    return str(make_header(decode_header(message["Subject"])))


def test_an_email_reply_arrives_with_the_reference_in_its_subject(database, smtp):
    url, store = database
    question = store.requests.save(OfficeRequest(kind="question", email="scholar@uni.example", language="fr",
                                                 details="Quels sont les frais ?", sender_id="curl-1"))  # fmt: skip
    env = {
        "DATABASE_URL": url,
        "SMTP_URL": f"smtp://office:s3cret@127.0.0.1:{smtp.port}",
        "SMTP_FROM": "bot@test.example",
    }
    done = bot(
        "reply", question.ref, "--text", "Les frais ne sont pas fixés ici ; écrivez-nous.", "--as", "li", env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert smtp.arrived.wait(30)
    ((recipients, mail),) = smtp.messages
    assert recipients == ["scholar@uni.example"] and mail["From"] == "bot@test.example"
    assert subject(mail) == say("handoff_email_subject", "fr", ref=question.ref) and question.ref in subject(mail)
    assert "Les frais ne sont pas fixés ici ; écrivez-nous." in mail.get_content()
    shown = bot("show", question.ref, env={"DATABASE_URL": url}).stdout
    assert "reply by cli:li: Les frais ne sont pas fixés ici ; écrivez-nous." in shown
    assert "delivered: e-mail: sent" in shown


def test_starttls_with_credentials(database, tmp_path):
    url, store = database
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                            tls_context=context, require_starttls=True)  # fmt: skip
    controller.start()
    try:
        request = store.requests.save(OfficeRequest(kind="question", email="a@uni.example", details="?"))
        env = {"DATABASE_URL": url, "SMTP_URL": f"smtp+starttls://office:s3cret@127.0.0.1:{controller.port}",
               "SMTP_CA_FILE": str(cert)}  # fmt: skip
        done = bot("reply", request.ref, "--text", "Hello", env=env)
        assert done.returncode == 0 and "e-mail: sent" in done.stdout, done.stdout + done.stderr
        assert inbox.arrived.wait(30) and subject(inbox.messages[0][1]).startswith(f"[{request.ref}]")
    finally:
        controller.stop()


def test_without_smtp_url_nothing_is_sent_and_the_reply_is_undelivered(database, smtp):
    url, store = database
    request = store.requests.save(OfficeRequest(kind="question", email="a@uni.example", details="?", sender_id="x-1"))
    done = bot("reply", request.ref, "--text", "Hello", env={"DATABASE_URL": url})
    assert done.returncode == 2 and "undelivered" in done.stdout and "SMTP_URL is not set" in done.stdout
    assert smtp.messages == []
    assert "UNDELIVERED" in bot("show", request.ref, env={"DATABASE_URL": url}).stdout


def test_a_telegram_user_gets_the_reply_in_their_chat_and_close_returns_them_to_the_bot(database):
    url, store = database
    handoff, _ = store.open("telegram-5101", "ru")
    with BotApiStandIn() as api:
        env = {"DATABASE_URL": url, "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_BASE_URL": api.base_url}
        done = bot("reply", handoff.ref, "--text", "Здравствуйте! Чем можем помочь?", "--as", "li", env=env)
        assert done.returncode == 0 and "delivered: telegram: sent" in done.stdout, done.stdout + done.stderr
        assert api.texts(5101) == [
            say("handoff_staff_reply", "ru", ref=handoff.ref, text="Здравствуйте! Чем можем помочь?")
        ]
        closed = bot("close", handoff.ref, env=env)
        assert closed.returncode == 0 and "back with the bot" in closed.stdout, closed.stdout + closed.stderr
        assert api.texts(5101)[-1] == say("handoff_closed", "ru", ref=handoff.ref)
    assert store.active("telegram-5101") is None
    assert store.get(handoff.ref).closed_by == "cli:" + os.environ.get("USER", store.get(handoff.ref).closed_by[4:])
    shown = bot("show", handoff.ref, env={"DATABASE_URL": url}).stdout
    assert "reply by cli:li: Здравствуйте! Чем можем помочь?" in shown and "closed_reason     staff" in shown


def test_a_user_who_blocked_the_bot_is_marked_undelivered(database):
    url, store = database
    handoff, _ = store.open("telegram-5102", "en")
    with BotApiStandIn() as api:
        api.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
        env = {"DATABASE_URL": url, "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_BASE_URL": api.base_url}
        done = bot("reply", handoff.ref, "--text", "Hello?", env=env)
    assert done.returncode == 2 and "undelivered" in done.stdout and "Forbidden" in done.stdout
    (reply,) = store.messages(handoff.ref)
    assert reply.delivery == "undelivered" and "blocked" in reply.delivery_note
    assert "UNDELIVERED: ⚠ undelivered: telegram: failed" in bot("show", handoff.ref, env={"DATABASE_URL": url}).stdout


def test_a_reply_to_an_unknown_request_is_refused(database):
    url, _ = database
    done = bot("reply", "H-1999-0001", "--text", "Hello", env={"DATABASE_URL": url})
    assert done.returncode == 1 and "no request" in done.stderr


def test_bot_run_closes_quiet_handoffs_and_tells_the_telegram_user(database, monkeypatch):
    from bot.cli.main import expire_handoffs
    from bot.core import handoff as handoff_module

    url, store = database
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("HANDOFF_TIMEOUT_MINUTES", "30")
    handoff_module.handoffs.cache_clear()
    quiet, _ = store.open("telegram-5201", "zh-Hans", now=handoff_module.now_utc() - dt.timedelta(minutes=45))
    busy, _ = store.open("telegram-5202", "zh-Hans")
    with BotApiStandIn() as api:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", api.token)
        monkeypatch.setenv("TELEGRAM_BASE_URL", api.base_url)
        expire_handoffs()
        assert api.texts(5201) == [say("handoff_timed_out", "zh-Hans", ref=quiet.ref, minutes="30")]
        assert api.texts(5202) == []
    assert store.active("telegram-5201") is None and store.active("telegram-5202").ref == busy.ref
    handoff_module.handoffs.cache_clear()
