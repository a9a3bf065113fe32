"""Stats for 1 / 7 / 30 days, KIE credits, and the 30-day chart."""

from __future__ import annotations

import html

from aiogram.filters import CommandObject
from aiogram.types import (
    InlineKeyboardMarkup,
    Message,
)

from trt.admin.operations import Operations
from trt.bot.routers.admin.common import PERIODS, _button
from trt.catalog.pricing import format_money
from trt.i18n import t
from trt.kie.client import KieClient
from trt.kie.errors import KieError


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
