"""kill -9 at each step of a paid generation and of a top-up, with real `trt run` processes.

One chain of crashes on Postgres (production's database): each process is started with one
failpoint armed (trt.faults) and dies there as by kill -9; the next one recovers what the last
left and dies at the next step; the last one runs unarmed. Then: the ledger invariants hold,
each job was charged once and delivered or refunded once, the top-up was credited once, and
every user was told. (The steps between, by state: tests/e2e/test_engine_processes.py.)
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select

from tests.e2e_support import prompt_sent
from tests.e2e_support import tap_screen as tap
from tests.process_world import World, world
from tests.processes import TrtProcess
from trt.billing.wallets import WalletService
from trt.config import PaymentsSettings
from trt.db.models import Job, LedgerPosting
from trt.jobs.state import TERMINAL, JobStatus
from trt.payments.service import PaymentService
from trt.sandbox.driver import SandboxClient

pytestmark = pytest.mark.slow
__all__ = ["world"]
STARS_PACKAGE_KOP = 9000  # ⭐ 50 → 90 ₽


async def died_at(process: TrtProcess, step: str) -> None:
    """The process ended by SIGKILL at `step` (its failpoint line is the proof)."""
    try:
        code = await process.finish(60)
    finally:
        await process.kill()
    assert code == -signal.SIGKILL, process.output
    assert f"failpoint {step}: SIGKILL" in process.output, process.output


async def crash_at(world: World, step: str, action: Callable[[], Awaitable[None]]) -> None:
    """Start an instance armed at `step`, do `action`, and see it die there."""
    process = await world.start(TRT_FAILPOINTS=step)
    try:
        await action()
    except BaseException:
        await process.kill()
        raise
    await died_at(process, step)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_kill_9_at_each_step_of_a_paid_generation_and_a_top_up(world: World) -> None:
    painter, late, payer = 501, 502, 503
    await world.fund(painter, 100_000)
    await world.fund(late, 100_000)
    async with SandboxClient(world.sandbox.telegram_app.url) as client:
        alice = await client.user(painter, "Алиса")
        vera = await client.user(payer, "Вера")

        async def confirm_a_generation() -> None:
            await alice.send("/start")
            menu = await alice.next_message()
            listing = await tap(alice, "🎨 Картинки и дизайн", menu)
            model = next(b for b in listing.button_labels if b.startswith("Z-Image ·"))
            card = await tap(alice, model, listing)
            await tap(alice, "▶️ Начать", card)
            # Z-Image asks for English: the translation is offered; Alice keeps her text.
            screen = await tap(alice, "1:1 квадрат", await prompt_sent(alice, "кот"))
            assert "💰 Цена:" in screen.text
            await alice.click("✅ Сгенерировать", screen, wait_answer=False)

        async def nothing() -> None:
            return None

        # 1. hold placed and job stored; the instance dies before the tap's update is done.
        await crash_at(world, "job.confirmed", confirm_a_generation)
        # 2. the redelivered tap finds its job (no second one); KIE runs it; the result is
        #    downloaded and the hold captured, and the instance dies before the commit.
        await crash_at(world, "job.captured", nothing)
        # 3. polled again, captured once; the photo goes out; dies before the outbox mark.
        await crash_at(world, "outbox.sent", nothing)
        jobs = await world.statuses()
        assert len(jobs) == 1, jobs  # the redelivered confirm made no second job

        async def late_job() -> None:
            await world.until(lambda s: JobStatus.DELIVERED.value in s.values())
            await world.create(late, "a late fox")

        # 4. the unmarked photo is sent again (at least once) and the job delivered; a new
        #    job's createTask succeeds at KIE and the instance dies before storing the task id.
        await crash_at(world, "job.created_at_kie", late_job)

        async def pay_with_stars() -> None:
            await vera.send("/start")
            menu = await vera.next_message()
            balance = await tap(vera, "💰 Баланс", menu)
            topup = await tap(vera, "💰 Пополнить", balance)
            packages = await tap(vera, "⭐ Telegram Stars", topup)
            await vera.click(packages.button_labels[0], packages)
            invoice = await vera.next_message()
            assert await vera.pay(invoice) == (True, None)

        # 5. the top-up's credit is written and the instance dies before the commit.
        await crash_at(world, "payment.uncommitted", pay_with_stars)
        # 6. the redelivered payment is credited and committed; dies before telling Вера.
        await crash_at(world, "payment.credited", nothing)
        # 7. unarmed: the payment seen again is not credited again, and Вера is told.
        last = await world.start()
        try:
            told = await vera.next_message(timeout_s=30)
            states = await world.until(lambda s: all(v in TERMINAL for v in s.values()))
            # A job ended is not yet a user told: the relay sends its row a moment later.
            telegram = world.sandbox.telegram
            await telegram.wait_for(lambda: bool(telegram.messages.get(late)), timeout_s=30)
            await last.signal(signal.SIGTERM)
            assert await last.finish() == 0
        finally:
            await last.kill()

    assert told.text.startswith("✅ Зачислено 90 ₽. Баланс: 90 ₽"), told.text
    await world.assert_settled_once(killed_while_sending=True)
    async with world.database.unit_of_work(readonly=True) as session:
        credits = list(
            await session.scalars(
                select(LedgerPosting.idempotency_key).where(
                    LedgerPosting.idempotency_key.like("stars:%")
                )
            )
        )
        late_job_status = await session.scalar(select(Job.status).where(Job.user_id == late))
    assert len(credits) == 1
    balance = await WalletService(world.database).balance(payer)
    assert (balance.available_kop, balance.held_kop) == (STARS_PACKAGE_KOP, 0)
    assert sorted(states.values()).count(JobStatus.DELIVERED.value) >= 1
    # The task whose id was lost is never sent to KIE again: adopted from KIE, or refunded.
    assert late_job_status in (JobStatus.DELIVERED.value, JobStatus.TIMED_OUT.value)
    assert sum(task.prompt == "a late fox" for task in world.sandbox.kie.tasks.values()) == 1
    notices = [
        m
        for m in world.sandbox.telegram.messages[payer].values()
        if str(m.get("text", "")).startswith("✅ Зачислено")
    ]
    assert len(notices) == 1  # told once, though the payment was seen three times
    late_messages = list(world.sandbox.telegram.messages[late].values())
    assert any(m.get("photo") or str(m.get("text", "")).startswith("❌") for m in late_messages)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_kill_9_at_each_step_of_a_card_refund_refunds_once(world: World) -> None:
    """An admin's YooKassa refund killed after the reversal, then after YooKassa refunded and
    before the answer was recorded: the next instance asks again under the same idempotence
    key, so there is one refund, one reversal, and the user is told once."""
    payer, admin_id = 511, 9000
    payments = PaymentService(world.database, PaymentsSettings())
    view = await payments.create(
        user_id=payer, chat_id=payer, lang="ru", method="yookassa", amount_kop=100_00, cid="setup"
    )
    external = str(uuid.uuid4())
    world.sandbox.yookassa.payments[external] = {
        "id": external,
        "status": "succeeded",
        "paid": True,
        "amount": {"value": "100.00", "currency": "RUB"},
        "metadata": {"payment_id": view.id},
    }
    await payments.set_external(view.id, external)
    await payments.credit(view.id, external_id=external, memo="ЮKassa", cid="setup")
    admins = {"ADMIN_IDS": str(admin_id)}
    async with SandboxClient(world.sandbox.telegram_app.url) as client:
        vera = await client.user(payer, "Вера")
        admin = await client.user(admin_id, "Админ")

        async def ask_for_the_refund() -> None:
            await vera.send("/start")
            await vera.next_message()
            await admin.send(f"/refund {view.id}")

        async def nothing() -> None:
            return None

        # 1. the credit is reversed and committed; dies before YooKassa is asked.
        process = await world.start(TRT_FAILPOINTS="refund.reversed", **admins)
        try:
            await ask_for_the_refund()
        except BaseException:
            await process.kill()
            raise
        await died_at(process, "refund.reversed")
        # 2. the open refund is asked for (the redelivered command or the check on taking the
        #    lead); YooKassa refunds; dies before the answer is recorded.
        await crash_at(world, "refund.answered", nothing)
        assert len(world.sandbox.yookassa.refunds) == 1
        # 3. unarmed: asked again under the same key, the same refund: finished, Вера told.
        last = await world.start(**admins)
        try:
            told = await vera.next_message(timeout_s=30)
            await last.signal(signal.SIGTERM)
            assert await last.finish() == 0
        finally:
            await last.kill()
    assert told.text.startswith("↩️ Возврат платежа: 100 ₽"), told.text
    assert len(world.sandbox.yookassa.refunds) == 1
    assert world.sandbox.yookassa.payments[external]["refunded_amount"]["value"] == "100.00"
    refunded = await payments.get(view.id)
    assert refunded is not None
    assert refunded.status == "refunded"
    async with world.database.unit_of_work(readonly=True) as session:
        reversals = list(
            await session.scalars(
                select(LedgerPosting.idempotency_key).where(
                    LedgerPosting.idempotency_key.like("refund%")
                )
            )
        )
    assert reversals == [f"refund:yookassa:{external}"]
    balance = await WalletService(world.database).balance(payer)
    assert (balance.available_kop, balance.held_kop) == (0, 0)
    notices = [
        m
        for m in world.sandbox.telegram.messages[payer].values()
        if str(m.get("text", "")).startswith("↩️ Возврат платежа")
    ]
    assert len(notices) == 1
    await world.assert_settled_once()
