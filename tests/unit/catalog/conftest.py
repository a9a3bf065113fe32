from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from trt.catalog.loader import Catalog, default_catalog
from trt.catalog.pricing import Rates
from trt.catalog.schema import Ui
from trt.pipeline import UnifiedModelPipeline

RATES = Rates(usd_rub_rate=Decimal("100"), price_markup=Decimal("2"))
MEDIA_URL = "https://files.example/input.png"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return default_catalog()


@pytest.fixture(scope="session")
def pipeline(catalog: Catalog) -> UnifiedModelPipeline:
    return UnifiedModelPipeline(catalog, RATES)


def complete_params(pipeline: UnifiedModelPipeline, slug: str, **given: Any) -> dict[str, Any]:
    """What a finished conversation collects: a prompt, uploads, then the defaults."""
    schema = pipeline.get_schema(slug)
    collected: dict[str, Any] = {}
    for view in schema.params:
        if view.role.value == "prompt":
            collected[view.name] = "a red fox in the snow"
        elif view.media is not None and view.ui is Ui.ASK:
            count = max(view.min_items or 1, 1)
            collected[view.name] = MEDIA_URL if view.type.value == "string" else [MEDIA_URL] * count
    collected.update(given)
    return pipeline.apply_defaults(schema, collected)
