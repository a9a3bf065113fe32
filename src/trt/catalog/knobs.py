"""Runtime knobs on top of the catalogue: what operators may change without a deploy.

The catalogue file stays the single source of models, parameters and price rules; knobs only
replace the exchange rate, the markup (globally or for one model) and switch a model on or off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Knobs:
    usd_rub_rate: Decimal | None = None
    price_markup: Decimal | None = None
    model_markup: Mapping[str, Decimal] = field(default_factory=dict)
    model_enabled: Mapping[str, bool] = field(default_factory=dict)
