"""The bot running in-process against the sandbox servers, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from trt import app as runtime
from trt.sandbox.demo import Sandbox, demo_config, start_sandbox
from trt.sandbox.driver import SandboxClient


@dataclass
class RunningBot:
    sandbox: Sandbox
    client: SandboxClient
    task: asyncio.Task[None]
    stop: asyncio.Event

    @property
    def url(self) -> str:
        return self.sandbox.telegram_app.url


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path, *, kie_step_s: float = 0.01, kie_generate_s: float = 0.05
) -> AsyncIterator[RunningBot]:
    """Sandbox servers plus `trt run`'s runtime, polling (ready once it called getMe)."""
    sandbox = await start_sandbox(kie_step_s=kie_step_s, kie_generate_s=kie_generate_s)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        config = demo_config(sandbox, tmp_path / "e2e.db", http_port=0)
        task = asyncio.create_task(runtime.run(config, stop, install_signal_handlers=False))
        started = task
        await sandbox.telegram.wait_for(
            lambda: started.done() or any(r.method == "getMe" for r in sandbox.telegram.requests)
        )
        if task.done():
            task.result()  # raises the startup error
        async with SandboxClient(sandbox.telegram_app.url) as client:
            yield RunningBot(sandbox, client, task, stop)
    finally:
        stop.set()
        if task is not None:
            await task
        await sandbox.stop()
