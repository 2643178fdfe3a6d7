"""Deletion bookkeeping: certificates, and retries of files that could not be deleted.

A deletion certificate proves what was deleted, when, the file's SHA-256, for which reason
(retention or a revocation), the deadline and whether it was met (rules 6 and 8). A
recording whose file cannot be deleted keeps its attempts, last error and the time it was
flagged, and is not marked deleted.

Revision ID: 2026_11_22_0002
Revises: 2026_11_22_0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_11_22_0002"
down_revision: str | Sequence[str] | None = "2026_11_22_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("recordings", sa.Column("deletion_attempts", sa.Integer(), nullable=False,
                                          server_default="0"))
    op.add_column("recordings", sa.Column("deletion_error", sa.Text(), nullable=True))
    op.add_column("recordings", sa.Column("deletion_flagged_at", tz(), nullable=True))
    op.create_table(
        "deletion_certificates",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("recording_id", sa.Uuid(), nullable=False),
        sa.Column("revocation_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("file_sha256", sa.Text(), nullable=True),
        sa.Column("file_existed", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", tz(), nullable=False),
        sa.Column("deadline", tz(), nullable=False),
        sa.Column("met", sa.Boolean(), nullable=False),
        sa.Column("created_at", tz(), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("reason IN ('retention', 'revocation')",
                           name=op.f("ck_deletion_certificates_reason")),
        sa.CheckConstraint("file_sha256 ~ '^[0-9a-f]{64}$'",
                           name=op.f("ck_deletion_certificates_file_sha256")),
        sa.CheckConstraint("(reason = 'revocation') = (revocation_id IS NOT NULL)",
                           name=op.f("ck_deletion_certificates_revocation_has_id")),
        sa.ForeignKeyConstraint(["recording_id"], ["recordings.id"],
                                name=op.f("fk_deletion_certificates_recording_id_recordings")),
        sa.ForeignKeyConstraint(["revocation_id"], ["revocations.id"],
                                name=op.f("fk_deletion_certificates_revocation_id_revocations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deletion_certificates")),
        sa.UniqueConstraint("recording_id", name=op.f("uq_deletion_certificates_recording_id")),
    )
    op.create_index(op.f("ix_deletion_certificates_revocation_id"), "deletion_certificates",
                    ["revocation_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_deletion_certificates_revocation_id"),
                  table_name="deletion_certificates")
    op.drop_table("deletion_certificates")
    op.drop_column("recordings", "deletion_flagged_at")
    op.drop_column("recordings", "deletion_error")
    op.drop_column("recordings", "deletion_attempts")
