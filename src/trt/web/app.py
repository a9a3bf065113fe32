"""aiohttp application: `/telegram/webhook`, `/kie/callback/{token}`, `/metrics`, `/healthz`,
`/readyz`.

The callback receiver answers fast and does no work of its own: it verifies the signature,
stores the payload with the job in one transaction and wakes the engine (shared/kie/README.md
§4.3). Duplicates are harmless: the engine's transitions are compare-and-set.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from trt.concurrency import finish
from trt.db.database import Database
from trt.jobs.transitions import record_callback
from trt.kie.callbacks import callback_task_id, signature_ok
from trt.leadership import StaleLeaderError
from trt.logs import get_logger
from trt.payments.providers import HostedCheckout, ProviderError
from trt.telemetry.metrics import Metrics

log = get_logger(__name__)
MAX_REQUEST_BYTES = 256 * 1024  # a Telegram update or a YooKassa notification is far smaller
MAX_CALLBACK_BYTES = 64 * 1024  # KIE's callback: the task record with its createTask body
WEBHOOK_PATH = "/telegram/webhook"
NOTIFICATIONS_PER_S = 20  # YooKassa sends one per payment event; more is someone else
OK = {"code": 200, "msg": "success"}

Ready = Callable[[], Awaitable[dict[str, Any]]]
AnswerPassive = Callable[[dict[str, Any]], Coroutine[Any, Any, object]]


class UpdateStore(Protocol):
    """Where the ACTIVE instance's webhook puts an update (`trt.telegram.intake.UpdateInbox`)."""

    async def store(self, updates: list[dict[str, Any]]) -> int: ...


class CallbackReceiver:
    """KIE's callbacks: authenticated, bounded, attached to their job, never trusted as results.

    A callback only wakes its job (the engine confirms the outcome with recordInfo before any
    money moves). Nothing is stored for a token no job has: a flood of forgeries costs a lookup
    and a counter, not database rows.
    """

    def __init__(
        self,
        database: Database,
        *,
        hmac_key: str | None,
        wake: asyncio.Event,
        refused: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self.database = database
        self.hmac_key = hmac_key
        self.wake = wake
        self.refused = refused

    async def handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        raw = await read_capped(request, MAX_CALLBACK_BYTES)
        if raw is None:
            self.refused("too_large")
            return web.json_response({"code": 413, "msg": "body too large"}, status=413)
        try:
            body = json.loads(raw)
        except ValueError:
            self.refused("invalid")
            return web.json_response({"code": 400, "msg": "invalid JSON"}, status=400)
        if not isinstance(body, dict):
            self.refused("invalid")
            return web.json_response({"code": 400, "msg": "invalid body"}, status=400)
        if self.hmac_key and not signature_ok(body, request.headers, self.hmac_key):
            self.refused("bad_signature")
            log.warning(
                "kie_callback_rejected",
                reason_code="ACCESS_DENIED",
                reason_detail="bad signature",
                task_id=callback_task_id(body)[:64],
            )
            return web.json_response({"code": 401, "msg": "bad signature"}, status=401)
        job_id = await self.store(token, body)
        if job_id is None:
            self.refused("unknown_token")
            return web.json_response({"code": 404, "msg": "unknown callback"}, status=404)
        self.wake.set()
        return web.json_response(OK)

    async def store(self, token: str, body: dict[str, Any]) -> str | None:
        """Record the callback with its job (the job's owner does the bookkeeping)."""
        return await record_callback(self.database, token, body)


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
        inbox: UpdateStore,
        is_active: Callable[[], bool],
        answer_passive: AnswerPassive,
    ) -> None:
        self.secret = secret
        self.inbox = inbox
        self.is_active = is_active
        self.answer_passive = answer_passive
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
        task = asyncio.create_task(self.answer_passive(body))
        self._passive.add(task)
        task.add_done_callback(self._passive.discard)
        return web.json_response({"ok": True})

    async def close(self) -> None:
        """Let the PASSIVE answers in flight finish."""
        await finish(self._passive, drain_s=5.0)


