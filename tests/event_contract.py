"""Every end-to-end and browser test is also a contract test: its events keep the contract.

Used as an autouse fixture by `tests/e2e/conftest.py` and `tests/browser/conftest.py`.

Each event emitted during a test must carry its required fields and a declared reason code,
and every finished callback chain must be complete (`trt.telemetry.contract`). Every reason
code used must also be documented in docs/monitoring.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trt.telemetry.contract import check_records
from trt.telemetry.events import telemetry

MONITORING_DOC = Path(__file__).resolve().parents[1] / "docs" / "monitoring.md"


@pytest.fixture(autouse=True)
def event_contract(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    telemetry.sinks.append(records.append)
    try:
        yield records
    finally:
        telemetry.sinks.remove(records.append)
    if request.node.get_closest_marker("dispatch_errors_expected") is None:
        problems = check_records(records)
    else:
        problems = [p for p in check_records(records) if not p.startswith("DISPATCH_ERROR")]
    documented = MONITORING_DOC.read_text(encoding="utf-8")
    problems += sorted(
        f"reason code {code} is not documented in docs/monitoring.md"
        for code in {str(r["reason_code"]) for r in records if r.get("reason_code")}
        if f"| `{code}` |" not in documented
    )
    assert problems == [], "\n".join(problems[:20])
