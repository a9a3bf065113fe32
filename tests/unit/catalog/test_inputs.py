"""Uploads, modes and follow-ups in the catalogue (issue 19): what is asked, sent and priced."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.catalog.test_loader import defects_after, model_entry
from trt.bot.flow import Draft, media_wanted, questions
from trt.catalog.pricing import PricingError
from trt.catalog.rules import media_duration, telegram_file_id, telegram_reference
from trt.catalog.vendor import accepted_media, diff, load_vendor
from trt.media import canonical_format, mime_kind, sniff_mime
from trt.pipeline import UnifiedModelPipeline
from trt.sandbox.media import render_png, sample


def test_a_users_upload_carries_its_length() -> None:
    reference = telegram_reference("AgACAgIAAx-_9", 6.2)
    assert reference == "tg:AgACAgIAAx-_9#7"
    assert telegram_file_id(reference) == "AgACAgIAAx-_9"
    assert media_duration(reference) == 7
    assert media_duration(telegram_reference("AgAC")) is None
    assert media_duration("https://files.example/a.mp4") is None


def test_the_bytes_say_what_a_file_is() -> None:
    assert sniff_mime(sample("sample.mp4")) == "video/mp4"
    assert sniff_mime(sample("sample.mp3")) == "audio/mpeg"
    assert sniff_mime(sample("sample.ogg")) == "audio/ogg"
    assert sniff_mime(render_png("x", 8, 8)) == "image/png"
    assert sniff_mime(b"RIFF\0\0\0\0WAVEfmt ") == "audio/wav"
    assert sniff_mime(b"plain text, not media") is None
    assert mime_kind("video/quicktime") == "video"
    assert mime_kind("application/pdf") is None
    assert [canonical_format(f) for f in ("jpg", "x-wav", "mp3", "M4A")] == [
        "jpeg",
        "wav",
        "mpeg",
        "mp4",
    ]


def test_the_mode_decides_what_is_asked_and_sent(pipeline: UnifiedModelPipeline) -> None:
    schema = pipeline.get_schema("veofast")
    asked = [v.name for v in questions(schema, Draft("veofast"))]
    assert asked[:2] == ["generationType", "prompt"]  # text to video: no images
    frames = Draft("veofast", {"generationType": "FIRST_AND_LAST_FRAMES_2_VIDEO"})
    view = next(v for v in questions(schema, frames) if v.name == "imageUrls")
    assert (view.least, view.most, view.optional) == (1, 2, False)
    assert view.label == "Кадры: первый и последний"
    assert media_wanted(view, "ru") == "1–2 фото"
    references = Draft("veofast", {"generationType": "REFERENCE_2_VIDEO"})
    view = next(v for v in questions(schema, references) if v.name == "imageUrls")
    assert (view.least, view.most) == (1, 3)
    # Frames left from another mode are never sent.
    params = pipeline.apply_defaults(schema, {"prompt": "x", "imageUrls": ["tg:a"]})
    assert "imageUrls" not in params
    assert pipeline.validate("veofast", params).ok
    missing = pipeline.validate(
        "veofast", pipeline.apply_defaults(schema, {"prompt": "x", **references.params})
    )
    assert [e.field for e in missing.errors] == ["imageUrls"]
    short = pipeline.validate(
        "veofast",
        pipeline.apply_defaults(
            schema, {"prompt": "x", "imageUrls": ["tg:a"], "duration": 4, **references.params}
        ),
    )
    assert [e.code for e in short.errors] == ["incompatible"]


def test_optional_uploads_come_after_the_prompt(pipeline: UnifiedModelPipeline) -> None:
    schema = pipeline.get_schema("nb2")
    order = [v.name for v in questions(schema, Draft("nb2"))]
    assert order[:2] == ["prompt", "image_input"]
    view = schema.param("image_input")
    assert view.optional
    assert media_wanted(view, "ru") == "до 14 фото"
    assert media_wanted(view, "en") == "up to 14 photos"


def test_own_lyrics_are_a_mode_with_their_own_limits(pipeline: UnifiedModelPipeline) -> None:
    schema = pipeline.get_schema("suno")
    lyrics = "слова " * 150  # 900 characters: too long for a description, fine as lyrics
    simple = pipeline.validate("suno", pipeline.apply_defaults(schema, {"prompt": lyrics}))
    assert [e.code for e in simple.errors] == ["max_length"]
    own = {"prompt": lyrics, "customMode": True, "style": "synthwave", "title": "Море"}
    assert pipeline.validate("suno", pipeline.apply_defaults(schema, own)).ok
    untitled = pipeline.validate(
        "suno", pipeline.apply_defaults(schema, {"prompt": "x", "customMode": True})
    )
    assert sorted(e.field for e in untitled.errors) == ["style", "title"]


def test_an_upload_priced_per_second_and_an_input_that_lowers_the_price(
    pipeline: UnifiedModelPipeline,
) -> None:
    base = {"image_url": "tg:face", "prompt": "hello"}
    seven = pipeline.quote("klavs", {**base, "audio_url": telegram_reference("v", 7)})
    assert seven.credits == 56
    with pytest.raises(PricingError):
        pipeline.quote("klavs", {**base, "audio_url": "https://files.example/v.mp3"})
    too_long = pipeline.validate("klavs", {**base, "audio_url": telegram_reference("v", 16)})
    assert [e.code for e in too_long.errors] == ["duration"]
    assert "от 1 до 15 с, а у файла 16 с" in too_long.errors[0].message
    schema = pipeline.get_schema("sdc2f")
    plain = pipeline.quote("sdc2f", pipeline.apply_defaults(schema, {"prompt": "море"}))
    with_video = pipeline.quote(
        "sdc2f",
        pipeline.apply_defaults(
            schema, {"prompt": "море", "reference_video_urls": [telegram_reference("c", 5)]}
        ),
    )
    assert (plain.credits, with_video.credits) == (165, 100)  # 33 vs 20 credits/s × 5 s


def test_values_not_offered_are_neither_shown_nor_taken(pipeline: UnifiedModelPipeline) -> None:
    view = pipeline.get_schema("veo").param("generationType")
    assert "REFERENCE_2_VIDEO" not in [o.value for o in view.options]
    checked = pipeline.validate(
        "veo", {"prompt": "x", "generationType": "REFERENCE_2_VIDEO", "imageUrls": ["tg:a"]}
    )
    assert "generationType" in [e.field for e in checked.errors]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda raw: model_entry(raw, "veofast")["params"]["imageUrls"]["modes"][0].update(
                when={"nonexistent": 1}
            ),
            "veofast: params.imageUrls.modes[0].when: 'nonexistent' is not a parameter",
        ),
        (
            lambda raw: model_entry(raw, "veofast")["params"]["imageUrls"]["modes"][0].update(
                max_items=9
            ),
            "veofast: params.imageUrls.modes[0].max_items: wider than the parameter's own 3",
        ),
        (
            lambda raw: model_entry(raw, "klavs")["params"]["audio_url"]["media"].pop(
                "max_duration_s"
            ),
            "klavs: price.multiply_by.audio_url: an upload priced per second needs a video or "
            "audio kind with max_duration_s",
        ),
        (
            lambda raw: raw["follow_ups"][0].update(param="upscale_factor"),
            "topaz: follow_ups[0]: 'upscale_factor' is not an upload parameter of topaz",
        ),
        (
            lambda raw: raw["follow_ups"][0].update(after=["video"]),
            "topaz: follow_ups[0]: image_url takes image, not every kind in `after`",
        ),
    ],
)
def test_input_defects_stop_loading(change: Any, expected: str) -> None:
    assert expected in defects_after(change)


def test_a_format_the_vendor_does_not_accept_is_drift(catalog: Any) -> None:
    vendor = load_vendor()
    spec = vendor.models[(catalog.get("klavs").family, "kling/ai-avatar-standard")]
    assert accepted_media(spec.params["image_url"]) == {"image/jpeg", "image/png"}
    raw_model = catalog.get("klavs")
    media = raw_model.params["image_url"].media
    changed = raw_model.params["image_url"].model_copy(
        update={"media": media.model_copy(update={"formats": ("jpeg", "png", "webp")})}
    )
    patched = raw_model.model_copy(update={"params": {**raw_model.params, "image_url": changed}})
    catalog.models["klavs"] = patched
    try:
        findings = [f for f in diff(catalog, vendor) if f.drift]
    finally:
        catalog.models["klavs"] = raw_model
    assert [f.message for f in findings] == [
        "image_url: formats ['image/webp'] not accepted by the vendor"
    ]
