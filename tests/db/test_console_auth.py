"""Web console logins in the real PostgreSQL (issue 6): argon2id hashes, server-side sessions
stored only as the token's SHA-256, expiry and idling, form tokens, and every login,
failed login, new user and logout in the audit chain.

The tests commit, so each gets a private database, migrated like any other.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from ivr.store.audit import AuditLog
from ivr.store.database import Database
from ivr.store.models import AuditEntry, ConsoleSession, ConsoleUser
from ivr.web.auth import ROLES, SessionInfo, Sessions, UserError, Users, csrf_ok

from .conftest import OwnDatabase

pytestmark = pytest.mark.db

PASSWORD = "korenček-42-modri"
# Cheap parameters, for users whose hash must look out of date.
WEAK = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@pytest.fixture
async def db(own_database: OwnDatabase) -> AsyncIterator[Database]:
    async with own_database(2) as database:
        yield database


@pytest.fixture
def users(db: Database) -> Users:
    return Users(db)


@pytest.fixture
def sessions(db: Database) -> Sessions:
    return Sessions(db)


async def sql(db: Database, statement: str, **params: Any) -> None:
    async with db.session() as session, session.begin():
        await session.execute(text(statement), params)


async def audit_entries(db: Database) -> list[AuditEntry]:
    async with db.session() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def user_count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(ConsoleUser)) or 0)


# users -----------------------------------------------------------------------------------
async def test_an_added_user_logs_in_with_their_password(users: Users) -> None:
    added = await users.add("ana.k", PASSWORD, "dpo", language="en")
    user = await users.authenticate("ana.k", PASSWORD)
    assert user is not None
    assert (user.id, user.username, user.role, user.language, user.agent_endpoint) == (
        added.id, "ana.k", "dpo", "en", None)


async def test_an_agent_keeps_their_endpoint(users: Users) -> None:
    await users.add("marko", PASSWORD, "agent", agent_endpoint="agent1")
    user = await users.authenticate("marko", PASSWORD)
    assert user is not None and user.agent_endpoint == "agent1" and user.language == "sl"


async def test_the_user_name_is_not_case_sensitive_at_login(users: Users) -> None:
    await users.add("ana.k", PASSWORD, "trainer")
    assert await users.authenticate(" Ana.K ", PASSWORD) is not None


async def test_a_wrong_password_is_refused(users: Users) -> None:
    await users.add("ana.k", PASSWORD, "dpo")
    assert await users.authenticate("ana.k", PASSWORD + "x") is None
    assert await users.authenticate("ana.k", PASSWORD.upper()) is None
    assert await users.authenticate("ana.k", "") is None


async def test_an_unknown_user_is_refused(users: Users) -> None:
    await users.add("ana.k", PASSWORD, "dpo")
    assert await users.authenticate("nobody", PASSWORD) is None
    assert await users.authenticate("not a user name!", PASSWORD) is None


async def test_a_login_for_nobody_still_checks_a_password(db: Database) -> None:
    """The time a failed login takes must not tell whether the user exists."""

    class Counting(PasswordHasher):
        verified = 0

        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            Counting.verified += 1
            return super().verify(hash, password)

    users = Users(db, hasher=Counting())
    assert await users.authenticate("nobody", PASSWORD) is None
    assert await users.authenticate("NOT VALID!", PASSWORD) is None
    assert Counting.verified == 2


async def test_a_disabled_user_is_refused_even_with_the_right_password(
        db: Database, users: Users) -> None:
    await users.add("ana.k", PASSWORD, "dpo")
    await sql(db, "UPDATE console_users SET disabled_at = now() WHERE username = 'ana.k'")
    assert await users.authenticate("ana.k", PASSWORD) is None


async def test_the_stored_hash_is_argon2id_and_holds_no_password(
        db: Database, users: Users) -> None:
    await users.add("ana.k", PASSWORD, "dpo")
    async with db.session() as session:
        stored = await session.scalar(select(ConsoleUser.password_hash))
    assert stored is not None and stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert PASSWORD.encode().hex() not in stored


async def test_two_users_with_one_password_get_different_hashes(
        db: Database, users: Users) -> None:
    await users.add("ana.k", PASSWORD, "dpo")
    await users.add("marko", PASSWORD, "agent")
    async with db.session() as session:
        hashes = set(await session.scalars(select(ConsoleUser.password_hash)))
    assert len(hashes) == 2


async def test_an_out_of_date_hash_is_replaced_at_login(db: Database) -> None:
    await Users(db, hasher=WEAK).add("ana.k", PASSWORD, "dpo")
    users = Users(db)
    async with db.session() as session:
        before = await session.scalar(select(ConsoleUser.password_hash))
    assert before is not None and users.hasher.check_needs_rehash(before)

    assert await users.authenticate("ana.k", PASSWORD) is not None
    async with db.session() as session:
        after = await session.scalar(select(ConsoleUser.password_hash))
    assert after is not None and after != before
    assert not users.hasher.check_needs_rehash(after)
    assert await users.authenticate("ana.k", PASSWORD) is not None


@pytest.mark.parametrize(("username", "password", "role", "endpoint", "language", "says"), [
    ("ana.k", "short-pw1", "dpo", None, "sl", "too short: at least 10"),
    ("ana.k", "x" * 257, "dpo", None, "sl", "too long"),
    ("Ana", PASSWORD, "dpo", None, "sl", "user name 'Ana'"),
    ("a", PASSWORD, "dpo", None, "sl", "user name 'a'"),
    ("-ana", PASSWORD, "dpo", None, "sl", "user name '-ana'"),
    ("ana k", PASSWORD, "dpo", None, "sl", "user name"),
    ("a" * 65, PASSWORD, "dpo", None, "sl", "user name"),
    ("ana.k", PASSWORD, "root", None, "sl", "role 'root' is not one of agent, dpo"),
    ("ana.k", PASSWORD, "Admin", None, "sl", "role 'Admin'"),
    ("ana.k", PASSWORD, "agent", "agent 1", "sl", "agent endpoint 'agent 1'"),
    ("ana.k", PASSWORD, "agent", "", "sl", "agent endpoint ''"),
    ("ana.k", PASSWORD, "agent", None, "de", "language 'de' is not one of sl, en"),
])
async def test_a_bad_new_user_is_refused_with_the_reason(
        db: Database, users: Users, username: str, password: str, role: str,
        endpoint: str | None, language: str, says: str) -> None:
    with pytest.raises(UserError, match=re.escape(says)) as refused:
        await users.add(username, password, role, endpoint, language)
    assert password not in str(refused.value)
    assert await user_count(db) == 0
    assert await audit_entries(db) == []


async def test_every_role_can_be_added(users: Users) -> None:
    for role in ROLES:
        assert (await users.add(f"user-{role}", PASSWORD, role)).role == role
    assert ROLES == ("agent", "dpo", "trainer", "admin")


async def test_a_user_name_is_taken_once(db: Database, users: Users) -> None:
    await users.add("ana.k", PASSWORD, "dpo")
    with pytest.raises(UserError, match=r"user 'ana\.k' exists already"):
        await users.add("ana.k", "another-password", "admin")
    assert await user_count(db) == 1
    assert [e.action for e in await audit_entries(db)] == ["user_added"]


@pytest.mark.parametrize(("column", "value"), [
    ("username", "Ana"), ("role", "root"), ("agent_endpoint", "agent 1"), ("language", "de"),
])
async def test_the_database_refuses_what_add_refuses(
        db: Database, column: str, value: str) -> None:
    row = {"username": "ana.k", "role": "dpo", "agent_endpoint": None, "language": "sl",
           column: value}
    with pytest.raises(IntegrityError, match=f"ck_console_users_{column}"):
        await sql(db, "INSERT INTO console_users (id, username, password_hash, role, "
                  "agent_endpoint, language) VALUES (gen_random_uuid(), :username, 'x', "
                  ":role, :agent_endpoint, :language)", **row)


# sessions --------------------------------------------------------------------------------
async def test_a_session_is_found_by_its_token_and_ends_at_logout(
        users: Users, sessions: Sessions) -> None:
    user = await users.add("marko", PASSWORD, "agent", agent_endpoint="agent1", language="en")
    token, csrf_token = await sessions.create(user)
    assert await sessions.get(token) == SessionInfo(
        user_id=user.id, username="marko", role="agent", agent_endpoint="agent1",
        language="en", csrf_token=csrf_token)
    assert await sessions.get(token + "x") is None
    assert await sessions.get("") is None
    assert await sessions.get(None) is None

    assert await sessions.delete(token) is True
    assert await sessions.get(token) is None
    assert await sessions.delete(token) is False


async def test_tokens_are_random_and_long(users: Users, sessions: Sessions) -> None:
    user = await users.add("marko", PASSWORD, "agent")
    first, second = await sessions.create(user), await sessions.create(user)
    tokens = {*first, *second}
    assert len(tokens) == 4
    assert all(len(t) >= 43 for t in tokens)  # 32 random bytes, URL-safe base64
    assert await sessions.get(first[0]) is not None
    assert await sessions.get(second[0]) is not None


async def test_only_the_tokens_sha256_is_stored(
        db: Database, users: Users, sessions: Sessions) -> None:
    user = await users.add("marko", PASSWORD, "agent")
    token, _ = await sessions.create(user)
    async with db.session() as session:
        stored = (await session.scalars(select(ConsoleSession))).one()
        dump = (await session.execute(text(
            "SELECT row_to_json(s)::text FROM console_sessions s"))).scalar_one()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in dump


async def test_an_expired_session_is_over(
        db: Database, users: Users, sessions: Sessions) -> None:
    user = await users.add("marko", PASSWORD, "agent")
    token, _ = await sessions.create(user, ttl_hours=8)
    await sql(db, "UPDATE console_sessions SET expires_at = now() - interval '1 second'")
    assert await sessions.get(token) is None
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(ConsoleSession)) == 0


async def test_a_session_ends_after_two_idle_hours(
        db: Database, users: Users, sessions: Sessions) -> None:
    user = await users.add("marko", PASSWORD, "agent")
    token, _ = await sessions.create(user)
    await sql(db, "UPDATE console_sessions SET last_seen_at = now() - interval '2 hours 1 second'")
    assert await sessions.get(token) is None


async def test_each_request_restarts_the_idle_clock(
        db: Database, users: Users, sessions: Sessions) -> None:
    user = await users.add("marko", PASSWORD, "agent")
    token, _ = await sessions.create(user)
    await sql(db, "UPDATE console_sessions SET last_seen_at = now() - interval '119 minutes'")
    assert await sessions.get(token) is not None
    async with db.session() as session:
        idle = await session.scalar(select(func.now() - ConsoleSession.last_seen_at))
    assert idle is not None and idle.total_seconds() < 60
    await sql(db, "UPDATE console_sessions SET last_seen_at = now() - interval '119 minutes'")
    assert await sessions.get(token) is not None


async def test_the_absolute_expiry_holds_however_busy_the_session(
        db: Database, users: Users, sessions: Sessions) -> None:
    user = await users.add("marko", PASSWORD, "agent")
    token, _ = await sessions.create(user, ttl_hours=1)
    assert await sessions.get(token) is not None
    await sql(db, "UPDATE console_sessions SET created_at = now() - interval '1 hour', "
              "expires_at = now()")
    assert await sessions.get(token) is None


async def test_disabling_a_user_ends_their_sessions(
        db: Database, users: Users, sessions: Sessions) -> None:
    user = await users.add("marko", PASSWORD, "agent")
    token, _ = await sessions.create(user)
    await sql(db, "UPDATE console_users SET disabled_at = now()")
    assert await sessions.get(token) is None
    user.disabled_at = user.created_at
    with pytest.raises(UserError, match="disabled"):
        await sessions.create(user)


async def test_purge_deletes_only_sessions_that_are_over(
        db: Database, users: Users, sessions: Sessions) -> None:
    user = await users.add("marko", PASSWORD, "agent")
    live, _ = await sessions.create(user)
    expired, _ = await sessions.create(user)
    idle, _ = await sessions.create(user)
    await sql(db, "UPDATE console_sessions SET expires_at = now() - interval '1 minute' "
              "WHERE token_hash = :h", h=hashlib.sha256(expired.encode()).hexdigest())
    await sql(db, "UPDATE console_sessions SET last_seen_at = now() - interval '3 hours' "
              "WHERE token_hash = :h", h=hashlib.sha256(idle.encode()).hexdigest())
    assert await sessions.purge() == 2
    assert await sessions.get(live) is not None


# form tokens -----------------------------------------------------------------------------
def test_a_form_is_accepted_only_with_its_sessions_exact_token() -> None:
    me = SessionInfo(user_id=uuid.uuid4(), username="marko", role="agent",
                     agent_endpoint=None, language="sl", csrf_token="Abc-123_xyz")
    assert csrf_ok(me, "Abc-123_xyz")
    assert Sessions.csrf_ok(me, "Abc-123_xyz")
    for wrong in (None, "", "abc-123_xyz", "Abc-123_xy", "Abc-123_xyzz", " Abc-123_xyz",
                  "Abc-123_xyž", "\udcff"):
        assert not csrf_ok(me, wrong), wrong
    assert not csrf_ok(None, "Abc-123_xyz")


async def test_a_new_sessions_form_token_is_accepted(users: Users, sessions: Sessions) -> None:
    user = await users.add("marko", PASSWORD, "agent")
    token, csrf_token = await sessions.create(user)
    _, other_csrf = await sessions.create(user)
    me = await sessions.get(token)
    assert csrf_ok(me, csrf_token)
    assert not csrf_ok(me, other_csrf)


# audit -----------------------------------------------------------------------------------
async def test_users_logins_and_logouts_are_audited_without_passwords(
        db: Database, users: Users, sessions: Sessions) -> None:
    await users.add("ana.k", PASSWORD, "dpo", actor="cli:root")
    user = await users.authenticate("ana.k", PASSWORD)
    assert user is not None
    assert await users.authenticate("ana.k", "wrong-password-1") is None
    assert await users.authenticate("typed-my-password-here", PASSWORD) is None
    await sql(db, "UPDATE console_users SET disabled_at = now()")
    assert await users.authenticate("ana.k", PASSWORD) is None
    await sql(db, "UPDATE console_users SET disabled_at = NULL")
    token, _ = await sessions.create(user)
    await sessions.delete(token)

    entries = await audit_entries(db)
    assert [(e.actor, e.action, e.subject_type, e.subject_id, e.details) for e in entries] == [
        ("cli:root", "user_added", "user", "ana.k",
         {"username": "ana.k", "role": "dpo", "agent_endpoint": None, "language": "sl"}),
        ("ana.k", "login", "user", "ana.k", {"username": "ana.k", "role": "dpo"}),
        ("anonymous", "login_failed", "user", "ana.k",
         {"username": "ana.k", "reason": "wrong_password"}),
        ("anonymous", "login_failed", "user", None, {"reason": "unknown_user"}),
        ("anonymous", "login_failed", "user", "ana.k",
         {"username": "ana.k", "reason": "disabled"}),
        ("ana.k", "logout", "user", "ana.k", {"username": "ana.k"}),
    ]
    written = json.dumps([[e.actor, e.subject_id, e.details] for e in entries])
    assert PASSWORD not in written and "wrong-password-1" not in written
    assert "typed-my-password-here" not in written  # a name that is no user's is not kept
    verified = await AuditLog(db).verify()
    assert verified.ok and verified.checked == 6
