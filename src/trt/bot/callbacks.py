"""Callback-data factories: every button's payload, short prefixes, ≤ 64 bytes (Telegram's rule).

Parameters and enum values travel as indexes into the catalogue (stable for one catalogue
version); names would not fit 64 bytes for long parameter names. `catalogue_budget` computes the
longest payload any screen can produce for a model; `check_budget` refuses a catalogue with
one over the limit when the dispatcher is built (catalog/ knows nothing of buttons).
"""

from __future__ import annotations

from collections.abc import Iterable

from aiogram.filters.callback_data import CallbackData

from trt.catalog.loader import CatalogDefect, CatalogError
from trt.catalog.schema import ModelSpec

MAX_CALLBACK_BYTES = 64
# The widest page index a paginated list may show (a generous bound for the budget check).
MAX_PAGE_INDEX = 99


class Menu(CallbackData, prefix="mn"):
    """A top-level screen: main, help (balance and history join them)."""

    screen: str


class Category(CallbackData, prefix="cat"):
    """A category's model list, first page (`cat:image`)."""

    category: str


class CategoryPage(CallbackData, prefix="cp"):
    category: str
    page: int


class ModelCard(CallbackData, prefix="md"):
    slug: str


class StartModel(CallbackData, prefix="go"):
    slug: str


class ParamMenu(CallbackData, prefix="pm"):
    slug: str


class ParamOpen(CallbackData, prefix="po"):
    slug: str
    param: int
    page: int = 0


class ParamSet(CallbackData, prefix="ps"):
    slug: str
    param: int
    value: int


class FlowAction(CallbackData, prefix="fl"):
    """Navigation inside a generation flow: back, cancel, done (uploads), edit (the prompt)."""

    action: str


class Confirm(CallbackData, prefix="cf"):
    """✅ Сгенерировать: the draft key is the idempotency key of the job (reliability §2)."""

    draft: str


class JobAction(CallbackData, prefix="jb"):
    """again | edit | open | resend on one of the user's jobs (ownership checked)."""

    action: str
    job: str


class FollowUp(CallbackData, prefix="fu"):
    """A one-tap next step under a result (`follow_ups` in the catalogue, by index)."""

    job: str
    index: int


class HistoryPage(CallbackData, prefix="hp"):
    page: int


class LangSet(CallbackData, prefix="lg"):
    lang: str


class TopUp(CallbackData, prefix="tu"):
    """A top-up method: a provider's method (stars, yookassa, ...) | manual | promo | invite."""

    method: str


class ReceiptContact(CallbackData, prefix="rc"):
    """«🧾 Изменить e-mail для чека» on a hosted provider's amounts screen."""

    method: str


class StarsBuy(CallbackData, prefix="sb"):
    """A Stars package, by its index in `STARS_PACKAGES`."""

    index: int


class CardBuy(CallbackData, prefix="cb"):
    """A top-up of `rub` roubles on a hosted provider's page (one of its amounts)."""

    method: str
    rub: int


class ManualAmount(CallbackData, prefix="ma"):
    rub: int


class ManualVerdict(CallbackData, prefix="mv"):
    """An admin's ✅ / ❌ on a manual transfer (the admin check is in the handler)."""

    payment: str
    approve: bool


class BalancePage(CallbackData, prefix="bp"):
    page: int


class Refresh(CallbackData, prefix="rf"):
    """🔄 Обновить, shown by a PASSIVE instance: re-opens the screen the user was on."""


def model_callbacks(model: ModelSpec) -> list[CallbackData]:
    """The widest instance of every model-dependent button for `model`."""
    params = list(model.params.values())
    last_param = max(len(params) - 1, 0)
    widest_value = max([len(p.enum or ()) + len(p.choices or ()) for p in params] + [2], default=2)
    return [
        ModelCard(slug=model.slug),
        StartModel(slug=model.slug),
        ParamMenu(slug=model.slug),
        ParamOpen(slug=model.slug, param=last_param, page=MAX_PAGE_INDEX),
        ParamSet(slug=model.slug, param=last_param, value=widest_value - 1),
    ]


def catalogue_budget(model: ModelSpec) -> tuple[int, str]:
    """(bytes, payload) of the longest callback data `model`'s screens can produce."""
    packed = [_unchecked_pack(callback) for callback in model_callbacks(model)]
    longest = max(packed, key=lambda data: len(data.encode()))
    return len(longest.encode()), longest


def check_budget(catalog: Iterable[ModelSpec]) -> None:
    """Refuse to start with a model whose buttons would not fit Telegram's 64 bytes (checked
    when the dispatcher is built, so a bad catalogue never reaches a user's screen)."""
    defects = []
    for model in catalog:
        size, payload = catalogue_budget(model)
        if size > MAX_CALLBACK_BYTES:
            rule = (
                f"callback data {payload!r} is {size} bytes, over Telegram's "
                f"{MAX_CALLBACK_BYTES}: shorten the slug"
            )
            defects.append(CatalogDefect(model.slug, "slug", rule))
    if defects:
        raise CatalogError(defects)


def _unchecked_pack(callback: CallbackData) -> str:
    # aiogram's pack() refuses payloads over 64 bytes; the budget check must measure them.
    values = [str(int(v) if isinstance(v, bool) else v) for v in callback.model_dump().values()]
    return callback.__separator__.join([callback.__prefix__, *values])
