"""The bot running in-process against the sandbox servers, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trt import app as runtime
from trt.billing.ledger import Ledger, check_invariants
from trt.billing.wallets import WalletService
from trt.sandbox.demo import Sandbox, demo_config, start_sandbox
from trt.sandbox.driver import Message, SandboxClient, SandboxUser
from trt.telemetry.events import telemetry
from trt.telemetry.recorder import EventRecorder

FAST_ENGINE = {
    "poll_scale": 0.02,
    "idle_poll_s": 0.05,
    "deadline_min_s": 1.0,
    "reconcile_window_s": 1.0,
    "outbox_retry_s": 0.05,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningBot:
    sandbox: Sandbox
    client: SandboxClient
    task: asyncio.Task[None]
    stop: asyncio.Event
    services: runtime.Services
    events: EventRecorder

    @property
    def url(self) -> str:
        return self.sandbox.telegram_app.url

    async def give_money(self, user_id: int, amount_kop: int, key: str | None = None) -> None:
        """Credit a wallet as a top-up would (payments arrive in a later issue)."""
        await WalletService(self.services.database).credit(
            user_id, amount_kop, source="topup:test", idempotency_key=key or f"t:{user_id}"
        )

    async def balance(self, user_id: int) -> tuple[int, int]:
        """(posted, held) kopecks of the user's wallet."""
        database = self.services.database
        ledger = Ledger(is_sqlite=database.is_sqlite)
        async with database.unit_of_work(readonly=True) as session:
            balance = await ledger.balance(session, user_id)
        return balance.posted_kop, balance.held_kop

    async def create_job(
        self,
        user_id: int,
        prompt: str = "a red fox",
        *,
        slug: str = "nb2",
        draft: str | None = None,
        cid: str | None = "test-cid",
        **params: Any,
    ) -> str:
        """A job as the confirm button creates it (hold placed); the engine is woken."""
        pipeline = self.services.pipeline
        created = await self.services.jobs.create(
            user_id=user_id,
            chat_id=user_id,
            lang="ru",
            model_slug=slug,
            params=pipeline.apply_defaults(pipeline.get_schema(slug), {"prompt": prompt, **params}),
            draft_key=draft or uuid.uuid4().hex,
            cid=cid,
        )
        self.services.wake.set()
        return created.job.id

    async def ledger_problems(self) -> list[str]:
        async with self.services.database.unit_of_work(readonly=True) as session:
            return await check_invariants(session)


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path,
    *,
    kie_step_s: float = 0.01,
    kie_generate_s: float = 0.05,
    callbacks: bool = False,
    database_url: str | None = None,
    engine: dict[str, Any] | None = None,
    hmac_key: str | None = None,
    rate_limit_per_10s: int = 10_000,  # tests tap faster than people; the limit has its own
    payments: dict[str, Any] | None = None,
    admin_ids: tuple[int, ...] = (),
    http: dict[str, Any] | None = None,
    assistant: dict[str, Any] | None = None,
) -> AsyncIterator[RunningBot]:
    """Sandbox servers plus `trt run`'s runtime, polling, with a fast engine."""
    sandbox = await start_sandbox(kie_step_s=kie_step_s, kie_generate_s=kie_generate_s)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    ready: asyncio.Future[runtime.Services] = asyncio.get_running_loop().create_future()

    async def on_ready(services: runtime.Services) -> None:
        sandbox.point_yookassa_at(services)
        ready.set_result(services)

    events = EventRecorder()
    telemetry.sinks.append(events.sink)
    try:
        port = free_port() if callbacks else 0
        config = demo_config(
            sandbox,
            tmp_path / "e2e.db",
            http_port=port,
            public_base_url=f"http://127.0.0.1:{port}" if callbacks else "",
            database_url=database_url,
            engine={**FAST_ENGINE, **(engine or {})},
            hmac_key=hmac_key,
            rate_limit_per_10s=rate_limit_per_10s,
            payments=payments,
            admin_ids=admin_ids,
            http=http,
            assistant=assistant,
        )
        task = asyncio.create_task(
            runtime.run(config, stop, install_signal_handlers=False, on_ready=on_ready)
        )
        done, _pending = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises the start-up error
        async with SandboxClient(sandbox.telegram_app.url) as client:
            yield RunningBot(sandbox, client, task, stop, ready.result(), events)
    finally:
        stop.set()
        if task is not None:
            await task
        telemetry.sinks.remove(events.sink)
        await sandbox.stop()


async def tap_screen(user: SandboxUser, label: str, message: Message | None = None) -> Message:
    """Tap a button and return the screen it shows (an edit or a new message)."""
    answer = await user.click(label, message)
    assert answer.answered
    return (await user.next_event(("edit", "message"))).message


async def prompt_sent(
    user: SandboxUser, text: str, *, offer: str | None = "↩️ Оставить мой"
) -> Message:
    """Send a prompt; the screen after it. For a model that wants English a Cyrillic prompt is
    offered a translation first («🌐 Перевожу…», then the offer in its place): `offer` is the
    button tapped there (None: the offer itself is returned)."""
    await user.send(text)
    screen = await user.next_message(timeout_s=30)
    if not screen.text.startswith("🌐 Перевожу"):
        return screen
    screen = (await user.next_event(("edit",), timeout_s=30)).message
    if offer is None or offer not in screen.button_labels:
        return screen
    return await tap_screen(user, offer, screen)


async def open_model(user: SandboxUser, category: str, model: str) -> Message:
    """From the main menu (sent anew when the last message is not it) to a model's first
    question."""
    messages = [m for m in await user.messages() if m.from_bot]
    menu = messages[-1] if messages else None
    if menu is None or "🎨" not in " ".join(menu.button_labels):
        await user.send("/start")
        menu = await user.next_message()
    listing = await tap_screen(user, category, menu)
    button = next(label for label in listing.button_labels if label.startswith(model + " ·"))
    card = await tap_screen(user, button, listing)
    return await tap_screen(user, "▶️ Начать", card)
