"""The one price function: every rule type, rounding, and the confirmation screen."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.unit.catalog.conftest import RATES, complete_params
from trt.catalog.pricing import PricingError, Rates, credits_for, format_money, quote
from trt.catalog.schema import PriceSpec
from trt.pipeline import UnifiedModelPipeline


def price(spec: dict[str, object], params: dict[str, object]) -> Decimal:
    return credits_for(PriceSpec.model_validate(spec), params)


def test_fixed_price() -> None:
    assert price({"credits": 0.8}, {}) == Decimal("0.8")


def test_price_by_enum_value() -> None:
    spec = {"by": ["resolution"], "table": {"1K": 8, "2K": 12, "4K": 18}}
    assert price(spec, {"resolution": "2K"}) == 12


def test_price_by_two_values_including_a_boolean() -> None:
    spec = {"by": ["sound", "duration"], "table": {"false|5": 55, "true|5": 110}}
    assert price(spec, {"sound": True, "duration": "5"}) == 110


def test_price_per_second_of_duration() -> None:
    spec = {"by": ["mode"], "table": {"std": 14, "pro": 18}, "multiply_by": ["duration"]}
    assert price(spec, {"mode": "pro", "duration": "10"}) == 180


def test_price_per_output_count() -> None:
    spec = {"credits": 6, "multiply_by": ["num_images"]}
    assert price(spec, {"num_images": "3"}) == 18


def test_price_per_thousand_characters() -> None:
    spec = {"credits": 6, "per_1000_chars": "text"}
    assert price(spec, {"text": "x" * 2500}) == 15


def test_unpriced_combination_is_an_error() -> None:
    spec = {"by": ["resolution"], "table": {"1K": 8}}
    with pytest.raises(PricingError):
        price(spec, {"resolution": "8K"})
    with pytest.raises(PricingError):
        price(spec, {})


def test_credits_to_kopecks_round_up() -> None:
    # 0.8 credits = $0.004; × 95 ₽/$ × 1.5 = 0.57 ₽ exactly → 57 kopecks, shown as 0,57 ₽.
    rates = Rates(usd_rub_rate=Decimal("95"), price_markup=Decimal("1.5"))
    from trt.catalog.loader import default_catalog

    model = default_catalog().get("zimg")
    assert model is not None
    result = quote(model, {"aspect_ratio": "1:1"}, rates)
    assert result.usd == Decimal("0.0040")
    assert result.amount_kop == 57
    assert format_money(result.amount_kop) == "0,57 ₽"  # shown as charged
    # A fraction of a kopeck is charged as a whole kopeck, never dropped.
    rates = Rates(usd_rub_rate=Decimal("95.01"), price_markup=Decimal("1.5"))
    assert quote(model, {"aspect_ratio": "1:1"}, rates).amount_kop == 58


def test_rates_refuse_selling_below_cost() -> None:
    with pytest.raises(AssertionError):
        Rates(usd_rub_rate=Decimal("95"), price_markup=Decimal("0.5"))


def test_kling_three_price_end_to_end(pipeline: UnifiedModelPipeline) -> None:
    params = complete_params(pipeline, "kl30", duration="10", mode="pro", sound=True)
    # 27 credits/s × 10 s = 270 credits = $1.35 × 100 ₽ × 2 = 270 ₽.
    assert pipeline.quote("kl30", params).amount_kop == 27_000


def test_money_formatting() -> None:
    assert format_money(2_370) == "23,70 ₽"  # never rounded for show: shown is charged
    assert format_money(123_456_00) == "123\u202f456 ₽"
    assert format_money(47_635) == "476,35 ₽"
    assert format_money(50_000) == "500 ₽"
    assert format_money(-150) == "−1,50 ₽"


def test_confirmation_text(pipeline: UnifiedModelPipeline) -> None:
    model = pipeline.resolve_model("kl26t")
    params = complete_params(pipeline, "kl26t", prompt="<b>кот</b> & пёс", duration="10")
    quoted = pipeline.quote("kl26t", params)
    text = pipeline.format_confirmation_text(model, params, quoted, 100_000, "ru")
    assert text.splitlines()[0] == "🎬 <b>Kling 2.6</b>"
    assert "Описание: «&lt;b&gt;кот&lt;/b&gt; &amp; пёс»" in text
    assert "Длительность: 10 с" in text
    assert "Звук: нет" in text
    assert "💰 Цена: 110 ₽" in text  # 110 credits × $0.005 × 100 ₽/$ × 2
    assert "💳 Баланс после: 890 ₽" in text
    assert "⏱ Примерно 3 мин" in text
    assert "nsfw" not in text.lower()


def test_confirmation_says_how_much_is_missing(pipeline: UnifiedModelPipeline) -> None:
    model = pipeline.resolve_model("kl26t")
    params = complete_params(pipeline, "kl26t")
    quoted = pipeline.quote("kl26t", params)
    text = pipeline.format_confirmation_text(model, params, quoted, 5_000, "en")
    assert "💰 Price: 55 ₽" in text
    assert "❗ Missing: 5 ₽ — top up your balance" in text


def test_confirmation_of_a_free_run(pipeline: UnifiedModelPipeline) -> None:
    model = pipeline.resolve_model("zimg")
    params = complete_params(pipeline, "zimg")
    quoted = pipeline.quote("zimg", params)
    text = pipeline.format_confirmation_text(model, params, quoted, 1_000, "ru", free_left=2)
    assert "💰 Цена: бесплатно, осталось 2 сегодня" in text
    assert "💳 Баланс после: 10 ₽" in text


def test_long_prompts_are_shortened_within_telegram_limits(pipeline: UnifiedModelPipeline) -> None:
    model = pipeline.resolve_model("nb2")
    params = complete_params(pipeline, "nb2", prompt="слово " * 4000)
    quoted = pipeline.quote("nb2", params)
    text = pipeline.format_confirmation_text(model, params, quoted, 0, "ru")
    assert len(text) <= 1024


def test_rates_from_configuration_change_the_price() -> None:
    from trt.catalog.loader import default_catalog

    model = default_catalog().get("nb2")
    assert model is not None
    cheap = quote(model, {"resolution": "1K"}, RATES).amount_kop
    dear = quote(model, {"resolution": "1K"}, Rates(Decimal("100"), Decimal("3"))).amount_kop
    assert (cheap, dear) == (800, 1200)
