"""Catalogue defects stop loading with the model, the field path and the rule."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from trt.bot.callbacks import check_budget
from trt.catalog.loader import CATALOG_PATH, CatalogError, load_catalog, parse_catalog

BASE: dict[str, Any] = yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8"))


def model_entry(raw: dict[str, Any], slug: str) -> dict[str, Any]:
    return next(m for m in raw["models"] if m["slug"] == slug)


def defects_after(change: Any) -> list[str]:
    raw = copy.deepcopy(BASE)
    change(raw)
    with pytest.raises(CatalogError) as caught:
        parse_catalog(raw)
    return [str(d) for d in caught.value.defects]


def test_the_packaged_catalogue_loads() -> None:
    assert len(load_catalog()) >= 40


def test_a_default_that_breaks_its_own_rule() -> None:
    def change(raw: dict[str, Any]) -> None:
        model_entry(raw, "kl26t")["params"]["duration"]["default"] = "7"

    assert defects_after(change) == [
        "kl26t: params.duration.default: '7' breaks its own rule (enum)"
    ]


def test_a_required_parameter_neither_asked_nor_defaulted() -> None:
    def change(raw: dict[str, Any]) -> None:
        sound = model_entry(raw, "kl26t")["params"]["sound"]
        sound["ui"] = "option"
        del sound["default"]

    assert defects_after(change) == [
        "kl26t: params.sound: required but neither asked (ui: ask) nor defaulted"
    ]


def test_a_combination_without_a_price() -> None:
    def change(raw: dict[str, Any]) -> None:
        del model_entry(raw, "kl26t")["price"]["table"]["true|10"]

    assert defects_after(change) == ["kl26t: price.table: no price for sound|duration = true|10"]


def test_duplicate_slugs() -> None:
    def change(raw: dict[str, Any]) -> None:
        model_entry(raw, "nb")["slug"] = "zimg"

    assert "zimg: slug: slugs must be unique" in defects_after(change)


def test_unknown_keys_are_typos_not_ignored() -> None:
    def change(raw: dict[str, Any]) -> None:
        model_entry(raw, "zimg")["params"]["prompt"]["max_lenght"] = 5

    assert defects_after(change) == [
        "zimg: params.prompt.max_lenght: Extra inputs are not permitted"
    ]


def test_a_missing_label() -> None:
    def change(raw: dict[str, Any]) -> None:
        del raw["labels"]["sound"]

    found = defects_after(change)
    assert (
        "kl26t: params.sound: no label: add it under `labels:` or give the parameter a "
        "`label`" in found
    )


def test_the_callback_budget_fails_on_a_deliberately_long_slug() -> None:
    # Checked where buttons are known (bot/, when the dispatcher is built), not by catalog/.
    raw = copy.deepcopy(BASE)
    model_entry(raw, "zimg")["slug"] = "z" * 58
    catalog = parse_catalog(raw)
    with pytest.raises(CatalogError) as caught:
        check_budget(catalog)
    found = [str(d) for d in caught.value.defects]
    assert len(found) == 1
    assert found[0].startswith("z" * 58 + ": slug: callback data 'po:" + "z" * 58)
    assert "over Telegram's 64: shorten the slug" in found[0]


def test_an_unreadable_file(tmp_path: Path) -> None:
    broken = tmp_path / "models.yaml"
    broken.write_text("models: [", encoding="utf-8")
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(broken)
