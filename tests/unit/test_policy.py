"""The retry, poll and give-up rules on their own (no HTTP, no database)."""

from __future__ import annotations

import pytest

from trt.jobs.policy import (
    BACKOFF_CAP_S,
    FLOOD_CONTROL,
    OUTBOX_RETRY_CAP_S,
    backoff_s,
    outbox_gives_up,
    outbox_retry_s,
    poll_delay_s,
)


@pytest.mark.parametrize("attempt", [0, 1, 3, 10, 50])
def test_backoff_is_jittered_within_its_ceiling_and_never_before_retry_after(attempt: int) -> None:
    ceiling = min(BACKOFF_CAP_S, 2.0 * 2**attempt)
    delays = [backoff_s(attempt) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jittered, not one fixed delay every worker shares
    assert all(backoff_s(attempt, retry_after_s=90.0) >= 90.0 for _ in range(20))


def test_polls_follow_kies_schedule() -> None:
    assert [poll_delay_s(s, 1.0) for s in (0, 29, 30, 119, 120, 3600)] == [3, 3, 10, 10, 30, 30]
    assert poll_delay_s(0, 0.01) == pytest.approx(0.03)


def test_flood_control_waits_what_telegram_says_other_failures_back_off_linearly() -> None:
    assert outbox_retry_s(1, FLOOD_CONTROL, 37.0, 5.0) == 37.0
    assert outbox_retry_s(3, "TelegramServerError", 5.0, 5.0) == 15.0
    assert outbox_retry_s(500, "TelegramServerError", 5.0, 5.0) == OUTBOX_RETRY_CAP_S
    assert outbox_retry_s(1, FLOOD_CONTROL, 10_000.0, 5.0) == OUTBOX_RETRY_CAP_S


def test_a_message_is_given_up_after_twelve_failures() -> None:
    assert not outbox_gives_up(11)
    assert outbox_gives_up(12)
