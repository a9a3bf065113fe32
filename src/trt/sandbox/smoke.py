"""`make smoke-buttons`: a new user taps every inline button reachable from /start.

Breadth-first over callback data: every button found on a screen is tapped once (on the message
that showed it); a screen that asks for a prompt gets a short text, one that asks for a photo
gets a small picture, so parameter screens are reached too. The crawl user has no money: it can
spend nothing but free runs. Checked: every tap answered, no DISPATCH_ERROR, every callback's
event chain complete with its required fields (`trt.telemetry.contract`), zero strict Bot API
violations, and an unknown callback (`test:unknown`) answered with UNKNOWN_CALLBACK.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trt import app as runtime
from trt.config import LogFormat
from trt.i18n import t
from trt.logs import configure_logging
from trt.sandbox.demo import demo_config, start_sandbox
from trt.sandbox.driver import Message, SandboxClient, SandboxUser
from trt.sandbox.media import render_png
from trt.telemetry.contract import check_records
from trt.telemetry.events import Event, telemetry
from trt.telemetry.recorder import EventRecorder

CRAWL_USER = 424_242
MAX_TAPS = 1500
# After the update is handled its screen is already out; this only covers reading it back (a
# tap that only answers with a toast shows none).
SCREEN_WAIT_S = 0.1
DRAIN_WAIT_S = 0.02  # further screens of an update already handled are out by then


@dataclass
class Summary:
    taps: int = 0
    screens: set[str] = field(default_factory=set)
    slowest_answer_s: float = 0.0
    answer_ms: list[float] = field(default_factory=list)  # the bot's own CALLBACK_ANSWERED
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [
            f"screens visited: {len(self.screens)}",
            f"buttons clicked: {self.taps}",
            f"slowest answer: {self.slowest_answer_s * 1000:.0f} ms",
        ]
        if self.answer_ms:
            ordered = sorted(self.answer_ms)
            lines.append(
                f"answer latency in the bot: p50 {ordered[len(ordered) // 2]:.0f} ms, "
                f"max {ordered[-1]:.0f} ms over {len(ordered)} answers"
            )
        lines.append(f"problems: {len(self.problems)}")
        lines.extend(f"  - {problem}" for problem in self.problems[:30])
        return "\n".join(lines)


async def _screens_after(user: SandboxUser) -> list[Message]:
    """The screens the handled update showed (its edits and messages are already out): the
    first within `SCREEN_WAIT_S`, then every one already there (the prompt assistant's
    «🌐 Перевожу…» is edited into its offer by the same update). A message is read as it is
    now, so the last one is the screen the user sees."""
    screens: list[Message] = []
    wait = SCREEN_WAIT_S
    while True:
        try:
            event = await user.next_event(("edit", "message"), timeout_s=wait)
        except AssertionError:
            return screens
        screens.append(event.message)
        wait = DRAIN_WAIT_S


async def crawl(user: SandboxUser, summary: Summary, recorder: EventRecorder) -> None:
    await user.send("/start")
    start = await user.next_message()
    queue: deque[tuple[int, str]] = deque()
    seen: set[str] = set()

    def enqueue(message: Message) -> None:
        summary.screens.add(message.text.split("\n", 1)[0][:60])
        for button in message.buttons:
            data = button.get("callback_data")
            if data and data not in seen:
                seen.add(data)
                queue.append((message.message_id, data))

    async def reply(send: Awaitable[Any]) -> None:
        # Wait for the bot to finish handling what the user sent, then read what it showed.
        mark = len(recorder.records)
        await send
        await recorder.handled(Event.MESSAGE_RECEIVED, user_id=user.user_id, since=mark)
        screens = await _screens_after(user)
        for screen in screens:
            enqueue(screen)
        # Found by its label, as a user finds it (the walk knows nothing of callback data).
        label = t("ru", "assist.use")
        offer, use = next(
            (
                (m, b["callback_data"])
                for m in screens
                for b in m.buttons
                if b.get("text") == label and b.get("callback_data")
            ),
            (None, ""),
        )
        if offer is not None:
            # The assistant's translation offer: taken at once, so that the model's own
            # questions behind it are reached too (its buttons are queued like any others).
            mark = len(recorder.records)
            answer = await user.click_data(offer.message_id, use)
            summary.taps += 1
            if not answer.answered:
                summary.problems.append(f"tap {use!r} was not answered")
                return
            await recorder.handled(Event.CALLBACK_RECEIVED, callback_id=answer.query_id, since=mark)
            for screen in await _screens_after(user):
                enqueue(screen)

    enqueue(start)
    while queue and summary.taps < MAX_TAPS:
        message_id, data = queue.popleft()
        mark = len(recorder.records)
        answer = await user.click_data(message_id, data)
        summary.taps += 1
        if not answer.answered:
            summary.problems.append(f"tap {data!r} was not answered")
            continue
        summary.slowest_answer_s = max(summary.slowest_answer_s, answer.wait_s or 0.0)
        await recorder.handled(Event.CALLBACK_RECEIVED, callback_id=answer.query_id, since=mark)
        screens = await _screens_after(user)
        if not screens:
            continue
        for screen in screens:
            enqueue(screen)
        # Answer the flow's questions so its parameter screens are reached too.
        if screen.text.startswith("✍️"):
            await reply(user.send("тест"))
        elif screen.text.startswith("📎"):
            await reply(user.send_file(render_png("smoke", 320, 240)))
    unknown = await user.click_data(start.message_id, "test:unknown")
    summary.taps += 1
    if not (unknown.answered and unknown.text == "Кнопка устарела — открываю меню"):
        summary.problems.append("test:unknown was not answered as UNKNOWN_CALLBACK")


async def run_smoke(workdir: Path) -> Summary:
    """Sandbox + bot in this process, the crawl, then every check."""
    summary = Summary()
    recorder = EventRecorder()
    records = recorder.records
    sandbox = await start_sandbox(kie_step_s=0.0, kie_generate_s=0.0)
    stop = asyncio.Event()
    ready: asyncio.Future[runtime.Services] = asyncio.get_running_loop().create_future()

    async def on_ready(services: runtime.Services) -> None:
        ready.set_result(services)

    config = demo_config(
        sandbox,
        workdir / "smoke.db",
        http_port=0,
        rate_limit_per_10s=100_000,
        # One user taps through every model in a minute: no allowance may end the walk early.
        assistant={"per_minute": 1000, "daily": 10_000},
    )
    bot_task = asyncio.create_task(
        runtime.run(config, stop, install_signal_handlers=False, on_ready=on_ready)
    )
    telemetry.sinks.append(recorder.sink)
    try:
        waiting: list[asyncio.Future[Any]] = [bot_task, ready]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if bot_task.done():
            bot_task.result()
        async with SandboxClient(sandbox.telegram_app.url) as client:
            user = await client.user(CRAWL_USER, "Smoke")
            await crawl(user, summary, recorder)
            violations = await client.violations()
            summary.problems.extend(
                f"Bot API violation: {v['method']} {v['problems']}" for v in violations
            )
            unanswered = (await client.records())["unanswered_callbacks"]
            summary.problems.extend(f"unanswered callback {q}" for q in unanswered)
    finally:
        stop.set()
        await bot_task
        telemetry.sinks.remove(recorder.sink)
        await sandbox.stop()
    summary.problems.extend(check_records(records, strict=True))
    summary.answer_ms = [
        float(r["latency_ms"])
        for r in records
        if r.get("event") == Event.CALLBACK_ANSWERED
        and isinstance(r.get("latency_ms"), (int, float))
    ]
    return summary


def main() -> int:
    configure_logging(LogFormat.CONSOLE, "WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        summary = asyncio.run(run_smoke(Path(tmp)))
    print(summary.text())  # noqa: T201 - the command's report
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
