"""54-ФЗ receipts and YooKassa refunds through the sandbox (issue 20): with receipts on, every
payment and refund carries a receipt the sandbox YooKassa checks as YooKassa does; a card top-up
is credited once and refunded once by an admin, also when YooKassa fails after it refunded;
with receipts off nothing changes; /terms is one tap from the top-up screen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.e2e_support import RunningBot, running_bot
from tests.e2e_support import tap_screen as tap
from trt.db.models import LedgerPosting
from trt.sandbox.driver import Message, SandboxUser
from trt.sandbox.yookassa import receipt_problem
from trt.telemetry.events import Event

ADMIN = 9000
RECEIPTS = {"YOOKASSA_RECEIPTS": "true", "YOOKASSA_TAX_SYSTEM_CODE": "2"}


def start_bot(tmp_path: Path, database_url: str | None, payments: dict[str, Any]) -> Any:
    return running_bot(
        tmp_path,
        database_url=database_url,
        admin_ids=(ADMIN,),
        payments={"WELCOME_BONUS_RUB": 0, **payments},
    )


@pytest.fixture
async def bot(tmp_path: Path, database_url: str | None) -> AsyncIterator[RunningBot]:
    async with start_bot(tmp_path, database_url, RECEIPTS) as running:
        running.sandbox.yookassa.receipts_required = True  # the shop's fiscalisation is on
        yield running
        assert await running.ledger_problems() == []
        assert await running.client.violations() == []


async def card_amounts(
    bot: RunningBot, user_id: int, user: SandboxUser | None = None
) -> tuple[SandboxUser, Message]:
    user = user or await bot.client.user(user_id, "Вера")
    await user.send("/start")
    balance = await tap(user, "💰 Баланс", await user.next_message())
    topup = await tap(user, "💰 Пополнить", balance)
    return user, await tap(user, "💳 Карта или СБП", topup)


def payment_id_of(screen: Message) -> str:
    return str(screen.button("💳 Оплатить 100 ₽")["url"]).rsplit("/", 1)[1]


def the_receipt(bot: RunningBot, kind: str, object_id: str) -> dict[str, Any]:
    found = [r for r in bot.sandbox.yookassa.receipts if r["kind"] == kind and r["id"] == object_id]
    assert len(found) == 1
    receipt: dict[str, Any] = found[0]["receipt"]
    return receipt


async def paid_card_top_up(bot: RunningBot, user_id: int, contact: str) -> tuple[SandboxUser, str]:
    """A 100 ₽ card top-up by a user who gives `contact` for receipts when asked."""
    user, amounts = await card_amounts(bot, user_id)
    asked = await tap(user, "100 ₽", amounts)
    assert asked.text.startswith("🧾 По закону (54-ФЗ) мы отправляем кассовый чек.")
    await user.send(contact)
    link = await user.next_message()
    payment_id = payment_id_of(link)
    await bot.sandbox.yookassa.pay(payment_id)
    assert (await user.next_message()).text.startswith("✅ Зачислено 100 ₽.")
    return user, payment_id


async def our_payment(bot: RunningBot, user_id: int) -> str:
    return next(
        r["payment_id"]
        for r in bot.events.records
        if r["event"] == Event.PAYMENT_CREDITED and r["user_id"] == user_id
    )


async def test_a_card_top_up_carries_a_receipt_is_credited_once_and_refunded_once(
    bot: RunningBot,
) -> None:
    user, amounts = await card_amounts(bot, 3301)
    asked = await tap(user, "100 ₽", amounts)
    assert asked.text.startswith("🧾 По закону (54-ФЗ)")
    await user.send("не почта")
    assert (await user.next_message()).text.startswith("Это не похоже на e-mail")
    assert bot.sandbox.yookassa.payments == {}  # nothing was created while the contact was unknown
    await user.send("Vera.Petrova@Mail.ru")
    link = await user.next_message()
    assert link.text.startswith("🧾 Чеки будут приходить на v***@mail.ru.")
    payment_id = payment_id_of(link)
    receipt = the_receipt(bot, "payment", payment_id)
    assert receipt_problem(receipt, Decimal("100.00"), "RUB") is None
    assert receipt["customer"] == {"email": "vera.petrova@mail.ru"}
    assert receipt["tax_system_code"] == 2
    [item] = receipt["items"]
    assert item["description"] == "Пополнение баланса на 100 ₽"
    assert (item["vat_code"], item["payment_mode"], item["payment_subject"]) == (
        1,
        "advance",
        "payment",
    )
    await bot.sandbox.yookassa.pay(payment_id)
    assert (await user.next_message()).text.startswith("✅ Зачислено 100 ₽.")
    assert await bot.sandbox.yookassa.notify(payment_id, "payment.succeeded") == 200
    assert await bot.balance(3301) == (100_00, 0)

    # The admin refunds from the user's card in the panel: one tap asks, the second refunds.
    ours = await our_payment(bot, 3301)
    admin = await bot.client.user(ADMIN, "Админ")
    await admin.send("/user 3301")
    card = await admin.next_message()
    assert ours in card.text
    ask = await tap(admin, "↩️ Вернуть 100 ₽ (yookassa)", card)
    assert ask.text.startswith(f"↩️ Вернуть платёж {ours} пользователя 3301: 100 ₽")
    assert await bot.balance(3301) == (100_00, 0)  # asking moves nothing
    done = await tap(admin, "✅ Да, вернуть", ask)
    assert done.text.startswith(f"↩️ Платёж {ours} возвращён: 100 ₽")
    told = await user.next_message()
    assert told.text.startswith("↩️ Возврат платежа: 100 ₽ списано с баланса и возвращено на карту")
    assert await bot.balance(3301) == (0, 0)
    [refund] = bot.sandbox.yookassa.refunds.values()
    assert refund["status"] == "succeeded"
    refund_receipt = the_receipt(bot, "refund", refund["id"])
    assert receipt_problem(refund_receipt, Decimal("100.00"), "RUB") is None
    assert refund_receipt["customer"] == {"email": "vera.petrova@mail.ru"}
    assert refund_receipt["items"][0]["description"] == "Возврат пополнения баланса на 100 ₽"
    assert bot.sandbox.yookassa.payments[payment_id]["refunded_amount"]["value"] == "100.00"
    # Once: a second refund is refused and YooKassa is not asked again.
    await admin.send(f"/refund {ours}")
    assert (await admin.next_message()).text.startswith("Этот платёж нельзя вернуть")
    assert len(bot.sandbox.yookassa.refunds) == 1

    # The contact is remembered (not asked again), shown, and can be changed to a phone.
    _, amounts = await card_amounts(bot, 3301, user)
    assert "🧾 Чек придёт на v***@mail.ru" in amounts.text
    asked = await tap(user, "🧾 Изменить e-mail для чека", amounts)
    assert asked.text.startswith("🧾 По закону (54-ФЗ)")
    await user.send("8 (900) 123-45-67")
    again = await user.next_message()
    assert again.text.startswith("🧾 Чеки будут приходить на +7 *** ***-45-67.")
    link = await tap(user, "100 ₽", again)
    assert the_receipt(bot, "payment", payment_id_of(link))["customer"] == {"phone": "79001234567"}


async def test_a_refund_that_failed_after_yookassa_made_it_is_finished_once(
    bot: RunningBot,
) -> None:
    user, _ = await paid_card_top_up(bot, 3302, "+7 900 000-00-02")
    ours = await our_payment(bot, 3302)
    bot.sandbox.yookassa.fail_refunds_after = 1  # refunded, then a 500
    admin = await bot.client.user(ADMIN, "Админ")
    await admin.send(f"/refund {ours}")
    unclear = await admin.next_message()
    assert unclear.text.startswith("Платёжная система не ответила ясно. Возврат открыт")
    assert await bot.balance(3302) == (0, 0)  # reversed first
    payment = await bot.services.payments.get(ours)
    assert payment is not None
    assert payment.status == "refunding"
    # The periodic check asks again under the same idempotence key: the same refund, no second.
    cards = bot.services.cards
    assert cards is not None
    assert await cards.resume_refunds() == 1
    assert len(bot.sandbox.yookassa.refunds) == 1
    assert (await user.next_message()).text.startswith("↩️ Возврат платежа: 100 ₽")
    payment = await bot.services.payments.get(ours)
    assert payment is not None
    assert payment.status == "refunded"
    assert await cards.resume_refunds() == 0
    assert await bot.balance(3302) == (0, 0)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        keys = list(
            await session.scalars(
                select(LedgerPosting.idempotency_key).where(
                    LedgerPosting.idempotency_key.like("refund%yookassa%")
                )
            )
        )
    assert len(keys) == 1


async def test_a_refused_refund_restores_the_credit_and_a_later_one_goes_through(
    bot: RunningBot,
) -> None:
    await paid_card_top_up(bot, 3303, "payer@example.com")
    ours = await our_payment(bot, 3303)
    admin = await bot.client.user(ADMIN, "Админ")
    bot.sandbox.yookassa.refund_status = "canceled"
    await admin.send(f"/refund {ours}")
    refused = await admin.next_message()
    assert refused.text.startswith("Платёжная система не приняла возврат")
    assert await bot.balance(3303) == (100_00, 0)
    bot.sandbox.yookassa.refund_status = "succeeded"
    await admin.send(f"/refund {ours}")
    assert (await admin.next_message()).text.startswith(f"↩️ Платёж {ours} возвращён")
    assert await bot.balance(3303) == (0, 0)
    statuses = sorted(r["status"] for r in bot.sandbox.yookassa.refunds.values())
    assert statuses == ["canceled", "succeeded"]  # a new attempt, a new key, a new refund


async def test_terms_are_one_tap_from_the_top_up_screen_and_a_command(bot: RunningBot) -> None:
    user = await bot.client.user(3304, "Вера")
    await user.send("/start")
    balance = await tap(user, "💰 Баланс", await user.next_message())
    topup = await tap(user, "💰 Пополнить", balance)
    terms = await tap(user, "📄 Условия", topup)
    assert terms.text.startswith("📄 Условия пользования")
    assert "не сгорают" in terms.text
    assert "автоматически возвращается на баланс" in terms.text
    await user.send("/terms")
    assert (await user.next_message()).text == terms.text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_with_receipts_off_nothing_is_asked_and_a_fiscal_shop_refuses(
    tmp_path: Path, database_url: str | None
) -> None:
    async with start_bot(tmp_path, database_url, {}) as bot:
        user, amounts = await card_amounts(bot, 3305)
        assert "🧾" not in amounts.text
        link = await tap(user, "100 ₽", amounts)
        assert link.text.startswith("💳 Счёт на 100 ₽ готов.")
        assert bot.sandbox.yookassa.receipts == []
        # The same bot against a shop with fiscalisation on: YooKassa refuses the payment
        # ("Receipt is missing or illegal") and the user hears that cards are unavailable.
        bot.sandbox.yookassa.receipts_required = True
        topup = await tap(user, "⬅️ Назад", link)
        amounts = await tap(user, "💳 Карта или СБП", topup)
        refused = await tap(user, "100 ₽", amounts)
        assert refused.text.startswith("Оплата картой сейчас недоступна")
        assert len(bot.sandbox.yookassa.payments) == 1
        assert await bot.client.violations() == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_operator_default_e_mail_takes_receipts_of_users_who_gave_none(
    tmp_path: Path, database_url: str | None
) -> None:
    payments = {**RECEIPTS, "YOOKASSA_RECEIPT_EMAIL": "checks@shop.example"}
    async with start_bot(tmp_path, database_url, payments) as bot:
        bot.sandbox.yookassa.receipts_required = True
        user, amounts = await card_amounts(bot, 3306)
        assert "🧾 Чек придёт на c***@shop.example" in amounts.text
        link = await tap(user, "100 ₽", amounts)
        receipt = the_receipt(bot, "payment", payment_id_of(link))
        assert receipt["customer"] == {"email": "checks@shop.example"}
