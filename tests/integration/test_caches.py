"""The per-update caches on SQLite and Postgres: the user row is touched at most once per
interval yet a block, an unblock or a language change is seen at the next update; the FSM state
is read from a cache every write goes through, and a new leadership reads it afresh."""

from __future__ import annotations

from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import select, update

from trt.admin.operations import Operations
from trt.bot.storage import SqlStorage
from trt.db.database import Database
from trt.db.models import User
from trt.users import UserService


async def last_seen(database: Database, user_id: int) -> object:
    async with database.unit_of_work(readonly=True) as session:
        return await session.scalar(select(User.last_seen_at).where(User.id == user_id))


async def test_the_user_row_is_written_once_per_interval_and_a_block_is_seen_at_once(
    database: Database,
) -> None:
    users = UserService(database)
    first = await users.touch(7, "ann", "en")
    assert (first.is_new, first.lang, first.is_blocked) == (True, "en", False)
    seen = await last_seen(database, 7)
    again = await users.touch(7, "ann", "en")
    assert (again.is_new, again.is_blocked) == (False, False)
    assert await last_seen(database, 7) == seen  # no write within the interval
    # A new username is written at once.
    await users.touch(7, "ann_2", "en")
    assert await last_seen(database, 7) != seen

    operations = Operations(database, users)
    assert await operations.set_blocked(7, True, admin_id=1, cid=None) is False
    assert (await users.touch(7, "ann_2", "en")).is_blocked is True
    await operations.set_blocked(7, False, admin_id=1, cid=None)
    assert (await users.touch(7, "ann_2", "en")).is_blocked is False

    await users.set_language(7, "ru")
    assert (await users.touch(7, "ann_2", "en")).lang == "ru"


async def test_a_change_made_elsewhere_is_read_after_forget(database: Database) -> None:
    users = UserService(database)
    await users.touch(8, None, "ru")
    async with database.unit_of_work() as session:  # another instance blocked them
        await session.execute(update(User).where(User.id == 8).values(is_blocked=True))
    assert (await users.touch(8, None, "ru")).is_blocked is False  # the cache, until…
    users.forget()  # … this instance becomes the leader again
    assert (await users.touch(8, None, "ru")).is_blocked is True


async def test_fsm_reads_come_from_the_cache_writes_go_through(database: Database) -> None:
    key = StorageKey(bot_id=1, chat_id=5, user_id=5)
    storage, other = SqlStorage(database), SqlStorage(database)
    assert await storage.get_state(key) is None
    await storage.set_state(key, "Flow:prompt")
    await storage.set_data(key, {"slug": "nb2", "refs": ["a"]})
    assert await other.get_state(key) == "Flow:prompt"  # written through to the database
    data = await storage.get_data(key)
    data["refs"].append("b")  # a handler changing its copy changes nothing stored
    assert await storage.get_data(key) == {"slug": "nb2", "refs": ["a"]}

    await other.set_state(key, "Flow:confirm")  # another instance, while this one was passive
    assert await storage.get_state(key) == "Flow:prompt"
    storage.forget()
    assert await storage.get_state(key) == "Flow:confirm"
    assert await storage.get_data(key) == {"slug": "nb2", "refs": ["a"]}
