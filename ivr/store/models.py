"""The tables, in the words of POLICY.md: calls, decisions (the consent receipt),
recordings, missed calls, callbacks, revocations and the audit log.

Enumerated columns are text with a CHECK constraint (values below), so a new value is a
plain migration and never a ``CREATE TYPE``. Every timestamp carries its time zone.
The migration in ``migrations/versions`` writes the same schema out by hand;
``tests/db`` proves the two agree.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Allowed values of the enumerated columns.
DIRECTIONS = ("inbound", "callback", "outbound")
LINE_KINDS = ("sales", "service")  # ivr.policy.lines.LineKind
DECISIONS = ("legal_basis", "consent", "refusal", "no_consent")
RECORDING_BASES = ("legal_basis", "consent")
DELETION_REASONS = ("retention", "revocation")
MISSED_REASONS = ("abandoned", "timeout", "ivr_hangup", "other")
CALLBACK_STATUSES = ("open", "done", "failed", "cancelled")
REVOCATION_CHANNELS = ("phone", "email")

CALLER_RAW_MAX = 80
# prev_hash of the first audit entry: the chain starts here.
AUDIT_GENESIS_HASH = "0" * 64

E164 = r"^\+[1-9][0-9]{1,14}$"
SHA256 = r"^[0-9a-f]{64}$"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL for a CHECK constraint: the column holds one of the values (or is NULL)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def matches(column: str, pattern: str) -> str:
    return f"{column} ~ '{pattern}'"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: DateTime(timezone=True),
        date: Date(),
        uuid.UUID: Uuid(),
        str: Text(),
        bool: Boolean(),
        int: Integer(),
    }


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(default=utcnow, server_default=func.now())


class Call(Base):
    """One channel that reached the service: inbound, a returned call, or outbound."""

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(one_of("direction", DIRECTIONS), name="direction"),
        CheckConstraint(one_of("line_kind", LINE_KINDS), name="line_kind"),
        CheckConstraint(matches("dialled", E164), name="dialled_e164"),
        CheckConstraint(matches("caller", E164), name="caller_e164"),
        CheckConstraint(f"char_length(caller_raw) <= {CALLER_RAW_MAX}", name="caller_raw_length"),
        Index("ix_calls_caller", "caller"),
        Index("ix_calls_linkedid", "linkedid"),
        Index("ix_calls_started_at", "started_at"),
        Index("ix_calls_node_open", "node", postgresql_where=text("ended_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = _id()
    channel_id: Mapped[str] = mapped_column(unique=True)
    linkedid: Mapped[str]
    direction: Mapped[str]
    dialled: Mapped[str | None]  # E.164; None when what was dialled is junk
    caller: Mapped[str | None]  # E.164; None when withheld or junk
    caller_withheld: Mapped[bool] = mapped_column(default=False, server_default=false())
    caller_raw: Mapped[str | None]  # what arrived, cut to CALLER_RAW_MAX, for the audit
    line_name: Mapped[str | None]
    line_kind: Mapped[str | None]  # None: the number is on no configured line
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None]
    notice_completed: Mapped[bool | None]  # rule 1: None until known
    agent_answered: Mapped[bool] = mapped_column(default=False, server_default=false())
    agent: Mapped[str | None]
    state: Mapped[str]
    node: Mapped[str | None]  # the service instance's node; its restart closes its calls


class Decision(Base):
    """The consent receipt (rules 2 and 3): one per call, with what was played and when.

    The CHECKs restate the policy as a last line of defence: a legal basis only on a
    sales line; consent and refusal only on a service line; consent is the digit 1
    pressed after the notice started, unless inherited from the original call (rule 5).
    """

    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint(one_of("decision", DECISIONS), name="decision"),
        CheckConstraint(one_of("line_kind", LINE_KINDS), name="line_kind"),
        CheckConstraint("digit ~ '^[0-9A-D*#]$'", name="digit"),
        CheckConstraint(
            "decision <> 'legal_basis' OR line_kind = 'sales'", name="legal_basis_on_sales"
        ),
        CheckConstraint(
            "decision NOT IN ('consent', 'refusal') OR line_kind = 'service'",
            name="consent_on_service",
        ),
        CheckConstraint(
            "decision <> 'consent' OR inherited_from_call_id IS NOT NULL"
            " OR (digit = '1' AND digit_at >= notice_started_at)",
            name="consent_is_1_after_notice",
        ),
        CheckConstraint("jsonb_typeof(prompts_played) = 'array'", name="prompts_played_array"),
        Index("ix_decisions_inherited_from_call_id", "inherited_from_call_id"),
    )

    id: Mapped[uuid.UUID] = _id()
    call_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("calls.id"), unique=True)
    decision: Mapped[str]
    line_kind: Mapped[str]
    digit: Mapped[str | None]
    digit_at: Mapped[datetime | None]
    # [{"id", "version", "sha256", "started_at", "ended_at"}, ...] in the order played.
    prompts_played: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    notice_started_at: Mapped[datetime | None]
    notice_ended_at: Mapped[datetime | None]
    question_started_at: Mapped[datetime | None]
    decided_at: Mapped[datetime]
    inherited_from_call_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("calls.id"))


class Recording(Base):
    """A MixMonitor file. The row outlives the file: deletion is recorded, not erased."""

    __tablename__ = "recordings"
    __table_args__ = (
        CheckConstraint(one_of("basis", RECORDING_BASES), name="basis"),
        CheckConstraint(one_of("deletion_reason", DELETION_REASONS), name="deletion_reason"),
        CheckConstraint("file_name ~ '^[A-Za-z0-9][A-Za-z0-9._-]*$'", name="file_name"),
        CheckConstraint(matches("sha256", SHA256), name="sha256"),
        CheckConstraint(matches("deleted_sha256", SHA256), name="deleted_sha256"),
        CheckConstraint("size_bytes >= 0", name="size_bytes"),
        CheckConstraint(
            "(deleted_at IS NULL) = (deletion_reason IS NULL)", name="deletion_has_reason"
        ),
        CheckConstraint(
            "(stored_at IS NULL) = (stored_location IS NULL)", name="stored_has_location"
        ),
        CheckConstraint(
            "stored_at IS NULL OR (sha256 IS NOT NULL AND size_bytes IS NOT NULL)",
            name="stored_has_hash",
        ),
        CheckConstraint("store_attempts >= 0", name="store_attempts"),
        Index("ix_recordings_call_id", "call_id"),
        Index(
            "ix_recordings_expires_at_kept",
            "expires_at",
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "ix_recordings_started_at_in_spool",
            "started_at",
            postgresql_where=text("stored_at IS NULL AND deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    call_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("calls.id"))
    basis: Mapped[str]
    file_name: Mapped[str] = mapped_column(unique=True)  # no caller data in it
    mixmonitor_id: Mapped[str | None]  # known once AMI has answered
    # The decision allowed it, but the service stopped before MixMonitor started: no file.
    not_started_at: Mapped[datetime | None]
    started_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    sha256: Mapped[str | None]
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]  # rule 6
    deleted_at: Mapped[datetime | None]
    deleted_sha256: Mapped[str | None]
    deletion_reason: Mapped[str | None]
    # A file that could not be deleted: retried by every job run, flagged for people.
    deletion_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    deletion_error: Mapped[str | None]
    deletion_flagged_at: Mapped[datetime | None]
    # Moved from the node's spool to the recording store (ivr/jobs/recording_moves.py):
    # where it is now (file:///... or s3://bucket/key), when it was moved, hash verified
    # (``sha256``, ``size_bytes`` above). A failed move is retried; its error is kept.
    stored_location: Mapped[str | None]
    stored_at: Mapped[datetime | None]
    store_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    store_error: Mapped[str | None]


class DeletionCertificate(Base):
    """Proof of one recording's deletion (rules 6 and 8): what, when, the file's hash, the
    reason and its deadline, and whether the deadline was met."""

    __tablename__ = "deletion_certificates"
    __table_args__ = (
        CheckConstraint(one_of("reason", DELETION_REASONS), name="reason"),
        CheckConstraint(matches("file_sha256", SHA256), name="file_sha256"),
        CheckConstraint("(reason = 'revocation') = (revocation_id IS NOT NULL)",
                        name="revocation_has_id"),
        Index("ix_deletion_certificates_revocation_id", "revocation_id"),
        Index("ix_deletion_certificates_deleted_at", "deleted_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    recording_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("recordings.id"), unique=True)
    revocation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("revocations.id"))
    reason: Mapped[str]
    file_name: Mapped[str]
    file_sha256: Mapped[str | None]  # None: the file was already gone
    file_existed: Mapped[bool]
    # Where it was deleted from: the store (file:///..., s3://bucket/key) or a node's spool.
    location: Mapped[str | None]
    deleted_at: Mapped[datetime]
    deadline: Mapped[datetime]
    met: Mapped[bool]
    created_at: Mapped[datetime] = _created_at()


class MissedCall(Base):
    """A call nobody in the call centre answered (rule 4)."""

    __tablename__ = "missed_calls"
    __table_args__ = (
        CheckConstraint(one_of("reason", MISSED_REASONS), name="reason"),
        CheckConstraint(matches("caller", E164), name="caller_e164"),
        Index("ix_missed_calls_callback_id", "callback_id"),
        Index("ix_missed_calls_missed_at", "missed_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    call_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("calls.id"), unique=True)
    caller: Mapped[str | None]
    caller_withheld: Mapped[bool] = mapped_column(default=False, server_default=false())
    reason: Mapped[str]
    overloaded: Mapped[bool] = mapped_column(default=False, server_default=false())
    missed_at: Mapped[datetime]
    callback_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("callbacks.id"))


class Callback(Base):
    """A missed call to return within the window (rule 4). At most one open per caller."""

    __tablename__ = "callbacks"
    __table_args__ = (
        CheckConstraint(one_of("status", CALLBACK_STATUSES), name="status"),
        CheckConstraint(matches("caller", E164), name="caller_e164"),
        CheckConstraint("attempts >= 0", name="attempts"),
        CheckConstraint("(status = 'open') = (closed_at IS NULL)", name="closed_when_not_open"),
        Index(
            "uq_callbacks_open_caller",
            "caller",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_callbacks_due_at", "due_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    caller: Mapped[str]
    status: Mapped[str] = mapped_column(default="open", server_default="open")
    due_at: Mapped[datetime]
    created_at: Mapped[datetime] = _created_at()
    record: Mapped[bool]  # rules 5 and 9: inherited from the original decision
    notice_required: Mapped[bool]  # the caller never heard the notice (rule 1)
    overload: Mapped[bool] = mapped_column(default=False, server_default=false())
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    outcome: Mapped[str | None]


class CallbackAttempt(Base):
    """One try at returning a call, by one agent."""

    __tablename__ = "callback_attempts"
    __table_args__ = (Index("ix_callback_attempts_callback_id", "callback_id"),)

    id: Mapped[uuid.UUID] = _id()
    callback_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callbacks.id"))
    call_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("calls.id"))
    agent: Mapped[str]
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None]  # None while the attempt is under way


class Revocation(Base):
    """A caller withdrew consent (rule 8); their recordings go by ``deadline``."""

    __tablename__ = "revocations"
    __table_args__ = (
        CheckConstraint(one_of("via", REVOCATION_CHANNELS), name="via"),
        CheckConstraint(matches("caller", E164), name="caller_e164"),
        Index("ix_revocations_caller", "caller"),
        Index(
            "ix_revocations_deadline_pending",
            "deadline",
            postgresql_where=text("fulfilled_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    caller: Mapped[str]
    via: Mapped[str]
    received_at: Mapped[datetime]
    recorded_by: Mapped[str]
    note: Mapped[str | None]
    deadline: Mapped[date]  # received_at + N working days (Slovenian calendar)
    created_at: Mapped[datetime] = _created_at()
    fulfilled_at: Mapped[datetime | None]


class AuditEntry(Base):
    """An append-only, hash-chained record of what the service and its users did.

    Each entry's ``prev_hash`` is the ``hash`` of the one before (``AUDIT_GENESIS_HASH``
    for the first). Both are unique, so the chain can neither fork nor repeat.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(matches("hash", SHA256), name="hash"),
        CheckConstraint(matches("prev_hash", SHA256), name="prev_hash"),
        Index("ix_audit_log_subject", "subject_type", "subject_id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    actor: Mapped[str]
    action: Mapped[str]
    subject_type: Mapped[str]
    subject_id: Mapped[str | None]
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    prev_hash: Mapped[str] = mapped_column(unique=True)
    hash: Mapped[str] = mapped_column(unique=True)


# The web console's people and their sessions (issue 6).
CONSOLE_ROLES = ("agent", "dpo", "trainer", "admin")
CONSOLE_LANGUAGES = ("sl", "en")
CONSOLE_USERNAME = r"^[a-z0-9][a-z0-9._-]{1,63}$"
AGENT_ENDPOINT = r"^[A-Za-z0-9_-]{1,64}$"  # a PJSIP endpoint, e.g. agent1


class ConsoleUser(Base):
    """Someone who logs in to the web console, with one role. Disabled, never deleted:
    the audit log names them."""

    __tablename__ = "console_users"
    __table_args__ = (
        CheckConstraint(matches("username", CONSOLE_USERNAME), name="username"),
        CheckConstraint(one_of("role", CONSOLE_ROLES), name="role"),
        CheckConstraint(matches("agent_endpoint", AGENT_ENDPOINT), name="agent_endpoint"),
        CheckConstraint(one_of("language", CONSOLE_LANGUAGES), name="language"),
    )

    id: Mapped[uuid.UUID] = _id()
    username: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str]  # argon2id, in the PHC string format
    role: Mapped[str]
    agent_endpoint: Mapped[str | None]
    language: Mapped[str] = mapped_column(default="sl", server_default="sl")
    created_at: Mapped[datetime] = _created_at()
    disabled_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A server-side login session. Only the SHA-256 of the cookie's token is stored, so
    a copy of the table opens no session."""

    __tablename__ = "console_sessions"
    __table_args__ = (
        CheckConstraint(matches("token_hash", SHA256), name="token_hash"),
        Index("ix_console_sessions_user_id", "user_id"),
        Index("ix_console_sessions_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    token_hash: Mapped[str] = mapped_column(unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("console_users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str]
    created_at: Mapped[datetime] = _created_at()
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    expires_at: Mapped[datetime]
