"""Integrity: result download attempts, the free slot's day on the job, receipts deduplicated,
referral bonuses that can be reversed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trt.db.models import UtcDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("download_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("free_day", sa.String(10), nullable=True))
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("receipt_unique_id", sa.String(128), nullable=True))
        batch.create_unique_constraint("uq_payments_receipt_unique_id", ["receipt_unique_id"])
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("reversed_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("reversed_at")
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint("uq_payments_receipt_unique_id", type_="unique")
        batch.drop_column("receipt_unique_id")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("free_day")
        batch.drop_column("download_attempts")
