"""Who may use the web console, and how they stay logged in.

Users have one role each (``ROLES``) and an argon2id password hash. A login that names no
user still verifies the password, against a dummy hash, so the time taken does not tell
whether the user exists. Logins, failed logins, new users and logouts are audited; the
password never is.

A session lives in PostgreSQL under the SHA-256 of its token: the token itself is only in
the browser's cookie, so a copy of the table opens no session. It ends at ``expires_at``
(set at login) or after ``IDLE_TIMEOUT`` without a request, whichever comes first, and
when its user is disabled. Each session carries the form token that every form must send
back (:func:`csrf_ok`).

Nothing here knows about HTTP: the routes read the cookie and the form and call these.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from ivr.store.audit import LOGIN, AuditLog
from ivr.store.database import Database
from ivr.store.models import (
    AGENT_ENDPOINT,
    CONSOLE_LANGUAGES,
    CONSOLE_ROLES,
    CONSOLE_USERNAME,
    ConsoleSession,
    ConsoleUser,
    utcnow,
)

ROLES: tuple[str, ...] = CONSOLE_ROLES  # ("agent", "dpo", "trainer", "admin")
LANGUAGES: tuple[str, ...] = CONSOLE_LANGUAGES
MIN_PASSWORD = 10
MAX_PASSWORD = 256  # longer ones are refused unhashed (the login form takes no more)
IDLE_TIMEOUT = timedelta(hours=2)
MAX_TOKEN = 256  # a cookie longer than this is not one of ours

USERNAME = re.compile(CONSOLE_USERNAME)
ENDPOINT = re.compile(AGENT_ENDPOINT)

# Audit actions. The subject is always ("user", username).
USER_ADDED = "user_added"
LOGIN_FAILED = "login_failed"
LOGOUT = "logout"
SUBJECT = "user"
ANONYMOUS = "anonymous"


class UserError(Exception):
    """A user that cannot be added as asked; the message says why (never the password)."""


def check_new_user(username: str, role: str, agent_endpoint: str | None,
                   language: str) -> None:
    """Raise :class:`UserError` for the first thing wrong with a new user's particulars."""
    if not USERNAME.fullmatch(username):
        raise UserError(f"user name {username[:70]!r}: 2 to 64 characters, lower-case letters, "
                        "digits, '.', '_' or '-', starting with a letter or a digit")
    if role not in ROLES:
        raise UserError(f"role {role[:40]!r} is not one of {', '.join(ROLES)}")
    if agent_endpoint is not None and not ENDPOINT.fullmatch(agent_endpoint):
        raise UserError(f"agent endpoint {agent_endpoint[:70]!r}: the PJSIP endpoint's name "
                        "(letters, digits, - and _), e.g. agent1")
    if language not in LANGUAGES:
        raise UserError(f"language {language[:40]!r} is not one of {', '.join(LANGUAGES)}")


def check_password(password: str) -> None:
    """Raise :class:`UserError` if a new password is too short or too long."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password is too long: at most {MAX_PASSWORD} characters")


def token_digest(token: str) -> str:
    """What is stored for a session token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Users:
    """Console users: adding them and checking their passwords."""

    def __init__(self, db: Database, audit: AuditLog | None = None,
                 hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.audit = audit if audit is not None else AuditLog(db)
        # argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile).
        self.hasher = hasher if hasher is not None else PasswordHasher()
        self._dummy_hash: str | None = None

    async def add(self, username: str, password: str, role: str,
                  agent_endpoint: str | None = None, language: str = "sl", *,
                  actor: str = "cli") -> ConsoleUser:
        """Add a user, audited as ``user_added`` by ``actor``."""
        check_new_user(username, role, agent_endpoint, language)
        check_password(password)
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        user = ConsoleUser(username=username, password_hash=password_hash, role=role,
                           agent_endpoint=agent_endpoint, language=language)
        try:
            async with self.db.session() as session, session.begin():
                session.add(user)
                await session.flush()
                await self.audit.append(session, actor, USER_ADDED, SUBJECT, username, {
                    "username": username, "role": role, "agent_endpoint": agent_endpoint,
                    "language": language})
        except IntegrityError as exc:
            constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
            if constraint == "uq_console_users_username":
                raise UserError(f"user {username!r} exists already") from None
            raise
        return user

    async def authenticate(self, username: str, password: str) -> ConsoleUser | None:
        """The user, if the password is theirs and they are not disabled; otherwise None.

        Audited as ``login`` or ``login_failed`` (with the reason). A name that matches no
        user is not written to the audit log: people type passwords into that field.
        """
        username = username.strip().lower()
        user: ConsoleUser | None = None
        if USERNAME.fullmatch(username):
            async with self.db.session() as session:
                user = await session.scalar(
                    select(ConsoleUser).where(ConsoleUser.username == username))
        verified = False
        if len(password) <= MAX_PASSWORD:
            stored = user.password_hash if user is not None else await self._dummy()
            verified = await asyncio.to_thread(self._verify, stored, password)
        if user is None:
            reason: str | None = "unknown_user"
        elif not verified:
            reason = "wrong_password"
        elif user.disabled_at is not None:
            reason = "disabled"
        else:
            reason = None
        new_hash = None
        if user is not None and reason is None and self.hasher.check_needs_rehash(
                user.password_hash):
            new_hash = await asyncio.to_thread(self.hasher.hash, password)
        async with self.db.session() as session, session.begin():
            if user is None:
                await self.audit.append(session, ANONYMOUS, LOGIN_FAILED, SUBJECT, None,
                                        {"reason": reason})
                return None
            if reason is not None:
                await self.audit.append(session, ANONYMOUS, LOGIN_FAILED, SUBJECT,
                                        user.username,
                                        {"username": user.username, "reason": reason})
                return None
            if new_hash is not None:
                await session.execute(update(ConsoleUser).where(ConsoleUser.id == user.id)
                                      .values(password_hash=new_hash))
                user.password_hash = new_hash
            await self.audit.append(session, user.username, LOGIN, SUBJECT, user.username,
                                    {"username": user.username, "role": user.role})
        return user

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        """A hash made with the same parameters as real ones, of a password nobody knows."""
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self.hasher.hash,
                                                       secrets.token_urlsafe(24))
        return self._dummy_hash


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Who is behind a request, as the routes need it."""

    user_id: uuid.UUID
    username: str
    role: str
    agent_endpoint: str | None
    language: str
    csrf_token: str


def csrf_ok(session: SessionInfo | None, submitted: str | None) -> bool:
    """True only when the form sent back exactly this session's form token."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf_token.encode("utf-8"),
                               submitted.encode("utf-8", "surrogatepass"))


