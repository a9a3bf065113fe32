"""aiohttp application: `/telegram/webhook`, `/kie/callback/{token}`, `/metrics`, `/healthz`,
`/readyz`.

The callback receiver answers fast and does no work of its own: it verifies the signature,
stores the payload with the job in one transaction and wakes the engine (shared/kie/README.md
§4.3). Duplicates are harmless: the engine's transitions are compare-and-set.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot, Dispatcher
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import select, update

from trt.bot.intake import UpdateInbox
from trt.catalog.schema import Family
from trt.concurrency import finish
from trt.db.database import Database
from trt.db.models import Job, KieCallback, utcnow
from trt.jobs.state import ACTIVE
from trt.kie.callbacks import callback_task_id, signature_ok
from trt.kie.client import parse_callback
from trt.leadership import StaleLeaderError
from trt.payments.yookassa import CardPayments, YooKassaError
from trt.telemetry.events import Event, telemetry
from trt.telemetry.logs import get_logger
from trt.telemetry.metrics import Metrics

log = get_logger(__name__)
MAX_CALLBACK_BYTES = 1024 * 1024
WEBHOOK_PATH = "/telegram/webhook"
YOOKASSA_PATH = "/yookassa/notification"
OK = {"code": 200, "msg": "success"}

Ready = Callable[[], Awaitable[dict[str, Any]]]


class CallbackReceiver:
    def __init__(self, database: Database, *, hmac_key: str | None, wake: asyncio.Event) -> None:
        self.database = database
        self.hmac_key = hmac_key
        self.wake = wake

    async def handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"code": 400, "msg": "invalid JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"code": 400, "msg": "invalid body"}, status=400)
        if self.hmac_key and not signature_ok(body, request.headers, self.hmac_key):
            log.warning(
                "kie_callback_rejected",
                reason_code="ACCESS_DENIED",
                reason_detail="bad signature",
                task_id=callback_task_id(body),
            )
            return web.json_response({"code": 401, "msg": "bad signature"}, status=401)
        job_id = await self.store(token, body)
        if job_id is None:
            return web.json_response({"code": 404, "msg": "unknown callback"}, status=404)
        self.wake.set()
        return web.json_response(OK)

    async def store(self, token: str, body: dict[str, Any]) -> str | None:
        """Record the callback; attach it to its job and make the job due now."""
        task_id = callback_task_id(body) or None
        async with self.database.unit_of_work() as session:
            job = await session.scalar(select(Job).where(Job.callback_token == token))
            session.add(
                KieCallback(
                    job_id=job.id if job else None,
                    task_id=task_id,
                    payload=body,
                    received_at=utcnow(),
                )
            )
            if job is None:
                log.warning(
                    "kie_callback_orphan",
                    reason_code="ACCESS_DENIED",
                    reason_detail="unknown token",
                    task_id=task_id,
                )
                return None
            if job.kie_task_id and task_id and task_id != job.kie_task_id:
                log.warning("kie_callback_mismatch", job_id=job.id, task_id=task_id)
                return job.id
            _task, final = parse_callback(Family(job.family), body)
            keep_earlier = (
                job.callback_payload is not None
                and parse_callback(Family(job.family), job.callback_payload)[1] is not None
                and final is None
            )
            values: dict[str, Any] = {}
            if not keep_earlier:
                values["callback_payload"] = body
            if job.status in {s.value for s in ACTIVE}:
                values["next_run_at"] = utcnow()
            if values:
                await session.execute(update(Job).where(Job.id == job.id).values(**values))
            telemetry.emit(
                Event.KIE_CALLBACK,
                cid=job.cid,
                job_id=job.id,
                task_id=task_id,
                final=final is not None,
            )
            return job.id


class TelegramWebhook:
    """Telegram's webhook: verify the secret, keep the update, answer 200 at once.

    The ACTIVE instance stores the update in the inbox (a repeat is stored once) and handles it
    from there; a database failure answers 500 so Telegram delivers again. A PASSIVE instance
    (a deploy overlap) stores nothing: the dispatcher's passive middleware answers the user.
    """

    def __init__(
        self,
        *,
        secret: str | None,
        inbox: UpdateInbox,
        is_active: Callable[[], bool],
        dispatcher: Dispatcher,
        bot: Bot,
    ) -> None:
        self.secret = secret
        self.inbox = inbox
        self.is_active = is_active
        self.dispatcher = dispatcher
        self.bot = bot
        self._passive: set[asyncio.Task[Any]] = set()

    async def handle(self, request: web.Request) -> web.Response:
        if self.secret is not None:
            given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
            if not hmac.compare_digest(given.encode(), self.secret.encode()):
                log.warning("webhook_rejected", reason_code="ACCESS_DENIED")
                return web.json_response({"ok": False}, status=401)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid JSON"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("update_id"), int):
            return web.json_response({"ok": False, "error": "not an update"}, status=400)
        if self.is_active():
            try:
                await self.inbox.store([body])
                return web.json_response({"ok": True})
            except StaleLeaderError:
                pass  # lost the lease a moment ago: answer as the PASSIVE instance we are now
            except Exception as error:  # Telegram redelivers on a non-2xx answer
                log.warning("webhook_store_failed", error=str(error)[:200])
                return web.json_response({"ok": False}, status=500)
        message = body.get("message")
        if isinstance(message, dict) and "successful_payment" in message:
            # Money arrived: never answer it from here. Telegram delivers it again, to the
            # leader (and the leader's reconciliation would find it anyway).
            return web.json_response({"ok": False, "error": "passive instance"}, status=503)
        task = asyncio.create_task(self.dispatcher.feed_raw_update(self.bot, body))
        self._passive.add(task)
        task.add_done_callback(self._passive.discard)
        return web.json_response({"ok": True})

    async def close(self) -> None:
        """Let the PASSIVE answers in flight finish."""
        await finish(self._passive, drain_s=5.0)


class YooKassaNotifications:
    """YooKassa's HTTP notifications: the body is a hint, the API is the truth (CardPayments).

    Only the ACTIVE instance acts on them (money moves there); a PASSIVE one answers 503 and
    YooKassa delivers again (the leader's periodic check finds the payment anyway).
    """

    def __init__(self, cards: CardPayments, is_active: Callable[[], bool]) -> None:
        self.cards = cards
        self.is_active = is_active

    async def handle(self, request: web.Request) -> web.Response:
        if not self.is_active():
            return web.json_response({"ok": False, "error": "passive instance"}, status=503)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid JSON"}, status=400)
        try:
            outcome = await self.cards.on_notification(body)
        except YooKassaError as error:  # cannot verify now: YooKassa retries
            log.warning("yookassa_notification_unverified", error=str(error)[:200])
            return web.json_response({"ok": False}, status=502)
        if outcome == "invalid":
            return web.json_response({"ok": False, "error": "not a notification"}, status=400)
        return web.json_response({"ok": True, "outcome": outcome})


def create_web_app(
    receiver: CallbackReceiver,
    ready: Ready,
    metrics: Metrics | None = None,
    webhook: TelegramWebhook | None = None,
    notifications: YooKassaNotifications | None = None,
) -> web.Application:
    app = web.Application(client_max_size=MAX_CALLBACK_BYTES)
    app.router.add_post("/kie/callback/{token}", receiver.handle)
    if webhook is not None:
        app.router.add_post(WEBHOOK_PATH, webhook.handle)
    if notifications is not None:
        app.router.add_post(YOOKASSA_PATH, notifications.handle)
    if metrics is not None:

        async def metrics_page(_request: web.Request) -> web.Response:
            body = await metrics.render()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", metrics_page)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        state = await ready()
        return web.json_response(state, status=200 if state.get("ready") else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
