"""Job engine benchmark: jobs/s from confirm to delivery, RSS with 10,000 jobs in flight, and
the KIE request rate under the configured limits.

The bot runs as a real `trt run` process against the sandbox (instant KIE with callbacks);
jobs are created the way the confirm button creates them (JobService), in the benchmark
process, on the same database.

    .venv/bin/python -m bench.engine [--backend sqlite|postgres] [--jobs 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select
from tests.processes import TrtProcess, trt_env

from bench.common import (
    Row,
    cpu_s,
    drop_database,
    free_port,
    fresh_database,
    machine_busy_s,
    peak_rss_mb,
    print_table,
    profiler_prefix,
    rss_mb,
    save,
    summary,
)
from trt.billing.wallets import WalletService
from trt.catalog.loader import default_catalog
from trt.catalog.pricing import Rates
from trt.config import EngineSettings, LogFormat
from trt.db import migrate
from trt.db.database import Database
from trt.db.models import Job
from trt.jobs.service import JobService
from trt.jobs.state import JobStatus
from trt.logs import configure_logging
from trt.pipeline import UnifiedModelPipeline
from trt.sandbox.demo import sandbox_env, start_sandbox
from trt.sandbox.kie import Script

# Users confirming at the same moment in the throughput run: one sequential creator in the
# benchmark's process (≈ 9 ms a confirm) would cap the figure near 100 jobs/s by itself.
CONFIRMING = 8


async def until_leading(process: TrtProcess, port: int, timeout_s: float = 60) -> None:
    """Until the bot's /readyz says it is ready and leads (LOG_LEVEL=WARNING hides `ready`)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline and process.proc.returncode is None:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
                    if answer.status == 200 and (await answer.json()).get("role") == "active":
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("trt run did not start:\n" + process.output)


class Bench:
    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir

    async def setup(self, *, kie_never: bool = False) -> None:
        self.sandbox = await start_sandbox(kie_step_s=0.0, kie_generate_s=0.0)
        self.sandbox.telegram.check_responses = False
        self.sandbox.kie.draw_results = False  # the generator's CPU is not what is measured
        if kie_never:
            self.sandbox.kie.scripts.append(("*", Script(never=True), 10**9))
        self.url = await fresh_database(self.backend, self.workdir)
        self.database = Database(self.url)
        await migrate.upgrade(self.database)
        pipeline = UnifiedModelPipeline(default_catalog(), Rates(Decimal(95), Decimal(2)))
        self.jobs = JobService(
            self.database,
            pipeline,
            EngineSettings(max_active_per_user=100_000, max_in_flight=100_000),
            free_daily_quota=0,
        )

    async def close(self, process: TrtProcess | None, *, grace_s: float) -> None:
        """Stop the bot (SIGTERM, then kill after `grace_s`) and tear the sandbox down."""
        if process is not None:
            await process.signal(signal.SIGTERM)
            await process.finish(grace_s)
            await process.kill()
        await self.teardown()

    async def teardown(self) -> None:
        await self.database.dispose()
        await drop_database(self.url)
        await self.sandbox.stop()

    async def users(self, count: int) -> list[int]:
        ids = list(range(10_000, 10_000 + count))
        wallets = WalletService(self.database)
        for user_id in ids:
            await wallets.credit(
                user_id, 10_000_000, source="topup:bench", idempotency_key=f"b:{user_id}"
            )
            self.sandbox.telegram.ensure_user(user_id)
        return ids

    async def create_jobs(self, users: list[int], count: int, *, confirming: int = 1) -> None:
        """`count` confirms, `confirming` of them at a time (users tapping at once)."""
        indexes = iter(range(count))

        async def confirmer() -> None:
            for index in indexes:
                user = users[index % len(users)]
                await self.jobs.create(
                    user_id=user,
                    chat_id=user,
                    lang="ru",
                    model_slug="nb2",
                    params={"prompt": f"bench {index}"},
                    draft_key=uuid.uuid4().hex,
                )

        await asyncio.gather(*(confirmer() for _ in range(confirming)))

    async def start_bot(self, **extra: str) -> TrtProcess:
        port = free_port()
        env = trt_env(
            **sandbox_env(self.sandbox, self.url),
            HTTP_PORT=str(port),
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
            LOG_LEVEL="WARNING",
            JOB_IDLE_POLL_S="0.05",
            JOB_WORKERS="32",
            JOB_MAX_ACTIVE_PER_USER="100000",
            JOB_MAX_IN_FLIGHT="100000",
            **extra,
        )
        process = await TrtProcess.start(
            "run", env=env, cwd=str(self.workdir), prefix=profiler_prefix()
        )
        await until_leading(process, port)
        return process

    async def count(self, *statuses: JobStatus) -> int:
        async with self.database.unit_of_work(readonly=True) as session:
            return int(
                await session.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.status.in_([s.value for s in statuses]))
                )
                or 0
            )

    async def until_count(
        self, statuses: tuple[JobStatus, ...], target: int, timeout_s: float
    ) -> float:
        started = time.monotonic()
        while await self.count(*statuses) < target:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{await self.count(*statuses)}/{target} after {timeout_s}s")
            await asyncio.sleep(0.05)
        return time.monotonic() - started


