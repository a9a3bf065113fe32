"""Middlewares: the user's row and language for every update; callback answers first."""

from __future__ import annotations

import contextlib
import html
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.dispatcher.flags import get_flag
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import AnswerCallbackQuery, Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    PreCheckoutQuery,
    TelegramObject,
    User,
)

from trt.bot.callbacks import Refresh
from trt.bot.screens import same_markup
from trt.i18n import DEFAULT_LANG, normalize_lang, t
from trt.logs import get_logger
from trt.telemetry.events import (
    Event,
    Reason,
    current_scope,
    get_callback_id,
    get_chat_id,
    get_update_id,
    get_user_id,
    new_cid,
    reject,
    telemetry,
    update_scope,
)
from trt.users import UserService

log = get_logger(__name__)
PRUNE_AT = 10_000  # per-user state kept before quiet users are dropped


class UserMiddleware(BaseMiddleware):
    """Creates or refreshes the sender's row and puts `lang` and `user_info` into handler data.

    A user an admin blocked gets a polite notice for a message or a tap and nothing else runs
    (a pre-checkout still reaches its handler, which refuses the payment with the reason).
    """

    def __init__(self, users: UserService, support_contact: str = "") -> None:
        self.users = users
        self.support_contact = support_contact

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
        if info.is_blocked:
            inner = getattr(event, "callback_query", None) or getattr(event, "message", None)
            if isinstance(inner, (Message, CallbackQuery)):
                reject(Reason.ACCESS_DENIED, "a blocked user")
                notice = t(info.lang, "blocked.notice", support=html.escape(self.support_contact))
                if isinstance(inner, CallbackQuery):
                    await inner.answer(notice, show_alert=True)
                else:
                    await inner.answer(notice)
                return None
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
        if not isinstance(event, CallbackQuery):
            return await handler(event, data)
        handler_object = data.get("handler")
        name = getattr(getattr(handler_object, "callback", None), "__qualname__", "?")
        telemetry.callback_routed(name)
        if not get_flag(data, "manual_answer"):
            await event.answer()
        result = await handler(event, data)
        telemetry.settle_callback()
        return result


class CorrelationMiddleware(BaseMiddleware):
    """One correlation id (`cid`) per update, in every log line, event and in handler data."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        cid = new_cid()
        data["cid"] = cid
        ids: dict[str, Any] = {
            "cid": cid,
            "update_id": get_update_id(event, data),
            "user_id": get_user_id(event),
            "chat_id": get_chat_id(event),
        }
        query = getattr(event, "callback_query", None)
        if query is not None:
            ids.update(callback_id=get_callback_id(event), callback_data=query.data)
        bound = {k: ids[k] for k in ("cid", "update_id", "user_id") if ids[k] is not None}
        with update_scope(**ids) as scope, structlog.contextvars.bound_contextvars(**bound):
            telemetry.emit(Event.UPDATE_RECEIVED, kind=getattr(event, "event_type", None))
            if query is not None:
                telemetry.emit(Event.CALLBACK_RECEIVED)
            elif getattr(event, "message", None) is not None:
                telemetry.emit(Event.MESSAGE_RECEIVED)
            result = await handler(event, data)
            if not data.get("dispatch_error"):
                telemetry.emit(Event.DISPATCH_OK, latency_ms=scope.elapsed_ms())
            return result


class PassiveMiddleware(BaseMiddleware):
    """While this instance is PASSIVE (a deploy overlap), answer at once and offer 🔄 Обновить.

    Placed before the error middleware and the user's row: it moves no money and writes
    nothing but telemetry. A tap is answered with a toast and the refresh button joins the
    message's keyboard (a new message when that message cannot be edited); a message gets a
    short note with the button. The button, pressed on the ACTIVE instance, re-opens the
    user's screen.
    """

    def __init__(self, is_active: Callable[[], bool]) -> None:
        self.is_active = is_active

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if self.is_active():
            return await handler(event, data)
        user: User | None = data.get("event_from_user")
        lang = normalize_lang(user.language_code if user is not None else None)
        query = getattr(event, "callback_query", None)
        message = getattr(event, "message", None)
        kind = (
            "callback"
            if query is not None
            else "message"
            if message is not None
            else str(getattr(event, "event_type", "other"))
        )
        telemetry.emit(
            Event.PASSIVE_REJECT,
            reason_code=Reason.PASSIVE_REJECT.value,
            reason_detail=f"{kind} during a handover: this instance is PASSIVE",
        )
        checkout = getattr(event, "pre_checkout_query", None)
        try:
            if isinstance(query, CallbackQuery):
                await query.answer(t(lang, "passive.callback"))
                await _offer_refresh(query, lang)
            elif isinstance(checkout, PreCheckoutQuery):
                # Telegram waits 10 s for this answer: refuse now, the user pays again soon.
                await checkout.answer(ok=False, error_message=t(lang, "passive.callback"))
            elif isinstance(message, Message) and user is not None:
                await message.answer(t(lang, "passive.message"), reply_markup=refresh_markup(lang))
        except Exception as error:  # nothing here may fail the update: it is only a courtesy
            log.warning("passive_answer_failed", error=str(error)[:200])
        return None


def refresh_markup(lang: str, keep: InlineKeyboardMarkup | None = None) -> InlineKeyboardMarkup:
    """`keep`'s rows (without an earlier refresh row) and one 🔄 row below them."""
    refresh = Refresh().pack()
    rows = [
        row
        for row in (keep.inline_keyboard if keep is not None else [])
        if not any(button.callback_data == refresh for button in row)
    ]
    button = InlineKeyboardButton(text=t(lang, "passive.refresh"), callback_data=refresh)
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [button]])


