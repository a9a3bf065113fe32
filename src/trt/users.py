"""Users: the first touch creates the row; updates refresh the name and last seen.

Every update needs the sender's language and whether an admin blocked them, so `touch` keeps
what it read (a `UserInfo`) for `TOUCH_EVERY_S`: within that time a user's updates write and read
nothing. The cache stays correct because every change of what it holds goes through this
service or tells it: a language chosen (`set_language`), a block or unblock
(`forget`, from the admin operations), the bot blocked by the user (`forget`, from a broadcast).
Only the ACTIVE instance handles updates, and it starts its leadership with an empty cache
(`forget()` on each role change), so a change made while another instance led is read afresh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from sqlalchemy import select, update

from trt.db.database import Database
from trt.db.models import User, utcnow
from trt.i18n import Lang, normalize_lang

TOUCH_EVERY_S = 60.0  # a user's row is written at most this often (last seen, username)
CACHE_USERS = 50_000  # users remembered; the least recently seen are dropped first
MAX_ID = 2**52  # Telegram's ids "have at most 52 significant bits"


def parse_id(text: str) -> int | None:
    """A user (or chat) id typed by a person or carried in callback data; None when it is not
    a number Telegram could have given (never an integer too large for the database)."""
    text = text.strip()
    if not text.lstrip("-").isdigit() or len(text) > 20:
        return None
    value = int(text)
    return value if 0 < abs(value) < MAX_ID else None


@dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: int
    lang: Lang
    is_blocked: bool
    is_new: bool


class UserService:
    def __init__(self, database: Database, *, touch_every_s: float = TOUCH_EVERY_S) -> None:
        self.database = database
        self.touch_every_s = touch_every_s
        # user → (when the row was last written, what it said, the username written)
        self._seen: dict[int, tuple[float, UserInfo, str | None]] = {}
        # Every update's first write (when the cache above has no fresh row): built once.
        inserted = database.insert(User)
        self._upsert = inserted.on_conflict_do_update(
            index_elements=[User.id],
            # Writing again means the bot is not blocked any more (broadcasts include them).
            set_={
                "username": inserted.excluded.username,
                "last_seen_at": inserted.excluded.last_seen_at,
                "blocked_bot": False,
            },
        ).returning(User.language, User.is_blocked, User.created_at)

    def forget(self, user_id: int | None = None) -> None:
        """Read the user (every user, with None) from the database at the next touch."""
        if user_id is None:
            self._seen.clear()
        else:
            self._seen.pop(user_id, None)

    async def touch(
        self, user_id: int, username: str | None, language_code: str | None
    ) -> UserInfo:
        """Create or refresh the user in one statement (safe when two updates race); within
        `touch_every_s` of the last write, what that write read."""
        seen = self._seen.pop(user_id, None)  # popped and put back: the newest stay last
        clock = time.monotonic()
        if seen is not None and clock - seen[0] < self.touch_every_s and seen[2] == username:
            self._seen[user_id] = seen
            return seen[1]
        now = utcnow()
        row = {
            "id": user_id,
            "username": username,
            "language": normalize_lang(language_code),
            "created_at": now,
            "last_seen_at": now,
            "is_blocked": False,
        }
        async with self.database.transaction() as connection:
            language, is_blocked, created_at = (await connection.execute(self._upsert, row)).one()
        info = UserInfo(user_id, normalize_lang(language), bool(is_blocked), created_at == now)
        self._remember(user_id, clock, replace(info, is_new=False), username)
        return info

    def _remember(self, user_id: int, clock: float, info: UserInfo, username: str | None) -> None:
        self._seen[user_id] = (clock, info, username)
        if len(self._seen) > CACHE_USERS:
            for oldest in list(self._seen)[: CACHE_USERS // 10]:
                del self._seen[oldest]

    async def set_language(self, user_id: int, lang: Lang) -> None:
        async with self.database.transaction() as connection:
            await connection.execute(update(User).where(User.id == user_id).values(language=lang))
        seen = self._seen.get(user_id)
        if seen is not None:
            self._seen[user_id] = (seen[0], replace(seen[1], lang=lang), seen[2])

    async def get(self, user_id: int) -> UserInfo | None:
        async with self.database.transaction(readonly=True) as connection:
            row = (
                await connection.execute(
                    select(User.language, User.is_blocked).where(User.id == user_id)
                )
            ).one_or_none()
        if row is None:
            return None
        return UserInfo(user_id, normalize_lang(row[0]), bool(row[1]), False)
