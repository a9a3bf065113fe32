"""Every button reachable from /start answers, with complete event chains (smoke-buttons)."""

from __future__ import annotations

from pathlib import Path

from trt.sandbox.smoke import run_smoke


async def test_every_reachable_button(tmp_path: Path) -> None:
    summary = await run_smoke(tmp_path)
    print(summary.text())  # noqa: T201 - the summary belongs in the test log
    assert summary.problems == []
    assert summary.taps > 300
    assert len(summary.screens) > 50