async def _offer_refresh(query: CallbackQuery, lang: str) -> None:
    message = query.message
    if isinstance(message, Message):
        markup = refresh_markup(lang, message.reply_markup)
        if same_markup(markup, message.reply_markup):
            return  # the 🔄 row is there already: the toast says it all (no refused edit)
        try:
            await message.edit_reply_markup(reply_markup=markup)
            return
        except TelegramBadRequest as error:
            if "message is not modified" in error.message:
                return
    if query.bot is not None:
        await query.bot.send_message(
            query.from_user.id, t(lang, "passive.message"), reply_markup=refresh_markup(lang)
        )


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
            scope = current_scope()
            telemetry.emit(
                Event.DISPATCH_ERROR,
                latency_ms=scope.elapsed_ms() if scope is not None else None,
                reason_code=Reason.INTERNAL_ERROR.value,
                reason_detail=f"{error.__class__.__name__}: {error}"[:300],
            )
            text = t(str(data.get("lang", DEFAULT_LANG)), "errors.apology", cid=cid)
            await _apologize(event, text)
            return None


class AnswerTimingMiddleware(BaseRequestMiddleware):
    """CALLBACK_ANSWERED with the time from the update's arrival to Telegram's answer.

    Sits on the bot's session, so it sees every answerCallbackQuery: the automatic answer, a
    handler's own, a refusal, an apology and the passive instance's.
    """

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        # A plain bool, not isinstance narrowing: `method` keeps its generic type for the call.
        answering = isinstance(method, AnswerCallbackQuery)
        if not answering:
            return await make_request(bot, method)
        ok = False
        try:
            response = await make_request(bot, method)
            ok = True
            return response
        finally:
            scope = current_scope()
            telemetry.emit(
                Event.CALLBACK_ANSWERED,
                callback_id=getattr(method, "callback_query_id", None),
                latency_ms=scope.elapsed_ms() if scope is not None else None,
                ok=ok,
            )


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
        self._prune_at = PRUNE_AT  # users remembered before the quiet ones are forgotten

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
            reject(Reason.RATE_LIMITED, f"over {self.limit} in {self.window_s:g} s")
            if isinstance(event, CallbackQuery):
                await event.answer(t(lang, "limits.slow_down"))
            elif now - self._warned.get(user.id, 0.0) > self.window_s:
                self._warned[user.id] = now
                await event.answer(t(lang, "limits.slow_down"))
            return None
        seen.append(now)
        if len(self._seen) > self._prune_at:
            self._forget_quiet(now)
        return await handler(event, data)

    def _forget_quiet(self, now: float) -> None:
        """Drop the users with nothing in their window: the memory follows the active users,
        not everyone who ever wrote (amortised: the next pass waits for twice as many)."""
        cutoff = now - self.window_s
        self._seen = defaultdict(
            deque, {user: seen for user, seen in self._seen.items() if seen and seen[-1] > cutoff}
        )
        self._warned = {user: at for user, at in self._warned.items() if at > cutoff}
        self._prune_at = max(PRUNE_AT, 2 * len(self._seen))
