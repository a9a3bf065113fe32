"""The one price function: KIE credits → USD → roubles, in integer kopecks.

Every price a user ever sees comes from `quote`. Money is `Decimal` until the final rounding,
which is always up, to whole kopecks, so TRT never sells below cost × markup. What a screen shows
is that same amount to the kopeck (`format_money`): the price shown is the price held and charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from trt.catalog.rules import media_duration, media_items
from trt.catalog.schema import ModelSpec, PriceSpec, table_key
from trt.errors import TrtError

USD_PER_CREDIT = Decimal("0.005")


class PricingError(TrtError, ValueError):
    """The parameters do not determine a price (a missing or unpriced value)."""


@dataclass(frozen=True, slots=True)
class Rates:
    """What turns credits into roubles: exchange rate and markup (both from config or admin)."""

    usd_rub_rate: Decimal
    price_markup: Decimal

    def __post_init__(self) -> None:
        assert self.usd_rub_rate > 0, "USD_RUB_RATE must be positive"
        assert self.price_markup >= 1, "PRICE_MARKUP below 1 sells under cost"


@dataclass(frozen=True, slots=True)
class Quote:
    credits: Decimal
    usd: Decimal
    amount_kop: int


def credits_for(price: PriceSpec, params: dict[str, Any]) -> Decimal:
    """KIE credits one run with `params` costs; raises `PricingError` when undetermined."""
    if price.table is not None:
        try:
            values = [params[name] for name in price.by]
        except KeyError as missing:
            raise PricingError(f"priced parameter {missing} has no value") from None
        key = table_key(values)
        if key not in price.table:
            raise PricingError(f"no price for {dict(zip(price.by, values, strict=True))}")
        credits = price.table[key]
    else:
        assert price.credits is not None
        credits = price.credits
    for name in price.multiply_by:
        factor = _decimal(params.get(name), name)
        credits *= factor
    if price.per_1000_chars is not None:
        text = params.get(price.per_1000_chars)
        if not isinstance(text, str):
            raise PricingError(f"{price.per_1000_chars} has no text")
        credits = credits * Decimal(len(text)) / Decimal(1000)
    assert credits >= 0
    return credits


def priced_values(model: ModelSpec, params: dict[str, Any]) -> dict[str, Any]:
    """`params` as the price rule reads them: an upload named in `by` counts as given or not
    (`true` / `false`), one named in `multiply_by` as its length in seconds (all its files)."""
    price = model.price
    values = dict(params)
    for name in (*price.by, *price.multiply_by):
        spec = model.params.get(name)
        if spec is None or not spec.is_media:
            continue
        items = media_items(params.get(name))
        if name in price.by:
            values[name] = bool(items)
            continue
        seconds = [media_duration(item) for item in items]
        if not items or any(s is None for s in seconds):
            raise PricingError(f"the length of {name} is unknown")
        values[name] = sum(s for s in seconds if s is not None)
    return values


def quote(model: ModelSpec, params: dict[str, Any], rates: Rates) -> Quote:
    """The price of one run of `model` with `params` (which include the defaults)."""
    credits = credits_for(model.price, priced_values(model, params))
    usd = credits * USD_PER_CREDIT
    rubles = usd * rates.usd_rub_rate * rates.price_markup
    kopecks = int((rubles * 100).to_integral_value(rounding=ROUND_CEILING))
    return Quote(credits=credits, usd=usd, amount_kop=kopecks)


def format_money(amount_kop: int) -> str:
    """«1 234,50 ₽»: every amount a user or operator sees, exact to the kopeck (kopecks shown
    only when there are any; thin-space thousands)."""
    sign = "−" if amount_kop < 0 else ""
    rubles, kopecks = divmod(abs(amount_kop), 100)
    whole = f"{rubles:,}".replace(",", "\u202f")
    return f"{sign}{whole},{kopecks:02d} ₽" if kopecks else f"{sign}{whole} ₽"


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise PricingError(f"{name} has no numeric value")
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise PricingError(f"{name}={value!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise PricingError(f"{name}={value!r} is not a usable multiplier")
    return number