class Sessions:
    """Server-side login sessions, found by the SHA-256 of the cookie's token."""

    csrf_ok = staticmethod(csrf_ok)

    def __init__(self, db: Database, audit: AuditLog | None = None,
                 idle_timeout: timedelta = IDLE_TIMEOUT) -> None:
        self.db = db
        self.audit = audit if audit is not None else AuditLog(db)
        self.idle_timeout = idle_timeout

    async def create(self, user: ConsoleUser, ttl_hours: float = 8) -> tuple[str, str]:
        """A new session for ``user``: ``(token, csrf_token)``. Only the token's SHA-256 is
        stored; give the token to the browser as the cookie and forget it."""
        if user.disabled_at is not None:
            raise UserError(f"user {user.username!r} is disabled")
        if ttl_hours <= 0:
            raise ValueError("a session's lifetime must be positive")
        token = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        now = utcnow()
        async with self.db.session() as session, session.begin():
            session.add(ConsoleSession(
                token_hash=token_digest(token), user_id=user.id, csrf_token=csrf_token,
                created_at=now, last_seen_at=now, expires_at=now + timedelta(hours=ttl_hours)))
        return token, csrf_token

    async def get(self, token: str | None) -> SessionInfo | None:
        """The live session for this token, marked as seen now; None if there is none, it
        has expired or idled out (it is then deleted), or its user is disabled."""
        if not token or len(token) > MAX_TOKEN:
            return None
        now = utcnow()
        async with self.db.session() as session, session.begin():
            row = (await session.execute(
                select(ConsoleSession, ConsoleUser)
                .join(ConsoleUser, ConsoleSession.user_id == ConsoleUser.id)
                .where(ConsoleSession.token_hash == token_digest(token))
            )).one_or_none()
            if row is None:
                return None
            found, user = row
            if (now >= found.expires_at or now >= found.last_seen_at + self.idle_timeout
                    or user.disabled_at is not None):
                await session.delete(found)
                return None
            found.last_seen_at = now
            return SessionInfo(user_id=user.id, username=user.username, role=user.role,
                               agent_endpoint=user.agent_endpoint, language=user.language,
                               csrf_token=found.csrf_token)

    async def delete(self, token: str | None) -> bool:
        """Log out: delete the session (audited as ``logout``). False if there was none."""
        if not token or len(token) > MAX_TOKEN:
            return False
        async with self.db.session() as session, session.begin():
            username = await session.scalar(
                delete(ConsoleSession)
                .where(ConsoleSession.token_hash == token_digest(token))
                .returning(select(ConsoleUser.username)
                           .where(ConsoleUser.id == ConsoleSession.user_id)
                           .scalar_subquery()))
            if username is None:
                return False
            await self.audit.append(session, username, LOGOUT, SUBJECT, username,
                                    {"username": username})
        return True

    async def purge(self, now: datetime | None = None) -> int:
        """Delete the sessions that have expired or idled out; how many there were."""
        now = now or utcnow()
        async with self.db.session() as session, session.begin():
            ids = (await session.scalars(
                delete(ConsoleSession)
                .where(or_(ConsoleSession.expires_at <= now,
                           ConsoleSession.last_seen_at <= now - self.idle_timeout))
                .returning(ConsoleSession.id))).all()
        return len(ids)
