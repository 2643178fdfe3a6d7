"""Deletion certificates by when the recording was deleted: the DPO's page (the newest
first) and the last 24 hours' deletions on /metrics read them in that order.

Revision ID: 2026_11_23_0006
Revises: 2026_11_23_0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "2026_11_23_0006"
down_revision: str | Sequence[str] | None = "2026_11_23_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_deletion_certificates_deleted_at", "deletion_certificates",
                    ["deleted_at"])


def downgrade() -> None:
    op.drop_index("ix_deletion_certificates_deleted_at", table_name="deletion_certificates")
