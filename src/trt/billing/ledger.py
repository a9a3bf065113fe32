"""The ledger: integer kopecks, double entry, wallets with holds (place / capture / release).

Every method works inside the caller's unit of work and never commits: a service decides what
lands together (a job's state change, its capture and its outbox message, say). Rules from
docs/reliability (shared/reference/reliability.md §1):

- a posting is ≥ 2 entries summing to zero; entries are immutable; counters on the account
  move in the same transaction as its entries;
- available = posted − open holds; placing a hold is one conditional UPDATE (never
  check-then-write), so concurrent holds cannot overdraw a wallet;
- a hold resolves exactly once (a unique resolution row, claimed from the hold's row in one
  statement); a repeated capture or release returns the first outcome and moves nothing;
- every posting carries an idempotency key; replaying it changes nothing, and the same key
  with other entries is refused.

A system account (revenue, a payment source: no user, no balance check) takes a share of almost
every posting, so its counter row is the one every transaction would wait for. Its moves are
summed in the session and written as the transaction's last statements, just before COMMIT,
in account order (`_apply_system_moves`): the row is locked for one statement instead of the
rest of the transaction. Its entries are written at once, as every wallet's counter is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import (
    BigInteger,
    String,
    bindparam,
    delete,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from trt.db.database import Executor, core
from trt.db.models import (
    Hold,
    HoldResolution,
    LedgerAccount,
    LedgerEntry,
    LedgerPosting,
    User,
    UtcDateTime,
    utcnow,
)
from trt.errors import TrtError

REVENUE = "revenue"  # captured generation payments
ADJUSTMENTS = "adjustments"  # admin corrections
BONUS = "bonus"  # welcome, referral and promo credits
HOLD_NAMESPACE = uuid.UUID("6f1c2a5e-7d39-4a55-9d0e-2f4b8c1a7e10")


class LedgerError(TrtError):
    pass


class InsufficientFundsError(LedgerError):
    def __init__(self, needed_kop: int, available_kop: int) -> None:
        self.needed_kop = needed_kop
        self.available_kop = available_kop
        super().__init__(f"needs {needed_kop} kop, {available_kop} available")


class IdempotencyConflictError(LedgerError):
    """The same idempotency key came back with different entries."""


class HoldNotFoundError(LedgerError):
    pass


@dataclass(frozen=True, slots=True)
class Balance:
    posted_kop: int
    held_kop: int

    @property
    def available_kop(self) -> int:
        return self.posted_kop - self.held_kop


@dataclass(frozen=True, slots=True)
class StatementLine:
    at: datetime
    kind: str  # topup | capture | refund | bonus | adjust | …
    amount_kop: int  # + money in, − money out
    memo: str


@dataclass(frozen=True, slots=True)
class PostingResult:
    posting_id: int
    created: bool  # False when the key was seen before (a replay)


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    hold_id: str
    outcome: str  # captured | released | expired
    held_kop: int
    captured_kop: int
    first_time: bool


@dataclass(frozen=True, slots=True)
class Held:
    """What resolving a hold reads of it."""

    id: str
    account_id: int
    amount_kop: int


def hold_id_for(job_id: str) -> str:
    """The hold id derived from a job, stored before any retryable call (reliability §1.2)."""
    return str(uuid.uuid5(HOLD_NAMESPACE, f"job:{job_id}"))


# Statements every posting takes, built once (parameters are not named after a column the
# statement sets).
INSERT_ENTRY = insert(LedgerEntry)
CREDIT = (
    update(LedgerAccount)
    .where(LedgerAccount.id == bindparam("account"))
    .values(posted_kop=LedgerAccount.posted_kop + bindparam("amount"))
    .returning(LedgerAccount.id)
)
# Wallets never go below their holds; system accounts may be negative (they are where money
# enters from outside).
DEBIT = CREDIT.where(
    (LedgerAccount.user_id.is_(None))
    | (LedgerAccount.posted_kop + bindparam("amount") - LedgerAccount.pending_debit_kop >= 0)
)
ACCOUNT_ID = select(LedgerAccount.id).where(LedgerAccount.code == bindparam("code"))
# One conditional write: available (posted − held) must cover the amount.
RESERVE = (
    update(LedgerAccount)
    .where(
        LedgerAccount.id == bindparam("account"),
        LedgerAccount.posted_kop - LedgerAccount.pending_debit_kop >= bindparam("amount"),
    )
    .values(pending_debit_kop=LedgerAccount.pending_debit_kop + bindparam("amount"))
    .returning(LedgerAccount.id)
)
DELETE_HOLD = delete(Hold).where(Hold.id == bindparam("hold"))
UNRESERVE = (
    update(LedgerAccount)
    .where(LedgerAccount.id == bindparam("account"))
    .values(pending_debit_kop=LedgerAccount.pending_debit_kop - bindparam("amount"))
)
# The balance screen's reads (every tap on it), built once.
READ_BALANCE = select(LedgerAccount.posted_kop, LedgerAccount.pending_debit_kop).where(
    LedgerAccount.code == bindparam("code")
)
READ_STATEMENT = (
    select(LedgerPosting.created_at, LedgerPosting.kind, LedgerEntry.amount_kop, LedgerPosting.memo)
    .join(LedgerEntry, LedgerEntry.posting_id == LedgerPosting.id)
    .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
    .where(LedgerAccount.code == bindparam("code"))
    .order_by(LedgerPosting.id.desc())
    .offset(bindparam("offset"))
    .limit(bindparam("limit"))
)
READ_HOLD = select(Hold.id, Hold.account_id, Hold.amount_kop).where(Hold.id == bindparam("hold"))
# A capture's one write to the wallet: the posted debit and the hold's reservation released
# together (a wallet never ends below its holds; docs/performance.md, item 27).
SETTLE = (
    update(LedgerAccount)
    .where(
        LedgerAccount.id == bindparam("account"),
        LedgerAccount.posted_kop
        + bindparam("amount")
        - (LedgerAccount.pending_debit_kop - bindparam("held"))
        >= 0,
    )
    .values(
        posted_kop=LedgerAccount.posted_kop + bindparam("amount"),
        pending_debit_kop=LedgerAccount.pending_debit_kop - bindparam("held"),
    )
    .returning(LedgerAccount.id)
)
RESOLUTION_POSTING = (
    update(HoldResolution)
    .where(HoldResolution.hold_id == bindparam("hold"))
    .values(posting_id=bindparam("posting"))
)

# A posting in one statement on Postgres (docs/performance.md, item 29): the posting's row,
# its entries, its wallets' counters (each wallet's move under its balance check; a capture's
# reservation released in the same write) and, for a capture, the resolution it settles —
# written only when the posting's row is new (a replayed key changes nothing). The result:
# the new posting's id and the wallets that moved (one missing: its balance check refused,
# and the caller's transaction rolls back). A data-modifying WITH: every part sees
# the statement's start, the new posting through RETURNING; foreign keys are checked at its
# end. System accounts are not in it: their moves wait for COMMIT (`_apply_system_moves`).
POST_AT_ONCE = text(
    """
