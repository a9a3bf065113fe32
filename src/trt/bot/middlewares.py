"""Middlewares: the user's row and language for every update; callback answers first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import CallbackQuery, TelegramObject, User

from trt.i18n import DEFAULT_LANG
from trt.users import UserService


class UserMiddleware(BaseMiddleware):
    """Creates or refreshes the sender's row and puts `lang` and `user_info` into handler data."""

    def __init__(self, users: UserService) -> None:
        self.users = users

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot:
            data["lang"] = DEFAULT_LANG
            return await handler(event, data)
        info = await self.users.touch(user.id, user.username, user.language_code)
        data["lang"] = info.lang
        data["user_info"] = info
        return await handler(event, data)


class AnswerFirstMiddleware(BaseMiddleware):
    """Answers every callback query before its handler runs, so no tap spins.

    A handler that answers with a text of its own declares `flags={"manual_answer": True}` and
    answers as its first statement.
    """

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if isinstance(event, CallbackQuery) and not get_flag(data, "manual_answer"):
            await event.answer()
        return await handler(event, data)
