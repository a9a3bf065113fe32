"""Stars refunds over every sequence of Telegram answers: refused, failed after it took effect
(a timeout or 5xx that came after Telegram refunded), failed before it took effect, or done.

The invariant after every step, and after the periodic check settles what was unclear: the
user has either the credit or the Stars, never both and never neither once settled; a
refunding payment has the credit taken back exactly once."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.test_bad_input import Scene, scene
from tests.e2e_support import RunningBot
from trt.payments.service import PaymentError
from trt.sandbox.telegram import MethodFault

USER = 6161
AMOUNT_KOP = 90_00  # the first Stars package
REFUSE = MethodFault("refundStarPayment", 400, "Bad Request: REFUND_FAILED")
LOST = MethodFault("refundStarPayment", 502, "Bad Gateway")  # failed before taking effect
LATE = MethodFault("refundStarPayment", 502, "Bad Gateway", after_effect=True)  # after it
STEPS = {"refuse": REFUSE, "lost": LOST, "late": LATE, "ok": None}
SEQUENCES = settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


async def paid_payment(bot: RunningBot, user_id: int) -> tuple[str, str]:
    """A Stars payment credited to `user_id`; (payment id, charge id)."""
    user = await bot.client.user(user_id, "Звёзды")
    package = bot.services.config.payments.stars_packages[0]
    await bot.services.stars.send_invoice(
        user_id=user_id, chat_id=user_id, lang="ru", package=package, cid="refund-sequences"
    )
    invoice = await user.next_message()
    assert (await user.pay(invoice))[0]
    credited = await user.next_message()
    assert credited.text.startswith("✅ Зачислено")
    _user, paid = bot.sandbox.telegram.successful_payments[-1]
    charge = str(paid["telegram_payment_charge_id"])
    payment = await bot.services.payments.by_external("stars", charge)
    assert payment is not None
    return payment.id, charge


async def state(bot: RunningBot, payment_id: str, charge: str) -> tuple[str, int, bool]:
    payment = await bot.services.payments.get(payment_id)
    assert payment is not None
    posted, _held = await bot.balance(payment.user_id)
    return payment.status, posted, charge in bot.sandbox.telegram.refunded_charges


def consistent(status: str, posted: int, stars_back: bool) -> bool:
    if status == "refunded":
        return stars_back and posted == 0
    if status == "refunding":  # the credit taken back once, the outcome still open
        return posted == 0
    return status == "succeeded" and not stars_back and posted == AMOUNT_KOP


def test_refund_sequences_keep_wallet_and_stars_consistent(tmp_path: Path) -> None:
    tried = 0
    with scene(tmp_path) as s:
        s.bot.services.stars.sender.per_chat_interval_s = 0.0  # no pacing wait per notice

        @SEQUENCES
        @given(st.lists(st.sampled_from(sorted(STEPS)), min_size=1, max_size=4))
        def case(steps: list[str]) -> None:
            nonlocal tried
            tried += 1
            # A user of its own per sequence: Telegram paces messages per chat.
            check(s, steps, USER + tried)

        case()
    assert tried >= 15


def check(s: Scene, steps: list[str], user_id: int) -> None:
    bot = s.bot
    payment_id, charge = s.run(paid_payment(bot, user_id))
    telegram = bot.sandbox.telegram
    for step in steps:
        fault = STEPS[step]
        if fault is not None:
            telegram.faults.append(MethodFault(**{**vars(fault), "times": 1}))
        with contextlib.suppress(PaymentError):
            s.run(bot.services.stars.refund(payment_id, cid="refund-sequences"))
        telegram.faults.clear()
        status, posted, stars_back = s.run(state(bot, payment_id, charge))
        assert consistent(status, posted, stars_back), (steps, step, status, posted)
        if status == "refunded":
            break
    # The periodic check settles what was left unclear, with Telegram answering normally.
    s.run(bot.services.stars.resume_refunds())
    status, posted, stars_back = s.run(state(bot, payment_id, charge))
    assert status in ("succeeded", "refunded"), (steps, status)
    assert consistent(status, posted, stars_back), (steps, status, posted, stars_back)
    assert s.run(bot.ledger_problems()) == []
