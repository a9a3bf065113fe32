"""docs/monitoring.md documents every event and every reason code."""

from __future__ import annotations

from pathlib import Path

from trt.telemetry.events import REQUIRED, Event, Reason

DOC = (Path(__file__).resolve().parents[3] / "docs" / "monitoring.md").read_text(encoding="utf-8")


def test_every_event_is_documented_with_its_fields() -> None:
    for event in Event:
        row = next(line for line in DOC.splitlines() if line.startswith(f"| `{event.value}` |"))
        for field in REQUIRED[event]:
            if field not in ("cid", "event", "ts"):
                assert f"`{field}`" in row, (event, field)


def test_every_reason_code_is_documented() -> None:
    for reason in Reason:
        assert f"| `{reason.value}` |" in DOC, reason
