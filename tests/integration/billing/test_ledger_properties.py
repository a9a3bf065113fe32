"""Hypothesis state machine over the ledger (SQLite and Postgres), and concurrent holds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from trt.billing.ledger import InsufficientFundsError, Ledger, check_invariants
from trt.db import migrate
from trt.db.database import Database
from trt.db.models import (
    Hold,
    HoldResolution,
    LedgerAccount,
    LedgerEntry,
    LedgerPosting,
    User,
)

T = TypeVar("T")
USERS = (1, 2, 3)


class Crash(Exception):
    """A process dying before commit: the unit of work rolls back."""


class LedgerMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    database: Database

    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(is_sqlite=self.database.is_sqlite)
        self.posted = dict.fromkeys(USERS, 0)
        self.held = dict.fromkeys(USERS, 0)
        self.open: dict[str, tuple[int, int]] = {}
        self.counter = 0
        self.last: Callable[[], Awaitable[Any]] | None = None

    def run(self, coroutine: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def key(self) -> str:
        self.counter += 1
        return f"k{self.counter}"

    @initialize()
    def reset(self) -> None:
        async def wipe() -> None:
            async with self.database.unit_of_work() as session:
                for table in (
                    HoldResolution,
                    Hold,
                    LedgerEntry,
                    LedgerPosting,
                    LedgerAccount,
                    User,
                ):
                    await session.execute(delete(table))
                for user in USERS:
                    session.add(User(id=user))

        self.run(wipe())

    async def _top_up(self, user: int, amount: int, key: str) -> None:
        async with self.database.unit_of_work() as session:
            source = await self.ledger.account(session, "topup:test")
            wallet = await self.ledger.wallet(session, user)
            await self.ledger.transfer(
                session,
                kind="topup",
                idempotency_key=key,
                debit=source,
                credit=wallet,
                amount_kop=amount,
            )

    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 50_000))
    def top_up(self, user: int, amount: int) -> None:
        key = self.key()
        self.run(self._top_up(user, amount, key))
        self.posted[user] += amount
        self.last = lambda: self._top_up(user, amount, key)

    @rule(target=holds, user=st.sampled_from(USERS), amount=st.integers(1, 30_000))
    def place(self, user: int, amount: int) -> Any:
        hold_id = self.key()

        async def place() -> None:
            async with self.database.unit_of_work() as session:
                await self.ledger.place_hold(
                    session,
                    user_id=user,
                    amount_kop=amount,
                    hold_id=hold_id,
                    reason="test",
                    ttl_s=60,
                )

        available = self.posted[user] - self.held[user]
        try:
            self.run(place())
        except InsufficientFundsError:
            assert amount > available, "refused although funds were available"
            return multiple()
        assert amount <= available, "placed although funds were short"
        self.held[user] += amount
        self.open[hold_id] = (user, amount)
        self.last = place
        return hold_id

    @rule(hold_id=consumes(holds), fraction=st.sampled_from([0, 0.5, 1]))
    def capture(self, hold_id: str, fraction: float) -> None:
        user, amount = self.open.pop(hold_id)
        captured = int(amount * fraction)

        async def capture() -> None:
            async with self.database.unit_of_work() as session:
                await self.ledger.capture(session, hold_id, amount_kop=captured)

        self.run(capture())
        self.held[user] -= amount
        self.posted[user] -= captured
        self.last = capture

    @rule(hold_id=consumes(holds), expired=st.booleans())
    def release(self, hold_id: str, expired: bool) -> None:
        user, amount = self.open.pop(hold_id)

        async def release() -> None:
            async with self.database.unit_of_work() as session:
                await self.ledger.release(session, hold_id, expired=expired)

        self.run(release())
        self.held[user] -= amount
        self.last = release

    @rule()
    def replay_last_command(self) -> None:
        """I7: running any command a second time changes nothing."""
        if self.last is not None:
            self.run(self.last())

    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 10_000))
    def crash_mid_transaction(self, user: int, amount: int) -> None:
        async def crash() -> None:
            async with self.database.unit_of_work() as session:
                source = await self.ledger.account(session, "topup:test")
                wallet = await self.ledger.wallet(session, user)
                await self.ledger.transfer(
                    session,
                    kind="topup",
                    idempotency_key=self.key(),
                    debit=source,
                    credit=wallet,
                    amount_kop=amount,
                )
                raise Crash

        with pytest.raises(Crash):
            self.run(crash())

    @invariant()
    def invariants_hold(self) -> None:
        async def check() -> tuple[list[str], dict[int, tuple[int, int]]]:
            async with self.database.unit_of_work(readonly=True) as session:
                problems = await check_invariants(session)
                balances = {}
                for user in USERS:
                    balance = await self.ledger.balance(session, user)
                    balances[user] = (balance.posted_kop, balance.held_kop)
                return problems, balances

        problems, balances = self.run(check())
        assert problems == []
        for user in USERS:
            assert balances[user] == (self.posted[user], self.held[user])


def test_ledger_state_machine(empty_database_url: str) -> None:
    loop = asyncio.new_event_loop()
    database = Database(empty_database_url)
    try:
        loop.run_until_complete(migrate.upgrade(database))
        LedgerMachine.loop = loop
        LedgerMachine.database = database
        run_state_machine_as_test(
            LedgerMachine,
            settings=settings(
                max_examples=30,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.run_until_complete(database.dispose())
        loop.close()


async def _count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Hold)) or 0)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_concurrent_holds_never_overdraw(database: Database) -> None:
    ledger = Ledger(is_sqlite=False)
    async with database.unit_of_work() as session:
        session.add(User(id=1))
    async with database.unit_of_work() as session:
        source = await ledger.account(session, "topup:test")
        wallet = await ledger.wallet(session, 1)
        await ledger.transfer(
            session,
            kind="topup",
            idempotency_key="seed",
            debit=source,
            credit=wallet,
            amount_kop=10_000,
        )

    async def attempt(index: int) -> bool:
        try:
            async with database.unit_of_work() as session:
                await ledger.place_hold(
                    session, user_id=1, amount_kop=700, hold_id=f"c{index}", reason="race", ttl_s=60
                )
        except InsufficientFundsError:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(i) for i in range(40)))
    assert sum(outcomes) == 14  # 14 × 700 = 9 800 ≤ 10 000 < 15 × 700
    async with database.unit_of_work(readonly=True) as session:
        balance = await ledger.balance(session, 1)
        assert balance.held_kop == 9_800
        assert balance.available_kop == 200
        assert await _count(session) == 14
        assert await check_invariants(session) == []
