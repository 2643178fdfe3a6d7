"""Initial schema.

Calls, decisions (the consent receipt), recordings, missed calls, callbacks and their
attempts, revocations, and the audit log.

Revision ID: 2026_11_22_0001
Revises:
Create Date: 2026-11-22

Written by hand, and written out in full: revisions never import ivr.store.models.
Every name is final (op.f): the naming convention of the models must not rename them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "2026_11_22_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

E164 = r"'^\+[1-9][0-9]{1,14}$'"
SHA256 = "'^[0-9a-f]{64}$'"


def tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("channel_id", sa.Text(), nullable=False),
        sa.Column("linkedid", sa.Text(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("dialled", sa.Text(), nullable=True),
        sa.Column("caller", sa.Text(), nullable=True),
        sa.Column("caller_withheld", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("caller_raw", sa.Text(), nullable=True),
        sa.Column("line_name", sa.Text(), nullable=True),
        sa.Column("line_kind", sa.Text(), nullable=True),
        sa.Column("started_at", tz(), nullable=False),
        sa.Column("answered_at", tz(), nullable=True),
        sa.Column("ended_at", tz(), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("notice_completed", sa.Boolean(), nullable=True),
        sa.Column("agent_answered", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("agent", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_calls_channel_id")),
        sa.CheckConstraint(
            "direction IN ('inbound', 'callback', 'outbound')", name=op.f("ck_calls_direction")
        ),
        sa.CheckConstraint("line_kind IN ('sales', 'service')", name=op.f("ck_calls_line_kind")),
        sa.CheckConstraint(f"dialled ~ {E164}", name=op.f("ck_calls_dialled_e164")),
        sa.CheckConstraint(f"caller ~ {E164}", name=op.f("ck_calls_caller_e164")),
        sa.CheckConstraint(
            "char_length(caller_raw) <= 80", name=op.f("ck_calls_caller_raw_length")
        ),
    )
    op.create_index(op.f("ix_calls_caller"), "calls", ["caller"])
    op.create_index(op.f("ix_calls_linkedid"), "calls", ["linkedid"])
    op.create_index(op.f("ix_calls_started_at"), "calls", ["started_at"])

    op.create_table(
        "callbacks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="open", nullable=False),
        sa.Column("due_at", tz(), nullable=False),
        sa.Column("created_at", tz(), server_default=sa.func.now(), nullable=False),
        sa.Column("record", sa.Boolean(), nullable=False),
        sa.Column("notice_required", sa.Boolean(), nullable=False),
        sa.Column("overload", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", tz(), nullable=True),
        sa.Column("closed_at", tz(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        sa.CheckConstraint(
            "status IN ('open', 'done', 'failed', 'cancelled')", name=op.f("ck_callbacks_status")
        ),
        sa.CheckConstraint(f"caller ~ {E164}", name=op.f("ck_callbacks_caller_e164")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_callbacks_attempts")),
        sa.CheckConstraint(
            "(status = 'open') = (closed_at IS NULL)",
            name=op.f("ck_callbacks_closed_when_not_open"),
        ),
    )
    # Rule 4: one open callback per caller, however often they called.
    op.create_index(
        op.f("uq_callbacks_open_caller"),
        "callbacks",
        ["caller"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(op.f("ix_callbacks_due_at"), "callbacks", ["due_at"])

    op.create_table(
        "decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("line_kind", sa.Text(), nullable=False),
        sa.Column("digit", sa.Text(), nullable=True),
        sa.Column("digit_at", tz(), nullable=True),
        sa.Column(
            "prompts_played",
            postgresql.JSONB(),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("notice_started_at", tz(), nullable=True),
        sa.Column("notice_ended_at", tz(), nullable=True),
        sa.Column("question_started_at", tz(), nullable=True),
        sa.Column("decided_at", tz(), nullable=False),
        sa.Column("inherited_from_call_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint("call_id", name=op.f("uq_decisions_call_id")),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_decisions_call_id_calls")),
        sa.ForeignKeyConstraint(
            ["inherited_from_call_id"],
            ["calls.id"],
            name=op.f("fk_decisions_inherited_from_call_id_calls"),
        ),
        sa.CheckConstraint(
            "decision IN ('legal_basis', 'consent', 'refusal', 'no_consent')",
            name=op.f("ck_decisions_decision"),
        ),
        sa.CheckConstraint(
            "line_kind IN ('sales', 'service')", name=op.f("ck_decisions_line_kind")
        ),
        sa.CheckConstraint("digit ~ '^[0-9A-D*#]$'", name=op.f("ck_decisions_digit")),
        sa.CheckConstraint(
            "decision <> 'legal_basis' OR line_kind = 'sales'",
            name=op.f("ck_decisions_legal_basis_on_sales"),
        ),
        sa.CheckConstraint(
            "decision NOT IN ('consent', 'refusal') OR line_kind = 'service'",
            name=op.f("ck_decisions_consent_on_service"),
        ),
        sa.CheckConstraint(
            "decision <> 'consent' OR inherited_from_call_id IS NOT NULL"
            " OR (digit = '1' AND digit_at >= notice_started_at)",
            name=op.f("ck_decisions_consent_is_1_after_notice"),
        ),
        sa.CheckConstraint(
            "jsonb_typeof(prompts_played) = 'array'", name=op.f("ck_decisions_prompts_played_array")
        ),
    )
    op.create_index(
        op.f("ix_decisions_inherited_from_call_id"), "decisions", ["inherited_from_call_id"]
    )

    op.create_table(
        "recordings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("mixmonitor_id", sa.Text(), nullable=True),
        sa.Column("started_at", tz(), nullable=False),
        sa.Column("stopped_at", tz(), nullable=True),
        sa.Column("sha256", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", tz(), nullable=False),
        sa.Column("deleted_at", tz(), nullable=True),
        sa.Column("deleted_sha256", sa.Text(), nullable=True),
        sa.Column("deletion_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("file_name", name=op.f("uq_recordings_file_name")),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_recordings_call_id_calls")
        ),
        sa.CheckConstraint("basis IN ('legal_basis', 'consent')", name=op.f("ck_recordings_basis")),
        sa.CheckConstraint(
            "deletion_reason IN ('retention', 'revocation')",
            name=op.f("ck_recordings_deletion_reason"),
        ),
        sa.CheckConstraint(
            "file_name ~ '^[A-Za-z0-9][A-Za-z0-9._-]*$'", name=op.f("ck_recordings_file_name")
        ),
        sa.CheckConstraint(f"sha256 ~ {SHA256}", name=op.f("ck_recordings_sha256")),
        sa.CheckConstraint(f"deleted_sha256 ~ {SHA256}", name=op.f("ck_recordings_deleted_sha256")),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_recordings_size_bytes")),
        sa.CheckConstraint(
            "(deleted_at IS NULL) = (deletion_reason IS NULL)",
            name=op.f("ck_recordings_deletion_has_reason"),
        ),
    )
    op.create_index(op.f("ix_recordings_call_id"), "recordings", ["call_id"])
    # Rule 6: the retention job looks for kept recordings past their date.
    op.create_index(
        op.f("ix_recordings_expires_at_kept"),
        "recordings",
        ["expires_at"],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )

    op.create_table(
        "missed_calls",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("caller", sa.Text(), nullable=True),
        sa.Column("caller_withheld", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("overloaded", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("missed_at", tz(), nullable=False),
        sa.Column("callback_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missed_calls")),
        sa.UniqueConstraint("call_id", name=op.f("uq_missed_calls_call_id")),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_missed_calls_call_id_calls")
        ),
        sa.ForeignKeyConstraint(
            ["callback_id"], ["callbacks.id"], name=op.f("fk_missed_calls_callback_id_callbacks")
        ),
        sa.CheckConstraint(
            "reason IN ('abandoned', 'timeout', 'ivr_hangup', 'other')",
            name=op.f("ck_missed_calls_reason"),
        ),
        sa.CheckConstraint(f"caller ~ {E164}", name=op.f("ck_missed_calls_caller_e164")),
    )
    op.create_index(op.f("ix_missed_calls_callback_id"), "missed_calls", ["callback_id"])
    op.create_index(op.f("ix_missed_calls_missed_at"), "missed_calls", ["missed_at"])

    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("callback_id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=True),
        sa.Column("agent", sa.Text(), nullable=False),
        sa.Column("started_at", tz(), nullable=False),
        sa.Column("ended_at", tz(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callbacks.id"],
            name=op.f("fk_callback_attempts_callback_id_callbacks"),
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_callback_attempts_call_id_calls")
        ),
    )
    op.create_index(op.f("ix_callback_attempts_callback_id"), "callback_attempts", ["callback_id"])

    op.create_table(
        "revocations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("via", sa.Text(), nullable=False),
        sa.Column("received_at", tz(), nullable=False),
        sa.Column("recorded_by", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=False),
        sa.Column("created_at", tz(), server_default=sa.func.now(), nullable=False),
        sa.Column("fulfilled_at", tz(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocations")),
        sa.CheckConstraint("via IN ('phone', 'email')", name=op.f("ck_revocations_via")),
        sa.CheckConstraint(f"caller ~ {E164}", name=op.f("ck_revocations_caller_e164")),
    )
    op.create_index(op.f("ix_revocations_caller"), "revocations", ["caller"])
    # Rule 8: the deletion job looks for revocations not yet carried out.
    op.create_index(
        op.f("ix_revocations_deadline_pending"),
        "revocations",
        ["deadline"],
        postgresql_where=sa.text("fulfilled_at IS NULL"),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("at", tz(), server_default=sa.func.now(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("subject_type", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=True),
        sa.Column(
            "details", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_audit_log_prev_hash")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
        sa.CheckConstraint(f"hash ~ {SHA256}", name=op.f("ck_audit_log_hash")),
        sa.CheckConstraint(f"prev_hash ~ {SHA256}", name=op.f("ck_audit_log_prev_hash")),
    )
    op.create_index(op.f("ix_audit_log_subject"), "audit_log", ["subject_type", "subject_id"])
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it.
    for table in (
        "audit_log",
        "revocations",
        "callback_attempts",
        "missed_calls",
        "recordings",
        "decisions",
        "callbacks",
        "calls",
    ):
        op.drop_table(table)
