"""The packaged catalogue: coverage of categories and models, defaults, prices, examples."""

from __future__ import annotations

import pytest

from tests.unit.catalog.conftest import complete_params
from trt.bot.callbacks import MAX_CALLBACK_BYTES, catalogue_budget
from trt.catalog.loader import Catalog, default_catalog
from trt.catalog.schema import Category, Family
from trt.catalog.vendor import example_contradictions, example_input, load_vendor
from trt.pipeline import UnifiedModelPipeline

VENDOR = load_vendor()
ALL_SLUGS = sorted(m.slug for m in default_catalog())


def test_at_least_forty_models_cover_every_category(catalog: Catalog) -> None:
    assert len(catalog) >= 40
    for category in Category:
        assert catalog.in_category(category), f"no model in {category.value}"


@pytest.mark.parametrize(
    "kie_id",
    [
        "z-image",
        "google/nano-banana",
        "google/nano-banana-edit",
        "nano-banana-pro",
        "seedream/4.5-text-to-image",
        "google/imagen4",
        "flux-2/pro-text-to-image",
        "gpt-image/1.5-text-to-image",
        "ideogram/v3-text-to-image",
        "qwen/image-edit",
        "recraft/remove-background",
        "recraft/crisp-upscale",
        "topaz/image-upscale",
        "kling-2.6/text-to-video",
        "hailuo/2-3-image-to-video-standard",
        "wan/2-6-text-to-video",
        "bytedance/seedance-1.5-pro",
        "elevenlabs/text-to-speech-turbo-2-5",
    ],
)
def test_launch_models_are_present(catalog: Catalog, kie_id: str) -> None:
    assert catalog.by_kie_id(kie_id) is not None


def test_dedicated_families_are_present(catalog: Catalog) -> None:
    assert catalog.by_kie_id("veo3_fast", Family.VEO) is not None
    assert catalog.by_kie_id("V5", Family.SUNO) is not None


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_every_model_defaults_validate_and_price(pipeline: UnifiedModelPipeline, slug: str) -> None:
    params = complete_params(pipeline, slug)
    result = pipeline.validate(slug, params)
    assert result.ok, [e.message for e in result.errors]
    quote = pipeline.quote(slug, result.params)
    assert quote.amount_kop > 0


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_every_model_fits_the_callback_budget(catalog: Catalog, slug: str) -> None:
    model = catalog.get(slug)
    assert model is not None
    size, _payload = catalogue_budget(model)
    assert size <= MAX_CALLBACK_BYTES


def _examples() -> list[tuple[str, str]]:
    cases = []
    for model in default_catalog():
        vendor_model = VENDOR.models.get((model.family, model.kie_id))
        if vendor_model is not None and not example_contradictions(vendor_model):
            cases.append((model.slug, model.kie_id))
    return cases


EXAMPLES = _examples()


def test_most_catalogue_models_have_a_usable_vendor_example() -> None:
    assert len(EXAMPLES) >= 40


@pytest.mark.parametrize(("slug", "kie_id"), EXAMPLES)
def test_payload_of_a_documented_example_equals_kies_example_body(
    catalog: Catalog, pipeline: UnifiedModelPipeline, slug: str, kie_id: str
) -> None:
    model = catalog.get(slug)
    assert model is not None
    vendor_model = VENDOR.models[(model.family, kie_id)]
    example = vendor_model.example
    assert example is not None
    values = example_input(vendor_model)
    assert values is not None
    payload = pipeline.build_kie_payload(slug, values, callback_url=example.get("callBackUrl"))
    assert payload == example


def test_market_payload_shape_and_string_typed_numbers(pipeline: UnifiedModelPipeline) -> None:
    params = complete_params(pipeline, "kl26t", duration="10")
    result = pipeline.validate("kl26t", params)
    assert result.ok
    body = pipeline.build_kie_payload("kl26t", result.params, callback_url="https://cb/x")
    assert body["model"] == "kling-2.6/text-to-video"
    assert body["callBackUrl"] == "https://cb/x"
    assert body["input"]["duration"] == "10"
    assert body["input"]["sound"] is False


def test_dedicated_payload_is_flat_with_the_model_id(pipeline: UnifiedModelPipeline) -> None:
    params = complete_params(pipeline, "veofast", duration=6)
    result = pipeline.validate("veofast", params)
    assert result.ok, result.errors
    body = pipeline.build_kie_payload("veofast", result.params, callback_url="https://cb/v")
    assert body["model"] == "veo3_fast"
    assert body["duration"] == 6
    assert "input" not in body
    assert body["callBackUrl"] == "https://cb/v"


def test_content_filter_is_always_on_where_the_schema_has_it(
    catalog: Catalog, pipeline: UnifiedModelPipeline
) -> None:
    with_filter = [m.slug for m in catalog if "nsfw_checker" in m.params]
    assert with_filter
    for slug in with_filter:
        params = complete_params(pipeline, slug, nsfw_checker=False)
        assert params["nsfw_checker"] is True, slug


def test_prompt_is_never_defaulted(pipeline: UnifiedModelPipeline) -> None:
    schema = pipeline.get_schema("zimg")
    assert "prompt" not in pipeline.apply_defaults(schema, {})
