"""Payments (Stars, YooKassa, manual transfers), promo codes and referrals.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trt.db.models import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_kop", sa.BigInteger(), nullable=False),
        sa.Column("stars", sa.Integer(), nullable=True),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.Column("confirmation_url", sa.String(length=512), nullable=True),
        sa.Column("receipt_file_id", sa.String(length=256), nullable=True),
        sa.Column("decided_by", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.String(length=255), server_default="", nullable=False),
        sa.Column("cid", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", UtcDateTime(), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.Column(
            "updated_at", UtcDateTime(), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_payments_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("method", "external_id", name=op.f("uq_payments_method_external_id")),
    )
    op.create_index(op.f("ix_payments_user_id"), "payments", ["user_id"], unique=False)
    op.create_index(op.f("ix_payments_status"), "payments", ["status"], unique=False)
    op.create_index(op.f("ix_payments_created_at"), "payments", ["created_at"], unique=False)
    op.create_table(
        "promo_codes",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("amount_kop", sa.BigInteger(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column(
            "created_at", UtcDateTime(), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_promo_codes")),
    )
    op.create_table(
        "promo_redemptions",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("redeemed_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["code"], ["promo_codes.code"], name=op.f("fk_promo_redemptions_code_promo_codes")
        ),
        sa.PrimaryKeyConstraint("code", "user_id", name=op.f("pk_promo_redemptions")),
    )
    op.create_table(
        "referrals",
        sa.Column("invited_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("inviter_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("credited_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("invited_id", name=op.f("pk_referrals")),
    )
    op.create_index(op.f("ix_referrals_inviter_id"), "referrals", ["inviter_id"], unique=False)


def downgrade() -> None:
    op.drop_table("referrals")
    op.drop_table("promo_redemptions")
    op.drop_table("promo_codes")
    op.drop_table("payments")
