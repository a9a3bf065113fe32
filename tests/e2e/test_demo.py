"""`trt demo` gives each demo user a demo balance, once."""

from __future__ import annotations

from pathlib import Path

from tests.e2e_support import running_bot
from trt.sandbox.demo import DEMO_BALANCE_KOP, DEMO_USERS, credit_demo_users


async def test_demo_users_get_their_balance_once(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        await credit_demo_users(bot.services)
        await credit_demo_users(bot.services)  # a restarted demo on the same database
        for user_id, _name, _lang in DEMO_USERS:
            assert await bot.balance(user_id) == (DEMO_BALANCE_KOP, 0)
        user = await bot.client.user(DEMO_USERS[0][0], DEMO_USERS[0][1])
        await user.send("/balance")
        assert "Баланс</b>: 500 ₽" in (await user.next_message()).html
        assert await bot.ledger_problems() == []
