"""Manual transfers: the amount, the receipt photo, the admin's verdict."""

from __future__ import annotations

import html

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    Document,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    PhotoSize,
)

from trt.bot.callbacks import (
    ManualAmount,
    ManualVerdict,
)
from trt.bot.keyboards import main_menu
from trt.bot.routers.payments.common import TopUpFlow, _back
from trt.bot.screens import show
from trt.catalog.pricing import format_money
from trt.config import Config
from trt.i18n import t
from trt.logs import get_logger
from trt.payments.service import PaymentError, PaymentService
from trt.payments.stars import StarsPayments, notify, tell_credited
from trt.telemetry.events import Reason, reject

log = get_logger(__name__)


# -- manual transfers -----------------------------------------------------------------------
async def on_manual_amount(
    callback: CallbackQuery,
    callback_data: ManualAmount,
    lang: str,
    state: FSMContext,
    config: Config,
) -> None:
    details = config.payments.manual_transfer_details
    if not details or callback_data.rub not in config.payments.topup_amounts_rub:
        reject(Reason.VALIDATION_FAILED, f"manual amount {callback_data.rub} is not offered")
        await show(callback, t(lang, "flow.stale"), main_menu(lang))
        return
    await state.set_state(TopUpFlow.receipt)
    await state.set_data({"amount_kop": callback_data.rub * 100})
    amount = format_money(callback_data.rub * 100)
    text = t(lang, "pay.manual_details", amount=amount, details=html.escape(details))
    await show(callback, text, InlineKeyboardMarkup(inline_keyboard=[_back(lang)]))


async def on_receipt(
    message: Message,
    lang: str,
    state: FSMContext,
    payments: PaymentService,
    config: Config,
    bot: Bot,
    cid: str | None = None,
) -> None:
    assert message.from_user is not None
    data = await state.get_data()
    amount_kop = int(data.get("amount_kop") or 0)
    receipt: PhotoSize | Document | None = message.photo[-1] if message.photo else None
    if receipt is None and message.document is not None:
        mime = message.document.mime_type or ""
        receipt = message.document if mime.startswith(("image/", "application/pdf")) else None
    if amount_kop <= 0 or receipt is None:
        reject(Reason.VALIDATION_FAILED, "a receipt must be a photo, an image or a PDF")
        await message.answer(t(lang, "pay.manual_need_photo"))
        return
    try:
        payment, created = await payments.create_manual(
            user_id=message.from_user.id,
            chat_id=message.chat.id,
            lang=lang,
            amount_kop=amount_kop,
            receipt_file_id=receipt.file_id,
            receipt_unique_id=receipt.file_unique_id,
            # The update, not the cid: a message handled again after a crash is one payment.
            request_key=f"{message.chat.id}:{message.message_id}",
            cid=cid,
        )
    except PaymentError as refused:
        reject(Reason.DUPLICATE, f"receipt refused: {refused.reason}")
        await message.answer(t(lang, f"pay.{refused.reason}"), reply_markup=main_menu(lang))
        return
    await state.clear()
    amount = format_money(amount_kop)
    if created:
        await _send_receipt_to_admins(message, payment.id, amount, config, bot)
    await message.answer(
        t(lang, "pay.manual_received", amount=amount), reply_markup=main_menu(lang)
    )


async def _send_receipt_to_admins(
    message: Message, payment_id: str, amount: str, config: Config, bot: Bot
) -> None:
    assert message.from_user is not None
    name = html.escape(message.from_user.full_name)
    if message.from_user.username:
        name += f" @{html.escape(message.from_user.username)}"
    file_id = message.photo[-1].file_id if message.photo else None
    for admin_id in sorted(config.admin.admin_ids):
        admin_lang = "ru"
        caption = t(
            admin_lang,
            "pay.manual_admin",
            amount=amount,
            user=name,
            user_id=message.from_user.id,
            payment=payment_id,
        )
        markup = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text=t(admin_lang, "pay.manual_approve"),
                        callback_data=ManualVerdict(payment=payment_id, approve=True).pack(),
                    ),
                    InlineKeyboardButton(
                        text=t(admin_lang, "pay.manual_reject"),
                        callback_data=ManualVerdict(payment=payment_id, approve=False).pack(),
                    ),
                ]
            ]
        )
        try:
            if file_id is not None:
                await bot.send_photo(admin_id, file_id, caption=caption, reply_markup=markup)
            else:
                assert message.document is not None
                await bot.send_document(
                    admin_id, message.document.file_id, caption=caption, reply_markup=markup
                )
        except Exception as error:  # one unreachable admin must not lose the receipt
            log.warning("manual_receipt_not_sent", admin_id=admin_id, error=str(error)[:200])


async def on_receipt_other(message: Message, lang: str) -> None:
    reject(Reason.VALIDATION_FAILED, "a receipt was expected")
    await message.answer(t(lang, "pay.manual_need_photo"))


async def on_manual_verdict(
    callback: CallbackQuery,
    callback_data: ManualVerdict,
    lang: str,
    config: Config,
    payments: PaymentService,
    stars: StarsPayments,
    cid: str | None = None,
) -> None:
    admin = callback.from_user
    if admin.id not in config.admin.admin_ids:
        reject(Reason.ACCESS_DENIED, "a manual verdict by a non-admin")
        await callback.answer(t(lang, "errors.denied"), show_alert=True)
        return
    payment = await payments.get(callback_data.payment)
    if payment is None or payment.method != "manual":
        reject(Reason.VALIDATION_FAILED, f"no manual payment {callback_data.payment}")
        await callback.answer(t(lang, "flow.stale"), show_alert=True)
        return
    if payment.status != "pending":
        reject(Reason.DUPLICATE, f"payment {payment.id} is {payment.status} already")
        await callback.answer(t(lang, "pay.manual_decided", status=payment.status), show_alert=True)
        return
    await callback.answer()
    amount = format_money(payment.amount_kop)
    if callback_data.approve:
        try:
            credit = await payments.credit(
                payment.id, external_id=payment.id, memo="bank transfer", cid=cid
            )
        except PaymentError:  # rejected by another admin a moment ago
            await notify(stars.sender, admin.id, t(lang, "pay.manual_decided", status="rejected"))
            return
        await payments.decide(payment.id, admin.id)
        await tell_credited(payments, stars.sender, credit)
        verdict = t(lang, "pay.manual_approve")
    else:
        closed = await payments.close(payment.id, "rejected", detail=f"rejected by {admin.id}")
        await payments.decide(payment.id, admin.id)
        if closed is not None:
            support = html.escape(config.telegram.support_contact)
            await notify(
                stars.sender,
                payment.chat_id,
                t(payment.lang, "pay.manual_rejected", amount=amount, support=support),
            )
        verdict = t(lang, "pay.manual_reject")
    message = callback.message
    if isinstance(message, Message):
        done = t(lang, "pay.manual_done_admin", verdict=verdict, admin=html.escape(admin.full_name))
        # The caption as HTML with its entities, escaped: its plain text holds the user's
        # name as typed, which the HTML parse mode would read as markup.
        caption = message.html_text + "\n\n" + done
        try:
            await message.edit_caption(caption=caption[:1024], reply_markup=None)
        except Exception as error:  # cosmetic: the decision is recorded
            log.info("manual_verdict_caption_not_edited", error=str(error)[:200])
