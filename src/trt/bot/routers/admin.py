"""The operator's panel inside Telegram: /admin, stats with a chart, users, catalogue knobs, jobs.

Every handler here runs behind `AdminOnly` (a middleware on this router): a command or a
callback from anyone not in `ADMIN_IDS` — callback data can be forged by any client — gets a
polite refusal, changes nothing and is logged ACCESS_DENIED. Every change is audited.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from aiogram import BaseMiddleware, Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    TelegramObject,
)

from trt.admin.broadcast import BroadcastService, Progress
from trt.admin.operations import Operations, UserCard, chart_png
from trt.admin.settings import MARKUP, RATE, RuntimeSettings, model_key
from trt.billing.ledger import InsufficientFundsError
from trt.bot.routers import support
from trt.bot.routers.payments import on_refund_command, refund_payment
from trt.catalog.pricing import format_money
from trt.config import Config
from trt.i18n import t
from trt.kie.client import KieClient
from trt.kie.errors import KieError
from trt.logs import get_logger
from trt.payments.providers import Providers
from trt.payments.service import REFUNDING, SUCCEEDED, PaymentService
from trt.pipeline import UnifiedModelPipeline
from trt.telemetry.events import Reason, reject
from trt.users import parse_id

log = get_logger(__name__)
MAX_ADJUST_KOP = 100_000_000  # 1 000 000 ₽ in one adjustment: anything more is a typo
PERIODS = (1, 7, 30)
ADMIN_COMMANDS = (
    "admin",
    "stats",
    "user",
    "adjust",
    "block",
    "unblock",
    "model",
    "price",
    "markup",
    "rate",
    "jobs",
    "refund_job",
    "broadcast",
    "trace",
    "refund",
)
SEGMENTS: dict[str, dict[str, Any]] = {
    "all": {"kind": "all"},
    "ru": {"kind": "lang", "lang": "ru"},
    "en": {"kind": "lang", "lang": "en"},
    "a7": {"kind": "active", "days": 7},
    "a30": {"kind": "active", "days": 30},
    "paid": {"kind": "paid"},
}


class BroadcastFlow(StatesGroup):
    text = State()


class Admin(CallbackData, prefix="ad"):
    """A panel button: section (stats, users, catalog, jobs, block, unblock) and its argument."""

    section: str
    arg: str = ""


class AdminOnly(BaseMiddleware):
    """Refuse anyone not in ADMIN_IDS before an admin handler runs: ACCESS_DENIED, no change."""

    def __init__(self, admin_ids: frozenset[int]) -> None:
        self.admin_ids = admin_ids

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("event_from_user")
        if user is not None and user.id in self.admin_ids:
            return await handler(event, data)
        lang = str(data.get("lang", "ru"))
        reject(Reason.ACCESS_DENIED, "an admin action by a non-admin")
        if isinstance(event, CallbackQuery):
            await event.answer(t(lang, "errors.denied"), show_alert=True)
        elif isinstance(event, Message):
            await event.answer(t(lang, "fallback.text_hint"))
        return None


def build(config: Config) -> Router:
    router = Router(name=__name__)
    guard = AdminOnly(config.admin.admin_ids)
    router.message.middleware(guard)
    router.callback_query.middleware(guard)
    commands: dict[str, Callable[..., Awaitable[None]]] = {
        "admin": on_admin,
        "stats": on_stats_command,
        "user": on_user_command,
        "adjust": on_adjust,
        "block": on_block_command,
        "unblock": on_block_command,
        "model": on_model_switch,
        "price": on_model_markup,
        "markup": on_global_knob,
        "rate": on_global_knob,
        "jobs": on_jobs_command,
        "refund_job": on_refund_job,
        "broadcast": on_broadcast_command,
        "trace": support.on_trace,
        "refund": on_refund_command,
    }
    assert set(commands) == set(ADMIN_COMMANDS)
    for name, handler in commands.items():
        router.message.register(handler, Command(name))
    router.message.register(on_broadcast_text, BroadcastFlow.text, F.text, ~F.text.startswith("/"))
    router.callback_query.register(on_panel, Admin.filter(), flags={"manual_answer": True})
    return router


def _button(text: str, section: str, arg: str = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=Admin(section=section, arg=arg).pack())


def panel_markup(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                _button(t(lang, "admin.stats"), "stats", "1"),
                _button(t(lang, "admin.users"), "users"),
            ],
            [_button(t(lang, "admin.catalog"), "catalog"), _button(t(lang, "admin.jobs"), "jobs")],
        ]
    )


async def on_admin(message: Message, lang: str) -> None:
    await message.answer(t(lang, "admin.panel"), reply_markup=panel_markup(lang))


# -- stats ----------------------------------------------------------------------------------
async def stats_text(operations: Operations, kie: KieClient | None, days: int, lang: str) -> str:
    stats = await operations.stats(days)
    lines = [
        t(lang, "admin.stats_title", days=days),
        t(
            lang,
            "admin.stats_users",
            total=stats.users_total,
            new=stats.users_new,
            active=stats.users_active,
        ),
        t(
            lang,
            "admin.stats_money",
            revenue=format_money(stats.revenue_kop),
            refunds=stats.refunds,
            refunded=format_money(stats.refunded_kop),
        ),
    ]
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(stats.jobs_by_status.items()))
    lines.append(
        t(
            lang,
            "admin.stats_jobs",
            total=sum(stats.jobs_by_status.values()),
            statuses=statuses or "—",
        )
    )
    models = ", ".join(f"{k} {v}" for k, v in stats.jobs_by_model.most_common(8))
    lines.append(t(lang, "admin.stats_models", models=models or "—"))
    topups = ", ".join(
        f"{method} {count} ({format_money(amount)})"
        for method, (count, amount) in sorted(stats.topups.items())
    )
    lines.append(t(lang, "admin.stats_topups", topups=topups or "—"))
    failures = ", ".join(
        f"{m} {rate:.0%}" for m, rate in sorted(stats.failure_rate_by_model.items())
    )
    # Error codes come from KIE (its failCode is free text): escaped like any outside text.
    codes = ", ".join(
        f"{html.escape(str(c)[:32])} {n}" for c, n in stats.failures_by_code.most_common(5)
    )
    lines.append(t(lang, "admin.stats_failures", models=failures or "—", codes=codes or "—"))
    average = f"{stats.average_result_s:.0f} s" if stats.average_result_s is not None else "—"
    lines.append(t(lang, "admin.stats_average", average=average))
    if kie is not None:
        try:
            credits = await kie.credit()
            line = t(lang, "admin.stats_kie", credits=credits)
            if credits < KIE_LOW_CREDITS:
                line += " " + t(lang, "admin.stats_kie_low")
            lines.append(line)
        except KieError as error:
            error_text = html.escape(str(error)[:100])  # cut first: never half an entity
            lines.append(t(lang, "admin.stats_kie_unknown", error=error_text))
    return "\n".join(lines)


KIE_LOW_CREDITS = 1000


def stats_markup(lang: str, days: int) -> InlineKeyboardMarkup:
    row = [
        _button(("• " if d == days else "") + t(lang, "admin.period", days=d), "stats", str(d))
        for d in PERIODS
    ]
    return InlineKeyboardMarkup(
        inline_keyboard=[
            row,
            [_button(t(lang, "admin.chart"), "chart", "30")],
            [_button(t(lang, "menu.back"), "panel")],
        ]
    )


async def on_stats_command(
    message: Message,
    command: CommandObject,
    lang: str,
    operations: Operations,
    kie: KieClient | None = None,
) -> None:
    arg = (command.args or "").strip()
    days = int(arg) if arg in {"1", "7", "30"} else 1
    await message.answer(
        await stats_text(operations, kie, days, lang), reply_markup=stats_markup(lang, days)
    )


# -- the panel's buttons ----------------------------------------------------------------------
async def on_panel(
    callback: CallbackQuery,
    callback_data: Admin,
    lang: str,
    bot: Bot,
    operations: Operations,
    runtime: RuntimeSettings,
    config: Config,
    cid: str | None = None,
    kie: KieClient | None = None,
    broadcasts: BroadcastService | None = None,
    payments: PaymentService | None = None,
    providers: Providers | None = None,
) -> None:
    await callback.answer()
    message = callback.message
    if not isinstance(message, Message):
        return
    section, arg = callback_data.section, callback_data.arg
    if section == "panel":
        await message.edit_text(t(lang, "admin.panel"), reply_markup=panel_markup(lang))
    elif section == "stats":
        days = int(arg) if arg in {"1", "7", "30"} else 1
        await message.edit_text(
            await stats_text(operations, kie, days, lang), reply_markup=stats_markup(lang, days)
        )
    elif section == "chart":
        png = chart_png(await operations.daily(30), t(lang, "admin.chart_title"))
        await bot.send_photo(
            message.chat.id,
            BufferedInputFile(png, "trt-30-days.png"),
            caption=t(lang, "admin.chart_title"),
        )
    elif section == "users":
        await message.edit_text(t(lang, "admin.users_help"), reply_markup=_back(lang))
    elif section == "catalog":
        await message.edit_text(await catalog_text(runtime, lang), reply_markup=_back(lang))
    elif section == "jobs":
        await message.edit_text(await jobs_text(operations, lang), reply_markup=_back(lang))
    elif section.startswith("bc") and broadcasts is not None:
        await on_broadcast_button(
            message, lang, broadcasts, section, arg, callback.from_user.id, cid
        )
    elif section == "refund" and payments is not None:
        # One tap asks, the second refunds: money moves only on «✅ Да, вернуть».
        found = await payments.get(arg) if len(arg) == 32 else None
        if found is None:
            reject(Reason.VALIDATION_FAILED, "refund of an unknown payment")
            return
        confirm = InlineKeyboardMarkup(
            inline_keyboard=[
                [_button(t(lang, "admin.refund_confirm"), "refund_ok", found.id)],
                [_button(t(lang, "menu.back"), "panel")],
            ]
        )
        ask = t(
            lang,
            "admin.refund_ask",
            amount=format_money(found.amount_kop),
            method=found.method,
            payment=found.id,
            user_id=found.user_id,
        )
        await message.edit_text(ask, reply_markup=confirm)
    elif section == "refund_ok" and payments is not None and providers is not None:
        said = await refund_payment(arg[:64], lang, providers, payments, cid)
        await message.edit_text(said, reply_markup=_back(lang))
    elif section in ("block", "unblock") and (target := parse_id(arg)) is not None:
        await _set_blocked(
            message,
            lang,
            operations,
            providers,
            target,
            section == "block",
            callback.from_user.id,
            cid,
        )
    else:
        reject(Reason.VALIDATION_FAILED, f"unknown admin section {section!r}")


def _back(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[_button(t(lang, "menu.back"), "panel")]])


# -- users ----------------------------------------------------------------------------------
def user_markup(card: UserCard, lang: str, providers: Providers | None) -> InlineKeyboardMarkup:
    """Block / unblock, and «↩️ Вернуть» under each payment that can be refunded."""
    if card.is_blocked:
        button = _button(t(lang, "admin.unblock"), "unblock", str(card.user_id))
    else:
        button = _button(t(lang, "admin.block"), "block", str(card.user_id))
    rows = [[button]]
    for payment_id, method, status, amount in card.payments:
        # A payment can be refunded by its provider (a manual transfer has none).
        refundable = providers is not None and providers.get(method) is not None
        if status in (SUCCEEDED, REFUNDING) and refundable:
            label = t(lang, "admin.refund_button", amount=format_money(amount), method=method)
            rows.append([_button(label, "refund", payment_id)])
    rows.append([_button(t(lang, "menu.back"), "panel")])
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def user_screen(
    operations: Operations, providers: Providers | None, user_id: int, lang: str
) -> tuple[str, InlineKeyboardMarkup] | None:
    card = await operations.user_card(user_id)
    if card is None:
        return None
    jobs = "\n".join(
        f"  {j[1]} · {j[2]} · {format_money(j[3])} · <code>{j[4] or '-'}</code>" for j in card.jobs
    )
    payments = "\n".join(
        f"  {p[1]} · {p[2]} · {format_money(p[3])} · <code>{p[0]}</code>" for p in card.payments
    )
    text = t(
        lang,
        "admin.user_card",
        user_id=card.user_id,
        username=html.escape(f"@{card.username}" if card.username else "—"),
        language=card.language,
        blocked=t(lang, "common.yes_word" if card.is_blocked else "common.no_word"),
        created=card.created_at.strftime("%d.%m.%Y"),
        available=format_money(card.balance.available_kop),
        held=format_money(card.balance.held_kop),
        jobs=jobs or "  —",
        payments=payments or "  —",
    )
    return text, user_markup(card, lang, providers)


async def on_user_command(
    message: Message,
    command: CommandObject,
    lang: str,
    operations: Operations,
    providers: Providers | None = None,
) -> None:
    query = (command.args or "").strip()
    user_id = await operations.find_user(query) if query else None
    shown = await user_screen(operations, providers, user_id, lang) if user_id is not None else None
    if user_id is None or shown is None:
        await message.answer(t(lang, "admin.user_unknown", query=html.escape(query or "—")))
        return
    await message.answer(shown[0], reply_markup=shown[1])


async def on_adjust(
    message: Message,
    command: CommandObject,
    lang: str,
    operations: Operations,
    cid: str | None = None,
) -> None:
    """`/adjust <user id> <±roubles> <reason>`: through the ledger, audited."""
    assert message.from_user is not None
    parts = (command.args or "").split(maxsplit=2)
    try:
        user_id = parse_id(parts[0])
        amount = Decimal(parts[1].replace(",", "."))
        reason = parts[2].strip()
    except (IndexError, ValueError, InvalidOperation):
        await message.answer(t(lang, "admin.adjust_usage"))
        return
    if not amount.is_finite() or abs(amount) * 100 > MAX_ADJUST_KOP or user_id is None:
        reject(Reason.VALIDATION_FAILED, f"adjust {parts[0][:24]} by {parts[1][:24]}")
        await message.answer(t(lang, "admin.adjust_usage"))
        return
    amount_kop = int((amount * 100).to_integral_value())
    if amount_kop == 0 or not reason or await operations.user_card(user_id) is None:
        await message.answer(t(lang, "admin.adjust_usage"))
        return
    try:
        after = await operations.adjust(
            user_id,
            amount_kop,
            reason=reason,
            admin_id=message.from_user.id,
            key=f"msg:{message.chat.id}:{message.message_id}",  # the update, not the cid
            cid=cid,
        )
    except InsufficientFundsError as short:
        await message.answer(
            t(lang, "admin.adjust_short", available=format_money(short.available_kop))
        )
        return
    await message.answer(
        t(
            lang,
            "admin.adjusted",
            user_id=user_id,
            amount=format_money(amount_kop),
            available=format_money(after.available_kop),
        )
    )


async def _set_blocked(
    message: Message,
    lang: str,
    operations: Operations,
    providers: Providers | None,
    user_id: int,
    blocked: bool,
    admin_id: int,
    cid: str | None,
) -> None:
    before = await operations.set_blocked(user_id, blocked, admin_id=admin_id, cid=cid)
    if before is None:
        await message.answer(t(lang, "admin.user_unknown", query=user_id))
        return
    shown = await user_screen(operations, providers, user_id, lang)
    assert shown is not None
    await message.answer(
        t(lang, "admin.blocked" if blocked else "admin.unblocked", user_id=user_id)
        + "\n\n"
        + shown[0],
        reply_markup=shown[1],
    )


async def on_block_command(
    message: Message,
    command: CommandObject,
    lang: str,
    operations: Operations,
    cid: str | None = None,
    providers: Providers | None = None,
) -> None:
    assert message.from_user is not None
    arg = (command.args or "").strip()
    user_id = await operations.find_user(arg) if arg else None
    if user_id is None:
        await message.answer(t(lang, "admin.user_unknown", query=html.escape(arg or "—")))
        return
    blocked = command.command == "block"
    admin_id = message.from_user.id
    await _set_blocked(message, lang, operations, providers, user_id, blocked, admin_id, cid)


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


# -- jobs -------------------------------------------------------------------------------------
async def jobs_text(operations: Operations, lang: str) -> str:
    rows = await operations.troubled_jobs()
    lines = [t(lang, "admin.jobs_title")]
    for job_id, model, status, code, cid in rows:
        cid_text = f"<code>{html.escape(cid)}</code>" if cid else "-"
        error = html.escape(code or "-")
        lines.append(
            f"  <code>{job_id}</code> {html.escape(model)} · {status} · {error} · cid {cid_text}"
        )
    if not rows:
        lines.append("  —")
    lines.append(t(lang, "admin.jobs_help"))
    return "\n".join(lines)


async def on_jobs_command(message: Message, lang: str, operations: Operations) -> None:
    await message.answer(await jobs_text(operations, lang))


async def on_refund_job(
    message: Message,
    command: CommandObject,
    lang: str,
    operations: Operations,
    cid: str | None = None,
) -> None:
    assert message.from_user is not None
    job_id = (command.args or "").strip()
    if not job_id:
        await message.answer(t(lang, "admin.refund_job_usage"))
        return
    refunded = await operations.refund_job(job_id, admin_id=message.from_user.id, cid=cid)
    if refunded is None:
        await message.answer(t(lang, "admin.refund_job_none"))
    elif refunded == 0:
        await message.answer(t(lang, "admin.refund_job_again"))
    else:
        await message.answer(t(lang, "admin.refund_job_done", amount=format_money(refunded)))


__all__ = ["ADMIN_COMMANDS", "Admin", "AdminOnly", "build"]


# -- broadcasts -------------------------------------------------------------------------------
async def on_broadcast_command(message: Message, lang: str, state: FSMContext) -> None:
    await state.set_state(BroadcastFlow.text)
    await message.answer(t(lang, "admin.broadcast_ask"))


async def control_screen(
    broadcasts: BroadcastService, broadcast_id: int, segment: str, lang: str
) -> tuple[str, InlineKeyboardMarkup]:
    count = await broadcasts.audience(SEGMENTS[segment])
    text = t(lang, "admin.broadcast_preview", count=count, segment=t(lang, f"admin.seg_{segment}"))
    names = list(SEGMENTS)
    rows = [
        [
            _button(
                ("• " if name == segment else "") + t(lang, f"admin.seg_{name}"),
                "bcs",
                f"{broadcast_id}.{name}",
            )
            for name in names[i : i + 3]
        ]
        for i in range(0, len(names), 3)
    ]
    rows.append(
        [
            _button(t(lang, "admin.broadcast_go"), "bcgo", str(broadcast_id)),
            _button(t(lang, "admin.broadcast_cancel"), "bcx", str(broadcast_id)),
        ]
    )
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


def progress_screen(
    progress: Progress, lang: str = "ru"
) -> tuple[str, InlineKeyboardMarkup | None]:
    text = t(
        lang,
        "admin.broadcast_progress",
        id=progress.broadcast_id,
        status=t(lang, f"admin.bc_{progress.status}"),
        sent=progress.sent,
        total=progress.total,
        failed=progress.failed,
        blocked=progress.blocked,
        unknown=progress.unknown,
    )
    bid = str(progress.broadcast_id)
    if progress.status == "running":
        row = [_button(t(lang, "admin.broadcast_pause"), "bcp", bid)]
    elif progress.status == "paused":
        row = [_button(t(lang, "admin.broadcast_resume"), "bcr", bid)]
    else:
        return text, None
    row.append(_button(t(lang, "admin.broadcast_cancel"), "bcx", bid))
    return text, InlineKeyboardMarkup(inline_keyboard=[row])


async def on_broadcast_text(
    message: Message, lang: str, state: FSMContext, broadcasts: BroadcastService, bot: Bot
) -> None:
    assert message.from_user is not None
    await state.clear()
    text = message.html_text
    broadcast_id = await broadcasts.create(
        admin_id=message.from_user.id, text=text, segment=SEGMENTS["all"]
    )
    try:  # the preview is the real message: HTML Telegram refuses is found here, not at 2,000
        await bot.send_message(message.chat.id, text)
    except TelegramBadRequest as error:
        await broadcasts.set_status(broadcast_id, "cancelled", admin_id=message.from_user.id)
        await message.answer(t(lang, "admin.broadcast_bad", error=html.escape(error.message)))
        return
    screen, markup = await control_screen(broadcasts, broadcast_id, "all", lang)
    await message.answer(screen, reply_markup=markup)


async def on_broadcast_button(
    message: Message,
    lang: str,
    broadcasts: BroadcastService,
    section: str,
    arg: str,
    admin_id: int,
    cid: str | None,
) -> None:
    raw_id, _, segment = arg.partition(".")
    if not raw_id.isdigit() or len(raw_id) > 18:
        reject(Reason.VALIDATION_FAILED, f"broadcast button {section} {arg!r}")
        return
    broadcast_id = int(raw_id)
    if section == "bcs" and segment in SEGMENTS:
        await broadcasts.set_segment(broadcast_id, SEGMENTS[segment])
        screen, markup = await control_screen(broadcasts, broadcast_id, segment, lang)
        await message.edit_text(screen, reply_markup=markup)
        return
    if section == "bcgo":
        await broadcasts.start(
            broadcast_id,
            admin_id=admin_id,
            progress_chat_id=message.chat.id,
            progress_message_id=message.message_id,
            cid=cid,
        )
    elif section in ("bcp", "bcr", "bcx"):
        status = {"bcp": "paused", "bcr": "running", "bcx": "cancelled"}[section]
        await broadcasts.set_status(broadcast_id, status, admin_id=admin_id, cid=cid)
    progress = await broadcasts.progress(broadcast_id)
    if progress is not None:
        shown, buttons = progress_screen(progress, lang)
        with contextlib.suppress(TelegramBadRequest):  # "not modified": the same numbers
            await message.edit_text(shown, reply_markup=buttons)