async def throughput_run(backend: str, jobs: int, workdir: Path) -> tuple[float, dict[str, float]]:
    """Jobs/s from the first confirm to the last delivery, and the CPU a job each part took:
    the bot, this process (the confirms and the sandbox servers), the rest of the machine
    (the database, with anything else running)."""
    bench = Bench(backend, workdir)
    await bench.setup()
    process: TrtProcess | None = None
    try:
        users = await bench.users(jobs)
        process = await bench.start_bot(KIE_CREATES_PER_10S="100000", KIE_RECORDS_PER_S="100000")
        pid, me = process.proc.pid, os.getpid()
        before = (cpu_s(pid), cpu_s(me), machine_busy_s())
        started = time.monotonic()
        await bench.create_jobs(users, jobs, confirming=CONFIRMING)
        await bench.until_count((JobStatus.DELIVERED,), jobs, timeout_s=600)
        elapsed = time.monotonic() - started
        bot, own, machine = (
            (after - first) * 1000 / jobs
            for after, first in zip((cpu_s(pid), cpu_s(me), machine_busy_s()), before, strict=True)
        )
        return jobs / elapsed, {"bot": bot, "benchmark": own, "rest": machine - bot - own}
    finally:
        await bench.close(process, grace_s=60)


async def memory_run(backend: str, inflight: int, workdir: Path) -> dict[str, float]:
    bench = Bench(backend, workdir)
    await bench.setup(kie_never=True)
    process: TrtProcess | None = None
    try:
        users = await bench.users(100)
        process = await bench.start_bot(
            KIE_CREATES_PER_10S="100000", KIE_RECORDS_PER_S="100000", JOB_POLL_SCALE="100"
        )
        idle = rss_mb(process.proc.pid)
        await bench.create_jobs(users, inflight)
        await bench.until_count((JobStatus.SUBMITTED, JobStatus.RUNNING), inflight, timeout_s=900)
        return {
            "idle_rss_mb": idle,
            "rss_mb": rss_mb(process.proc.pid),
            "peak_rss_mb": peak_rss_mb(process.proc.pid),
        }
    finally:
        await bench.close(process, grace_s=120)


async def rate_limit_run(workdir: Path, limit_per_10s: int = 18, jobs: int = 60) -> dict[str, Any]:
    """Creates never exceed KIE_CREATES_PER_10S in any 10 s window."""
    bench = Bench("sqlite", workdir)
    await bench.setup()
    process: TrtProcess | None = None
    try:
        users = await bench.users(jobs)
        process = await bench.start_bot(KIE_CREATES_PER_10S=str(limit_per_10s))
        started = time.monotonic()
        await bench.create_jobs(users, jobs)
        await bench.until_count(
            (JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.DELIVERED),
            jobs,
            timeout_s=120,
        )
        stamps = sorted(
            at
            for method, path, at in bench.sandbox.kie.requests
            if path == "/api/v1/jobs/createTask"
        )
        worst = max(sum(1 for s in stamps if start <= s < start + 10.0) for start in stamps)
        return {
            "limit_per_10s": limit_per_10s,
            "max_in_any_10s": worst,
            "creates": len(stamps),
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    finally:
        await bench.close(process, grace_s=60)


async def measure(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    args.backends = args.backends or ["sqlite", "postgres"]
    # The benchmark's own process creates jobs: keep its event lines out of the table.
    configure_logging(LogFormat.CONSOLE, "WARNING")
    rows: list[Row] = []
    figures: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, {sys.platform}"}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for backend in args.backends if args.jobs else ():
            runs = [await throughput_run(backend, args.jobs, workdir) for _ in range(args.runs)]
            stats = summary([rate for rate, _cpu in runs])
            figures[f"jobs_per_s_{backend}"] = stats
            cpu = {part: statistics.median(c[part] for _r, c in runs) for part in runs[0][1]}
            figures[f"cpu_ms_per_job_{backend}"] = cpu
            rows.append(
                (
                    f"jobs/s confirm→delivery ({backend}, {args.jobs} jobs)",
                    f"{stats['median']:.1f} (min {stats['min']:.1f}, max {stats['max']:.1f})",
                    "≥ 100" if backend == "postgres" else "≥ 60",
                )
            )
            rows.append(
                (
                    f"  CPU a job ({backend}, medians)",
                    f"bot {cpu['bot']:.1f} ms, benchmark process {cpu['benchmark']:.1f} ms, "
                    f"rest of the machine {cpu['rest']:.1f} ms",
                    "",
                )
            )
        if args.inflight:
            memory = await memory_run(args.backends[0], args.inflight, workdir)
            figures["memory"] = {"inflight": args.inflight, **memory}
            rows.append(
                (
                    f"RSS with {args.inflight} jobs in flight ({args.backends[0]})",
                    f"{memory['rss_mb']:.0f} MB (idle {memory['idle_rss_mb']:.0f} MB, "
                    f"peak {memory['peak_rss_mb']:.0f} MB)",
                    "≤ 300 MB",
                )
            )
        limit = await rate_limit_run(workdir)
        figures["kie_create_rate"] = limit
        rows.append(
            (
                "KIE creates in the worst 10 s window",
                f"{limit['max_in_any_10s']} of {limit['creates']}",
                f"≤ {limit['limit_per_10s']}",
            )
        )
    return rows, figures


def parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    options.add_argument(
        "--backend", dest="backends", action="append", choices=["sqlite", "postgres"]
    )
    options.add_argument("--jobs", type=int, default=500)
    options.add_argument("--runs", type=int, default=3)
    options.add_argument("--inflight", type=int, default=10_000)
    return options


def cli() -> int:
    args = parser().parse_args()
    args.backends = args.backends or ["sqlite", "postgres"]
    rows, figures = asyncio.run(measure(args))
    save("engine", figures)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
