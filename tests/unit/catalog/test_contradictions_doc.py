"""The docs list exactly the vendor examples that contradict their own schema."""

from __future__ import annotations

import re
from pathlib import Path

from trt.catalog.vendor import example_contradictions, load_vendor

DOC = Path(__file__).resolve().parents[3] / "docs" / "catalog.md"


def test_docs_list_every_contradicting_example() -> None:
    vendor = load_vendor()
    expected = {
        f"{family.value}:{kie_id}"
        for (family, kie_id), model in vendor.models.items()
        if example_contradictions(model)
    }
    section = DOC.read_text(encoding="utf-8").split("<!-- contradictions -->")[1]
    listed = set(re.findall(r"^\| `([a-z_]+:[^`]+)` \|", section, flags=re.MULTILINE))
    assert listed == expected
