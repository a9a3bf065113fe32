"""The ledger on SQLite and Postgres: postings, holds, replays, invariants."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, event, func, select, update

from trt.billing.ledger import (
    ADJUSTMENTS,
    REVENUE,
    IdempotencyConflictError,
    InsufficientFundsError,
    Ledger,
    check_invariants,
    wallet_code,
)
from trt.db.database import Database
from trt.db.models import (
    Hold,
    HoldResolution,
    LedgerAccount,
    LedgerEntry,
    LedgerPosting,
    User,
)

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


async def hold(database: Database, ledger: Ledger, amount: int, hold_id: str = "h") -> None:
    async with database.unit_of_work() as session:
        await ledger.place_hold(
            session, user_id=USER, amount_kop=amount, hold_id=hold_id, reason="job", ttl_s=60
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
    await hold(database, ledger, 4_000)
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


async def test_a_refused_debit_says_what_it_needs_and_what_is_available(
    database: Database, ledger: Ledger
) -> None:
    # The figures reach the user (the refund screen shows both): on Postgres the posting is
    # one statement (item 29) and the refused wallet is read back after it.
    await top_up(database, ledger, 5_000)
    await hold(database, ledger, 4_000)
    with pytest.raises(InsufficientFundsError) as caught:
        async with database.unit_of_work() as session:
            await ledger.transfer(
                session,
                kind="adjust",
                idempotency_key="a1",
                debit=await ledger.wallet(session, USER),
                credit=await ledger.account(session, ADJUSTMENTS),
                amount_kop=2_000,
            )
    assert (caught.value.needed_kop, caught.value.available_kop) == (2_000, 1_000)
    async with database.unit_of_work(readonly=True) as session:
        assert await session.scalar(select(LedgerPosting.id)) is not None  # the top-up's only
        assert await check_invariants(session) == []


async def test_a_capture_names_its_posting_on_its_resolution_also_when_replayed(
    database: Database, ledger: Ledger
) -> None:
    await top_up(database, ledger, 5_000)
    await hold(database, ledger, 3_000)
    for _ in range(2):  # created, then its id read back: remembered from here on
        async with database.unit_of_work() as session:
            await ledger.account(session, REVENUE)
    statements: list[str] = []

    def seen(_c: object, _cu: object, statement: str, *_rest: object) -> None:
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with database.unit_of_work() as session:
            await ledger.capture(session, "h", amount_kop=2_000)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)
    if not database.is_sqlite:
        # The claim, the posting with its entries, wallet and resolution, and the revenue's
        # counter at COMMIT.
        assert len(statements) == 3, [s[:60] for s in statements]
    async with database.unit_of_work(readonly=True) as session:
        posting = await session.scalar(
            select(LedgerPosting.id).where(LedgerPosting.idempotency_key == "capture:h")
        )
        assert posting is not None
        assert await session.scalar(select(HoldResolution.posting_id)) == posting
        entries = sorted(
            int(amount)
            for (amount,) in await session.execute(
                select(LedgerEntry.amount_kop).where(LedgerEntry.posting_id == posting)
            )
        )
        assert entries == [-2_000, 2_000]
        balance = await ledger.balance(session, USER)
        assert (balance.posted_kop, balance.held_kop) == (3_000, 0)
        assert await check_invariants(session) == []
    # The resolution lost its posting's name (a crash between two writes of an older
    # version): a replayed capture posts nothing and names the posting again.
    async with database.unit_of_work() as session:
        await session.execute(update(HoldResolution).values(posting_id=None))
        await session.execute(delete(HoldResolution))
    async with database.unit_of_work() as session:
        await session.execute(
            update(LedgerAccount)
            .where(LedgerAccount.code == wallet_code(USER))
            .values(pending_debit_kop=LedgerAccount.pending_debit_kop + 3_000)
        )
        again = await ledger.capture(session, "h", amount_kop=2_000)
    assert again.first_time
    async with database.unit_of_work(readonly=True) as session:
        assert await session.scalar(select(HoldResolution.posting_id)) == posting
        assert await session.scalar(select(func.count(LedgerPosting.id))) == 2
        balance = await ledger.balance(session, USER)
        assert (balance.posted_kop, balance.held_kop) == (3_000, 0)
        assert await check_invariants(session) == []


async def test_a_wallet_twice_in_one_posting_moves_by_its_sum(
    database: Database, ledger: Ledger
) -> None:
    await top_up(database, ledger, 1_000)
    async with database.unit_of_work() as session:
        wallet = await ledger.wallet(session, USER)
        adjustments = await ledger.account(session, ADJUSTMENTS)
        await ledger.post(
            session,
            kind="adjust",
            idempotency_key="twice",
            entries=[(wallet, -400), (wallet, 100), (adjustments, 300)],
        )
    async with database.unit_of_work(readonly=True) as session:
        assert (await ledger.balance(session, USER)).posted_kop == 700
        assert await check_invariants(session) == []
