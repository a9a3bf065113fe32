"""The ledger on SQLite and Postgres: postings, holds, replays, invariants."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from trt.billing.ledger import (
    ADJUSTMENTS,
    IdempotencyConflictError,
    InsufficientFundsError,
    Ledger,
    check_invariants,
    wallet_code,
)
from trt.db.database import Database
from trt.db.models import Hold, LedgerAccount, User

USER = 7


@pytest.fixture
async def ledger(database: Database) -> Ledger:
    async with database.unit_of_work() as session:
        session.add(User(id=USER))
    return Ledger(is_sqlite=database.is_sqlite)


async def top_up(database: Database, ledger: Ledger, amount: int, key: str = "t1") -> None:
    async with database.unit_of_work() as session:
        source = await ledger.account(session, "topup:test")
        wallet = await ledger.wallet(session, USER)
        await ledger.transfer(
            session,
            kind="topup",
            idempotency_key=key,
            debit=source,
            credit=wallet,
            amount_kop=amount,
        )


async def test_top_up_and_balance(database: Database, ledger: Ledger) -> None:
    await top_up(database, ledger, 50_000)
    async with database.unit_of_work(readonly=True) as session:
        balance = await ledger.balance(session, USER)
        assert (balance.posted_kop, balance.held_kop, balance.available_kop) == (50_000, 0, 50_000)
        assert await check_invariants(session) == []


async def test_replayed_posting_changes_nothing(database: Database, ledger: Ledger) -> None:
    await top_up(database, ledger, 10_000, key="charge-1")
    await top_up(database, ledger, 10_000, key="charge-1")
    async with database.unit_of_work(readonly=True) as session:
        assert (await ledger.balance(session, USER)).posted_kop == 10_000


async def test_same_key_other_amount_is_refused(database: Database, ledger: Ledger) -> None:
    await top_up(database, ledger, 10_000, key="charge-1")
    with pytest.raises(IdempotencyConflictError):
        await top_up(database, ledger, 20_000, key="charge-1")


async def test_hold_capture_release(database: Database, ledger: Ledger) -> None:
    await top_up(database, ledger, 10_000)
    async with database.unit_of_work() as session:
        await ledger.place_hold(
            session, user_id=USER, amount_kop=3_000, hold_id="h1", reason="job", ttl_s=600
        )
        await ledger.place_hold(
            session, user_id=USER, amount_kop=2_000, hold_id="h2", reason="job", ttl_s=600
        )
        balance = await ledger.balance(session, USER)
        assert (balance.posted_kop, balance.held_kop, balance.available_kop) == (
            10_000,
            5_000,
            5_000,
        )
    async with database.unit_of_work() as session:
        captured = await ledger.capture(session, "h1", amount_kop=2_500)
        released = await ledger.release(session, "h2")
    assert (captured.outcome, captured.captured_kop, captured.first_time) == (
        "captured",
        2_500,
        True,
    )
    assert (released.outcome, released.first_time) == ("released", True)
    async with database.unit_of_work() as session:
        again = await ledger.capture(session, "h1")
        late = await ledger.release(session, "h1")
        balance = await ledger.balance(session, USER)
        assert await check_invariants(session) == []
    assert (again.outcome, again.captured_kop, again.first_time) == ("captured", 2_500, False)
    assert (late.outcome, late.first_time) == ("captured", False)
    assert (balance.posted_kop, balance.held_kop) == (7_500, 0)


async def test_hold_fails_at_once_when_funds_are_short(database: Database, ledger: Ledger) -> None:
    await top_up(database, ledger, 1_000)
    with pytest.raises(InsufficientFundsError) as caught:
        async with database.unit_of_work() as session:
            await ledger.place_hold(
                session, user_id=USER, amount_kop=1_001, hold_id="h", reason="job", ttl_s=60
            )
    assert (caught.value.needed_kop, caught.value.available_kop) == (1_001, 1_000)
    async with database.unit_of_work(readonly=True) as session:
        assert (await ledger.balance(session, USER)).held_kop == 0


async def test_a_refused_hold_leaves_nothing_even_in_a_transaction_that_goes_on(
    database: Database, ledger: Ledger
) -> None:
    # The hold's row is written before the reservation (item 24): a refusal takes it back, so
    # a caller that catches the refusal and commits leaves no hold without its reservation.
    await top_up(database, ledger, 1_000)
    async with database.unit_of_work() as session:
        with pytest.raises(InsufficientFundsError):
            await ledger.place_hold(
                session, user_id=USER, amount_kop=1_001, hold_id="short", reason="job", ttl_s=60
            )
    async with database.unit_of_work(readonly=True) as session:
        assert await session.get(Hold, "short") is None
        assert (await ledger.balance(session, USER)).held_kop == 0
        assert await check_invariants(session) == []


async def test_placing_the_same_hold_twice_reserves_once(
    database: Database, ledger: Ledger
) -> None:
    await top_up(database, ledger, 5_000)
    for _ in range(2):
        async with database.unit_of_work() as session:
            await ledger.place_hold(
                session, user_id=USER, amount_kop=4_000, hold_id="same", reason="job", ttl_s=60
            )
    async with database.unit_of_work(readonly=True) as session:
        assert (await ledger.balance(session, USER)).held_kop == 4_000


async def test_a_debit_cannot_spend_held_money(database: Database, ledger: Ledger) -> None:
    await top_up(database, ledger, 5_000)
    async with database.unit_of_work() as session:
        await ledger.place_hold(
            session, user_id=USER, amount_kop=4_000, hold_id="h", reason="job", ttl_s=60
        )
    with pytest.raises(InsufficientFundsError):
        async with database.unit_of_work() as session:
            wallet = await ledger.wallet(session, USER)
            adjustments = await ledger.account(session, ADJUSTMENTS)
            await ledger.transfer(
                session,
                kind="adjust",
                idempotency_key="a1",
                debit=wallet,
                credit=adjustments,
                amount_kop=2_000,
            )
    async with database.unit_of_work(readonly=True) as session:
        assert await check_invariants(session) == []
        assert (await ledger.balance(session, USER)).posted_kop == 5_000


async def test_unbalanced_posting_is_refused_before_any_write(
    database: Database, ledger: Ledger
) -> None:
    with pytest.raises(AssertionError, match="sum to zero"):
        async with database.unit_of_work() as session:
            wallet = await ledger.wallet(session, USER)
            await ledger.post(
                session, kind="bad", idempotency_key="x", entries=[(wallet, 100), (wallet, -99)]
            )


async def test_an_account_a_rolled_back_transaction_created_is_not_remembered(
    database: Database, ledger: Ledger
) -> None:
    """Account ids are kept per process, but only ids of committed rows: a wallet created in a
    transaction that rolled back is created again, under the id the database gives it then."""
    other = USER + 1
    with pytest.raises(RuntimeError):
        async with database.unit_of_work() as session:
            await ledger.ensure_user(session, other)
            await ledger.wallet(session, other)
            raise RuntimeError("rolled back")
    async with database.unit_of_work() as session:
        await ledger.ensure_user(session, other)
        wallet = await ledger.wallet(session, other)
    async with database.unit_of_work(readonly=True) as session:
        stored = await session.scalar(
            select(LedgerAccount.id).where(LedgerAccount.code == wallet_code(other))
        )
    assert stored == wallet
    async with database.unit_of_work() as session:  # from here on, remembered: no read
        assert await ledger.wallet(session, other) == wallet
