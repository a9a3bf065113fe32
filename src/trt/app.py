"""The composition root behind `trt run`: storage first, then the services, until a signal.

Everything app-wide is built once here (`Services`, by keyword) and injected: the database,
the pipeline, the KIE client, the Telegram adapter and the dispatcher, the job service, the
engine and the outbox relay, the payment providers, and the HTTP server for KIE callbacks,
webhooks and health checks. Whatever is opened is registered on one `AsyncExitStack` as it is
opened, so it is closed in reverse order however far start-up got.

This is the one module outside bot/ and telegram/ that knows the presentation: it hands the
services to `trt.bot.app.create_dispatcher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from trt import __version__
from trt.admin.alerts import Alerts
from trt.admin.broadcast import BroadcastService
from trt.admin.settings import RuntimeSettings
from trt.billing.ledger import Ledger
from trt.bot.app import create_bot, create_dispatcher, set_commands
from trt.bot.keyboards import back_to_menu
from trt.bot.notices import Notices
from trt.bot.routers.admin import progress_screen
from trt.bot.routers.jobs import result_keyboard
from trt.bot.storage import SqlStorage
from trt.catalog.loader import default_catalog
from trt.catalog.pricing import Rates
from trt.concurrency import finish, first
from trt.config import BotMode, Config, mask_database_url
from trt.db import migrate
from trt.db.database import Database
from trt.errors import TrtError
from trt.jobs.engine import JobEngine
from trt.jobs.outbox import OutboxRelay
from trt.jobs.service import JobService
from trt.kie.client import KieClient, Limits
from trt.leadership import Leadership
from trt.logs import get_logger
from trt.payments.bonuses import BonusService
from trt.payments.providers import ProviderContext, Providers
from trt.payments.referrals import Referrals
from trt.payments.registry import build_providers
from trt.payments.service import PaymentService
from trt.payments.stars import StarsPayments
from trt.payments.yookassa import CardPayments
from trt.pipeline import UnifiedModelPipeline
from trt.telegram.api import Bot, BotApi, BotApiError, Dispatcher
from trt.telegram.files import BotFiles
from trt.telegram.intake import UpdateInbox
from trt.telegram.sender import Sender
from trt.telemetry.events import telemetry
from trt.telemetry.metrics import Metrics
from trt.telemetry.store import EventStore
from trt.users import UserService
from trt.web.app import (
    WEBHOOK_PATH,
    CallbackReceiver,
    ProviderNotifications,
    TelegramWebhook,
    create_web_app,
)

log = get_logger(__name__)


class SchemaBehindError(TrtError):
    """The Postgres schema is older than this code; an operator must run `trt migrate`."""

    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"database schema is at {current or 'an empty schema'}, this version needs {head}: "
            "run `trt migrate` (same DATABASE_URL) before starting"
        )


@dataclass(kw_only=True)
class Services:
    """Everything app-wide, built once per process."""

    config: Config
    owner: str
    database: Database
    pipeline: UnifiedModelPipeline
    kie: KieClient
    bot: Bot
    api: BotApi
    dispatcher: Dispatcher
    jobs: JobService
    engine: JobEngine
    relay: OutboxRelay
    wake: asyncio.Event
    events: EventStore
    metrics: Metrics
    leadership: Leadership
    inbox: UpdateInbox
    payments: PaymentService
    providers: Providers
    stars: StarsPayments  # the two providers by name, for the demo and the tests
    cards: CardPayments | None
    runtime: RuntimeSettings
    broadcasts: BroadcastService
    alerts: Alerts
    http_url: str = ""


async def prepare_storage(config: Config) -> Database:
    """Connect; migrate SQLite automatically, refuse a Postgres schema that is behind.

    Postgres is shared by instances of different versions during a rolling deploy, so its schema
    moves only by an explicit `trt migrate` (a release step); an embedded SQLite file belongs to
    this process alone and is upgraded in place.
    """
    database = Database(config.database.url)
    try:
        await database.ping()
        state = await migrate.schema_state(database)
        if not state.is_current:
            if not database.is_sqlite:
                raise SchemaBehindError(state.current, state.head)
            await migrate.upgrade(database)
            log.info("schema_migrated", from_revision=state.current, to_revision=state.head)
    except BaseException:
        await database.dispose()
        raise
    return database


def instance_id() -> str:
    """Who holds leases: host, pid and a random part (a restarted pid is someone else)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def build_services(
    config: Config, database: Database, stack: contextlib.AsyncExitStack
) -> Services:
    """Build everything; whatever needs closing is put on `stack` as soon as it is open."""
    pipeline = UnifiedModelPipeline(
        default_catalog(), Rates(config.pricing.usd_rub_rate, config.pricing.price_markup)
    )
    api_key = config.kie.api_key
    assert api_key is not None, "KIE_API_KEY is checked by Config.require()"
    kie = KieClient(
        api_key.get_secret_value(),
        config.kie.base_url,
        config.kie.upload_base_url,
        limits=Limits(
            creates=config.kie.creates_per_10s,
            records=config.kie.records_per_s,
            max_download_bytes=config.engine.max_result_mb * 1024 * 1024,
        ),
    )
    await kie.start()
    stack.push_async_callback(kie.close)
    owner = instance_id()
    bot_id = config.telegram.bot_id
    assert bot_id is not None, "BOT_TOKEN is checked by Config.require()"
    leadership = Leadership(
        database,
        name=f"bot:{bot_id}",
        holder=owner,
        lock_key=bot_id % 2**31,
        ttl_s=config.leadership.lease_ttl_s,
    )
    wake = asyncio.Event()
    told = asyncio.Event()  # the relay's: the engine wrote messages to send
    jobs = JobService(
        database,
        pipeline,
        config.engine,
        free_daily_quota=config.pricing.free_daily_quota,
        wake=wake,
    )
    bot = create_bot(config)
    api = BotApi(bot)
    stack.push_async_callback(api.close)
    engine = JobEngine(
        database,
        pipeline,
        kie,
        config.engine,
        owner=owner,
        public_base_url=config.http.public_base_url,
        wake=wake,
        files=BotFiles(bot),
        fence=leadership.fence,
        referrals=Referrals(config.payments, Ledger(is_sqlite=database.is_sqlite)),
        told=told,
    )
    sender = Sender(bot)
    relay = OutboxRelay(
        database,
        sender,
        owner=owner,
        notices=Notices(pipeline),
        result_keyboard=functools.partial(result_keyboard, pipeline),
        failure_keyboard=lambda lang, _job_id, _slug: back_to_menu(lang),
        lease_s=config.engine.lease_s,
        idle_poll_s=config.engine.idle_poll_s,
        retry_s=config.engine.outbox_retry_s,
        concurrency=config.engine.workers,
        wake=told,
        fence=leadership.fence,
    )
    events = EventStore(database, retention_days=config.logging.events_retention_days)
    payments = PaymentService(database, config.payments)
    settings = config.payments
    providers = await build_providers(
        ProviderContext(settings=settings, payments=payments, api=api, sender=sender, stack=stack)
    )
    stars = providers.get("stars")
    assert isinstance(stars, StarsPayments)
    cards = providers.get("yookassa")
    assert cards is None or isinstance(cards, CardPayments)
    users = UserService(database)
    storage = SqlStorage(database)
    broadcasts = BroadcastService(
        database,
        sender,
        default_rate_per_s=config.admin.broadcast_rate_per_s,
        render=progress_screen,
        users=users,
    )
    alerts = Alerts(
        database,
        sender,
        kie,
        admin_ids=config.admin.admin_ids,
        low_credits=config.admin.alert_kie_low_credits,
        failure_rate=config.admin.alert_failure_rate,
        cooldown_s=config.admin.alert_cooldown_s,
    )
    runtime = RuntimeSettings(database, pipeline)
    await runtime.load()  # operators' knobs (rates, markup, models) before the first screen
    dispatcher = create_dispatcher(
        config,
        database,
        pipeline,
        jobs,
        sender,
        events,
        is_active=lambda: leadership.is_active,
        payments=payments,
        stars=stars,
        bonuses=BonusService(database, settings),
        providers=providers,
        runtime=runtime,
        kie=kie,
        broadcasts=broadcasts,
        users=users,
        storage=storage,
    )
    # What the caches of this process hold may have changed while another instance led.
    leadership.listeners.append(lambda _role, _epoch: users.forget())
    leadership.listeners.append(lambda _role, _epoch: storage.forget())
    inbox = UpdateInbox(database, dispatcher, bot, check=leadership.check, fence=leadership.fence)
    metrics = Metrics(database)
    leadership.listeners.append(metrics.set_role)
    return Services(
        config=config,
        owner=owner,
        database=database,
        pipeline=pipeline,
        kie=kie,
        bot=bot,
        api=api,
        dispatcher=dispatcher,
        jobs=jobs,
        engine=engine,
        relay=relay,
        wake=wake,
        events=events,
        metrics=metrics,
        leadership=leadership,
        inbox=inbox,
        payments=payments,
        providers=providers,
        stars=stars,
        cards=cards,
        runtime=runtime,
        broadcasts=broadcasts,
        alerts=alerts,
    )


