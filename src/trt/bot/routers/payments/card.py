"""Any hosted-checkout provider (YooKassa): the amounts, the 54-ФЗ receipt contact, the link."""

from __future__ import annotations

import html

from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from trt.bot.callbacks import (
    CardBuy,
    ReceiptContact,
)
from trt.bot.keyboards import main_menu
from trt.bot.routers.payments.common import TopUpFlow, _back, _button
from trt.bot.screens import show
from trt.catalog.pricing import format_money
from trt.config import Config
from trt.i18n import t
from trt.payments.providers import HostedCheckout, ProviderError, Providers, ReceiptContactMissing
from trt.payments.service import PaymentService
from trt.receipts import Contact
from trt.telemetry.events import Reason, reject


# -- card (YooKassa) ------------------------------------------------------------------------
async def _card_choose(
    checkout: HostedCheckout, user_id: int, lang: str
) -> tuple[str, list[list[InlineKeyboardButton]]]:
    """The amounts; with receipts on, where the receipt goes and a button to change it."""
    method = checkout.method
    rows = [
        _button(format_money(rub * 100), CardBuy(method=method, rub=rub).pack())
        for rub in checkout.amounts_rub()
    ]
    text = t(lang, f"pay.choose_{method}")
    if checkout.rules is not None:
        contact = await checkout.receipt_contact(user_id)
        if contact is not None:
            text += "\n" + t(lang, "pay.receipt_now", contact=html.escape(contact.masked()))
        rows.append(_button(t(lang, "pay.receipt_change"), ReceiptContact(method=method).pack()))
    return text, rows


async def on_receipt_contact(
    callback: CallbackQuery,
    callback_data: ReceiptContact,
    lang: str,
    state: FSMContext,
    providers: Providers,
) -> None:
    """«🧾 Изменить e-mail для чека»: ask for the contact, then back to that provider."""
    checkout = providers.hosted(callback_data.method)
    if checkout is None or checkout.rules is None:
        reject(Reason.STATE_MISMATCH, f"receipts of {callback_data.method!r} are not asked")
        await show(callback, t(lang, "flow.stale"), main_menu(lang))
        return
    await state.set_state(TopUpFlow.contact)
    await state.set_data({"method": checkout.method})
    markup = InlineKeyboardMarkup(inline_keyboard=[_back(lang)])
    await show(callback, t(lang, "pay.receipt_ask"), markup)


async def _card_link(
    checkout: HostedCheckout, user_id: int, chat_id: int, lang: str, rub: int, cid: str | None
) -> tuple[str, InlineKeyboardMarkup] | None:
    """The provider's link for `rub` roubles; None when the receipt's contact must be asked.
    `ProviderError` when the provider cannot be reached or refuses."""
    try:
        payment = await checkout.start(
            user_id=user_id, chat_id=chat_id, lang=lang, amount_kop=rub * 100, cid=cid
        )
    except ReceiptContactMissing:
        return None
    amount = format_money(payment.amount_kop)
    assert payment.confirmation_url is not None
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t(lang, "pay.card_pay", amount=amount), url=payment.confirmation_url
                )
            ],
            _back(lang),
        ]
    )
    return t(lang, "pay.card_link", amount=amount), markup


def _unavailable(
    checkout: HostedCheckout, error: ProviderError, lang: str
) -> tuple[str, InlineKeyboardMarkup]:
    reject(Reason.DOWNSTREAM_ERROR, f"{checkout.method}: {error}"[:300])
    return t(lang, "pay.card_unavailable"), main_menu(lang)


async def on_card_buy(
    callback: CallbackQuery,
    callback_data: CardBuy,
    lang: str,
    config: Config,
    state: FSMContext,
    providers: Providers,
    cid: str | None = None,
) -> None:
    checkout = providers.hosted(callback_data.method)
    if checkout is None or callback_data.rub not in checkout.amounts_rub():
        reject(Reason.VALIDATION_FAILED, f"card top-up of {callback_data.rub} is not offered")
        await show(callback, t(lang, "pay.card_unavailable"), main_menu(lang))
        return
    message = callback.message
    chat_id = message.chat.id if message is not None else callback.from_user.id
    try:
        screen = await _card_link(
            checkout, callback.from_user.id, chat_id, lang, callback_data.rub, cid
        )
    except ProviderError as error:
        await show(callback, *_unavailable(checkout, error, lang))
        return
    if screen is None:
        # Receipts are on and nobody said where this user's receipt goes: ask, then go on.
        await state.set_state(TopUpFlow.contact)
        await state.set_data({"method": checkout.method, "rub": callback_data.rub})
        markup = InlineKeyboardMarkup(inline_keyboard=[_back(lang)])
        await show(callback, t(lang, "pay.receipt_ask"), markup)
        return
    await show(callback, *screen)


async def on_contact_text(
    message: Message,
    lang: str,
    state: FSMContext,
    payments: PaymentService,
    providers: Providers,
    cid: str | None = None,
) -> None:
    """The e-mail or phone for receipts: stored on the user, then the top-up goes on."""
    assert message.from_user is not None
    contact = Contact.parse(message.text or "")
    if contact is None:
        reject(Reason.VALIDATION_FAILED, "not an e-mail or a phone number")
        await message.answer(t(lang, "pay.receipt_invalid"))
        return
    data = await state.get_data()
    rub = data.get("rub")
    await state.clear()
    await payments.set_receipt_contact(message.from_user.id, contact.dump())
    saved = t(lang, "pay.receipt_saved", contact=html.escape(contact.masked()))
    # A state from before providers were named in it: the first hosted provider's.
    checkouts = providers.checkouts
    fallback = checkouts[0] if checkouts else None
    checkout = providers.hosted(str(data["method"])) if "method" in data else fallback
    if checkout is None:
        await message.answer(saved, reply_markup=main_menu(lang))
        return
    if not isinstance(rub, int):
        text, rows = await _card_choose(checkout, message.from_user.id, lang)
        rows.append(_back(lang))
        await message.answer(
            saved + "\n\n" + text, reply_markup=InlineKeyboardMarkup(inline_keyboard=rows)
        )
        return
    try:
        screen = await _card_link(checkout, message.from_user.id, message.chat.id, lang, rub, cid)
    except ProviderError as error:
        screen = _unavailable(checkout, error, lang)
    assert screen is not None, "the contact was stored a moment ago"
    await message.answer(saved + "\n\n" + screen[0], reply_markup=screen[1])


async def on_contact_other(message: Message, lang: str) -> None:
    await message.answer(t(lang, "pay.receipt_invalid"))
