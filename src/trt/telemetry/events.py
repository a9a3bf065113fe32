"""The event contract: the only place event names, reason codes and required fields live.

Telemetry must never break the handling it observes (two production bugs of bots like this:
`'CallbackQuery' object has no attribute 'update_id'` in the telemetry path, and
`log_callback_rejected() got an unexpected keyword argument 'reason_detail'` in the exception
middleware). So: the helpers read ids defensively from any update type and return None when an
id is absent; the logging functions accept old and new keyword spellings and ignore unknown
ones; and every emit is guarded — a broken sink is counted and reported once, never raised.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from trt.logs import get_logger, log_info, scrub

LOGGER = "trt.events"
log = get_logger(LOGGER)


class Event(StrEnum):
    UPDATE_RECEIVED = "UPDATE_RECEIVED"
    MESSAGE_RECEIVED = "MESSAGE_RECEIVED"
    CALLBACK_RECEIVED = "CALLBACK_RECEIVED"
    CALLBACK_ROUTED = "CALLBACK_ROUTED"
    CALLBACK_ACCEPTED = "CALLBACK_ACCEPTED"
    CALLBACK_REJECTED = "CALLBACK_REJECTED"
    CALLBACK_ANSWERED = "CALLBACK_ANSWERED"
    MESSAGE_REJECTED = "MESSAGE_REJECTED"
    UI_RENDER = "UI_RENDER"
    DISPATCH_OK = "DISPATCH_OK"
    DISPATCH_ERROR = "DISPATCH_ERROR"
    PASSIVE_REJECT = "PASSIVE_REJECT"
    JOB_CREATED = "JOB_CREATED"
    HOLD_PLACED = "HOLD_PLACED"
    KIE_TASK_CREATED = "KIE_TASK_CREATED"
    KIE_CALLBACK = "KIE_CALLBACK"
    KIE_POLL = "KIE_POLL"
    KIE_ERROR = "KIE_ERROR"
    JOB_SUCCEEDED = "JOB_SUCCEEDED"
    JOB_FAILED = "JOB_FAILED"
    JOB_TIMED_OUT = "JOB_TIMED_OUT"
    DELIVERED = "DELIVERED"
    HOLD_CAPTURED = "HOLD_CAPTURED"
    HOLD_RELEASED = "HOLD_RELEASED"
    PAYMENT_CREATED = "PAYMENT_CREATED"
    PAYMENT_CREDITED = "PAYMENT_CREDITED"
    PAYMENT_REJECTED = "PAYMENT_REJECTED"
    PAYMENT_REFUNDED = "PAYMENT_REFUNDED"
    BONUS_CREDITED = "BONUS_CREDITED"
    PROMPT_ASSISTED = "PROMPT_ASSISTED"


class Reason(StrEnum):
    """Why something was refused or failed (each one documented in docs/monitoring.md)."""

    UNKNOWN_CALLBACK = "UNKNOWN_CALLBACK"
    PASSIVE_REJECT = "PASSIVE_REJECT"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    RATE_LIMITED = "RATE_LIMITED"
    ACCESS_DENIED = "ACCESS_DENIED"
    STATE_MISMATCH = "STATE_MISMATCH"
    EXPIRED = "EXPIRED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    LIMIT_REACHED = "LIMIT_REACHED"
    DUPLICATE = "DUPLICATE"
    DOWNSTREAM_ERROR = "DOWNSTREAM_ERROR"
    DOWNSTREAM_TIMEOUT = "DOWNSTREAM_TIMEOUT"
    DB_ERROR = "DB_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


_BASE = ("cid", "event", "ts")
_MESSAGE = (*_BASE, "update_id", "user_id", "chat_id")
_CALLBACK = (*_MESSAGE, "callback_id", "callback_data")
REQUIRED: dict[Event, tuple[str, ...]] = {
    Event.UPDATE_RECEIVED: (*_BASE, "update_id"),
    Event.MESSAGE_RECEIVED: _MESSAGE,
    Event.CALLBACK_RECEIVED: _CALLBACK,
    Event.CALLBACK_ROUTED: (*_CALLBACK, "handler"),
    Event.CALLBACK_ACCEPTED: (*_CALLBACK, "handler"),
    Event.CALLBACK_REJECTED: (*_CALLBACK, "reason_code", "reason_detail"),
    Event.CALLBACK_ANSWERED: (*_CALLBACK, "latency_ms"),
    Event.MESSAGE_REJECTED: (*_MESSAGE, "reason_code", "reason_detail"),
    Event.UI_RENDER: (*_BASE, "user_id", "chat_id", "screen"),
    Event.DISPATCH_OK: (*_BASE, "update_id", "latency_ms"),
    Event.DISPATCH_ERROR: (*_BASE, "update_id", "latency_ms", "reason_code", "reason_detail"),
    Event.PASSIVE_REJECT: (*_BASE, "update_id", "reason_code", "reason_detail"),
    Event.JOB_CREATED: (*_BASE, "user_id", "job_id"),
    Event.HOLD_PLACED: (*_BASE, "user_id", "job_id"),
    Event.KIE_TASK_CREATED: (*_BASE, "job_id", "task_id"),
    Event.KIE_CALLBACK: (*_BASE, "job_id", "task_id"),
    Event.KIE_POLL: (*_BASE, "job_id", "task_id"),
    Event.KIE_ERROR: (*_BASE, "job_id", "code", "reason_detail"),
    Event.JOB_SUCCEEDED: (*_BASE, "job_id", "task_id"),
    Event.JOB_FAILED: (*_BASE, "job_id", "reason_code", "reason_detail"),
    Event.JOB_TIMED_OUT: (*_BASE, "job_id", "reason_code", "reason_detail"),
    Event.DELIVERED: (*_BASE, "job_id"),
    Event.HOLD_CAPTURED: (*_BASE, "job_id"),
    Event.HOLD_RELEASED: (*_BASE, "job_id"),
    Event.PAYMENT_CREATED: (*_BASE, "user_id", "payment_id", "method", "amount_kop"),
    Event.PAYMENT_CREDITED: (
        *_BASE,
        "user_id",
        "payment_id",
        "method",
        "amount_kop",
        "external_id",
    ),
    Event.PAYMENT_REJECTED: (*_BASE, "method", "reason_code", "reason_detail"),
    Event.PAYMENT_REFUNDED: (*_BASE, "user_id", "payment_id", "amount_kop"),
    Event.BONUS_CREDITED: (*_BASE, "user_id", "kind", "amount_kop"),
    Event.PROMPT_ASSISTED: (*_BASE, "kind", "model", "status"),
}


# -- safe helpers: correct for every update type, None when absent, never an exception ------
def _attr(obj: Any, *path: str) -> Any:
    for name in path:
        if obj is None:
            return None
        try:
            obj = getattr(obj, name, None)
        except Exception:  # a property that raises is an absent value here
            return None
    return obj


def _inner(event: Any) -> Any:
    """The payload of an Update (message, callback_query, …), or the event itself."""
    if _attr(event, "update_id") is None:
        return event
    for name in (
        "message",
        "edited_message",
        "callback_query",
        "pre_checkout_query",
        "shipping_query",
        "inline_query",
        "chosen_inline_result",
        "channel_post",
        "edited_channel_post",
        "my_chat_member",
        "chat_member",
        "poll_answer",
    ):
        found = _attr(event, name)
        if found is not None:
            return found
    return event


def get_update_id(event: Any, data: dict[str, Any] | None = None) -> int | None:
    """The update id: from the update context (aiogram's `event_update`), not the event."""
    for candidate in (event, (data or {}).get("event_update")):
        value = _attr(candidate, "update_id")
        if isinstance(value, int):
            return value
    return None


def get_callback_id(event: Any) -> str | None:
    inner = _inner(event)
    if _attr(inner, "data") is not None or _attr(inner, "chat_instance") is not None:
        value = _attr(inner, "id")
        return str(value) if value is not None else None
    return None


def get_user_id(event: Any) -> int | None:
    inner = _inner(event)
    value = _attr(inner, "from_user", "id")
    if value is None:
        value = _attr(inner, "user", "id")  # chat member updates, poll answers
    return value if isinstance(value, int) else None


def get_chat_id(event: Any) -> int | None:
    inner = _inner(event)
    value = _attr(inner, "chat", "id")
    if value is None:
        # A callback query's chat is its message's (also an InaccessibleMessage's).
        value = _attr(inner, "message", "chat", "id")
    return value if isinstance(value, int) else None


def get_message_id(event: Any) -> int | None:
    inner = _inner(event)
    value = _attr(inner, "message_id")
    if value is None:
        value = _attr(inner, "message", "message_id")
    return value if isinstance(value, int) else None


# -- the update being handled ------------------------------------------------------------------
@dataclass(slots=True)
class UpdateScope:
    """What every event of one update shares; set once per update, read by `emit`.

    Handlers need not pass the ids along: an event emitted while an update is handled gets the
    update's cid, update id, user, chat and callback fields unless it names its own.
    """

    ids: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    # The callback's decision: CALLBACK_ACCEPTED is emitted once the handler shows a screen or
    # returns, unless it rejected the tap first (then CALLBACK_REJECTED is the decision).
    handler: str | None = None
    decided: bool = False

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 2)