WITH posting AS (
    INSERT INTO ledger_postings (kind, idempotency_key, memo, cid, created_at)
    VALUES (:kind, :idempotency_key, :memo, :cid, :created_at)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
), entries AS (
    INSERT INTO ledger_entries (posting_id, account_id, amount_kop)
    SELECT posting.id, entry.account, entry.amount
    FROM posting,
        unnest(CAST(:entry_accounts AS BIGINT[]), CAST(:entry_amounts AS BIGINT[]))
        AS entry(account, amount)
), moved AS (
    UPDATE ledger_accounts
    SET posted_kop = ledger_accounts.posted_kop + move.amount,
        pending_debit_kop = ledger_accounts.pending_debit_kop - move.held
    FROM posting,
        unnest(
            CAST(:move_accounts AS BIGINT[]),
            CAST(:move_amounts AS BIGINT[]),
            CAST(:move_held AS BIGINT[])
        ) AS move(account, amount, held)
    WHERE ledger_accounts.id = move.account
        AND (
            (move.held = 0 AND (move.amount >= 0 OR ledger_accounts.user_id IS NULL))
            OR ledger_accounts.posted_kop + move.amount
                - (ledger_accounts.pending_debit_kop - move.held) >= 0
        )
    RETURNING ledger_accounts.id
), linked AS (
    UPDATE hold_resolutions SET posting_id = posting.id
    FROM posting
    WHERE hold_resolutions.hold_id = CAST(:resolving AS VARCHAR)
)
SELECT posting.id, ARRAY(SELECT moved.id FROM moved) AS moved FROM posting
"""
)

WALLET_PREFIX = "wallet:"
_SYSTEM_MOVES = "trt_ledger_system_moves"  # session.info: system account id → kopecks
_CREATED_ACCOUNTS = "trt_ledger_created_accounts"  # session.info: codes this session created


def wallet_code(user_id: int) -> str:
    return f"{WALLET_PREFIX}{user_id}"


def _database_of(session: AsyncSession) -> str:
    """Which database a session writes to (account ids are per database)."""
    return str(session.sync_session.get_bind().engine.url)


@event.listens_for(Session, "before_commit")
def _apply_system_moves(session: Session) -> None:
    """The system accounts' summed moves: the last statements before COMMIT, in id order."""
    moves: dict[int, int] | None = session.info.pop(_SYSTEM_MOVES, None)
    for account_id, amount in sorted((moves or {}).items()):
        if amount:
            session.connection().execute(CREDIT, {"account": account_id, "amount": amount})


