"""Failpoints: named steps at which the fault-injection tests make the process die as by kill -9.

`TRT_FAILPOINTS` (test-only, unset in production) lists step names, comma-separated; the first
armed step the process reaches writes one line to stderr and sends the process SIGKILL: no
`finally`, no flush, no commit, exactly what a crash or an OOM kill does at that instant. With
the variable unset a failpoint is one lookup in an empty set.

The steps, in the order a paid generation and a top-up pass them (docs/operations.md):

    job.confirmed        hold placed and job stored, the confirm tap not yet answered
    job.created_at_kie   KIE created the task, the task id not yet stored
    job.captured         result downloaded and hold captured, not yet committed
    outbox.sent          a message sent to Telegram, the outbox row not yet marked
    payment.credited     a top-up credited and committed, the user not yet told
    payment.uncommitted  a top-up's credit written, not yet committed
    refund.reversed      a refund's reversal committed, the provider not yet asked
    refund.answered      the provider answered a refund, the answer not yet recorded
"""

from __future__ import annotations

import os
import signal
import sys

ARMED: frozenset[str] = frozenset(
    name.strip() for name in os.environ.get("TRT_FAILPOINTS", "").split(",") if name.strip()
)


def failpoint(name: str) -> None:
    """Die here, at once, when the step `name` is armed."""
    if name in ARMED:
        sys.stderr.write(f"failpoint {name}: SIGKILL\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
