"""The recording store: where a finished recording was moved from its node's spool (a
local directory or an S3 bucket), when, and a failed move's attempts and error; the
location each deletion certificate names.

Revision ID: 2026_11_23_0005
Revises: 2026_11_23_0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_11_23_0005"
down_revision: str | Sequence[str] | None = "2026_11_23_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_SPOOL = "stored_at IS NULL AND deleted_at IS NULL"


def upgrade() -> None:
    op.add_column("recordings", sa.Column("stored_location", sa.Text(), nullable=True))
    op.add_column("recordings", sa.Column("stored_at", sa.DateTime(timezone=True),
                                          nullable=True))
    op.add_column("recordings", sa.Column("store_attempts", sa.Integer(), nullable=False,
                                          server_default="0"))
    op.add_column("recordings", sa.Column("store_error", sa.Text(), nullable=True))
    op.create_check_constraint(op.f("ck_recordings_stored_has_location"), "recordings",
                               "(stored_at IS NULL) = (stored_location IS NULL)")
    op.create_check_constraint(
        op.f("ck_recordings_stored_has_hash"), "recordings",
        "stored_at IS NULL OR (sha256 IS NOT NULL AND size_bytes IS NOT NULL)")
    op.create_check_constraint(op.f("ck_recordings_store_attempts"), "recordings",
                               "store_attempts >= 0")
    op.create_index("ix_recordings_started_at_in_spool", "recordings", ["started_at"],
                    postgresql_where=sa.text(IN_SPOOL))
    op.add_column("deletion_certificates", sa.Column("location", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("deletion_certificates", "location")
    op.drop_index("ix_recordings_started_at_in_spool", table_name="recordings",
                  postgresql_where=sa.text(IN_SPOOL))
    op.drop_constraint(op.f("ck_recordings_store_attempts"), "recordings", type_="check")
    op.drop_constraint(op.f("ck_recordings_stored_has_hash"), "recordings", type_="check")
    op.drop_constraint(op.f("ck_recordings_stored_has_location"), "recordings", type_="check")
    op.drop_column("recordings", "store_error")
    op.drop_column("recordings", "store_attempts")
    op.drop_column("recordings", "stored_at")
    op.drop_column("recordings", "stored_location")
