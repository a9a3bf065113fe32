"""Users: the first touch creates the row; every update refreshes name, language and last seen."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from trt.db.database import Database
from trt.db.models import User, utcnow
from trt.i18n import Lang, normalize_lang

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
    def __init__(self, database: Database) -> None:
        self.database = database

    async def touch(
        self, user_id: int, username: str | None, language_code: str | None
    ) -> UserInfo:
        """Create or refresh the user in one statement (safe when two updates race)."""
        now = utcnow()
        insert = sqlite_insert if self.database.is_sqlite else pg_insert
        statement = insert(User).values(
            id=user_id,
            username=username,
            language=normalize_lang(language_code),
            created_at=now,
            last_seen_at=now,
            is_blocked=False,
        )
        upsert = statement.on_conflict_do_update(
            index_elements=[User.id],
            # Writing again means the bot is not blocked any more (broadcasts include them).
            set_={"username": username, "last_seen_at": now, "blocked_bot": False},
        ).returning(User.language, User.is_blocked, User.created_at)
        async with self.database.unit_of_work() as session:
            language, is_blocked, created_at = (await session.execute(upsert)).one()
        return UserInfo(user_id, normalize_lang(language), bool(is_blocked), created_at == now)

    async def set_language(self, user_id: int, lang: Lang) -> None:
        async with self.database.unit_of_work() as session:
            user = await session.get(User, user_id)
            if user is not None:
                user.language = lang

    async def get(self, user_id: int) -> UserInfo | None:
        async with self.database.unit_of_work(readonly=True) as session:
            row = (
                await session.execute(
                    select(User.language, User.is_blocked).where(User.id == user_id)
                )
            ).one_or_none()
        if row is None:
            return None
        return UserInfo(user_id, normalize_lang(row[0]), bool(row[1]), False)