async def start_http(services: Services) -> tuple[web.AppRunner, TelegramWebhook]:
    config = services.config
    hmac_key = config.kie.webhook_hmac_key
    receiver = CallbackReceiver(
        services.database,
        hmac_key=hmac_key.get_secret_value() if hmac_key else None,
        wake=services.wake,
        refused=lambda reason: services.metrics.callbacks_refused.labels(reason=reason).inc(),
    )
    secret = config.telegram.effective_webhook_secret()
    webhook = TelegramWebhook(
        secret=secret.get_secret_value() if secret else None,
        inbox=services.inbox,
        is_active=lambda: services.leadership.is_active,
        answer_passive=services.inbox.answer_passive,
    )

    async def ready() -> dict[str, Any]:
        # A PASSIVE instance is ready too: a rolling deploy waits for the new instance to be
        # healthy before it stops the old one, which only then hands the lease over.
        role = services.leadership.role.value
        try:
            await services.database.ping()
        except Exception as error:  # any failure means not ready; the reason goes to the log
            # The probe is public: the database's error text (hosts, users) stays in the log.
            log.warning("readyz_database_failed", error=type(error).__name__)
            return {"ready": False, "database": "unavailable", "role": role}
        return {"ready": True, "database": "ok", "role": role, "version": __version__}

    serves_webhook = config.telegram.mode is BotMode.WEBHOOK
    notifications = [
        ProviderNotifications(provider, lambda: services.leadership.is_active)
        for provider in services.providers.checkouts
    ]
    runner = web.AppRunner(
        create_web_app(
            receiver,
            ready,
            services.metrics,
            webhook=webhook if serves_webhook else None,
            notifications=notifications,
            metrics_token=token.get_secret_value()
            if (token := config.http.metrics_token)
            else None,
        ),
        access_log=None,
        handle_signals=False,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.http.host, config.http.port)
    await site.start()
    server = site._server  # the bound port, when HTTP_PORT=0
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else config.http.port
    services.http_url = f"http://{config.http.host}:{port}"
    return runner, webhook


