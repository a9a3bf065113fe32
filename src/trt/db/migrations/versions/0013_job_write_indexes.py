"""Two indexes of `jobs` no query uses (kie_task_id, model_slug): a job's row changes state
about six times, none of them a HOT update (its status is indexed), so every index of the table
takes a new entry each time (docs/performance.md, item 33). Callbacks find their job by its
callback token, reports read model slugs from rows they select by time.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_jobs_kie_task_id", table_name="jobs")
    op.drop_index("ix_jobs_model_slug", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_model_slug", "jobs", ["model_slug"], unique=False)
    op.create_index("ix_jobs_kie_task_id", "jobs", ["kie_task_id"], unique=False)
