"""Drift detection between the catalogue and a vendor schema dump."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from trt.catalog.loader import Catalog
from trt.catalog.vendor import (
    SHIPPED_DUMPS,
    check_vendor_input,
    diff,
    load_vendor,
)

MARKET: dict[str, Any] = json.loads(SHIPPED_DUMPS[0].read_text(encoding="utf-8"))


def drift_after(catalog: Catalog, tmp_path: Path, change: Any) -> list[str]:
    data = copy.deepcopy(MARKET)
    change({m["model"]: m for m in data["models"]}, data)
    path = tmp_path / "vendor.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return [f"{f.model}: {f.message}" for f in diff(catalog, load_vendor((path,))) if f.drift]


def test_the_shipped_dump_shows_no_drift(catalog: Catalog) -> None:
    assert [f for f in diff(catalog, load_vendor()) if f.drift] == []


def test_shipped_dump_keeps_its_provenance() -> None:
    assert "docs.kie.ai" in MARKET["_about"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda m, _d: m["kling-2.6/text-to-video"]["input"]["duration"]["enum"].append("15"),
            "kl26t: duration: enum ['5', '10'] vs vendor ['5', '10', '15']",
        ),
        (
            lambda m, _d: m["z-image"]["input"].update(seed={"type": "integer"}),
            "zimg: vendor parameter 'seed' is missing from the catalogue",
        ),
        (
            lambda m, _d: m["z-image"]["input"].pop("nsfw_checker"),
            "zimg: parameter 'nsfw_checker' is not in the vendor schema",
        ),
        (
            lambda m, _d: m["nano-banana-2"]["input"]["resolution"].update(default="2K"),
            "nb2: resolution: default '1K' vs vendor '2K'",
        ),
        (
            lambda m, _d: m["z-image"]["input"]["prompt"].update(type="array"),
            "zimg: prompt: type string vs vendor array",
        ),
        (
            lambda m, _d: m["z-image"]["input_required"].remove("aspect_ratio"),
            "zimg: aspect_ratio: required True vs vendor False",
        ),
        (
            lambda m, _d: m["z-image"]["input"]["prompt"].update(maxLength=800),
            "zimg: prompt: max_length 1000 vs vendor 800",
        ),
        (
            lambda _m, d: d["models"].remove(
                next(x for x in d["models"] if x["model"] == "z-image")
            ),
            "zimg: z-image: not in the vendor schemas",
        ),
        (
            lambda _m, d: d["models"].append({"model": "acme/new-model", "input": {}}),
            "acme/new-model: vendor model not in the catalogue (add or skip it)",
        ),
    ],
)
def test_each_kind_of_drift_is_reported(
    catalog: Catalog, tmp_path: Path, change: Any, expected: str
) -> None:
    assert drift_after(catalog, tmp_path, change) == [expected]


def test_a_narrower_range_is_a_deliberate_note_not_drift(catalog: Catalog, tmp_path: Path) -> None:
    def widen(models: dict[str, Any], _data: Any) -> None:
        models["z-image"]["input"]["prompt"]["maxLength"] = 5000

    assert drift_after(catalog, tmp_path, widen) == []


def test_vendor_input_check_follows_the_vendor_schema_only() -> None:
    vendor = load_vendor()
    kling = vendor.models[next(k for k in vendor.models if k[1] == "kling-2.6/text-to-video")]
    assert (
        check_vendor_input(
            kling, {"prompt": "x", "sound": False, "aspect_ratio": "1:1", "duration": "5"}
        )
        == []
    )
    problems = check_vendor_input(kling, {"prompt": 5, "duration": 5, "extra": 1})
    assert problems == [
        "aspect_ratio: required",
        "sound: required",
        "prompt: expected string",
        "duration: expected string",
        "extra: unknown parameter",
    ]
