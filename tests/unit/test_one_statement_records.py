"""Postgres's one-statement writes (docs/performance.md, items 25–26) set what they name and
nothing else: SQLAlchemy adds an execution parameter named after a column to an UPDATE's
SET, a WITH-part's too, so a shared parameter name would silently write a column."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy.dialects import postgresql

from trt.billing.ledger import Ledger
from trt.db.models import Job, Outbox
from trt.jobs.outbox import recorded_alone
from trt.jobs.state import JobStatus
from trt.jobs.transitions import JobTransitions, _callback_update, _ending_with


def sets(sql: str) -> dict[str, set[str]]:
    """Each UPDATE's table and the columns its SET names."""
    found: dict[str, set[str]] = {}
    for table, assignments in re.findall(r"UPDATE (\w+) SET (.*?) WHERE", sql, re.S):
        found[table] = {part.split("=")[0].strip() for part in assignments.split(", ")}
    return found


def test_a_results_record_sets_only_its_own_columns() -> None:
    transitions = JobTransitions(Ledger(is_sqlite=False))
    job = Job(id="j1")
    row = Outbox(id=7)
    file = {
        "of_job": "j1",
        "at": 0,
        "file_id": "F",
        "sent_kind": "photo",
        "seconds": None,
        "keep": None,
    }
    mark = {"row_id": row.id, "marked_at": datetime.now(UTC), "how": "sent", "message_id": 5}
    statement, params = recorded_alone(transitions, job, file, mark)
    sql = str(statement.compile(dialect=postgresql.asyncpg.dialect(), column_keys=list(params)))
    assert sets(sql) == {
        "job_results": {"data", "telegram_file_id", "sent_as", "duration_s"},
        "outbox": {"sent_at", "outcome", "telegram_message_id", "lease_until"},
        "jobs": {"status", "updated_at"},
    }


def test_a_callbacks_record_sets_only_its_own_columns() -> None:
    statement = _callback_update(("callback_payload", "next_run_at"), with_insert=True)
    params = ["of_job", "task", "body", "at", "v_callback_payload", "v_next_run_at"]
    sql = str(statement.compile(dialect=postgresql.asyncpg.dialect(), column_keys=params))
    assert sets(sql) == {"jobs": {"callback_payload", "next_run_at"}}
    inserted = re.search(r"INSERT INTO kie_callbacks \((.*?)\)", sql)
    assert inserted is not None
    assert inserted.group(1).split(", ") == ["job_id", "task_id", "payload", "received_at"]


def test_an_endings_move_message_and_notes_skip_set_only_their_own_columns() -> None:
    transitions = JobTransitions(Ledger(is_sqlite=False))
    job = Job(id="j1", chat_id=3, cid="c", status_message_id=None)
    fields = Outbox.fields_for_job(job, "result", {"notice": "result"})
    assert tuple(fields) == Outbox.JOB_FIELDS  # the statement binds exactly these
    move, move_params = transitions.move_statement(
        job, JobStatus.SUCCEEDED, owner="w", result_urls=["u"]
    )
    params = [*move_params, *(f"row_{name}" for name in fields), "of_job"]
    statement = _ending_with(move)
    sql = str(statement.compile(dialect=postgresql.asyncpg.dialect(), column_keys=params))
    assert sets(sql) == {
        "jobs": {
            "status",
            "lease_owner",
            "lease_until",
            "result_urls",
            "updated_at",
            "finished_at",
        },
        "outbox": {"sent_at", "outcome", "lease_until"},
    }
    inserted = re.search(r"INSERT INTO outbox \((.*?)\)", sql)
    assert inserted is not None
    assert tuple(inserted.group(1).split(", ")) == Outbox.JOB_FIELDS
