"""The job state machine. Every transition is a compare-and-set on the row (see engine.py)."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    CONFIRMED = "confirmed"  # job row + hold committed; not yet sent to KIE
    SUBMITTING = "submitting"  # createTask is (about to be) in flight
    SUBMITTED = "submitted"  # KIE accepted: we have its task id
    RUNNING = "running"  # KIE reports the task generating
    RECONCILING = "reconciling"  # createTask's outcome unknown; waiting for a callback
    SUCCEEDED = "succeeded"  # results stored, hold captured, result message in the outbox
    DELIVERED = "delivered"  # the result message was sent
    FAILED = "failed"  # hold released, failure message in the outbox
    TIMED_OUT = "timed_out"  # past the deadline: hold released, message in the outbox


ACTIVE = frozenset(
    {
        JobStatus.CONFIRMED,
        JobStatus.SUBMITTING,
        JobStatus.SUBMITTED,
        JobStatus.RUNNING,
        JobStatus.RECONCILING,
    }
)
TERMINAL = frozenset({JobStatus.DELIVERED, JobStatus.FAILED, JobStatus.TIMED_OUT})
# SUCCEEDED is settled money-wise (captured) but waits for its delivery.
SETTLED = TERMINAL | {JobStatus.SUCCEEDED}

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.CONFIRMED: frozenset({JobStatus.SUBMITTING, JobStatus.FAILED, JobStatus.TIMED_OUT}),
    JobStatus.SUBMITTING: frozenset(
        {
            JobStatus.SUBMITTED,
            JobStatus.CONFIRMED,
            JobStatus.RECONCILING,
            JobStatus.FAILED,
            JobStatus.TIMED_OUT,
        }
    ),
    JobStatus.SUBMITTED: frozenset(
        {JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT}
    ),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT}),
    JobStatus.RECONCILING: frozenset(
        {JobStatus.SUBMITTED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT}
    ),
    JobStatus.SUCCEEDED: frozenset({JobStatus.DELIVERED, JobStatus.FAILED}),
    JobStatus.DELIVERED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.TIMED_OUT: frozenset(),
}


def sources_of(target: JobStatus) -> tuple[JobStatus, ...]:
    """The states a job may move to `target` from."""
    return tuple(state for state, targets in TRANSITIONS.items() if target in targets)
