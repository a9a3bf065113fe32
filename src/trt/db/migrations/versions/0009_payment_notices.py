"""Payments remember whether the user was told of the credit.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trt.db.models import UtcDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("notified_at", UtcDateTime(), nullable=True))
    # Credits made before this revision were told at the time.
    op.execute("UPDATE payments SET notified_at = updated_at WHERE status = 'succeeded'")


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("notified_at")
