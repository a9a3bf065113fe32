"""When to try again: the retry, poll and give-up decisions of the engine and the relay, as
pure functions (no clock, no I/O), so each rule is tested on its own (tests/unit/test_policy.py).
"""

from __future__ import annotations

import random

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 60.0
OUTBOX_MAX_ATTEMPTS = 12  # a message Telegram refuses this often is given up (a result: refunded)
OUTBOX_RETRY_CAP_S = 600.0
FLOOD_CONTROL = "flood control"  # telegram.sender.RetryLater's reason for a 429


def backoff_s(attempt: int, retry_after_s: float | None = None) -> float:
    """Full jitter, capped: random(0, min(cap, base·2^attempt)); never before Retry-After."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(attempt, 0))
    delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not security
    return max(delay, retry_after_s or 0.0)


def poll_delay_s(elapsed_s: float, scale: float) -> float:
    """KIE's advice: every 2–3 s for 30 s, then 5–10 s, after 2 min every 15–30 s."""
    if elapsed_s < 30:
        base = 3.0
    elif elapsed_s < 120:
        base = 10.0
    else:
        base = 30.0
    return base * scale


def outbox_gives_up(attempts: int) -> bool:
    """Whether a message that failed `attempts` times is given up."""
    return attempts >= OUTBOX_MAX_ATTEMPTS


def outbox_retry_s(attempts: int, reason: str, after_s: float, base_s: float) -> float:
    """When to send again: flood control says how long to wait; other failures back off
    linearly (`base_s` per attempt); never more than the cap."""
    delay = after_s if reason == FLOOD_CONTROL else base_s * attempts
    return min(delay, OUTBOX_RETRY_CAP_S)