@event.listens_for(Session, "after_soft_rollback")
def _drop_system_moves(session: Session, _previous: Any) -> None:
    session.info.pop(_SYSTEM_MOVES, None)  # rolled back with the entries they belong to


class Ledger:
    """Ledger operations on a session; `is_sqlite` picks the dialect's upsert."""

    def __init__(self, *, is_sqlite: bool) -> None:
        self._insert = sqlite_insert if is_sqlite else pg_insert
        self._at_once = not is_sqlite  # a posting in one statement (POST_AT_ONCE)
        # The dialect's statements of every posting and resolution, built once (values as
        # parameters: building and keying a statement costs more CPU than running it).
        self._post = (
            self._insert(LedgerPosting)
            .on_conflict_do_nothing(index_elements=[LedgerPosting.idempotency_key])
            .returning(LedgerPosting.id)
        )
        self._new_user = self._insert(User).on_conflict_do_nothing(index_elements=[User.id])
        self._new_hold = (
            self._insert(Hold).on_conflict_do_nothing(index_elements=[Hold.id]).returning(Hold.id)
        )
        # The hold's single resolution claimed from its row, in one statement that also
        # returns what resolving it needs (the hold's wallet and amount): nothing when the
        # hold is missing, resolved before, or smaller than the amount to capture — the slow
        # path (`_settled_before`) tells which.
        amount = bindparam("captured", type_=BigInteger)
        # The inserted row's hold. Named by hand: SQLAlchemy does not correlate a subquery in
        # RETURNING, and would read every hold joined to every resolution.
        of_hold = select(Hold.id).where(Hold.id == literal_column("hold_resolutions.hold_id"))
        self._claim = (
            self._insert(HoldResolution)
            .from_select(
                ["hold_id", "outcome", "captured_kop", "created_at"],
                select(
                    Hold.id,
                    bindparam("outcome", type_=String),
                    func.coalesce(amount, Hold.amount_kop),
                    bindparam("at", type_=UtcDateTime),
                ).where(
                    Hold.id == bindparam("hold"), or_(amount.is_(None), amount <= Hold.amount_kop)
                ),
            )
            .on_conflict_do_nothing(index_elements=[HoldResolution.hold_id])
            .returning(
                HoldResolution.captured_kop,
                of_hold.with_only_columns(Hold.account_id).scalar_subquery(),
                of_hold.with_only_columns(Hold.amount_kop).scalar_subquery(),
            )
        )
        # (database, account id) of the system accounts seen: their moves wait for COMMIT.
        self._system: set[tuple[str, int]] = set()
        # (database, code) → account id: an account, once committed, keeps its id for good
        # (accounts are never deleted or renumbered), so it is looked up once per process.
        # Only an id read as it was (not one this transaction created, which a rollback
        # could take back) is kept.
        self._ids: dict[tuple[str, str], int] = {}

    # -- accounts ---------------------------------------------------------------------
    async def account(self, session: AsyncSession, code: str, user_id: int | None = None) -> int:
        """The id of the account `code`, created on first use (safe under concurrency)."""
        database = _database_of(session)
        known = self._ids.get((database, code))
        if known is not None:
            return known
        connection = await core(session)
        found = await connection.scalar(ACCOUNT_ID, {"code": code})
        created: set[str] = session.info.setdefault(_CREATED_ACCOUNTS, set())
        if found is not None and code not in created:
            self._ids[(database, code)] = int(found)
        elif found is None:
            created.add(code)
            await connection.execute(
                self._insert(LedgerAccount)
                .values(code=code, user_id=user_id, posted_kop=0, pending_debit_kop=0)
                .on_conflict_do_nothing(index_elements=[LedgerAccount.code])
            )
            found = await connection.scalar(ACCOUNT_ID, {"code": code})
            assert found is not None
        if user_id is None and not code.startswith(WALLET_PREFIX):
            self._system.add((database, int(found)))
        return int(found)

    async def wallet(self, session: AsyncSession, user_id: int) -> int:
        return await self.account(session, wallet_code(user_id), user_id)

    async def balance(self, session: Executor, user_id: int) -> Balance:
        row = (await session.execute(READ_BALANCE, {"code": wallet_code(user_id)})).one_or_none()
        if row is None:
            return Balance(0, 0)
        return Balance(int(row[0]), int(row[1]))

    async def statement(
        self, session: Executor, user_id: int, *, offset: int = 0, limit: int = 10
    ) -> list[StatementLine]:
        """The wallet's postings, newest first (for the balance screen)."""
        rows = (
            await session.execute(
                READ_STATEMENT,
                {"code": wallet_code(user_id), "offset": offset, "limit": limit},
            )
        ).all()
        return [StatementLine(at, kind, int(amount), memo) for at, kind, amount, memo in rows]

    # -- postings ---------------------------------------------------------------------
    async def post(
        self,
        session: AsyncSession,
        *,
        kind: str,
        idempotency_key: str,
        entries: list[tuple[int, int]],
        memo: str = "",
        cid: str | None = None,
        releasing: tuple[int, int] | None = None,
        resolving: str | None = None,
    ) -> PostingResult:
        """Apply one balanced posting (account id, signed kopecks) exactly once per key.

        A debit that would take a wallet's available balance below zero raises
        `InsufficientFundsError` (the caller's unit of work rolls everything back).
        `releasing` (account id, kopecks): a reservation on that account given back in the
        same write as its entry (a capture); a replayed posting releases nothing.
        `resolving`: the hold whose resolution (claimed before) this posting settles; its row
        names the posting, a replayed one too.
        """
        assert len(entries) >= 2, "a posting has at least two entries"
        assert sum(amount for _, amount in entries) == 0, "a posting must sum to zero"
        assert all(isinstance(amount, int) for _, amount in entries), "kopecks are integers"
        connection = await core(session)
        database = _database_of(session)
        wallets = [account for account, _ in entries if (database, account) not in self._system]
        posting = {
            "kind": kind,
            "idempotency_key": idempotency_key,
            "memo": memo[:255],
            "cid": cid,
            "created_at": utcnow(),
        }
        # One statement on Postgres; a wallet twice in one posting moves entry by entry.
        if self._at_once and len(set(wallets)) == len(wallets):
            return await self._post_at_once(
                session, posting, entries, wallets, releasing=releasing, resolving=resolving
            )
        inserted = await connection.scalar(self._post, posting)
        if inserted is None:
            return await self._replay(session, idempotency_key, entries, resolving=resolving)
        await connection.execute(
            INSERT_ENTRY,
            [
                {"posting_id": inserted, "account_id": account_id, "amount_kop": amount}
                for account_id, amount in entries
            ],
        )
        for account_id, amount in entries:
            held = releasing[1] if releasing and releasing[0] == account_id else None
            await self._move_posted(session, account_id, amount, releasing=held)
        if resolving is not None:
            await connection.execute(RESOLUTION_POSTING, {"hold": resolving, "posting": inserted})
        return PostingResult(int(inserted), True)

    async def _post_at_once(
        self,
        session: AsyncSession,
        posting: dict[str, Any],
        entries: list[tuple[int, int]],
        wallets: list[int],
        *,
        releasing: tuple[int, int] | None,
        resolving: str | None,
    ) -> PostingResult:
        """`post` as POST_AT_ONCE: one round trip where it took 3 to 6."""
        moves = [(account, amount) for account, amount in entries if account in wallets]
        held = [releasing[1] if releasing and releasing[0] == a else 0 for a, _ in moves]
        row = (
            await (await core(session)).execute(
                POST_AT_ONCE,
                {
                    **posting,
                    "entry_accounts": [account for account, _ in entries],
                    "entry_amounts": [amount for _, amount in entries],
                    "move_accounts": [account for account, _ in moves],
                    "move_amounts": [amount for _, amount in moves],
                    "move_held": held,
                    "resolving": resolving,
                },
            )
        ).first()
        if row is None:  # the key was posted before: nothing was written
            return await self._replay(
                session, posting["idempotency_key"], entries, resolving=resolving
            )
        moved = set(row[1])
        refused = [(account, amount) for account, amount in moves if account not in moved]
        if refused:
            await self._refuse(session, *refused[0])
        for account, amount in entries:
            if account not in wallets:
                await self._move_posted(session, account, amount)  # waits for COMMIT
        return PostingResult(int(row[0]), True)

    async def _refuse(self, session: AsyncSession, account_id: int, amount: int) -> NoReturn:
        """Raise `InsufficientFundsError` for the debit of `amount` a wallet's balance check
        refused (the caller's transaction rolls back what the posting wrote)."""
        available = await (await core(session)).scalar(
            select(LedgerAccount.posted_kop - LedgerAccount.pending_debit_kop).where(
                LedgerAccount.id == account_id
            )
        )
        raise InsufficientFundsError(-amount, int(available or 0))

    async def _replay(
        self,
        session: AsyncSession,
        key: str,
        entries: list[tuple[int, int]],
        *,
        resolving: str | None = None,
    ) -> PostingResult:
        posting_id = await session.scalar(
            select(LedgerPosting.id).where(LedgerPosting.idempotency_key == key)
        )
        assert posting_id is not None
        stored = (
            await session.execute(
                select(LedgerEntry.account_id, LedgerEntry.amount_kop).where(
                    LedgerEntry.posting_id == posting_id
                )
            )
        ).all()
        if sorted((int(a), int(b)) for a, b in stored) != sorted(entries):
            raise IdempotencyConflictError(f"key {key!r} was used for a different posting")
        if resolving is not None:
            await (await core(session)).execute(
                RESOLUTION_POSTING, {"hold": resolving, "posting": posting_id}
            )
        return PostingResult(int(posting_id), False)

    async def _move_posted(
        self, session: AsyncSession, account_id: int, amount: int, *, releasing: int | None = None
    ) -> None:
        if releasing is not None:  # a wallet's debit with its hold's reservation released
            connection = await core(session)
            settled = await connection.execute(
                SETTLE, {"account": account_id, "amount": amount, "held": releasing}
            )
            if settled.scalar_one_or_none() is None:
                raise InsufficientFundsError(-amount, 0)  # never for a capture: it was held
            return
        if (_database_of(session), account_id) in self._system:
            moves: dict[int, int] = session.info.setdefault(_SYSTEM_MOVES, {})
            moves[account_id] = moves.get(account_id, 0) + amount
            return
        connection = await core(session)
        statement = DEBIT if amount < 0 else CREDIT
        moved = await connection.execute(statement, {"account": account_id, "amount": amount})
        if moved.scalar_one_or_none() is None:
            available = await connection.scalar(
                select(LedgerAccount.posted_kop - LedgerAccount.pending_debit_kop).where(
                    LedgerAccount.id == account_id
                )
            )
            raise InsufficientFundsError(-amount, int(available or 0))

    async def transfer(
        self,
        session: AsyncSession,
        *,
        kind: str,
        idempotency_key: str,
        debit: int,
        credit: int,
        amount_kop: int,
        memo: str = "",
        cid: str | None = None,
    ) -> PostingResult:
        """Move `amount_kop` from account `debit` to account `credit`."""
        assert amount_kop > 0
        return await self.post(
            session,
            kind=kind,
            idempotency_key=idempotency_key,
            entries=[(debit, -amount_kop), (credit, amount_kop)],
            memo=memo,
            cid=cid,
        )

    async def ensure_user(self, session: AsyncSession, user_id: int) -> None:
        """The user's row (a wallet belongs to a user), created bare when it is missing."""
        await (await core(session)).execute(self._new_user, {"id": user_id})

    async def credit_wallet(
        self,
        session: AsyncSession,
        *,
        user_id: int,
        source: str,
        amount_kop: int,
        kind: str,
        idempotency_key: str,
        memo: str = "",
        cid: str | None = None,
    ) -> PostingResult:
        """Move money from the system account `source` into the user's wallet, once per key.

        Creates the user's row when it is new (money can arrive before any message).
        """
        await self.ensure_user(session, user_id)
        return await self.transfer(
            session,
            kind=kind,
            idempotency_key=idempotency_key,
            debit=await self.account(session, source),
            credit=await self.wallet(session, user_id),
            amount_kop=amount_kop,
            memo=memo,
            cid=cid,
        )

    # -- holds --------------------------------------------------------------------------
    async def place_hold(
        self,
        session: AsyncSession,
        *,
        user_id: int,
        amount_kop: int,
        hold_id: str,
        reason: str,
        ttl_s: float,
        cid: str | None = None,
    ) -> str:
        """Reserve `amount_kop` on the user's wallet in one conditional write.

        Raises `InsufficientFundsError` when available < amount (nothing changes). Placing the
        same `hold_id` again returns it without reserving twice: the hold's row is written
        first, and only the write that created it reserves (a concurrent second placing waits
        for the first's row, then finds it). Two statements where a placing read the hold
        first (docs/performance.md, item 24).
        """
        assert amount_kop > 0
        connection = await core(session)
        wallet_id = await self.wallet(session, user_id)
        now = utcnow()
        placed = await connection.scalar(
            self._new_hold,
            {
                "id": hold_id,
                "account_id": wallet_id,
                "amount_kop": amount_kop,
                "reason": reason,
                "cid": cid,
                "created_at": now,
                "expires_at": now + timedelta(seconds=ttl_s),
            },
        )
        if placed is None:
            return hold_id  # placed before: reserved then
        reserved = await connection.execute(RESERVE, {"account": wallet_id, "amount": amount_kop})
        if reserved.scalar_one_or_none() is None:
            await connection.execute(DELETE_HOLD, {"hold": hold_id})  # nothing changes
            balance = await self.balance(session, user_id)
            raise InsufficientFundsError(amount_kop, balance.available_kop)
        return hold_id

    async def capture(
        self,
        session: AsyncSession,
        hold_id: str,
        *,
        amount_kop: int | None = None,
        memo: str = "",
        cid: str | None = None,
    ) -> HoldOutcome:
        """Turn the hold into a payment (all of it, or less: the rest returns to the user)."""
        if amount_kop is not None and amount_kop < 0:
            raise LedgerError(f"cannot capture {amount_kop}")
        claimed = await self._claim_resolution(session, hold_id, "captured", amount_kop)
        if claimed is None:
            return await self._settled_before(session, hold_id, amount_kop)
        captured, account_id, held = claimed
        if captured > 0:
            revenue = await self.account(session, REVENUE)
            result = await self.post(
                session,
                kind="capture",
                idempotency_key=f"capture:{hold_id}",
                entries=[(account_id, -captured), (revenue, captured)],
                memo=memo,
                cid=cid,
                releasing=(account_id, held),
                resolving=hold_id,
            )
            if not result.created:  # posted before: its reservation is still to give back
                await self._unreserve(session, Held(hold_id, account_id, held))
        else:  # nothing captured: no posting to name
            await self._unreserve(session, Held(hold_id, account_id, held))
        return HoldOutcome(hold_id, "captured", held, captured, True)

    async def release(
        self, session: AsyncSession, hold_id: str, *, expired: bool = False
    ) -> HoldOutcome:
        """Give the held money back (a failure, a timeout, or the sweeper's expiry)."""
        outcome = "expired" if expired else "released"
        claimed = await self._claim_resolution(session, hold_id, outcome, 0)
        if claimed is None:
            return await self._settled_before(session, hold_id, 0)
        _captured, account_id, held = claimed
        await self._unreserve(session, Held(hold_id, account_id, held))
        return HoldOutcome(hold_id, outcome, held, 0, True)

    async def _claim_resolution(
        self, session: AsyncSession, hold_id: str, outcome: str, captured_kop: int | None
    ) -> tuple[int, int, int] | None:
        """Claim the hold's single resolution (`captured_kop` None: all of it): (captured,
        the hold's account, the hold's amount), or None when it could not be claimed."""
        row = (
            await (await core(session)).execute(
                self._claim,
                {"hold": hold_id, "outcome": outcome, "captured": captured_kop, "at": utcnow()},
            )
        ).one_or_none()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    async def _settled_before(
        self, session: AsyncSession, hold_id: str, captured_kop: int | None
    ) -> HoldOutcome:
        """Why a resolution could not be claimed: the hold is missing (`HoldNotFoundError`),
        the amount is more than it holds (`LedgerError`), or it was resolved before (that
        earlier outcome, nothing changed)."""
        hold = await self._hold(session, hold_id)
        captured = hold.amount_kop if captured_kop is None else captured_kop
        if not 0 <= captured <= hold.amount_kop:
            raise LedgerError(f"cannot capture {captured} of a {hold.amount_kop} hold")
        earlier = await session.get(HoldResolution, hold.id)
        assert earlier is not None
        return HoldOutcome(hold.id, earlier.outcome, hold.amount_kop, earlier.captured_kop, False)

    async def _hold(self, session: AsyncSession, hold_id: str) -> Held:
        row = (await (await core(session)).execute(READ_HOLD, {"hold": hold_id})).one_or_none()
        if row is None:
            raise HoldNotFoundError(hold_id)
        return Held(str(row.id), int(row.account_id), int(row.amount_kop))

    async def _unreserve(self, session: AsyncSession, hold: Held) -> None:
        await (await core(session)).execute(
            UNRESERVE, {"account": hold.account_id, "amount": hold.amount_kop}
        )

    async def open_holds_due(self, session: AsyncSession, limit: int = 100) -> list[str]:
        """Ids of unresolved holds past their expiry (for the sweeper)."""
        rows = await session.scalars(
            select(Hold.id)
            .outerjoin(HoldResolution, HoldResolution.hold_id == Hold.id)
            .where(HoldResolution.hold_id.is_(None), Hold.expires_at < utcnow())
            .limit(limit)
        )
        return list(rows)


