"""Intake benchmark: TRT in webhook mode against a bare aiogram bot, same server, same load.

The bot under test runs as its own process (`trt run`, BOT_MODE=webhook, its aiohttp server)
or `bench.bare_bot`. This process runs the sandbox Bot API server (which records every answer
and checks every request against the Bot API) and the load generator, which delivers updates
to the webhook the way Telegram does: up to 40 requests in flight. The mix is what users do:
20 % new users' /start, 60 % menu taps (alternating two screens, each an answer and an edit),
20 % text outside a flow. Latency is update created → answerCallbackQuery received, at 100 and
500 updates/s offered; throughput is a burst of updates delivered as fast as the connections
take them, until every one was handled (the tap answered, the message replied to).

    .venv/bin/python -m bench.intake [--runs 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from tests.processes import trt_env

from bench.common import (
    Row,
    cpu_s,
    drop_database,
    free_port,
    fresh_database,
    profiler_prefix,
    summary,
)
from trt.db import migrate
from trt.db.database import Database
from trt.sandbox.demo import DEMO_TOKEN
from trt.sandbox.runner import start_app
from trt.sandbox.telegram import TelegramServer

CONNECTIONS = 40  # Telegram's default webhook max_connections
SECRET = "bench-webhook-secret"  # noqa: S105 - a local benchmark's
WARM_USERS = int(os.environ.get("BENCH_WARM_USERS", "300"))
BURST = int(os.environ.get("BENCH_BURST", "1500"))


class BenchTelegram(TelegramServer):
    """The sandbox Bot API, its updates handed to the load generator instead of its own
    one-at-a-time webhook pusher."""

    def __init__(self) -> None:
        super().__init__(DEMO_TOKEN, check_responses=False)
        self.outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.held: list[dict[str, Any]] | None = None  # set: updates wait here, not sent

    async def push_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        update = {"update_id": next(self._update_ids), kind: payload}
        if self.held is not None:
            self.held.append(update)
        else:
            self.outgoing.put_nowait(update)
        return update

    def replies(self) -> int:
        return sum(1 for r in self.requests if r.method == "sendMessage" and r.ok)


@dataclass
class Target:
    name: str  # trt-sqlite | trt-postgres | bare
    workdir: Path
    url: str = ""  # database URL for TRT
    process: Any = None
    port: int = 0
    started_s: float = 0.0

    async def start(self, telegram_url: str, server: BenchTelegram) -> None:
        self.port = free_port()
        env = trt_env(
            BOT_TOKEN=DEMO_TOKEN,
            TELEGRAM_API_BASE=telegram_url,
            HTTP_PORT=str(self.port),
            WEBHOOK_SECRET=SECRET,
        )
        if self.name == "bare":
            command = ["-m", "bench.bare_bot"]
        else:
            self.url = await fresh_database(self.name.split("-", 1)[1], self.workdir)
            database = Database(self.url)
            try:
                await migrate.upgrade(database)  # `trt migrate` (run refuses a schema behind)
            finally:
                await database.dispose()
            command = [*profiler_prefix(), "-m", "trt", "run"]  # docs/performance.md
            env.update(
                KIE_API_KEY="bench-kie-key",
                KIE_BASE_URL="http://127.0.0.1:9",
                DATABASE_URL=self.url,
                BOT_MODE="webhook",
                PUBLIC_BASE_URL=f"http://127.0.0.1:{self.port}",
                KIE_WEBHOOK_HMAC_KEY="bench-kie-callback-key",  # required with a public URL
                LOG_FORMAT="json",  # production's logging: every event a JSON line, to a file
                USER_RATE_LIMIT_PER_10S="1000",
            )
        log = (self.workdir / f"{self.name}.log").open("ab")
        began = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            env=env,
            cwd=str(Path(__file__).parents[1]) if self.name == "bare" else str(self.workdir),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()
        # Ready: the webhook is set (and TRT's /readyz says it leads).
        while server.webhook is None or not await self._leading():
            if self.process.returncode is not None or time.monotonic() - began > 60:
                raise RuntimeError(f"{self.name} did not start; see {self.workdir}")
            await asyncio.sleep(0.01)
        self.started_s = time.monotonic() - began

    async def _leading(self) -> bool:
        if self.name == "bare":
            return True
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{self.port}/readyz") as answer,
            ):
                return answer.status == 200 and (await answer.json()).get("role") == "active"
        except aiohttp.ClientError:
            return False

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)  # a clean stop (a profile gets written)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        self.process = None
        if self.url:
            await drop_database(self.url)


@dataclass
class Load:
    """Users and their menu messages; what one phase sent and expects."""

    server: BenchTelegram
    menus: dict[int, int] = field(default_factory=dict)  # user → the bot's message id
    screen: dict[int, bool] = field(default_factory=dict)  # user → on the balance screen
    new_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(5_000_000))

    async def update(self, index: int) -> tuple[str, str | None]:
        """The `index`-th update of the mix: ("tap", query id) or ("message", None)."""
        kind = index % 10
        if kind < 2:
            user = next(self.new_ids)
            self.server.ensure_user(user, "Новый")
            await self.server.user_sends(user, text="/start")
            return "message", None
        users = list(self.menus)
        user = users[index % len(users)]
        if kind < 8:
            on_balance = self.screen.get(user, False)
            self.screen[user] = not on_balance
            data = "mn:main" if on_balance else "mn:balance"
            record = await self.server.user_clicks(user, self.menus[user], data)
            return "tap", record.query_id
        await self.server.user_sends(user, text="привет, что умеешь?")
        return "message", None


async def deliver(server: BenchTelegram, url: str, stop: asyncio.Event) -> None:
    """Post queued updates to the webhook with CONNECTIONS requests in flight."""
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def worker() -> None:
            while not stop.is_set():
                try:
                    update = await asyncio.wait_for(server.outgoing.get(), 0.2)
                except TimeoutError:
                    continue
                for _attempt in range(20):  # Telegram redelivers until a 2xx
                    try:
                        async with http.post(url, data=json.dumps(update), headers=headers) as r:
                            if r.status < 300:
                                break
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))


async def until_handled(
    server: BenchTelegram, taps: list[str], replies_expected: int, timeout_s: float = 120
) -> float:
    """Monotonic time when every tap was answered and every message replied to."""
    deadline = time.monotonic() + timeout_s
    while True:
        answered = all(server.callbacks[q].answered_at is not None for q in taps)
        if answered and server.replies() >= replies_expected:
            last_tap = max((server.callbacks[q].answered_at or 0.0 for q in taps), default=0.0)
            last_reply = max(
                (r.at for r in server.requests if r.method == "sendMessage"), default=0.0
            )
            return max(last_tap, last_reply)
        if time.monotonic() > deadline:
            missing = sum(server.callbacks[q].answered_at is None for q in taps)
            raise TimeoutError(f"{missing} taps unanswered, {server.replies()} replies")
        await asyncio.sleep(0.02)


async def offered(load: Load, rate: float, seconds: float) -> dict[str, float]:
    """Updates at `rate`/s for `seconds` (open loop); answer latencies of the taps."""
    server = load.server
    total = int(rate * seconds)
    replies_before = server.replies()
    taps: list[str] = []
    messages = 0
    started = time.monotonic()
    for index in range(total):
        due = started + index / rate
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        _kind, query = await load.update(index)
        if query is not None:
            taps.append(query)
        else:
            messages += 1
    done = await until_handled(server, taps, replies_before + messages)
    waits = sorted(
        (server.callbacks[q].answered_at or 0.0) - server.callbacks[q].created_at for q in taps
    )
    return {
        "offered_per_s": rate,
        "achieved_per_s": total / (done - started),
        "p50_ms": statistics.median(waits) * 1000,
        "p99_ms": waits[int(len(waits) * 0.99) - 1] * 1000,
        "max_ms": waits[-1] * 1000,
        "taps": len(taps),
    }


async def burst(load: Load, count: int, pid: int) -> dict[str, float]:
    """`count` updates queued at once; handled per second until the last one was."""
    server = load.server
    replies_before = server.replies()
    taps: list[str] = []
    messages = 0
    server.held = []  # generated first: the generator's own work is not what is timed
    for index in range(count):
        _kind, query = await load.update(index)
        if query is not None:
            taps.append(query)
        else:
            messages += 1
    generated, server.held = server.held, None
    started = time.monotonic()
    bot_cpu, own_cpu = cpu_s(pid), time.process_time()
    for update in generated:
        server.outgoing.put_nowait(update)
    done = await until_handled(server, taps, replies_before + messages)
    elapsed = done - started
    return {
        "per_s": count / elapsed,
        # Who was the bottleneck: near 100 % on the bot's side means the bot was measured.
        "bot_cpu_pct": (cpu_s(pid) - bot_cpu) / elapsed * 100,
        "generator_cpu_pct": (time.process_time() - own_cpu) / elapsed * 100,
    }


async def one_run(name: str, workdir: Path, seconds: float) -> dict[str, Any]:
    server = BenchTelegram()
    app = await start_app(server.app)
    target = Target(name, workdir)
    stop = asyncio.Event()
    poster: asyncio.Task[None] | None = None
    try:
        await target.start(app.url, server)
        hook = f"http://127.0.0.1:{target.port}" + ("/webhook" if name == "bare" else "")
        if name != "bare":
            hook += "/telegram/webhook"
        poster = asyncio.create_task(deliver(server, hook, stop))
        load = Load(server)
        # Warm-up (not timed): users with a menu message to tap on.
        users = list(range(1_000_000, 1_000_000 + WARM_USERS))
        before = server.replies()
        for user in users:
            server.ensure_user(user, "Тест")
            await server.user_sends(user, text="/start")
        await until_handled(server, [], before + len(users))
        for user in users:
            load.menus[user] = next(
                mid
                for mid, m in server.messages[user].items()
                if m["from"].get("id") == server.bot_id
            )
        figures: dict[str, Any] = {"startup_s": target.started_s}
        for rate in (100.0, 500.0):
            figures[f"at_{int(rate)}"] = await offered(load, rate, seconds)
        figures["burst"] = await burst(load, BURST, target.process.pid)
        figures["burst_per_s"] = figures["burst"]["per_s"]
        figures["violations"] = len(server.violations)
        return figures
    finally:
        stop.set()
        if poster is not None:
            await poster
        await target.stop()
        await app.stop()


TARGETS = ("bare", "trt-sqlite", "trt-postgres")


async def measure(
    runs: int, seconds: float, targets: tuple[str, ...] = TARGETS
) -> tuple[list[Row], dict[str, Any]]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            for name in targets:  # interleaved: drift of the machine hits every target alike
                results[name].append(await one_run(name, Path(tmp), seconds))
    figures: dict[str, Any] = {}
    rows: list[Row] = []
    bare_runs = results.get("bare") or results[targets[0]]
    bare_burst = summary([r["burst_per_s"] for r in bare_runs])
    for name in targets:
        runs_ = results[name]
        burst_ = summary([r["burst_per_s"] for r in runs_])
        entry: dict[str, Any] = {"burst_per_s": burst_, "runs": runs_}
        bot_cpu = statistics.median(r["burst"]["bot_cpu_pct"] for r in runs_)
        gen_cpu = statistics.median(r["burst"]["generator_cpu_pct"] for r in runs_)
        label = {"bare": "bare aiogram", "trt-sqlite": "TRT SQLite", "trt-postgres": "TRT Postgres"}
        ratio = burst_["median"] / bare_burst["median"]
        entry["ratio_to_bare"] = ratio
        rows.append(
            (
                f"intake updates/s, burst of {BURST} ({label[name]})",
                f"{burst_['median']:.0f} (min {burst_['min']:.0f}, max {burst_['max']:.0f})"
                + ("" if name == "bare" else f" = {ratio:.2f} × bare")
                + f"; CPU bot {bot_cpu:.0f} %, load {gen_cpu:.0f} %",
                "baseline" if name == "bare" else "≥ 0.5 × bare",
            )
        )
        for rate in (100, 500):
            p99 = summary([r[f"at_{rate}"]["p99_ms"] for r in runs_])
            p50 = summary([r[f"at_{rate}"]["p50_ms"] for r in runs_])
            worst = summary([r[f"at_{rate}"]["max_ms"] for r in runs_])
            achieved = summary([r[f"at_{rate}"]["achieved_per_s"] for r in runs_])
            entry[f"at_{rate}"] = {"p50_ms": p50, "p99_ms": p99, "max_ms": worst}
            entry[f"at_{rate}"]["achieved_per_s"] = achieved
            rows.append(
                (
                    f"tap → answer at {rate}/s ({label[name]})",
                    f"p50 {p50['median']:.1f} ms, p99 {p99['median']:.1f} ms "
                    f"(min {p99['min']:.1f}, max {p99['max']:.1f}), max {worst['median']:.0f} ms"
                    f"; {achieved['median']:.0f}/s achieved",
                    "p99 ≤ 25 ms" if rate == 100 and name != "bare" else "",
                )
            )
        figures[name] = entry
    return rows, figures


def cli() -> int:
    from bench.common import print_table, save

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help="a subset of " + ",".join(TARGETS)
    )
    args = parser.parse_args()
    targets = tuple(args.targets.split(","))
    rows, figures = asyncio.run(measure(args.runs, args.seconds, targets))
    save("intake", figures)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
