"""Middlewares: the user's row and language for every update; callback answers first."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from trt.i18n import DEFAULT_LANG, t
from trt.telemetry.events import (
    Event,
    Reason,
    get_callback_id,
    get_chat_id,
    get_update_id,
    get_user_id,
    telemetry,
)
from trt.telemetry.logs import get_logger
from trt.users import UserService

log = get_logger(__name__)


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
        if isinstance(event, CallbackQuery):
            handler_object = data.get("handler")
            name = getattr(getattr(handler_object, "callback", None), "__qualname__", "?")
            fields = {
                "cid": data.get("cid"),
                "update_id": get_update_id(event, data),
                "user_id": get_user_id(event),
                "chat_id": get_chat_id(event),
                "callback_id": get_callback_id(event),
                "callback_data": event.data,
                "handler": name,
            }
            telemetry.emit(Event.CALLBACK_ROUTED, **fields)
            if not get_flag(data, "manual_answer"):
                await event.answer()
            telemetry.emit(Event.CALLBACK_ACCEPTED, **fields)
        return await handler(event, data)


class CorrelationMiddleware(BaseMiddleware):
    """One correlation id (`cid`) per update, in every log line and in handler data."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        cid = uuid.uuid4().hex[:12]
        data["cid"] = cid
        update_id = get_update_id(event, data)
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(cid=cid, update_id=update_id):
            telemetry.emit(
                Event.UPDATE_RECEIVED,
                cid=cid,
                update_id=update_id,
                user_id=get_user_id(event),
                chat_id=get_chat_id(event),
                kind=getattr(event, "event_type", None),
            )
            common = {
                "cid": cid,
                "update_id": update_id,
                "user_id": get_user_id(event),
                "chat_id": get_chat_id(event),
            }
            query = getattr(event, "callback_query", None)
            if query is not None:
                telemetry.emit(
                    Event.CALLBACK_RECEIVED,
                    **common,
                    callback_id=get_callback_id(event),
                    callback_data=query.data,
                )
            elif getattr(event, "message", None) is not None:
                telemetry.emit(Event.MESSAGE_RECEIVED, **common)
            result = await handler(event, data)
            latency_ms = round((time.monotonic() - started) * 1000, 2)
            if not data.get("dispatch_error"):
                telemetry.emit(
                    Event.DISPATCH_OK, cid=cid, update_id=update_id, latency_ms=latency_ms
                )
            return result


class ErrorMiddleware(BaseMiddleware):
    """A failing handler still answers: a short apology with the cid; the failure is logged."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        try:
            return await handler(event, data)
        except Exception as error:
            cid = str(data.get("cid", "-"))
            data["dispatch_error"] = True
            log.exception("dispatch_error", reason_code=Reason.INTERNAL_ERROR.value)
            telemetry.emit(
                Event.DISPATCH_ERROR,
                cid=cid,
                update_id=get_update_id(event, data),
                latency_ms=None,
                reason_code=Reason.INTERNAL_ERROR.value,
                reason_detail=f"{error.__class__.__name__}: {error}"[:300],
            )
            text = t(str(data.get("lang", DEFAULT_LANG)), "errors.apology", cid=cid)
            await _apologize(event, text)
            return None


async def _apologize(event: TelegramObject, text: str) -> None:
    inner = getattr(event, "callback_query", None) or getattr(event, "message", None)
    with contextlib.suppress(Exception):  # the apology must never raise in turn
        if isinstance(inner, CallbackQuery):
            with contextlib.suppress(Exception):
                await inner.answer(text[:200], show_alert=True)
            if inner.message is not None and inner.bot is not None:
                await inner.bot.send_message(inner.message.chat.id, text)
        elif isinstance(inner, Message):
            await inner.answer(text)


class RateLimitMiddleware(BaseMiddleware):
    """At most `limit` messages and taps per user in `window_s`; beyond that a polite no."""

    def __init__(self, limit: int = 40, window_s: float = 10.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._seen: dict[int, deque[float]] = defaultdict(deque)
        self._warned: dict[int, float] = {}

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or not isinstance(event, (Message, CallbackQuery)):
            return await handler(event, data)
        now = time.monotonic()
        seen = self._seen[user.id]
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        if len(seen) >= self.limit:
            lang = str(data.get("lang", DEFAULT_LANG))
            log.info("rate_limited", reason_code=Reason.RATE_LIMITED.value, user_id=user.id)
            if isinstance(event, CallbackQuery):
                await event.answer(t(lang, "limits.slow_down"))
            elif now - self._warned.get(user.id, 0.0) > self.window_s:
                self._warned[user.id] = now
                await event.answer(t(lang, "limits.slow_down"))
            return None
        seen.append(now)
        return await handler(event, data)