async def check_invariants(session: AsyncSession) -> list[str]:
    """Every broken ledger invariant (I1–I5 of reliability.md §1.4); empty when all hold."""
    problems: list[str] = []
    total = await session.scalar(select(func.coalesce(func.sum(LedgerAccount.posted_kop), 0)))
    if total != 0:
        problems.append(f"I1: account balances sum to {total}, not 0")
    overdrawn = (
        await session.execute(
            select(LedgerAccount.code, LedgerAccount.posted_kop - LedgerAccount.pending_debit_kop)
            .where(LedgerAccount.user_id.is_not(None))
            .where(LedgerAccount.posted_kop - LedgerAccount.pending_debit_kop < 0)
        )
    ).all()
    problems.extend(f"I2: {code} available {amount} < 0" for code, amount in overdrawn)
    open_sum = await session.scalar(
        select(func.coalesce(func.sum(Hold.amount_kop), 0))
        .outerjoin(HoldResolution, HoldResolution.hold_id == Hold.id)
        .where(HoldResolution.hold_id.is_(None))
    )
    pending_sum = await session.scalar(
        select(func.coalesce(func.sum(LedgerAccount.pending_debit_kop), 0))
    )
    if open_sum != pending_sum:
        problems.append(f"I3: open holds {open_sum} != pending {pending_sum}")
    over_captured = (
        await session.execute(
            select(Hold.id)
            .join(HoldResolution, HoldResolution.hold_id == Hold.id)
            .where(HoldResolution.captured_kop > Hold.amount_kop)
        )
    ).all()
    problems.extend(f"I5: hold {row[0]} captured more than held" for row in over_captured)
    mismatched = (
        await session.execute(
            select(LedgerAccount.code, LedgerAccount.posted_kop, func.sum(LedgerEntry.amount_kop))
            .outerjoin(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .group_by(LedgerAccount.id, LedgerAccount.code, LedgerAccount.posted_kop)
        )
    ).all()
    for code, posted, summed in mismatched:
        if int(posted) != int(summed or 0):
            problems.append(f"counters: {code} posted {posted} != entries {summed}")
    unbalanced = (
        await session.execute(
            select(LedgerEntry.posting_id)
            .group_by(LedgerEntry.posting_id)
            .having(func.sum(LedgerEntry.amount_kop) != 0)
        )
    ).all()
    problems.extend(f"posting {row[0]} does not sum to zero" for row in unbalanced)
    return problems
