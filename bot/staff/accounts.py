"""Staff accounts, sessions, login rate limits and the audit log.

    staff = StaffAccounts()                      # DATABASE_URL, schema upgraded
    staff.add_user("li", "a long passphrase")    # bot staff add-user li
    session = staff.login("li", password, ip)    # raises LoginRefused when slowed down
    staff.session(cookie)                        # -> Session | None
    staff.audit("li", "inbox.assign", "fr 3fa2c1d0 -> ask_address")

Passwords are hashed with Argon2id (argon2-cffi, its current defaults, salt and
parameters kept in the hash). A session is a random token (``secrets``, 256
bits) kept by the browser in an HttpOnly cookie; the database holds only its
SHA-256, with the session's CSRF token and its expiry. After ``MAX_FAILURES``
wrong passwords in a row for one name, or from one address, the next attempts
are refused without checking the password for a time that doubles with each
further failure (from ``LOCK_SECONDS`` up to ``MAX_LOCK_SECONDS``); a right
password resets the count. Nothing here logs a password or a token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.core.storage import (
    open_store_engine,
    staff_audit_table,
    staff_login_failures_table,
    staff_sessions_table,
    staff_users_table,
)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
MAX_FAILURES = 5  # wrong passwords in a row for one name
MAX_FAILURES_PER_IP = 20  # from one address (an office behind one NAT has several staff)
LOCK_SECONDS = 15
MAX_LOCK_SECONDS = 15 * 60
SESSION_HOURS = float(os.environ.get("STAFF_SESSION_HOURS") or 8)

HASHER = PasswordHasher()
# Checked when the name is unknown, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


class StaffError(ValueError):
    """A wrong name, a short password, an account that exists or does not."""


class LoginRefused(Exception):
    """Too many wrong passwords in a row: try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Session:
    token: str  # the cookie's value (only known right after login)
    username: str
    csrf: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    username: str
    action: str
    detail: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise StaffError("a name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise StaffError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise StaffError(f"the password must have at most {MAX_PASSWORD_CHARS} characters")
    return password


class StaffAccounts:
    """The staff tables of the bot's database (``DATABASE_URL``)."""

    def __init__(self, url: str | None = None, engine: sa.engine.Engine | None = None) -> None:
        self.engine = engine or open_store_engine(url)

    # --- accounts -------------------------------------------------------------

    def add_user(self, name: str, password: str, by: str = "cli") -> None:
        check_name(name)
        password_hash = HASHER.hash(check_password(password))
        with self.engine.begin() as connection:
            exists = connection.execute(
                sa.select(staff_users_table.c.id).where(staff_users_table.c.name == name)
            ).first()
            if exists:
                raise StaffError(f"there is already a staff member called {name!r}")
            connection.execute(staff_users_table.insert().values(name=name, password_hash=password_hash,
                                                                 created_at=_now()))  # fmt: skip
        self.audit(by, "staff.add_user", name)

    def remove_user(self, name: str, by: str = "cli") -> None:
        with self.engine.begin() as connection:
            removed = connection.execute(staff_users_table.delete().where(staff_users_table.c.name == name)).rowcount
            connection.execute(staff_sessions_table.delete().where(staff_sessions_table.c.username == name))
        if not removed:
            raise StaffError(f"there is no staff member called {name!r}")
        self.audit(by, "staff.remove_user", name)

    def users(self) -> list[tuple[str, dt.datetime]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(staff_users_table.c.name, staff_users_table.c.created_at).order_by(staff_users_table.c.name)
            ).all()
        return [(row.name, row.created_at) for row in rows]

    # --- logging in -----------------------------------------------------------

    def _locked_for(self, keys: list[str], now: dt.datetime) -> int:
        with self.engine.connect() as connection:
            until = connection.execute(
                sa.select(sa.func.max(staff_login_failures_table.c.locked_until)).where(
                    staff_login_failures_table.c.key.in_(keys)
                )
            ).scalar()
        return max(1, int((until - now).total_seconds() + 0.999)) if until and until > now else 0

    def _failed(self, keys: list[str], now: dt.datetime) -> None:
        table = staff_login_failures_table
        with self.engine.begin() as connection:
            for key in keys:
                failures = connection.execute(sa.select(table.c.failures).where(table.c.key == key)).scalar()
                count = (failures or 0) + 1
                locked, allowed = None, MAX_FAILURES_PER_IP if key.startswith("ip:") else MAX_FAILURES
                if count >= allowed:
                    seconds = min(MAX_LOCK_SECONDS, LOCK_SECONDS * 2 ** min(count - allowed, 20))
                    locked = now + dt.timedelta(seconds=seconds)
                if failures is None:
                    connection.execute(table.insert().values(key=key, failures=count, locked_until=locked))
                else:
                    connection.execute(table.update().where(table.c.key == key)
                                       .values(failures=count, locked_until=locked))  # fmt: skip

    def login(self, name: str, password: str, ip: str | None = None) -> Session | None:
        """A new session for the right name and password; None when wrong; ``LoginRefused`` while slowed down."""
        now = _now()
        keys = [f"user:{name[:100]}"] + ([f"ip:{ip}"] if ip else [])
        retry_after = self._locked_for(keys, now)
        if retry_after:
            raise LoginRefused(retry_after)
        with self.engine.connect() as connection:
            stored = connection.execute(
                sa.select(staff_users_table.c.password_hash).where(staff_users_table.c.name == name)
            ).scalar()
        try:
            HASHER.verify(stored or _DUMMY_HASH, password[:MAX_PASSWORD_CHARS])
            right = stored is not None
        except (VerificationError, InvalidHashError):
            right = False
        if not right:
            self._failed(keys, now)
            if stored is not None:
                self.audit(name, "login.failed", "")
            return None
        with self.engine.begin() as connection:
            connection.execute(staff_login_failures_table.delete().where(staff_login_failures_table.c.key.in_(keys)))
            if HASHER.check_needs_rehash(stored):
                connection.execute(staff_users_table.update().where(staff_users_table.c.name == name)
                                   .values(password_hash=HASHER.hash(password)))  # fmt: skip
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            expires = now + dt.timedelta(hours=SESSION_HOURS)
            connection.execute(staff_sessions_table.delete().where(staff_sessions_table.c.expires_at < now))
            row = {"token_hash": _digest(token), "username": name, "csrf": csrf}
            row |= {"created_at": now, "expires_at": expires}
            connection.execute(staff_sessions_table.insert().values(**row))
        self.audit(name, "login", "")
        return Session(token, name, csrf, expires)

    def session(self, token: str | None) -> Session | None:
        """The live session of a cookie's token, or None."""
        if not token or len(token) > 200:
            return None
        table = staff_sessions_table
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(table.c.username, table.c.csrf, table.c.expires_at)
                .join(staff_users_table, staff_users_table.c.name == table.c.username)
                .where(table.c.token_hash == _digest(token))
            ).first()  # fmt: skip
        if row is None or row.expires_at <= _now():
            return None
        return Session(token, row.username, row.csrf, row.expires_at)

    def logout(self, token: str) -> None:
        session = self.session(token)
        with self.engine.begin() as connection:
            connection.execute(staff_sessions_table.delete().where(staff_sessions_table.c.token_hash == _digest(token)))
        if session:
            self.audit(session.username, "logout", "")

    # --- the audit log --------------------------------------------------------

    def audit(self, username: str, action: str, detail: str = "") -> None:
        with self.engine.begin() as connection:
            connection.execute(staff_audit_table.insert().values(at=_now(), username=username, action=action,
                                                                 detail=detail[:2000]))  # fmt: skip

    def audit_log(self, limit: int = 200) -> list[AuditEntry]:
        table = staff_audit_table
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(table).order_by(table.c.id.desc()).limit(limit)).all()
        return [AuditEntry(row.at, row.username, row.action, row.detail) for row in rows]
