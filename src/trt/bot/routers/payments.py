"""Top-ups: the method screen, Stars invoices and payments, card (YooKassa) links, manual
transfers with an admin's verdict, promo codes and the referral link.

Handlers stay thin: the money moves in `trt.payments` (each credit once, by the provider's id);
the handlers parse, call and render. A pre-checkout query is answered at once (Telegram
allows 10 s) with the reason when refused.
"""

from __future__ import annotations

import html

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    Document,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    PhotoSize,
    PreCheckoutQuery,
)

from trt.billing.ledger import InsufficientFundsError
from trt.bot.callbacks import (
    CardBuy,
    ManualAmount,
    ManualVerdict,
    Menu,
    ReceiptContact,
    StarsBuy,
    TopUp,
)
from trt.bot.keyboards import main_menu
from trt.bot.screens import rendered, show
from trt.catalog.pricing import format_money
from trt.config import Config
from trt.i18n import normalize_lang, t
from trt.logs import get_logger
from trt.payments.bonuses import BonusService, referral_code
from trt.payments.providers import HostedCheckout, ProviderError, Providers, ReceiptContactMissing
from trt.payments.service import PaymentError, PaymentService
from trt.payments.stars import StarsPayments, notify, tell_credited
from trt.receipts import Contact
from trt.telemetry.events import Event, Reason, reject, telemetry

log = get_logger(__name__)


class TopUpFlow(StatesGroup):
    receipt = State()  # a manual transfer: waiting for the receipt photo
    promo = State()  # waiting for a promo code
    contact = State()  # waiting for the e-mail or phone of 54-ФЗ receipts


def build() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_topup, Menu.filter(F.screen == "topup"))
    router.callback_query.register(on_terms, Menu.filter(F.screen == "terms"))
    router.message.register(on_terms_command, Command("terms"))
    router.callback_query.register(on_method, TopUp.filter())
    router.callback_query.register(on_stars_buy, StarsBuy.filter())
    router.callback_query.register(on_card_buy, CardBuy.filter())
    router.callback_query.register(on_receipt_contact, ReceiptContact.filter())
    router.callback_query.register(on_manual_amount, ManualAmount.filter())
    router.callback_query.register(
        on_manual_verdict, ManualVerdict.filter(), flags={"manual_answer": True}
    )
    router.pre_checkout_query.register(on_pre_checkout)
    router.message.register(on_successful_payment, F.successful_payment)
    router.message.register(on_promo_command, Command("promo"))
    router.message.register(on_receipt, TopUpFlow.receipt, F.photo | F.document)
    router.message.register(on_receipt_other, TopUpFlow.receipt)
    router.message.register(on_promo_text, TopUpFlow.promo, F.text)
    router.message.register(on_contact_text, TopUpFlow.contact, F.text)
    router.message.register(on_contact_other, TopUpFlow.contact)
    return router


def _button(text: str, callback_data: str) -> list[InlineKeyboardButton]:
    return [InlineKeyboardButton(text=text, callback_data=callback_data)]


def _back(lang: str, screen: str = "topup") -> list[InlineKeyboardButton]:
    return _button(t(lang, "menu.back"), Menu(screen=screen).pack())


async def topup_screen(
    payments: PaymentService, providers: Providers, config: Config, user_id: int, lang: str
) -> tuple[str, InlineKeyboardMarkup]:
    balance = await payments.available(user_id)
    settings = config.payments
    rows = [  # the registered providers first, each under its `pay.method_<method>`
        _button(t(lang, f"pay.method_{provider.method}"), TopUp(method=provider.method).pack())
        for provider in providers
    ]
    if settings.manual_transfer_details:
        rows.append(_button(t(lang, "pay.method_manual"), TopUp(method="manual").pack()))
    rows.append(_button(t(lang, "pay.method_promo"), TopUp(method="promo").pack()))
    if settings.referral_bonus_rub > 0:
        rows.append(_button(t(lang, "pay.method_invite"), TopUp(method="invite").pack()))
    rows.append(_button(t(lang, "pay.terms_button"), Menu(screen="terms").pack()))
    rows.append(_back(lang, "balance"))
    text = t(lang, "pay.choose", balance=format_money(balance))
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


