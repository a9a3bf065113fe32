"""Inline keyboards, built from the catalogue and the locale files only.

The keyboards that are the same for every user of a language (the main menu, the way home)
are built once per language and shared: aiogram's markups are frozen, and no caller changes
their rows (a changed keyboard is a new list). The others are built as plain rows, without
aiogram's builder, which deep-copies every button on export.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from trt.bot.callbacks import Category, CategoryPage, Menu, ModelCard, StartModel
from trt.catalog.schema import Category as ModelCategory
from trt.catalog.schema import ModelSpec
from trt.i18n import t

MODELS_PER_PAGE = 8


def pager_row(
    lang: str, page: int, pages: int, callback: Callable[[int], CallbackData]
) -> list[InlineKeyboardButton]:
    """◀️ / ▶️ for a paginated list (empty on a single page); `callback(page)` builds each."""
    row = []
    if page > 0:
        row.append(
            InlineKeyboardButton(text=t(lang, "menu.prev"), callback_data=callback(page - 1).pack())
        )
    if page < pages - 1:
        row.append(
            InlineKeyboardButton(text=t(lang, "menu.next"), callback_data=callback(page + 1).pack())
        )
    return row


MAIN_MENU_ROWS = (1, 2, 2, 2, 1)  # buttons per row, the rest one per row


@functools.cache
def main_menu(lang: str) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(
            text=t(lang, f"menu.{category.value}"),
            callback_data=Category(category=category.value).pack(),
        )
        for category in ModelCategory
    ]
    buttons += [
        InlineKeyboardButton(
            text=t(lang, f"menu.{screen}"), callback_data=Menu(screen=screen).pack()
        )
        for screen in ("balance", "history", "help")
    ]
    rows: list[list[InlineKeyboardButton]] = []
    for size in MAIN_MENU_ROWS:
        if buttons:
            rows.append(buttons[:size])
            buttons = buttons[size:]
    rows += [[button] for button in buttons]
    return InlineKeyboardMarkup(inline_keyboard=rows)


@functools.cache
def home_button(lang: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=t(lang, "menu.home"), callback_data=Menu(screen="main").pack())


@functools.cache
def back_to_menu(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[home_button(lang)]])


def model_list(
    lang: str, category: ModelCategory, models: list[tuple[ModelSpec, str]], page: int
) -> InlineKeyboardMarkup:
    """One button per model («Title · from N ₽»), paginated, then navigation."""
    pages = max(1, -(-len(models) // MODELS_PER_PAGE))
    page = min(max(page, 0), pages - 1)
    rows = [
        [
            InlineKeyboardButton(
                text=t(lang, "catalog.model_button", title=model.title.get(lang), price=price),
                callback_data=ModelCard(slug=model.slug).pack(),
            )
        ]
        for model, price in models[page * MODELS_PER_PAGE : (page + 1) * MODELS_PER_PAGE]
    ]
    navigation = pager_row(
        lang, page, pages, lambda target: CategoryPage(category=category.value, page=target)
    )
    if navigation:
        rows.append(navigation)
    rows.append(
        [InlineKeyboardButton(text=t(lang, "menu.back"), callback_data=Menu(screen="main").pack())]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def model_card(lang: str, model: ModelSpec) -> InlineKeyboardMarkup:
    start = InlineKeyboardButton(
        text=t(lang, "flow.start"), callback_data=StartModel(slug=model.slug).pack()
    )
    back = InlineKeyboardButton(
        text=t(lang, "menu.back"), callback_data=Category(category=model.category.value).pack()
    )
    return InlineKeyboardMarkup(inline_keyboard=[[start], [back, home_button(lang)]])
