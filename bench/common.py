"""Shared helpers: timing statistics, results file, process memory."""

from __future__ import annotations

import json
import os
import socket
import statistics
import uuid
from pathlib import Path
from typing import Any

import asyncpg

RESULTS = Path(__file__).with_name("results.json")
POSTGRES_ADMIN = os.environ.get(
    "TRT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
Row = tuple[str, str, str]  # figure, value, target


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def fresh_database(backend: str, workdir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}"
    name = f"trt_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN.replace("+asyncpg", ""))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name


async def drop_database(url: str) -> None:
    if url.startswith("sqlite"):
        return
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(POSTGRES_ADMIN.replace("+asyncpg", ""))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def summary(values: list[float]) -> dict[str, float]:
    """Median with min and max (every figure is a median of several runs)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def save(section: str, figures: dict[str, Any]) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = figures
    RESULTS.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (every core; idle and iowait excluded)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


HEADER: Row = ("figure", "value", "target")


def table(rows: list[Row], header: Row = HEADER) -> str:
    rows = [header, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


def print_table(rows: list[Row], header: Row = HEADER) -> None:
    print(table(rows, header), flush=True)  # noqa: T201 - the benchmark's output


def profiler_prefix() -> list[str]:
    """The interpreter options that run the bot under a profiler, from `BENCH_PROFILE` (the
    output file) and `BENCH_PROFILER` (`cprofile`, the default, or `pyinstrument`); none
    without them."""
    out = os.environ.get("BENCH_PROFILE")
    if not out:
        return []
    if os.environ.get("BENCH_PROFILER") == "pyinstrument":  # a sampled call tree, as text
        return ["-m", "pyinstrument", "-r", "text", "-o", out]
    return ["-m", "cProfile", "-o", out]
