"""Which node (Asterisk server and its service instance) a call went through, so that a
restarted instance closes only its own calls; and the recordings a decision allowed that
never started because the service stopped first.

Revision ID: 2026_11_23_0004
Revises: 2026_11_22_0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_11_23_0004"
down_revision: str | Sequence[str] | None = "2026_11_22_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("node", sa.Text(), nullable=True))
    op.create_index("ix_calls_node_open", "calls", ["node"],
                    postgresql_where=sa.text("ended_at IS NULL"))
    op.add_column("recordings", sa.Column("not_started_at", sa.DateTime(timezone=True),
                                          nullable=True))


def downgrade() -> None:
    op.drop_column("recordings", "not_started_at")
    op.drop_index("ix_calls_node_open", table_name="calls",
                  postgresql_where=sa.text("ended_at IS NULL"))
    op.drop_column("calls", "node")
