from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from trt.catalog.loader import Catalog, default_catalog
from trt.catalog.pricing import Rates
from trt.catalog.rules import telegram_reference
from trt.catalog.schema import MediaKind, Ui
from trt.pipeline import ParamView, UnifiedModelPipeline

RATES = Rates(usd_rub_rate=Decimal("100"), price_markup=Decimal("2"))
MEDIA_URL = "https://files.example/input.png"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return default_catalog()


@pytest.fixture(scope="session")
def pipeline(catalog: Catalog) -> UnifiedModelPipeline:
    return UnifiedModelPipeline(catalog, RATES)


def sample_media(view: ParamView) -> str:
    """One file for an upload step: a URL for images; for video and audio a user's upload
    whose length (within the step's limits) Telegram reported, as per-second prices need."""
    assert view.media is not None
    if view.media.kind is MediaKind.IMAGE:
        return MEDIA_URL
    low, high = view.media.min_duration_s or 1, view.media.max_duration_s or 5
    return telegram_reference(f"sample-{view.media.kind.value}", max(low, min(high, 5)))


def complete_params(
    pipeline: UnifiedModelPipeline,
    slug: str,
    *,
    media: Callable[[ParamView], Any] = sample_media,
    **given: Any,
) -> dict[str, Any]:
    """What a finished conversation collects: the mode's uploads, a prompt, then defaults."""
    schema = pipeline.get_schema(slug)
    collected: dict[str, Any] = {
        name: value for name, value in given.items() if name in schema.controllers
    }
    for view in schema.in_mode(collected):
        if view.role.value == "prompt":
            collected[view.name] = "a red fox in the snow"
        elif view.media is not None and view.ui is Ui.ASK:
            count = view.least
            one = media(view)
            collected[view.name] = one if view.type.value == "string" else [one] * count
    collected.update(given)
    return pipeline.apply_defaults(schema, collected)