class ProviderNotifications:
    """A hosted payment provider's HTTP notifications (YooKassa's): the body is a hint, the
    provider's API is the truth (`HostedCheckout.on_notification`).

    Only the ACTIVE instance acts on them (money moves there); a PASSIVE one answers 503 and
    the provider delivers again (the leader's periodic check finds the payment anyway). The
    answer says nothing of what was found (the outcome goes to the log); the endpoint is
    rate-limited and, when the provider names them (`YOOKASSA_CHECK_IP`), open only to its
    published addresses.
    """

    def __init__(
        self,
        provider: HostedCheckout,
        is_active: Callable[[], bool],
        *,
        per_s: int = NOTIFICATIONS_PER_S,
    ) -> None:
        self.provider = provider
        self.is_active = is_active
        self.allowed_networks: tuple[IPv4Network | IPv6Network, ...] = provider.allowed_networks
        self.window = SlidingWindow(per_s, 1.0)

    @property
    def path(self) -> str:
        return self.provider.notification_path

    async def handle(self, request: web.Request) -> web.Response:
        method = self.provider.method
        if self.allowed_networks and not _from_networks(request, self.allowed_networks):
            log.warning(f"{method}_notification_refused", reason_code="ACCESS_DENIED")
            return web.json_response({"ok": False}, status=403)
        if not self.window.admit():
            return web.json_response({"ok": False}, status=429)
        if not self.is_active():
            return web.json_response({"ok": False, "error": "passive instance"}, status=503)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid JSON"}, status=400)
        try:
            outcome = await self.provider.on_notification(body)
        except ProviderError as error:  # cannot verify now: the provider delivers again
            log.warning(f"{method}_notification_unverified", error=str(error)[:200])
            return web.json_response({"ok": False}, status=502)
        log.info(f"{method}_notification", outcome=outcome)
        if outcome == "invalid":
            return web.json_response({"ok": False, "error": "not a notification"}, status=400)
        return web.json_response({"ok": True})


class SlidingWindow:
    """At most `count` admissions in any `period_s`: cheap protection for a public endpoint."""

    def __init__(self, count: int, period_s: float) -> None:
        self.count = count
        self.period_s = period_s
        self._times: deque[float] = deque()

    def admit(self) -> bool:
        now = time.monotonic()
        while self._times and self._times[0] <= now - self.period_s:
            self._times.popleft()
        if len(self._times) >= self.count:
            return False
        self._times.append(now)
        return True


def _from_networks(request: web.Request, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    """Whether the caller's address is in `networks`.

    Behind a PaaS proxy the caller is the last `X-Forwarded-For` hop (the proxy appends what it
    saw; anything before it is whatever the client claimed)."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    address = forwarded.rsplit(",", 1)[-1].strip() if forwarded else (request.remote or "")
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def metrics_allowed(request: web.Request, token: str | None) -> bool:
    """`/metrics` with `METRICS_TOKEN`: a matching bearer token; without it: loopback only."""
    if token is not None:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    try:
        return ip_address(request.remote or "").is_loopback and not request.headers.get(
            "X-Forwarded-For"
        )
    except ValueError:
        return False


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The request body, or None when it is larger than `limit` (read no further then)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_web_app(
    receiver: CallbackReceiver,
    ready: Ready,
    metrics: Metrics | None = None,
    webhook: TelegramWebhook | None = None,
    notifications: Iterable[ProviderNotifications] = (),
    *,
    metrics_token: str | None = None,
) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app.router.add_post("/kie/callback/{token}", receiver.handle)
    if webhook is not None:
        app.router.add_post(WEBHOOK_PATH, webhook.handle)
    for endpoint in notifications:
        app.router.add_post(endpoint.path, endpoint.handle)
    if metrics is not None:

        async def metrics_page(request: web.Request) -> web.Response:
            if not metrics_allowed(request, metrics_token):
                return web.json_response({"ok": False}, status=401)
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
