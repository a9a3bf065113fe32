"""Telemetry helpers on every update type; compatible signatures; a sink that raises."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram.types import (
    CallbackQuery,
    Chat,
    InaccessibleMessage,
    Message,
    PreCheckoutQuery,
    Update,
    User,
)

from trt.telemetry import events
from trt.telemetry.events import (
    REQUIRED,
    Event,
    Reason,
    Telemetry,
    get_callback_id,
    get_chat_id,
    get_message_id,
    get_update_id,
    get_user_id,
    log_callback_rejected,
    reject,
    update_scope,
)

USER = User(id=7, is_bot=False, first_name="A")
CHAT = Chat(id=70, type="private")
NOW = datetime(2026, 11, 29, tzinfo=UTC)
MESSAGE = Message(message_id=5, date=NOW, chat=CHAT, from_user=USER, text="hi")
GONE = InaccessibleMessage(chat=CHAT, message_id=9, date=0)


def callback(message: Any = None, inline: str | None = None) -> CallbackQuery:
    return CallbackQuery(
        id="cb1",
        from_user=USER,
        chat_instance="ci",
        data="x:1",
        message=message,
        inline_message_id=inline,
    )


CASES: list[tuple[str, Any, tuple[Any, ...]]] = [
    # name, event, (update_id, callback_id, user_id, chat_id, message_id)
    ("message update", Update(update_id=1, message=MESSAGE), (1, None, 7, 70, 5)),
    ("edited message", Update(update_id=2, edited_message=MESSAGE), (2, None, 7, 70, 5)),
    (
        "callback with message",
        Update(update_id=3, callback_query=callback(MESSAGE)),
        (3, "cb1", 7, 70, 5),
    ),
    (
        "callback, inline message",
        Update(update_id=4, callback_query=callback(inline="im")),
        (4, "cb1", 7, None, None),
    ),
    (
        "callback, inaccessible message",
        Update(update_id=5, callback_query=callback(GONE)),
        (5, "cb1", 7, 70, 9),
    ),
    (
        "pre-checkout",
        Update(
            update_id=6,
            pre_checkout_query=PreCheckoutQuery(
                id="pc", from_user=USER, currency="XTR", total_amount=5, invoice_payload="p"
            ),
        ),
        (6, None, 7, None, None),
    ),
    ("bare callback (no update id on it)", callback(MESSAGE), (None, "cb1", 7, 70, 5)),
    ("bare message", MESSAGE, (None, None, 7, 70, 5)),
    ("nothing at all", object(), (None, None, None, None, None)),
    ("None", None, (None, None, None, None, None)),
]


@pytest.mark.parametrize(("name", "event", "expected"), CASES, ids=[c[0] for c in CASES])
def test_helpers_on_every_update_type(name: str, event: Any, expected: tuple[Any, ...]) -> None:
    got = (
        get_update_id(event),
        get_callback_id(event),
        get_user_id(event),
        get_chat_id(event),
        get_message_id(event),
    )
    assert got == expected


def test_update_id_comes_from_the_update_context() -> None:
    update = Update(update_id=42, callback_query=callback(MESSAGE))
    assert get_update_id(update.callback_query, {"event_update": update}) == 42


def test_log_callback_rejected_accepts_every_spelling() -> None:
    new = log_callback_rejected(reason_code=Reason.ACCESS_DENIED, reason_detail="not yours")
    old = log_callback_rejected(reason="UNKNOWN_CALLBACK")
    errors = log_callback_rejected(
        error_type="ValueError", error_message="boom", reason_detail_extra=1, some_future_field="ok"
    )
    assert new is not None
    assert (new["reason_code"], new["reason_detail"]) == ("ACCESS_DENIED", "not yours")
    assert old is not None
    assert old["reason_code"] == "UNKNOWN_CALLBACK"
    assert errors is not None
    assert (errors["reason_code"], errors["reason_detail"], errors["error_type"]) == (
        "INTERNAL_ERROR",
        "boom",
        "ValueError",
    )


def test_a_sink_that_raises_is_counted_and_never_raises() -> None:
    telemetry = Telemetry()

    def broken(_record: dict[str, Any]) -> None:
        raise OSError("disk full")

    kept: list[dict[str, Any]] = []
    telemetry.sinks.extend([broken, kept.append])
    assert telemetry.emit(Event.UPDATE_RECEIVED, cid="c", update_id=1) is not None
    assert telemetry.emit(Event.DISPATCH_OK, cid="c", update_id=1, latency_ms=1) is not None
    assert telemetry.failures == 2
    assert [r["event"] for r in kept] == ["UPDATE_RECEIVED", "DISPATCH_OK"]


def test_every_event_has_its_required_fields_declared() -> None:
    assert set(REQUIRED) == set(Event)
    for fields in REQUIRED.values():
        assert {"cid", "event", "ts"} <= set(fields)


def test_the_module_level_entry_point_survives_a_broken_telemetry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("bug in telemetry")

    monkeypatch.setattr(events.telemetry, "callback_rejected", explode)
    assert log_callback_rejected(reason_code="X") is None


def _recording() -> tuple[Telemetry, list[dict[str, Any]]]:
    recorder = Telemetry()
    records: list[dict[str, Any]] = []
    recorder.sinks.append(records.append)
    return recorder, records


def test_events_inside_an_update_carry_its_ids() -> None:
    recorder, records = _recording()
    with update_scope(cid="c1", update_id=10, user_id=7, chat_id=70):
        recorder.emit(Event.UI_RENDER, screen="menu")
        recorder.emit(Event.MESSAGE_REJECTED, update_id=None, user_id=8, reason_code="X")
    recorder.emit(Event.UI_RENDER, screen="outside")
    assert records[0] | {"ts": 0} == {
        "event": "UI_RENDER",
        "ts": 0,
        "cid": "c1",
        "update_id": 10,
        "user_id": 7,
        "chat_id": 70,
        "screen": "menu",
    }
    # An explicit None keeps the update's id; an explicit value wins.
    assert (records[1]["update_id"], records[1]["user_id"]) == (10, 8)
    assert "cid" not in records[2]


def test_an_accepted_tap_is_accepted_once_before_its_screen() -> None:
    recorder, records = _recording()
    with update_scope(cid="c2", update_id=11, callback_id="cb", callback_data="x"):
        recorder.callback_routed("on_menu")
        recorder.emit(Event.UI_RENDER, screen="a")
        recorder.emit(Event.UI_RENDER, screen="b")
        recorder.settle_callback()
    assert [r["event"] for r in records] == [
        "CALLBACK_ROUTED",
        "CALLBACK_ACCEPTED",
        "UI_RENDER",
        "UI_RENDER",
    ]
    assert records[1]["handler"] == "on_menu"


def test_a_tap_without_a_screen_is_accepted_when_its_handler_returns() -> None:
    recorder, records = _recording()
    with update_scope(cid="c3", callback_id="cb"):
        recorder.callback_routed("on_toast")
        recorder.settle_callback()
        recorder.settle_callback()
    assert [r["event"] for r in records] == ["CALLBACK_ROUTED", "CALLBACK_ACCEPTED"]


def test_reject_picks_the_event_by_the_kind_of_update(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, records = _recording()
    monkeypatch.setattr(events, "telemetry", recorder)
    with update_scope(cid="c4", update_id=12, callback_id="cb", callback_data="x"):
        recorder.callback_routed("on_confirm")
        reject(Reason.STATE_MISMATCH, "old confirmation")
        recorder.emit(Event.UI_RENDER, screen="menu")
        recorder.settle_callback()
    with update_scope(cid="c5", update_id=13, user_id=7, chat_id=70):
        reject(Reason.VALIDATION_FAILED, "too long")
    reject("ACCESS_DENIED", "no update at all", user_id=9)
    names = [(r["event"], r.get("reason_code")) for r in records]
    assert names == [
        ("CALLBACK_ROUTED", None),
        ("CALLBACK_REJECTED", "STATE_MISMATCH"),
        ("UI_RENDER", None),  # rejected: no CALLBACK_ACCEPTED before or after the screen
        ("MESSAGE_REJECTED", "VALIDATION_FAILED"),
        ("MESSAGE_REJECTED", "ACCESS_DENIED"),
    ]
    assert records[1]["reason_detail"] == "old confirmation"
    assert records[3]["update_id"] == 13
    assert records[4]["user_id"] == 9


def test_a_broken_log_call_is_counted_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, records = _recording()

    def explode(*_args: Any, **_kwargs: Any) -> None:
        raise ValueError("renderer bug")

    monkeypatch.setattr(events, "log_info", explode)  # the event line's writer
    assert recorder.emit(Event.UPDATE_RECEIVED, cid="c", update_id=1) is None
    assert recorder.failures == 1
    assert records == []
