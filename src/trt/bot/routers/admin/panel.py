"""The admin router and /admin: the panel and the dispatch of its buttons to the features."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
)

from trt.admin.broadcast import BroadcastService
from trt.admin.operations import Operations, chart_png
from trt.admin.settings import RuntimeSettings
from trt.bot.routers import support
from trt.bot.routers.admin.broadcasts import (
    on_broadcast_button,
    on_broadcast_command,
    on_broadcast_text,
)
from trt.bot.routers.admin.common import (
    ADMIN_COMMANDS,
    Admin,
    AdminOnly,
    BroadcastFlow,
    _back,
    _button,
    panel_markup,
)
from trt.bot.routers.admin.jobs import jobs_text, on_jobs_command, on_refund_job
from trt.bot.routers.admin.knobs import (
    catalog_text,
    on_global_knob,
    on_model_markup,
    on_model_switch,
)
from trt.bot.routers.admin.stats import on_stats_command, stats_markup, stats_text
from trt.bot.routers.admin.users import _set_blocked, on_adjust, on_block_command, on_user_command
from trt.bot.routers.payments import on_refund_command, refund_payment
from trt.catalog.pricing import format_money
from trt.config import Config
from trt.i18n import t
from trt.kie.client import KieClient
from trt.payments.providers import Providers
from trt.payments.service import PaymentService
from trt.telemetry.events import Reason, reject
from trt.users import parse_id


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


async def on_admin(message: Message, lang: str) -> None:
    await message.answer(t(lang, "admin.panel"), reply_markup=panel_markup(lang))


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
