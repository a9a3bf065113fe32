"""A user's card: find, block / unblock, adjust the balance, refund a payment."""

from __future__ import annotations

import html
from decimal import Decimal, InvalidOperation

from aiogram.filters import CommandObject
from aiogram.types import (
    InlineKeyboardMarkup,
    Message,
)

from trt.admin.operations import Operations, UserCard
from trt.billing.ledger import InsufficientFundsError
from trt.bot.routers.admin.common import MAX_ADJUST_KOP, _button
from trt.catalog.pricing import format_money
from trt.i18n import t
from trt.payments.providers import Providers
from trt.payments.service import REFUNDING, SUCCEEDED
from trt.telemetry.events import Reason, reject
from trt.users import parse_id


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
