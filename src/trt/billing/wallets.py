"""Reading wallets for screens: the balance and the operations in plain words."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from trt.billing.ledger import Balance, Ledger, StatementLine
from trt.db.database import Database
from trt.db.models import User


class WalletService:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.ledger = Ledger(is_sqlite=database.is_sqlite)
        self._insert_user = (sqlite_insert if database.is_sqlite else pg_insert)(User)

    async def balance(self, user_id: int) -> Balance:
        async with self.database.unit_of_work(readonly=True) as session:
            return await self.ledger.balance(session, user_id)

    async def credit(
        self,
        user_id: int,
        amount_kop: int,
        *,
        source: str,
        idempotency_key: str,
        kind: str = "topup",
        memo: str = "",
        cid: str | None = None,
    ) -> bool:
        """Move money from the system account `source` into the user's wallet, once per key.

        Creates the user's row when it is new (a top-up can come before any message). True
        when money moved, False on a replay of the same key.
        """
        async with self.database.unit_of_work() as session:
            await session.execute(
                self._insert_user.values(id=user_id).on_conflict_do_nothing(
                    index_elements=[User.id]
                )
            )
            source_id = await self.ledger.account(session, source)
            wallet_id = await self.ledger.wallet(session, user_id)
            result = await self.ledger.transfer(
                session,
                kind=kind,
                idempotency_key=idempotency_key,
                debit=source_id,
                credit=wallet_id,
                amount_kop=amount_kop,
                memo=memo,
                cid=cid,
            )
        return result.created

    async def statement(
        self, user_id: int, *, offset: int = 0, limit: int = 10
    ) -> list[StatementLine]:
        async with self.database.unit_of_work(readonly=True) as session:
            return await self.ledger.statement(session, user_id, offset=offset, limit=limit)