_scope: ContextVar[UpdateScope | None] = ContextVar("trt_update_scope", default=None)


def new_cid() -> str:
    """A fresh correlation id: 12 hex characters, short enough to read out to support."""
    return uuid.uuid4().hex[:12]


def current_scope() -> UpdateScope | None:
    return _scope.get()


@contextlib.contextmanager
def update_scope(**ids: Any) -> Iterator[UpdateScope]:
    """Bind `ids` (cid, update_id, user_id, …) to every event emitted inside the block."""
    scope = UpdateScope({k: v for k, v in ids.items() if v is not None})
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


# -- emitting ---------------------------------------------------------------------------------
Sink = Callable[[dict[str, Any]], None]
_DECISION_TRIGGERS = frozenset({Event.UI_RENDER.value})


class Telemetry:
    """Emits events to log lines and optional sinks; never raises into the caller."""

    def __init__(self) -> None:
        self.sinks: list[Sink] = []
        self.failures = 0
        self._reported = False

    def emit(self, event: Event | str, **fields: Any) -> dict[str, Any] | None:
        """Log the event and hand it to every sink; None when it could not be built or logged."""
        try:
            name = str(event)
            scope = _scope.get()
            if scope is not None:
                if name in _DECISION_TRIGGERS:
                    self.settle_callback()
                merged = dict(scope.ids)
                for key, value in fields.items():
                    # An explicit None does not hide the update's own id (`update_id=None`).
                    if value is not None or key not in merged:
                        merged[key] = value
                fields = merged
            # Stored copies (the events table, /debug, /trace) get what the log line gets: an
            # exception's text can carry a URL with the bot token.
            fields = {k: scrub(v) if isinstance(v, str) else v for k, v in fields.items()}
            record = {"event": name, "ts": time.time(), **fields}
            log_info(LOGGER, name, {k: v for k, v in fields.items() if k != "event"})
        except Exception as error:
            self._failed(error)
            return None
        for sink in self.sinks:
            # Each sink on its own: a broken one costs only its own copy of the event.
            try:
                sink(record)
            except Exception as error:
                self._failed(error)
        return record

    def _failed(self, error: Exception) -> None:
        self.failures += 1
        if not self._reported:
            self._reported = True
            # Reported once: a broken sink must not flood the log or stop the bot.
            with contextlib.suppress(Exception):
                log.error("telemetry_sink_failed", error=repr(error)[:200])

    def callback_routed(self, handler: str) -> None:
        """CALLBACK_ROUTED now; CALLBACK_ACCEPTED follows unless the handler rejects."""
        scope = _scope.get()
        if scope is not None:
            scope.handler = handler
            scope.decided = False
        self.emit(Event.CALLBACK_ROUTED, handler=handler)

    def settle_callback(self) -> None:
        """Emit CALLBACK_ACCEPTED for a routed callback that was neither accepted nor rejected."""
        scope = _scope.get()
        if scope is None or scope.handler is None or scope.decided:
            return
        scope.decided = True
        self.emit(Event.CALLBACK_ACCEPTED, handler=scope.handler)

    def _rejection(
        self,
        event: Event,
        reason_code: Reason | str | None,
        reason: Reason | str | None,
        reason_detail: str | None,
        error_type: str | None,
        error_message: str | None,
        extra: dict[str, Any],
    ) -> dict[str, Any] | None:
        scope = _scope.get()
        if scope is not None:
            scope.decided = True
        code = reason_code or reason or Reason.INTERNAL_ERROR
        detail = reason_detail or error_message or ""
        fields: dict[str, Any] = {"reason_code": str(code), "reason_detail": detail, **extra}
        if error_type:
            fields["error_type"] = error_type
        return self.emit(event, **fields)

    def callback_rejected(
        self,
        reason_code: Reason | str | None = None,
        *,
        reason: Reason | str | None = None,
        reason_detail: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        **extra: Any,
    ) -> dict[str, Any] | None:
        """CALLBACK_REJECTED; `reason_code` preferred, `reason` accepted; unknown kwargs kept."""
        return self._rejection(
            Event.CALLBACK_REJECTED,
            reason_code,
            reason,
            reason_detail,
            error_type,
            error_message,
            extra,
        )


telemetry = Telemetry()


def log_callback_rejected(*args: Any, **kwargs: Any) -> dict[str, Any] | None:
    """Backward-compatible entry point: any old or new spelling, never an exception."""
    try:
        return telemetry.callback_rejected(*args[:1], **kwargs)
    except Exception:
        telemetry.failures += 1
        return None


def reject(
    reason_code: Reason | str, reason_detail: str = "", **extra: Any
) -> dict[str, Any] | None:
    """Record the refusal of the update being handled, whichever kind it is.

    A tap gets CALLBACK_REJECTED (and so no CALLBACK_ACCEPTED), anything else MESSAGE_REJECTED;
    the ids come from the update's scope. Never raises.
    """
    scope = _scope.get()
    if scope is not None and "callback_id" in scope.ids:
        return log_callback_rejected(reason_code=reason_code, reason_detail=reason_detail, **extra)
    try:
        return telemetry._rejection(
            Event.MESSAGE_REJECTED, reason_code, None, reason_detail, None, None, extra
        )
    except Exception:
        telemetry.failures += 1
        return None
