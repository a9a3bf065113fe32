"""The Telegram webhook endpoint: secret checked, ACTIVE stores, PASSIVE answers users but
never swallows a payment (Telegram must deliver that one again, to the leader)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from trt.web.app import TelegramWebhook, create_web_app


class Inbox:
    def __init__(self) -> None:
        self.stored: list[dict[str, Any]] = []

    async def store(self, updates: list[dict[str, Any]]) -> int:
        self.stored.extend(updates)
        return len(updates)


class Dispatcher:
    def __init__(self) -> None:
        self.fed: list[dict[str, Any]] = []

    async def feed_raw_update(self, _bot: object, update: dict[str, Any]) -> None:
        self.fed.append(update)


class NoCallbacks:
    async def handle(self, _request: object) -> None:
        raise AssertionError("no KIE callback in these tests")


async def ready() -> dict[str, Any]:
    return {"ready": True}


async def post(active: bool, body: Any, secret: str = "s3cret") -> tuple[int, Inbox, Dispatcher]:
    inbox, dispatcher = Inbox(), Dispatcher()
    webhook = TelegramWebhook(
        secret="s3cret",
        inbox=inbox,  # type: ignore[arg-type]
        is_active=lambda: active,
        answer_passive=lambda update: dispatcher.feed_raw_update(None, update),
    )
    app = create_web_app(NoCallbacks(), ready, webhook=webhook)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/telegram/webhook",
            json=body,
            headers={"X-Telegram-Bot-Api-Secret-Token": secret},
        )
        status = response.status
    await webhook.close()
    return status, inbox, dispatcher


TAP = {"update_id": 1, "callback_query": {"id": "q", "from": {"id": 7}, "data": "mn:main"}}
PAID = {
    "update_id": 2,
    "message": {"message_id": 5, "chat": {"id": 7}, "successful_payment": {"total_amount": 50}},
}


async def test_the_active_instance_stores_every_update() -> None:
    status, inbox, dispatcher = await post(True, PAID)
    assert (status, inbox.stored, dispatcher.fed) == (200, [PAID], [])


async def test_the_passive_instance_answers_taps_but_returns_payments() -> None:
    status, inbox, dispatcher = await post(False, TAP)
    assert (status, inbox.stored, dispatcher.fed) == (200, [], [TAP])
    status, inbox, dispatcher = await post(False, PAID)
    assert (status, inbox.stored, dispatcher.fed) == (503, [], [])


async def test_a_wrong_secret_or_a_non_update_is_refused() -> None:
    assert (await post(True, TAP, secret="guess"))[0] == 401
    assert (await post(True, {"hello": 1}))[0] == 400
    assert (await post(True, [1, 2]))[0] == 400
