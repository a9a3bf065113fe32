"""54-ФЗ receipts (the user's receipt contact, the contact a payment's receipt went to) and the
prompt assistant (its uses, the typed prompt of a job whose prompt the assistant rewrote).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trt.db.models import UtcDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("receipt_contact", sa.String(80), nullable=True))
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("receipt_contact", sa.String(80), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("prompt_original", sa.Text(), nullable=True))
    op.create_table(
        "prompt_assists",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model_slug", sa.String(64), nullable=False),
        sa.Column("original", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("cid", sa.String(64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_prompt_assists_user_id", "prompt_assists", ["user_id"])
    op.create_index("ix_prompt_assists_created_at", "prompt_assists", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_prompt_assists_created_at", table_name="prompt_assists")
    op.drop_index("ix_prompt_assists_user_id", table_name="prompt_assists")
    op.drop_table("prompt_assists")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("prompt_original")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("receipt_contact")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("receipt_contact")
