"""`trt models …` as an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import cli, run_trt
from tests.processes import trt_env
from trt.catalog.vendor import SHIPPED_DUMPS


def test_check_passes(tmp_path: Path) -> None:
    result = run_trt("models", "check", env=trt_env(), cwd=tmp_path)  # one as a real process
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("catalogue OK: ")


def test_diff_against_the_shipped_dump_reports_no_drift(tmp_path: Path) -> None:
    result = cli("models", "diff", "--strict", env=trt_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "0 drift finding(s)" in result.stdout


def test_strict_diff_fails_on_drift(tmp_path: Path) -> None:
    data = json.loads(SHIPPED_DUMPS[0].read_text(encoding="utf-8"))
    for model in data["models"]:
        if model["model"] == "z-image":
            model["input"]["aspect_ratio"]["enum"].append("21:9")
    vendor = tmp_path / "vendor.json"
    vendor.write_text(json.dumps(data), encoding="utf-8")
    result = cli("models", "diff", "--vendor", str(vendor), "--strict", env=trt_env(), cwd=tmp_path)
    assert result.returncode == 1
    assert "DRIFT zimg: aspect_ratio: enum" in result.stdout


def test_list_show_and_price(tmp_path: Path) -> None:
    env = trt_env(USD_RUB_RATE="100", PRICE_MARKUP="2")
    listing = cli("models", "list", "--category", "video", env=env, cwd=tmp_path)
    assert listing.returncode == 0
    assert "kl26t" in listing.stdout
    assert "zimg" not in listing.stdout
    shown = cli("models", "show", "hl23s", "--lang", "en", env=env, cwd=tmp_path)
    assert "Duration" in shown.stdout
    priced = cli("models", "price", "kl26t", "duration=10", "sound=true", env=env, cwd=tmp_path)
    assert priced.returncode == 0, priced.stdout
    assert "220 credits = $1.100 → 220 ₽" in priced.stdout
    refused = cli("models", "price", "kl26t", "duration=7", env=env, cwd=tmp_path)
    assert refused.returncode == 1
    assert "Длительность: допустимые значения 5 или 10 с" in refused.stdout
    unknown = cli("models", "show", "nope", env=env, cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown model 'nope'" in unknown.stderr
