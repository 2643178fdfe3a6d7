"""Web console users and their sessions.

A user has one role (agent, dpo, trainer or admin), an argon2id password hash, and, for an
agent, the PJSIP endpoint their phone registers as. A session is stored server-side under
the SHA-256 of its token (the token itself lives only in the browser's cookie), with the
form token that guards against cross-site requests, and ends at ``expires_at`` or after
idling.

Revision ID: 2026_11_22_0003
Revises: 2026_11_22_0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_11_22_0003"
down_revision: str | Sequence[str] | None = "2026_11_22_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("agent_endpoint", sa.Text(), nullable=True),
        sa.Column("language", sa.Text(), server_default="sl", nullable=False),
        sa.Column("created_at", tz(), server_default=sa.text("now()"), nullable=False),
        sa.Column("disabled_at", tz(), nullable=True),
        sa.CheckConstraint("username ~ '^[a-z0-9][a-z0-9._-]{1,63}$'",
                           name=op.f("ck_console_users_username")),
        sa.CheckConstraint("role IN ('agent', 'dpo', 'trainer', 'admin')",
                           name=op.f("ck_console_users_role")),
        sa.CheckConstraint("agent_endpoint ~ '^[A-Za-z0-9_-]{1,64}$'",
                           name=op.f("ck_console_users_agent_endpoint")),
        sa.CheckConstraint("language IN ('sl', 'en')", name=op.f("ck_console_users_language")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_users")),
        sa.UniqueConstraint("username", name=op.f("uq_console_users_username")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.Column("created_at", tz(), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen_at", tz(), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", tz(), nullable=False),
        sa.CheckConstraint("token_hash ~ '^[0-9a-f]{64}$'",
                           name=op.f("ck_console_sessions_token_hash")),
        sa.ForeignKeyConstraint(["user_id"], ["console_users.id"], ondelete="CASCADE",
                                name=op.f("fk_console_sessions_user_id_console_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_sessions_token_hash")),
    )
    op.create_index(op.f("ix_console_sessions_user_id"), "console_sessions", ["user_id"])
    op.create_index(op.f("ix_console_sessions_expires_at"), "console_sessions",
                    ["expires_at"])


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it.
    op.drop_table("console_sessions")
    op.drop_table("console_users")
