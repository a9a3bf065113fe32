"""Verifying KIE's callback signatures (shared/kie/README.md §4.2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

MAX_SKEW_S = 300
MAX_STAMP_DIGITS = 12


def callback_task_id(body: Mapping[str, Any]) -> str:
    """The task id a callback speaks of: `data.taskId`, `data.task_id` (Suno), or `taskId`."""
    data = body.get("data")
    if isinstance(data, Mapping):
        found = data.get("taskId") or data.get("task_id")
        if found:
            return str(found)
    return str(body.get("taskId") or "")


def signature_ok(
    body: Mapping[str, Any], headers: Mapping[str, str], key: str, *, now: float | None = None
) -> bool:
    """KIE's HMAC: base64(HMAC-SHA256(key, taskId + "." + timestamp)), ±5 minutes."""
    stamp = headers.get("X-Webhook-Timestamp", "")
    signature = headers.get("X-Webhook-Signature", "")
    task_id = callback_task_id(body)
    # A timestamp is ten digits for centuries yet; a longer one is no timestamp (and a huge
    # integer would only cost time to parse).
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_STAMP_DIGITS):
        return False
    if not (signature and task_id):
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > MAX_SKEW_S:
        return False
    mac = hmac.new(key.encode(), f"{task_id}.{stamp}".encode(), hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(mac).decode(), signature)