async def on_topup(
    callback: CallbackQuery,
    lang: str,
    state: FSMContext,
    payments: PaymentService,
    providers: Providers,
    config: Config,
) -> None:
    if await state.get_state() in (
        TopUpFlow.receipt.state,
        TopUpFlow.promo.state,
        TopUpFlow.contact.state,
    ):
        await state.clear()
    text, markup = await topup_screen(payments, providers, config, callback.from_user.id, lang)
    await show(callback, text, markup)


async def on_method(
    callback: CallbackQuery,
    callback_data: TopUp,
    lang: str,
    state: FSMContext,
    config: Config,
    bonuses: BonusService,
    bot: Bot,
    providers: Providers,
) -> None:
    settings = config.payments
    method = callback_data.method
    rows: list[list[InlineKeyboardButton]] = []
    if method == "stars" and providers.get("stars") is not None:
        for index, package in enumerate(settings.stars_packages):
            label = t(
                lang,
                "pay.stars_package",
                stars=package.stars,
                amount=format_money(package.rubles * 100),
            )
            rows.append(_button(label, StarsBuy(index=index).pack()))
        text = t(lang, "pay.stars_choose")
    elif (checkout := providers.hosted(method)) is not None:
        text, rows = await _card_choose(checkout, callback.from_user.id, lang)
    elif method == "manual" and settings.manual_transfer_details:
        for rub in settings.topup_amounts_rub:
            rows.append(_button(format_money(rub * 100), ManualAmount(rub=rub).pack()))
        text = t(lang, "pay.manual_choose")
    elif method == "promo":
        await state.set_state(TopUpFlow.promo)
        text = t(lang, "pay.promo_ask")
    elif method == "invite" and settings.referral_bonus_rub > 0:
        me = await bot.me()
        invited, paid = await bonuses.invited_count(callback.from_user.id)
        link = f"https://t.me/{me.username}?start=ref_{referral_code(callback.from_user.id)}"
        text = t(
            lang,
            "pay.invite",
            bonus=format_money(settings.referral_bonus_rub * 100),
            min_spend=format_money(settings.referral_min_spend_rub * 100),
            link=html.escape(link),
            invited=invited,
            paid=paid,
        )
    else:
        reject(Reason.STATE_MISMATCH, f"top-up method {method!r} is not offered")
        text = t(lang, "flow.stale")
    rows.append(_back(lang))
    await show(callback, text, InlineKeyboardMarkup(inline_keyboard=rows))


# -- Stars ----------------------------------------------------------------------------------
async def on_stars_buy(
    callback: CallbackQuery,
    callback_data: StarsBuy,
    lang: str,
    stars: StarsPayments,
    cid: str | None = None,
) -> None:
    package = stars.package(callback_data.index)
    if package is None:
        reject(Reason.VALIDATION_FAILED, f"no Stars package #{callback_data.index}")
        await show(callback, t(lang, "flow.stale"), main_menu(lang))
        return
    message = callback.message
    chat_id = message.chat.id if message is not None else callback.from_user.id
    rendered(callback, f"invoice ⭐ {package.stars}")
    await stars.send_invoice(
        user_id=callback.from_user.id, chat_id=chat_id, lang=lang, package=package, cid=cid
    )


async def on_pre_checkout(
    query: PreCheckoutQuery, payments: PaymentService, cid: str | None = None
) -> None:
    lang = normalize_lang(query.from_user.language_code)
    try:
        await payments.check_stars_checkout(
            query.invoice_payload,
            user_id=query.from_user.id,
            currency=query.currency,
            total_amount=query.total_amount,
        )
    except PaymentError as refused:
        telemetry.emit(
            Event.PAYMENT_REJECTED,
            cid=cid,
            user_id=query.from_user.id,
            method="stars",
            reason_code=Reason.VALIDATION_FAILED.value,
            reason_detail=f"pre-checkout refused: {refused.reason}",
        )
        await query.answer(ok=False, error_message=t(lang, f"pay.{refused.reason}"))
        return
    await query.answer(ok=True)


