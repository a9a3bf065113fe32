"""Top-ups end to end through the sandbox (Telegram Stars, YooKassa, manual transfers, bonuses):
each credited exactly once, the refusals move nothing, the ledger's invariants hold after each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiogram.types import LabeledPrice
from sqlalchemy import func, select

from tests.e2e_support import RunningBot, running_bot
from trt.db.models import AuditEntry, Payment, utcnow
from trt.payments.bonuses import BonusService, referral_code
from trt.payments.yookassa import CardPayments
from trt.sandbox.driver import Message, SandboxUser
from trt.telemetry.events import Event

YOOKASSA_PATH = CardPayments.notification_path

ADMIN = 9000
PACKAGE_KOP = 90_00  # the first Stars package: 50 ⭐ → 90 ₽


@pytest.fixture
async def bot(tmp_path: Path, database_url: str | None) -> AsyncIterator[RunningBot]:
    async with running_bot(
        tmp_path,
        database_url=database_url,
        admin_ids=(ADMIN,),
        payments={"WELCOME_BONUS_RUB": 0, "REFERRAL_BONUS_RUB": 50},
    ) as running:
        yield running
        assert await running.ledger_problems() == []
        assert await running.client.violations() == []


async def tap(user: SandboxUser, label: str, message: Message) -> Message:
    answer = await user.click(label, message)
    assert answer.answered
    return (await user.next_event(("edit", "message"))).message


async def open_topup(
    bot: RunningBot, user_id: int, name: str = "Вера"
) -> tuple[SandboxUser, Message]:
    user = await bot.client.user(user_id, name)
    await user.send("/start")
    menu = await user.next_message()
    balance = await tap(user, "💰 Баланс", menu)
    return user, await tap(user, "💰 Пополнить", balance)


async def stars_invoice(bot: RunningBot, user_id: int) -> tuple[SandboxUser, Message]:
    user, topup = await open_topup(bot, user_id)
    packages = await tap(user, "⭐ Telegram Stars", topup)
    assert packages.button_labels[0] == "⭐ 50 → 90 ₽"
    answer = await user.click(packages.button_labels[0], packages)
    assert answer.answered
    invoice = await user.next_message()
    assert invoice.raw["invoice"]["currency"] == "XTR"
    assert invoice.raw["invoice"]["total_amount"] == 50
    return user, invoice


# -- Telegram Stars -------------------------------------------------------------------------
async def test_stars_invoice_paid_credits_once_even_when_delivered_twice(bot: RunningBot) -> None:
    user, invoice = await stars_invoice(bot, 3101)
    assert await user.pay(invoice) == (True, None)
    credited = await user.next_message()
    assert credited.text.startswith("✅ Зачислено 90 ₽. Баланс: 90 ₽")
    assert await bot.balance(3101) == (PACKAGE_KOP, 0)
    # Telegram delivers the same successful_payment again (another update, the same charge).
    user_id, paid = bot.sandbox.telegram.successful_payments[-1]
    mark = len(bot.events.records)
    await bot.sandbox.telegram.user_sends(user_id, successful_payment=paid)
    await bot.events.handled(Event.MESSAGE_RECEIVED, user_id=user_id, since=mark)
    assert await bot.balance(3101) == (PACKAGE_KOP, 0)
    credits = [r for r in bot.events.records if r["event"] == Event.PAYMENT_CREDITED]
    assert len(credits) == 1
    # The same invoice cannot be paid a second time: pre-checkout refuses it.
    ok, error = await user.pay(invoice)
    assert not ok
    assert error == "Этот счёт уже оплачен — для нового пополнения откройте меню заново."


async def test_a_tampered_invoice_is_refused_at_pre_checkout(bot: RunningBot) -> None:
    user, _invoice = await stars_invoice(bot, 3102)
    telegram = bot.services.bot
    # A forged payload (no such payment) and the right payload with a lower price.
    real_payload = next(
        m["_payload"]
        for m in bot.sandbox.telegram.messages[3102].values()
        if m.get("invoice") is not None
    )
    forged = await telegram.send_invoice(
        3102,
        title="Пополнение",
        description="forged",
        payload="tp:" + "0" * 32,
        currency="XTR",
        prices=[LabeledPrice(label="x", amount=50)],
    )
    cheaper = await telegram.send_invoice(
        3102,
        title="Пополнение",
        description="cheaper",
        payload=real_payload,
        currency="XTR",
        prices=[LabeledPrice(label="x", amount=1)],
    )
    for sent in (forged, cheaper):
        message = Message(bot.sandbox.telegram.messages[3102][sent.message_id])
        ok, error = await user.pay(message)
        assert not ok
        assert error == "Этот счёт недействителен — откройте пополнение заново."
    assert await bot.balance(3102) == (0, 0)
    refusals = [r for r in bot.events.records if r["event"] == Event.PAYMENT_REJECTED]
    assert len(refusals) == 2


async def test_a_payment_whose_update_was_lost_is_found_by_reconciliation(
    bot: RunningBot,
) -> None:
    admin = await bot.client.user(ADMIN, "Админ")
    user, invoice = await stars_invoice(bot, 3103)
    ok, _error = await bot.sandbox.telegram.user_pays(3103, invoice.message_id, lose_update=True)
    assert ok
    assert await bot.balance(3103) == (0, 0)  # the bot never heard of it
    assert await bot.services.stars.reconcile() == 1
    notice = await user.next_message()
    assert notice.text.startswith("Мы нашли ваш платёж, который не дошёл до бота сразу.")
    assert await bot.balance(3103) == (PACKAGE_KOP, 0)
    alert = await admin.next_message()  # admins learn that updates are being missed
    assert alert.text.startswith("⚠️ Платёж stars на 90 ₽ (пользователь 3103) зачислен только")
    assert await bot.services.stars.reconcile() == 0
    bot.services.stars._cursor = 0  # a restarted process walks the whole list again
    assert await bot.services.stars.reconcile() == 0
    assert await bot.balance(3103) == (PACKAGE_KOP, 0)
    credited = [r for r in bot.events.records if r["event"] == Event.PAYMENT_CREDITED]
    assert [r["reconciled"] for r in credited] == [True]


async def test_an_admin_refunds_stars_unless_the_money_was_spent(bot: RunningBot) -> None:
    user, invoice = await stars_invoice(bot, 3104)
    assert (await user.pay(invoice))[0]
    await user.next_message()
    payment_id = next(
        r["payment_id"] for r in bot.events.records if r["event"] == Event.PAYMENT_CREDITED
    )
    admin = await bot.client.user(ADMIN, "Админ")
    stranger = await bot.client.user(3199, "Чужой")
    await stranger.send(f"/refund {payment_id}")
    await stranger.next_message()
    assert await bot.balance(3104) == (PACKAGE_KOP, 0)  # a non-admin moves nothing
    await admin.send(f"/refund {payment_id}")
    done = await admin.next_message()
    assert done.text.startswith(f"↩️ Платёж {payment_id} возвращён: 90 ₽")
    told = await user.next_message()
    assert told.text.startswith("↩️ Возврат платежа: 90 ₽")
    assert await bot.balance(3104) == (0, 0)
    charge = bot.sandbox.telegram.successful_payments[-1][1]["telegram_payment_charge_id"]
    assert charge in bot.sandbox.telegram.refunded_charges
    await admin.send(f"/refund {payment_id}")
    again = await admin.next_message()
    assert again.text.startswith("Этот платёж нельзя вернуть")
    # A second payment, spent in part: the refund is refused with the reason.
    user, invoice = await stars_invoice(bot, 3104)
    assert (await user.pay(invoice))[0]
    assert (await user.next_message()).text.startswith("✅ Зачислено 90 ₽.")
    second = [r["payment_id"] for r in bot.events.records if r["event"] == Event.PAYMENT_CREDITED][
        -1
    ]
    await bot.services.jobs.create(
        user_id=3104,
        chat_id=3104,
        lang="ru",
        model_slug="nb2",
        params={"prompt": "a fox"},
        draft_key="spend-1",
    )
    await admin.send(f"/refund {second}")
    refused = await admin.next_message()
    assert refused.text.startswith("Возврат невозможен: пользователь уже потратил деньги")


# -- YooKassa -------------------------------------------------------------------------------
async def card_link(bot: RunningBot, user_id: int, label: str = "100 ₽") -> tuple[SandboxUser, str]:
    user, topup = await open_topup(bot, user_id)
    amounts = await tap(user, "💳 Карта или СБП", topup)
    link_screen = await tap(user, label, amounts)
    assert link_screen.text.startswith("💳 Счёт на 100 ₽ готов.")
    url = str(link_screen.button("💳 Оплатить 100 ₽")["url"])
    assert url.startswith(bot.sandbox.yookassa_app.url + "/checkout/")
    return user, url.rsplit("/", 1)[1]


async def test_card_payment_is_credited_once_and_forgeries_credit_nothing(
    bot: RunningBot,
) -> None:
    user, payment_id = await card_link(bot, 3201)
    notify_url = bot.services.http_url + YOOKASSA_PATH
    async with aiohttp.ClientSession() as http:
        # Forged: a notification that claims success for a payment still pending at YooKassa,
        # and one for a payment YooKassa never made.
        pending = bot.sandbox.yookassa.payments[payment_id]
        claim = {"type": "notification", "event": "payment.succeeded", "object": {**pending}}
        claim["object"]["status"] = "succeeded"
        # The answer says nothing of what was found (the outcome goes to the log).
        async with http.post(notify_url, json=claim) as response:
            assert await response.json() == {"ok": True}
        unknown = {**pending, "id": "0000aaaa-000f-5000-9000-000000000000"}
        invented = {"type": "notification", "event": "payment.succeeded", "object": unknown}
        async with http.post(notify_url, json=invented) as response:
            assert await response.json() == {"ok": True}
        # An id that is not YooKassa's shape never reaches its API (`../` would walk its paths).
        calls = len(bot.sandbox.yookassa.requests)
        for bad in ("x", "../../v3/refunds", "0000aaaa-000f-5000-9000-000000000000?a=1"):
            forged = {"type": "notification", "event": "payment.succeeded", "object": {"id": bad}}
            async with http.post(notify_url, json=forged) as response:
                assert response.status == 400
        assert len(bot.sandbox.yookassa.requests) == calls
        assert await bot.balance(3201) == (0, 0)
        # The payer pays on YooKassa's page: the notification is verified and credited.
        async with http.post(
            f"{bot.sandbox.yookassa_app.url}/checkout/{payment_id}/pay"
        ) as response:
            assert response.status == 200
            assert "Оплачено" in await response.text()
        credited = await user.next_message()
        assert credited.text.startswith("✅ Зачислено 100 ₽.")
        assert await bot.balance(3201) == (100_00, 0)
        # YooKassa repeats the notification: nothing more.
        assert await bot.sandbox.yookassa.notify(payment_id, "payment.succeeded") == 200
        assert await bot.balance(3201) == (100_00, 0)
    assert [n["status"] for n in bot.sandbox.yookassa.notifications] == [200, 200]
    assert len([r for r in bot.events.records if r["event"] == Event.PAYMENT_CREDITED]) == 1


async def test_a_cancelled_card_payment_credits_nothing_and_the_user_is_told(
    bot: RunningBot,
) -> None:
    user, payment_id = await card_link(bot, 3202)
    await bot.sandbox.yookassa.cancel(payment_id)
    told = await user.next_message()
    assert told.text.startswith("❌ Платёж на 100 ₽ отменён — деньги не списаны.")
    assert await bot.balance(3202) == (0, 0)
    await bot.sandbox.yookassa.pay(payment_id)  # too late: a cancelled payment stays so
    assert await bot.balance(3202) == (0, 0)


async def test_a_lost_card_notification_is_found_by_the_pending_check(bot: RunningBot) -> None:
    user, payment_id = await card_link(bot, 3203)
    bot.sandbox.yookassa.notification_url = None  # the notification never arrives
    await bot.sandbox.yookassa.pay(payment_id)
    assert await bot.balance(3203) == (0, 0)
    from trt.payments import yookassa as module

    cards = bot.services.cards
    assert cards is not None
    original, module.CHECK_AFTER_S = module.CHECK_AFTER_S, 0.0
    try:
        assert await cards.check_pending() == 1
    finally:
        module.CHECK_AFTER_S = original
    await user.next_message()
    assert await bot.balance(3203) == (100_00, 0)
    assert await cards.check_pending() == 0


# -- manual transfers -----------------------------------------------------------------------
async def test_manual_transfer_approved_twice_credits_once(bot: RunningBot) -> None:
    from trt.sandbox.media import render_png

    admin = await bot.client.user(ADMIN, "Админ")
    user, topup = await open_topup(bot, 3301)
    amounts = await tap(user, "🏦 Перевод по реквизитам", topup)
    details = await tap(user, "300 ₽", amounts)
    assert "Переведите 300 ₽ по реквизитам" in details.text
    await user.send_file(render_png("receipt", 200, 300))
    received = await user.next_message()
    assert received.text.startswith("📨 Чек получен.")
    receipt = await admin.next_message()
    assert receipt.photo_file_id is not None
    assert "Перевод на 300 ₽" in receipt.raw["caption"]
    stranger = await bot.client.user(3398, "Чужой")
    approve = receipt.button("✅ Зачислить")["callback_data"]
    denied = await stranger.click_data(receipt.message_id, approve)
    assert denied.answered
    assert denied.text == "Это не ваша кнопка."
    assert await bot.balance(3301) == (0, 0)
    first = await admin.click_data(receipt.message_id, approve)
    assert first.answered
    credited = await user.next_message()
    assert credited.text.startswith("✅ Зачислено 300 ₽.")
    second = await admin.click_data(receipt.message_id, approve)
    assert second.answered
    assert second.text == "Решение уже принято: succeeded."
    assert await bot.balance(3301) == (300_00, 0)


async def test_manual_transfer_rejected_credits_nothing_and_the_user_is_told(
    bot: RunningBot,
) -> None:
    from trt.sandbox.media import render_png

    admin = await bot.client.user(ADMIN, "Админ")
    user, topup = await open_topup(bot, 3302)
    amounts = await tap(user, "🏦 Перевод по реквизитам", topup)
    await tap(user, "100 ₽", amounts)
    await user.send_file(render_png("receipt", 200, 300))
    await user.next_message()
    receipt = await admin.next_message()
    answer = await admin.click_data(
        receipt.message_id, receipt.button("❌ Отклонить")["callback_data"]
    )
    assert answer.answered
    told = await user.next_message()
    assert told.text.startswith("❌ Перевод на 100 ₽ не подтверждён.")
    late = await admin.click_data(
        receipt.message_id, receipt.button("✅ Зачислить")["callback_data"]
    )
    assert late.text == "Решение уже принято: rejected."
    assert await bot.balance(3302) == (0, 0)


# -- bonuses --------------------------------------------------------------------------------
async def spend(bot: RunningBot, user_id: int, draft: str) -> None:
    """One paid generation (7,60 ₽), delivered."""
    job = await bot.create_job(user_id, "a fox", draft=draft)
    await bot.events.wait_for(Event.DELIVERED, job_id=job, timeout_s=30)


async def test_referral_bonus_after_a_paying_friends_spending_once_capped_and_reversed(
    tmp_path: Path, database_url: str | None
) -> None:
    # Farming was: invite yourself under another account, top up, collect, refund. Now the
    # bonus waits for real spending, is paid once per friend, at most N per inviter, and goes
    # back with the friend's refund.
    async with running_bot(
        tmp_path,
        database_url=database_url,
        admin_ids=(ADMIN,),
        payments={
            "WELCOME_BONUS_RUB": 0,
            "REFERRAL_BONUS_RUB": 50,
            "REFERRAL_MIN_SPEND_RUB": 10,
            "REFERRAL_MAX_PER_INVITER": 1,
        },
    ) as bot:
        inviter = await bot.client.user(3401, "Пригласивший")
        await inviter.send("/start")
        await inviter.next_message()
        invited = await bot.client.user(3402, "Друг")
        await invited.send(f"/start ref_{referral_code(3401)}")
        await invited.next_message()
        # Self-referral and an existing user's referral are not stored.
        loner = await bot.client.user(3403, "Сам")
        await loner.send(f"/start ref_{referral_code(3403)}")
        await loner.next_message()
        await inviter.send(f"/start ref_{referral_code(3402)}")
        await inviter.next_message()
        for _ in range(2):  # two top-ups by the invited user: no bonus for money alone
            invited, invoice = await stars_invoice(bot, 3402)
            assert (await invited.pay(invoice))[0]
            assert (await invited.next_message()).text.startswith("✅ Зачислено 90 ₽.")
        assert await bot.balance(3401) == (0, 0)
        await spend(bot, 3402, "friend-1")  # 7,60 ₽: below the 10 ₽ minimum
        assert await bot.balance(3401) == (0, 0)
        await spend(bot, 3402, "friend-2")  # 15,20 ₽ spent: the friend counts now
        bonus = await inviter.next_message()
        assert bonus.text.startswith("🤝 Ваш друг пользуется ботом — вам начислено 50 ₽.")
        assert await bot.balance(3401) == (50_00, 0)
        await spend(bot, 3402, "friend-3")  # once per friend
        assert await bot.balance(3401) == (50_00, 0)
        screen = await open_topup(bot, 3401)
        invite = await tap(screen[0], "🤝 Пригласить друга", screen[1])
        assert f"start=ref_{referral_code(3401)}" in invite.text
        assert "от 10 ₽" in invite.text
        assert "Приглашено: 1, бонус получен за: 1." in invite.text

        # A second friend who spends as much: over the inviter's cap of one, no bonus.
        second = await bot.client.user(3404, "Второй друг")
        await second.send(f"/start ref_{referral_code(3401)}")
        await second.next_message()
        second, invoice = await stars_invoice(bot, 3404)
        assert (await second.pay(invoice))[0]
        await second.next_message()
        await spend(bot, 3404, "second-1")
        await spend(bot, 3404, "second-2")
        assert await bot.balance(3401) == (50_00, 0)

        # The first friend's top-up is refunded: the inviter's bonus goes back with it.
        payment = next(
            r["payment_id"]
            for r in bot.events.records
            if r["event"] == Event.PAYMENT_CREDITED and r["user_id"] == 3402
        )
        admin = await bot.client.user(ADMIN, "Админ")
        await admin.send(f"/refund {payment}")
        assert (await admin.next_message()).text.startswith(f"↩️ Платёж {payment} возвращён")
        assert await bot.balance(3401) == (0, 0)
        assert await bot.balance(3403) == (0, 0)  # no bonus for inviting oneself
        assert await bot.ledger_problems() == []


async def test_promo_codes_keep_their_limits_and_expiry(bot: RunningBot) -> None:
    bonuses = BonusService(bot.services.database, bot.services.config.payments)
    await bonuses.create_promo("WINTER", 25_00, max_uses=1, expires_at=None)
    await bonuses.create_promo("OLD", 25_00, max_uses=10, expires_at=utcnow() - timedelta(days=1))
    first = await bot.client.user(3501, "Первый")
    await first.send("/promo winter")
    assert (await first.next_message()).text.startswith("🎁 Промокод принят: +25 ₽.")
    await first.send("/promo WINTER")
    assert (await first.next_message()).text == "Вы уже использовали этот промокод."
    second = await bot.client.user(3502, "Второй")
    await second.send("/promo WINTER")
    assert (
        await second.next_message()
    ).text == "Этот промокод уже использован максимальное число раз."
    await second.send("/promo OLD")
    assert (await second.next_message()).text == "Срок действия этого промокода истёк."
    await second.send("/promo NOPE")
    assert (await second.next_message()).text == "Такого промокода нет. Проверьте написание."
    # Through the top-up screen: the code is asked for, then typed.
    third, topup = await open_topup(bot, 3503)
    asked = await tap(third, "🎁 Промокод", topup)
    assert asked.text == "🎁 Введите промокод:"
    await third.send("old")
    assert (await third.next_message()).text == "Срок действия этого промокода истёк."
    assert await bot.balance(3501) == (25_00, 0)
    assert await bot.balance(3502) == (0, 0)


async def test_welcome_bonus_once_for_a_new_user(tmp_path: Path) -> None:
    async with running_bot(tmp_path, payments={"WELCOME_BONUS_RUB": 10}) as bot:
        user = await bot.client.user(3601, "Новый")
        await user.send("/start")
        greeting = await user.next_message()
        assert "🎁 Приветственный бонус: 10 ₽ уже на балансе." in greeting.text
        await user.send("/start")
        again = await user.next_message()
        assert "Приветственный бонус" not in again.text
        assert await bot.balance(3601) == (10_00, 0)
        assert await bot.ledger_problems() == []


async def test_the_balance_screen_pages_through_operations_in_plain_words(
    bot: RunningBot,
) -> None:
    for number in range(10):
        await bot.give_money(3701, 100, key=f"page:{number}")
    user = await bot.client.user(3701, "Вера")
    await user.send("/balance")
    first = await user.next_message()
    assert first.text.count("пополнение") == 8
    second = await tap(user, "▶️", first)
    assert second.text.count("пополнение") == 2
    assert "Операции, стр. 2" in second.text
    back = await tap(user, "◀️", second)
    assert back.text.count("пополнение") == 8


async def test_a_refund_interrupted_after_the_reversal_completes_on_retry(
    bot: RunningBot,
) -> None:
    user, invoice = await stars_invoice(bot, 3105)
    assert (await user.pay(invoice))[0]
    await user.next_message()
    payment_id = next(
        r["payment_id"] for r in bot.events.records if r["event"] == Event.PAYMENT_CREDITED
    )
    # A crash after the credit was taken back, before Telegram was asked.
    await bot.services.payments.start_refund(payment_id)
    assert await bot.balance(3105) == (0, 0)
    admin = await bot.client.user(ADMIN, "Админ")
    await admin.send(f"/refund {payment_id}")
    assert (await admin.next_message()).text.startswith(f"↩️ Платёж {payment_id} возвращён")
    assert await bot.balance(3105) == (0, 0)  # reversed once, not twice
    charge = bot.sandbox.telegram.successful_payments[-1][1]["telegram_payment_charge_id"]
    assert charge in bot.sandbox.telegram.refunded_charges
    payment = await bot.services.payments.get(payment_id)
    assert payment is not None
    assert payment.status == "refunded"


# -- requests handled again after a crash (the inbox is at-least-once) ---------------------
async def handled_again(bot: RunningBot, user_id: int, message_id: int) -> None:
    """The same message handled a second time, under a new cid (a crash before the inbox's
    done-mark: the restarted instance handles the stored update again)."""
    mark = len(bot.events.records)
    await bot.sandbox.telegram.redeliver(user_id, message_id)
    await bot.events.handled(Event.MESSAGE_RECEIVED, user_id=user_id, since=mark)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_adjustment_handled_twice_moves_money_once(bot: RunningBot) -> None:
    user = await bot.client.user(3601, "Клиент")
    await user.send("/start")
    await user.next_message()
    admin = await bot.client.user(ADMIN, "Админ")
    command, _seq = await bot.sandbox.telegram.user_sends(ADMIN, text="/adjust 3601 50 gift")
    assert (await admin.next_message()).text.startswith("Баланс 3601 изменён на 50 ₽")
    await handled_again(bot, ADMIN, command["message_id"])
    assert await bot.balance(3601) == (50_00, 0)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        audited = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "adjust")
        )
    assert audited == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_receipt_makes_one_payment_however_often_it_arrives(bot: RunningBot) -> None:
    from trt.sandbox.media import render_png

    admin = await bot.client.user(ADMIN, "Админ")
    user, topup = await open_topup(bot, 3602, name="<b>Хакер</b> & Co")
    amounts = await tap(user, "🏦 Перевод по реквизитам", topup)
    await tap(user, "300 ₽", amounts)
    sent = await user.send_file(render_png("receipt", 200, 300))
    assert (await user.next_message()).text.startswith("📨 Чек получен.")
    receipt = await admin.next_message()
    # The receipt message handled again: the same payment, no second receipt for the admins.
    await handled_again(bot, 3602, sent.message_id)
    # The same receipt sent again (a new message, the same file): refused.
    user, topup = await open_topup(bot, 3602, name="<b>Хакер</b> & Co")
    again = await tap(user, "300 ₽", await tap(user, "🏦 Перевод по реквизитам", topup))
    assert "Переведите" in again.text
    photo = sent.raw["photo"]
    await bot.sandbox.telegram.user_sends(3602, photo=photo)
    assert (await user.next_message()).text.startswith("Этот чек уже был отправлен.")
    # Another receipt while the first waits for an admin: refused too.
    await user.send_file(render_png("another receipt", 200, 300))
    assert (await user.next_message()).text.startswith("Ваш предыдущий чек ещё проверяется.")
    async with bot.services.database.unit_of_work(readonly=True) as session:
        manual = list(await session.scalars(select(Payment).where(Payment.user_id == 3602)))
    assert len(manual) == 1
    # The admin approves: credited once; the caption keeps the user's name as text, not markup.
    approve = receipt.button("✅ Зачислить")["callback_data"]
    assert (await admin.click_data(receipt.message_id, approve)).answered
    assert (await user.next_message()).text.startswith("✅ Зачислено 300 ₽.")
    edited = (await admin.next_event(("edit",))).message
    assert (
        "<b>Хакер</b> &amp; Co" in edited.raw["caption"]
        or "<b>Хакер</b> & Co" in (edited.raw["caption"])
    )
    assert not any(e.get("type") == "bold" for e in edited.raw.get("caption_entities", []))
    assert await bot.balance(3602) == (300_00, 0)
