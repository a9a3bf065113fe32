"""Categories and model cards, straight from the catalogue."""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.types import CallbackQuery

from trt.bot.callbacks import Category, CategoryPage, ModelCard
from trt.bot.keyboards import main_menu, model_card, model_list
from trt.bot.screens import show
from trt.catalog.pricing import format_money
from trt.catalog.schema import Category as ModelCategory
from trt.catalog.schema import ModelSpec, Role, Ui
from trt.i18n import t
from trt.pipeline import CATEGORY_ICONS, UnifiedModelPipeline, format_eta
from trt.telemetry.events import Reason, reject


def build() -> Router:
    """A fresh router (a router can belong to one dispatcher; tests build several)."""
    router = Router(name=__name__)
    router.callback_query.register(on_category, Category.filter())
    router.callback_query.register(on_category_page, CategoryPage.filter())
    router.callback_query.register(on_model, ModelCard.filter(), flags={"manual_answer": True})
    return router


def starting_price(pipeline: UnifiedModelPipeline, model: ModelSpec, lang: str) -> str:
    """«от N ₽» (the cheapest value of every priced choice), or «бесплатно»."""
    if model.free:
        return t(lang, "catalog.free")
    return t(
        lang,
        "catalog.price_from",
        price=format_money(pipeline.cheapest_quote(model).amount_kop),
    )


def needs(model: ModelSpec, lang: str) -> str:
    parts = []
    if model.prompt_param is not None:
        parts.append(t(lang, "catalog.needs_prompt"))
    for spec in model.params.values():
        if spec.role is Role.MEDIA and spec.ui is Ui.ASK and spec.media is not None:
            label = t(lang, f"catalog.needs_{spec.media.kind.value}")
            if label not in parts:
                parts.append(label)
    return ", ".join(parts)


async def _show_category(
    callback: CallbackQuery,
    pipeline: UnifiedModelPipeline,
    lang: str,
    category: ModelCategory,
    page: int,
) -> None:
    models = pipeline.listed(category)
    priced = [(model, starting_price(pipeline, model, lang)) for model in models]
    text = t(
        lang,
        "catalog.category",
        icon=CATEGORY_ICONS[category],
        title=html.escape(t(lang, f"menu.{category.value}").split(" ", 1)[-1]),
        count=len(models),
    )
    await show(callback, text, model_list(lang, category, priced, page))


async def _category(callback: CallbackQuery, value: str, lang: str) -> ModelCategory | None:
    """The category a button names; a forged or retired one is answered, not raised."""
    try:
        return ModelCategory(value)
    except ValueError:
        reject(Reason.VALIDATION_FAILED, f"unknown category {value[:32]!r}")
        await show(callback, t(lang, "flow.stale"), main_menu(lang))
        return None


async def on_category(
    callback: CallbackQuery, callback_data: Category, lang: str, pipeline: UnifiedModelPipeline
) -> None:
    category = await _category(callback, callback_data.category, lang)
    if category is not None:
        await _show_category(callback, pipeline, lang, category, 0)


async def on_category_page(
    callback: CallbackQuery, callback_data: CategoryPage, lang: str, pipeline: UnifiedModelPipeline
) -> None:
    category = await _category(callback, callback_data.category, lang)
    if category is not None:
        await _show_category(callback, pipeline, lang, category, callback_data.page)


async def on_model(
    callback: CallbackQuery, callback_data: ModelCard, lang: str, pipeline: UnifiedModelPipeline
) -> None:
    model = pipeline.catalog.get(callback_data.slug)
    if model is None or not pipeline.is_enabled(model):
        await callback.answer(t(lang, "catalog.disabled"), show_alert=True)
        return
    await callback.answer()
    text = t(
        lang,
        "catalog.card",
        icon=CATEGORY_ICONS[model.category],
        title=model.title.get(lang),
        description=model.description.get(lang),
        price=starting_price(pipeline, model, lang),
        needs=needs(model, lang),
        eta=format_eta(model.typical_duration_s, lang),
    )
    await show(callback, text, model_card(lang, model))