async def _until_passive(leadership: Leadership) -> None:
    while leadership.is_active:
        await leadership.wait_changed()


async def _take_updates(services: Services) -> None:
    """Point Telegram at this instance: set the webhook, or clear it for polling. Pending
    updates are always kept (`drop_pending_updates` is never true)."""
    config = services.config
    try:
        if config.telegram.mode is BotMode.WEBHOOK:
            secret = config.telegram.effective_webhook_secret()
            await services.api.take_webhook(
                f"{config.http.public_base_url}{WEBHOOK_PATH}",
                secret=secret.get_secret_value() if secret else None,
                allowed_updates=services.dispatcher.resolve_used_update_types(),
            )
        else:
            await services.api.take_polling()
    except BotApiError as error:
        # Polling retries on its own; a webhook already set by the previous leader still works.
        log.warning("take_updates_failed", error=error.message[:200])


WORK_RESTART_S = 1.0


async def serve_active(services: Services, stop: asyncio.Event) -> None:
    """Run the ACTIVE-only work whenever this instance leads; hand over cleanly on `stop`.

    Losing the lease cancels the work at once (another instance may already lead). On `stop`
    (SIGTERM) the update intake stops first, in-flight handling and job steps finish within
    `LEADER_DRAIN_S`, and then the lease is released so the waiting instance takes over.
    """
    leadership = services.leadership
    drain_s = services.config.leadership.drain_s
    while not stop.is_set():
        if not leadership.is_active:
            await first(leadership.wait_changed(), stop.wait())
            continue
        await _take_updates(services)
        # The previous leader's leases guard nothing now (it is gone or fenced): its jobs and
        # messages are this instance's at once, not after their leases lapse.
        await services.engine.reclaim()
        await services.relay.reclaim()
        intake_stop, work_stop = asyncio.Event(), asyncio.Event()
        intake: set[asyncio.Task[None]] = set()
        if services.config.telegram.mode is BotMode.POLLING:
            allowed = services.dispatcher.resolve_used_update_types()
            intake.add(
                asyncio.create_task(services.inbox.poll(intake_stop, allowed), name="polling")
            )
        loops: dict[str, Coroutine[Any, Any, None]] = {
            "inbox": services.inbox.process(work_stop, drain_s=drain_s),
            "engine": services.engine.run(work_stop, drain_s=drain_s),
            "outbox": services.relay.run(work_stop, drain_s=drain_s),
            # Each payment provider's own loop: reconciliation, open refunds.
            **{f"{p.method}-payments": p.run(work_stop) for p in services.providers},
            "broadcasts": services.broadcasts.run(work_stop),
            "alerts": services.alerts.run(work_stop),
        }
        work = {asyncio.create_task(loop, name=name) for name, loop in loops.items()}
        everything = intake | work
        await first(
            _until_passive(leadership),
            stop.wait(),
            asyncio.wait(everything, return_when=asyncio.FIRST_COMPLETED),
        )
        if not leadership.is_active:
            log.warning("active_work_cancelled", reason="leadership lost")
            await finish(everything)
            continue
        ended = [task for task in everything if task.done()]
        if ended and not stop.is_set():
            # A loop ended on its own (a database outage it did not survive, a bug): restart
            # the whole group rather than lead with part of the work missing.
            for task in ended:
                error = None if task.cancelled() else task.exception()
                log.error("active_work_crashed", task=task.get_name(), error=repr(error)[:300])
            await finish(everything)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WORK_RESTART_S)
            continue
        # A long poll in flight is abandoned: what it would return stays unconfirmed at
        # Telegram and goes to the next leader.
        intake_stop.set()
        await finish(intake)
        work_stop.set()
        await asyncio.gather(*work, return_exceptions=True)
    await leadership.release()


