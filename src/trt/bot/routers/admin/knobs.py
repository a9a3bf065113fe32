"""Catalogue knobs: models on / off, per-model markup, the rate and the global markup."""

from __future__ import annotations

import html
from decimal import Decimal, InvalidOperation

from aiogram.filters import CommandObject
from aiogram.types import (
    Message,
)

from trt.admin.settings import MARKUP, RATE, RuntimeSettings, model_key
from trt.catalog.pricing import format_money
from trt.i18n import t
from trt.logs import get_logger
from trt.pipeline import UnifiedModelPipeline

log = get_logger(__name__)


# -- catalogue knobs --------------------------------------------------------------------------
async def catalog_text(runtime: RuntimeSettings, lang: str) -> str:
    current = await runtime.current()
    pipeline = runtime.pipeline
    lines = [
        t(
            lang,
            "admin.catalog_title",
            rate=pipeline.rates.usd_rub_rate,
            markup=pipeline.rates.price_markup,
        )
    ]
    for key, value in sorted(current.items()):
        if key.startswith("model:"):
            lines.append(f"  {html.escape(key)} = {html.escape(str(value))}")
    lines.append(t(lang, "admin.catalog_help"))
    return "\n".join(lines)


async def on_model_switch(
    message: Message,
    command: CommandObject,
    lang: str,
    runtime: RuntimeSettings,
    pipeline: UnifiedModelPipeline,
    cid: str | None = None,
) -> None:
    """`/model <slug> on|off|reset`."""
    assert message.from_user is not None
    parts = (command.args or "").split()
    model = pipeline.catalog.get(parts[0]) if parts else None
    if model is None or len(parts) != 2 or parts[1] not in ("on", "off", "reset"):
        await message.answer(t(lang, "admin.model_usage"))
        return
    value = None if parts[1] == "reset" else parts[1] == "on"
    await runtime.set(
        model_key(model.slug, "enabled"), value, admin_id=message.from_user.id, cid=cid
    )
    state = t(lang, "admin.on" if pipeline.is_enabled(model) else "admin.off")
    await message.answer(
        t(lang, "admin.model_set", model=html.escape(model.title.get(lang)), state=state)
    )


async def on_model_markup(
    message: Message,
    command: CommandObject,
    lang: str,
    runtime: RuntimeSettings,
    pipeline: UnifiedModelPipeline,
    cid: str | None = None,
) -> None:
    """`/price <slug> <markup>|reset`: the model's own markup over KIE's cost."""
    assert message.from_user is not None
    parts = (command.args or "").split()
    model = pipeline.catalog.get(parts[0]) if parts else None
    markup = _markup(parts[1]) if len(parts) == 2 else None
    if model is None or (markup is None and (len(parts) != 2 or parts[1] != "reset")):
        await message.answer(t(lang, "admin.price_usage"))
        return
    await runtime.set(
        model_key(model.slug, "markup"),
        str(markup) if markup is not None else None,
        admin_id=message.from_user.id,
        cid=cid,
    )
    price = format_money(pipeline.cheapest_quote(model).amount_kop)
    await message.answer(
        t(lang, "admin.price_set", model=html.escape(model.title.get(lang)), price=price)
    )


async def on_global_knob(
    message: Message,
    command: CommandObject,
    lang: str,
    runtime: RuntimeSettings,
    cid: str | None = None,
) -> None:
    """`/markup <value>|reset` and `/rate <roubles per dollar>|reset`."""
    assert message.from_user is not None
    arg = (command.args or "").strip()
    key = MARKUP if command.command == "markup" else RATE
    value = _markup(arg) if key == MARKUP else _positive(arg)
    if value is None and arg != "reset":
        await message.answer(t(lang, f"admin.{command.command}_usage"))
        return
    await runtime.set(
        key, str(value) if value is not None else None, admin_id=message.from_user.id, cid=cid
    )
    rates = runtime.pipeline.rates
    await message.answer(
        t(lang, "admin.knob_set", rate=rates.usd_rub_rate, markup=rates.price_markup)
    )


def _positive(raw: str) -> Decimal | None:
    try:
        value = Decimal(raw.replace(",", "."))
    except InvalidOperation:
        return None
    return value if 0 < value <= 10_000 else None


def _markup(raw: str) -> Decimal | None:
    value = _positive(raw)
    return value if value is not None and 1 <= value <= 100 else None  # below 1 sells at a loss