async def on_successful_payment(
    message: Message,
    lang: str,
    stars: StarsPayments,
    payments: PaymentService,
    cid: str | None = None,
) -> None:
    paid = message.successful_payment
    assert paid is not None
    assert message.from_user is not None
    try:
        credit = await stars.complete(
            payload=paid.invoice_payload,
            charge_id=paid.telegram_payment_charge_id,
            total_amount=paid.total_amount,
            user_id=message.from_user.id,
            cid=cid,
        )
    except PaymentError as error:
        await message.answer(
            t(lang, f"pay.{error.reason}", charge=html.escape(paid.telegram_payment_charge_id))
        )
        return
    if not credit.created:
        log.info("successful_payment_repeated", payment_id=credit.payment.id)
    await tell_credited(payments, stars.sender, credit, markup=main_menu(lang))


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


# -- terms ----------------------------------------------------------------------------------
def _terms(config: Config, lang: str) -> str:
    return t(lang, "terms.text", support=html.escape(config.telegram.support_contact))


async def on_terms(callback: CallbackQuery, lang: str, config: Config) -> None:
    markup = InlineKeyboardMarkup(inline_keyboard=[_back(lang)])
    await show(callback, _terms(config, lang), markup)


async def on_terms_command(message: Message, lang: str, config: Config) -> None:
    await message.answer(_terms(config, lang), reply_markup=main_menu(lang))


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


# -- promo codes ----------------------------------------------------------------------------
async def _redeem(
    message: Message,
    lang: str,
    code: str,
    bonuses: BonusService,
    payments: PaymentService,
    cid: str | None,
) -> None:
    assert message.from_user is not None
    try:
        amount = await bonuses.redeem(message.from_user.id, code, cid=cid)
    except PaymentError as refused:
        reject(Reason.VALIDATION_FAILED, f"promo code refused: {refused.reason}")
        await message.answer(t(lang, f"pay.{refused.reason}"))
        return
    balance = await payments.available(message.from_user.id)
    await message.answer(
        t(lang, "pay.promo_credited", amount=format_money(amount), balance=format_money(balance)),
        reply_markup=main_menu(lang),
    )


async def on_promo_command(
    message: Message,
    command: CommandObject,
    lang: str,
    state: FSMContext,
    bonuses: BonusService,
    payments: PaymentService,
    cid: str | None = None,
) -> None:
    code = (command.args or "").strip()
    if not code:
        await state.set_state(TopUpFlow.promo)
        await message.answer(t(lang, "pay.promo_ask"))
        return
    await _redeem(message, lang, code, bonuses, payments, cid)


async def on_promo_text(
    message: Message,
    lang: str,
    state: FSMContext,
    bonuses: BonusService,
    payments: PaymentService,
    cid: str | None = None,
) -> None:
    await state.clear()
    await _redeem(message, lang, message.text or "", bonuses, payments, cid)


# -- admin: refund a Stars or YooKassa payment ----------------------------------------------
async def on_refund_command(
    message: Message,
    command: CommandObject,
    lang: str,
    providers: Providers,
    payments: PaymentService,
    cid: str | None = None,
) -> None:
    """`/refund <payment id>` (admins: registered on the admin router, behind its guard): the
    credit reversed, then the money sent back by the payment's provider."""
    payment_id = (command.args or "").strip()
    if not payment_id:
        await message.answer(t(lang, "pay.refund_usage"))
        return
    await message.answer(await refund_payment(payment_id, lang, providers, payments, cid))


async def refund_payment(
    payment_id: str,
    lang: str,
    providers: Providers,
    payments: PaymentService,
    cid: str | None,
) -> str:
    """Refund by the payment's provider; what to tell the admin."""
    found = await payments.get(payment_id) if len(payment_id) <= 64 else None
    provider = providers.get(found.method) if found is not None else None
    try:
        if provider is None:  # not a payment, or one no provider can send back (manual)
            raise PaymentError("unknown_payment")
        payment = await provider.refund(payment_id, cid=cid)
    except PaymentError as refused:
        reject(Reason.VALIDATION_FAILED, f"refund refused: {refused.reason}")
        return t(lang, f"pay.refund_{refused.reason}")
    except InsufficientFundsError as short:
        reject(Reason.INSUFFICIENT_FUNDS, "the user has spent the payment")
        return t(
            lang,
            "pay.refund_spent",
            available=format_money(short.available_kop),
            amount=format_money(short.needed_kop),
        )
    return t(lang, "pay.refund_done", amount=format_money(payment.amount_kop), payment=payment.id)