OnReady = Callable[[Services], Awaitable[None]]


async def run(
    config: Config,
    stop: asyncio.Event | None = None,
    *,
    install_signal_handlers: bool = True,
    on_ready: OnReady | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or until `stop` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if install_signal_handlers else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            database = await prepare_storage(config)
            stack.push_async_callback(database.dispose)
            services = await build_services(config, database, stack)
            await _serve(services, stop, on_ready, stack)
    finally:
        stop.set()  # whoever waits on it (a test, the demo) sees the runtime end
        for signum in signals:
            loop.remove_signal_handler(signum)
    log.info("stopped")


async def _serve(
    services: Services,
    stop: asyncio.Event,
    on_ready: OnReady | None,
    stack: contextlib.AsyncExitStack,
) -> None:
    """Start the HTTP server and the loops, then wait for `stop`. What is started is put on
    `stack`, so on the way out the loops stop first, then the lease goes, then the rest."""
    config = services.config
    http, webhook = await start_http(services)
    stack.push_async_callback(http.cleanup)
    stack.push_async_callback(_flush_events, services)  # the last events; never blocks
    stack.push_async_callback(webhook.close)
    await set_commands(services.bot)
    sinks = (services.events.sink, services.metrics.sink, services.alerts.sink)
    telemetry.sinks.extend(sinks)
    stack.callback(_remove_sinks, sinks)
    stack.push_async_callback(_release, services.leadership)
    tasks = [
        asyncio.create_task(services.events.run(stop), name="event-store"),
        asyncio.create_task(services.leadership.run(stop), name="leadership"),
        # Every instance follows the operators' knobs (the PASSIVE one's screens too).
        asyncio.create_task(services.runtime.run(stop), name="runtime-settings"),
        asyncio.create_task(serve_active(services, stop), name="active-work"),
    ]
    stack.push_async_callback(_stop_tasks, stop, tasks)
    # The startup log states the role: wait for the first attempt (bounded; a database that
    # does not answer leaves the instance PASSIVE, which is what the log then says).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(services.leadership.decided.wait(), 10)
    if on_ready is not None:
        await on_ready(services)
    log.info(
        "ready",
        version=__version__,
        python=sys.version.split()[0],
        database=mask_database_url(config.database.url),
        bot_mode=config.telegram.mode.value,
        bot_id=config.telegram.bot_id,
        models=len(services.pipeline.catalog),
        http=services.http_url,
        owner=services.owner,
        role=services.leadership.role.value,
        lease_ttl_s=config.leadership.lease_ttl_s,
    )
    await stop.wait()
    log.info("stopping", reason="signal")


async def _stop_tasks(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _release(leadership: Leadership) -> None:
    with contextlib.suppress(Exception):  # a crash before the tasks ran: still let go
        await leadership.release()


def _remove_sinks(sinks: tuple[Callable[..., Any], ...]) -> None:
    for sink in sinks:
        if sink in telemetry.sinks:
            telemetry.sinks.remove(sink)


async def _flush_events(services: Services) -> None:
    with contextlib.suppress(Exception):
        await services.events.flush()
