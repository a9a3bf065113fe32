"""Each validation rule: a failing case with its message in Russian and in English."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.catalog.conftest import MEDIA_URL, complete_params
from trt.pipeline import UnifiedModelPipeline


def errors_of(
    pipeline: UnifiedModelPipeline, slug: str, lang: str, **changes: Any
) -> list[tuple[str, str, str]]:
    params = complete_params(pipeline, slug)
    for key, value in changes.items():
        if value is ...:
            params.pop(key, None)
        else:
            params[key] = value
    result = pipeline.validate(slug, params, lang)
    return [(e.field, e.code, e.message) for e in result.errors]


CASES = [
    # slug, changes, code, Russian message, English message
    (
        "kl26t",
        {"duration": "7"},
        "enum",
        "Длительность: допустимые значения 5 или 10 с",
        "Duration: allowed values are 5 or 10 s",
    ),
    (
        "kl26t",
        {"aspect_ratio": "4:3"},
        "enum",
        "Формат кадра: допустимые значения 1:1 квадрат, 16:9 горизонтально или 9:16 вертикально",
        "Aspect ratio: allowed values are 1:1 square, 16:9 landscape or 9:16 portrait",
    ),
    ("sdc15", {"duration": 3}, "range", "Длительность: от 4 до 12 с", "Duration: from 4 to 12 s"),
    (
        "zimg",
        {"prompt": "x" * 1001},
        "max_length",
        "Описание: не длиннее 1000 символов",
        "Prompt: at most 1000 characters",
    ),
    (
        "sd5le",
        {"prompt": "ab"},
        "min_length",
        "Описание: не короче 3 символов",
        "Prompt: at least 3 characters",
    ),
    (
        "kl26i",
        {"image_urls": [MEDIA_URL, MEDIA_URL]},
        "max_items",
        "Фото: можно не больше 1 файла",
        "Photos: at most 1 file",
    ),
    (
        "nbedit",
        {"image_urls": []},
        "min_items",
        "Фото: нужно не меньше 1 файла",
        "Photos: at least 1 file",
    ),
    (
        "rmbg",
        {"image": "not a link"},
        "url",
        "Фото: нужен загруженный файл",
        "Photo: an uploaded file is needed",
    ),
    (
        "sdc2f",
        {"duration": "five"},
        "type",
        "Длительность: нужно целое число",
        "Duration: a whole number expected",
    ),
    (
        "tts25",
        {"speed": "fast"},
        "type",
        "Скорость речи: нужно число",
        "Speech speed: a number expected",
    ),
    (
        "kl26t",
        {"sound": "maybe"},
        "type",
        "Звук: нужно «да» или «нет»",
        "Sound: yes or no expected",
    ),
    ("zimg", {"prompt": 42}, "type", "Описание: нужен текст", "Prompt: text expected"),
    ("nbedit", {"image_urls": {"a": 1}}, "type", "Фото: нужен список", "Photos: a list expected"),
    (
        "nbedit",
        {"image_urls": [1]},
        "item_type",
        "Фото: неверный элемент списка",
        "Photos: invalid list item",
    ),
    ("zimg", {"prompt": ...}, "required", "Описание: обязательный параметр", "Prompt: required"),
    (
        "zimg",
        {"colour": "red"},
        "unknown",
        "Неизвестный параметр: colour",
        "Unknown parameter: colour",
    ),
    (
        "hl23s",
        {"duration": "10", "resolution": "1080P"},
        "incompatible",
        "Нельзя сочетать: Длительность 10 с + Разрешение 1080P",
        "Cannot combine: Duration 10 s + Resolution 1080P",
    ),
]


@pytest.mark.parametrize(("slug", "changes", "code", "ru", "en"), CASES)
def test_rule_message_in_both_languages(
    pipeline: UnifiedModelPipeline, slug: str, changes: dict[str, Any], code: str, ru: str, en: str
) -> None:
    assert [(c, m) for _f, c, m in errors_of(pipeline, slug, "ru", **changes)] == [(code, ru)]
    assert [(c, m) for _f, c, m in errors_of(pipeline, slug, "en", **changes)] == [(code, en)]


def test_every_rule_code_has_a_case() -> None:
    codes = {case[2] for case in CASES}
    assert codes >= {
        "enum",
        "range",
        "max_length",
        "min_length",
        "max_items",
        "min_items",
        "url",
        "type",
        "item_type",
        "required",
        "unknown",
        "incompatible",
    }


def test_one_error_per_broken_rule(pipeline: UnifiedModelPipeline) -> None:
    found = errors_of(pipeline, "kl26t", "ru", duration="7", sound="maybe", extra=1)
    assert sorted(code for _f, code, _m in found) == ["enum", "type", "unknown"]


def test_unknown_model_is_an_error_not_an_exception(pipeline: UnifiedModelPipeline) -> None:
    result = pipeline.validate("no-such-model", {}, "en")
    assert [e.message for e in result.errors] == ["Model “no-such-model” not found"]


@pytest.mark.parametrize(
    ("slug", "field", "typed", "expected"),
    [
        ("sdc2f", "duration", "10", 10),  # integer field: digits become an integer
        ("sdc15", "duration", "7,5", 7.5),  # number field: a decimal comma is accepted
        ("kl26t", "duration", 10, "10"),  # string enum of numbers: 10 becomes "10"
        ("kl26t", "sound", "да", True),
        ("rmbg", "image", MEDIA_URL, MEDIA_URL),
        ("kl26i", "image_urls", MEDIA_URL, [MEDIA_URL]),  # one upload into a list
    ],
)
def test_typed_values_are_coerced_where_the_schema_allows(
    pipeline: UnifiedModelPipeline, slug: str, field: str, typed: Any, expected: Any
) -> None:
    params = complete_params(pipeline, slug)
    params[field] = typed
    result = pipeline.validate(slug, params)
    assert result.ok, result.errors
    assert result.params[field] == expected


def test_a_slug_or_a_kie_id_resolves(pipeline: UnifiedModelPipeline) -> None:
    assert pipeline.resolve_model("kl26t") is pipeline.resolve_model("kling-2.6/text-to-video")
    assert pipeline.resolve_model("veo3").slug == "veo"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
slugs = st.sampled_from(
    ["zimg", "kl26t", "sdc15", "nbedit", "rmbg", "tts25", "veofast", "suno", "hl23s", "nope"]
)


@settings(max_examples=400, deadline=None)
@given(
    slug=slugs,
    params=st.dictionaries(
        st.sampled_from(
            [
                "prompt",
                "duration",
                "sound",
                "image_urls",
                "image",
                "aspect_ratio",
                "text",
                "speed",
                "resolution",
                "mode",
                "x",
                "",
            ]
        )
        | st.text(max_size=8),
        json_values,
        max_size=8,
    ),
    lang=st.sampled_from(["ru", "en"]),
)
def test_validate_never_raises(
    pipeline: UnifiedModelPipeline, slug: str, params: dict[str, Any], lang: str
) -> None:
    result = pipeline.validate(slug, params, lang)
    if result.ok:
        # A clean result always builds a payload and a price.
        pipeline.build_kie_payload(slug, result.params)
        assert pipeline.quote(slug, result.params).amount_kop >= 0
    else:
        assert all(error.message for error in result.errors)


@settings(max_examples=100, deadline=None)
@given(params=st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers())))
def test_validate_rejects_non_mapping_input(pipeline: UnifiedModelPipeline, params: Any) -> None:
    assert not pipeline.validate("zimg", params).ok
