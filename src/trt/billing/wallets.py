"""Reading wallets for screens: the balance and the operations in plain words."""

from __future__ import annotations

from trt.billing.ledger import Balance, Ledger, StatementLine
from trt.db.database import Database


class WalletService:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.ledger = Ledger(is_sqlite=database.is_sqlite)

    async def balance(self, user_id: int) -> Balance:
        async with self.database.unit_of_work(readonly=True) as session:
            return await self.ledger.balance(session, user_id)

    async def statement(self, user_id: int, *, limit: int = 10) -> list[StatementLine]:
        async with self.database.unit_of_work(readonly=True) as session:
            return await self.ledger.statement(session, user_id, limit=limit)
