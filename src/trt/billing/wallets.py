"""Reading wallets for screens: the balance and the operations in plain words."""

from __future__ import annotations

from trt.billing.ledger import Balance, Ledger, StatementLine
from trt.db.database import Database


class WalletService:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.ledger = Ledger(is_sqlite=database.is_sqlite)

    async def balance(self, user_id: int) -> Balance:
        async with self.database.transaction(readonly=True) as connection:
            return await self.ledger.balance(connection, user_id)

    async def overview(
        self, user_id: int, *, offset: int = 0, limit: int = 10
    ) -> tuple[Balance, list[StatementLine]]:
        """The balance and a page of the statement, read in one transaction (the screen)."""
        async with self.database.transaction(readonly=True) as connection:
            balance = await self.ledger.balance(connection, user_id)
            lines = await self.ledger.statement(connection, user_id, offset=offset, limit=limit)
        return balance, lines

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
            result = await self.ledger.credit_wallet(
                session,
                user_id=user_id,
                source=source,
                amount_kop=amount_kop,
                kind=kind,
                idempotency_key=idempotency_key,
                memo=memo,
                cid=cid,
            )
        return result.created

    async def available(self, user_id: int) -> int:
        """Kopecks the user can spend now (posted minus open holds)."""
        return (await self.balance(user_id)).available_kop

    async def statement(
        self, user_id: int, *, offset: int = 0, limit: int = 10
    ) -> list[StatementLine]:
        async with self.database.transaction(readonly=True) as connection:
            return await self.ledger.statement(connection, user_id, offset=offset, limit=limit)
