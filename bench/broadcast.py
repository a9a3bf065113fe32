"""Broadcast: the achieved send rate against the configured one, by a real `trt run`.

.venv/bin/python -m bench.broadcast [--runs 3] [--users 300] [--rate 25]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.common import Row, print_table, save, summary
from bench.engine import Bench
from trt.admin.broadcast import BroadcastService
from trt.db.models import User, utcnow

TEXT = "📣 Новые модели уже в боте"


async def one_run(users: int, rate: float, workdir: Path) -> float:
    bench = Bench("postgres", workdir)
    await bench.setup()
    process = None
    try:
        ids = range(300_000, 300_000 + users)
        async with bench.database.unit_of_work() as session:
            now = utcnow()
            await session.execute(
                insert(User),
                [{"id": u, "language": "ru", "created_at": now, "last_seen_at": now} for u in ids],
            )
        for user in ids:
            bench.sandbox.telegram.ensure_user(user)
        service = BroadcastService(bench.database, None, default_rate_per_s=rate)  # type: ignore[arg-type]
        broadcast = await service.create(admin_id=1, text=TEXT, segment={"kind": "all"})
        await service.start(broadcast, admin_id=1)
        process = await bench.start_bot()
        telegram = bench.sandbox.telegram

        def sent() -> list[float]:
            return [
                r.at
                for r in telegram.requests
                if r.method == "sendMessage" and r.ok and r.params.get("text") == TEXT
            ]

        await telegram.wait_for(lambda: len(sent()) >= users, users / rate * 3 + 30)
        stamps = sorted(sent())
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])
    finally:
        await bench.close(process, grace_s=30)


async def measure(runs: int, users: int, rate: float) -> tuple[list[Row], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        rates = [await one_run(users, rate, Path(tmp)) for _ in range(runs)]
    stats = summary(rates)
    off = (statistics.median(rates) - rate) / rate * 100
    rows: list[Row] = [
        (
            f"broadcast rate, {users} users at {rate:g} msg/s (Postgres)",
            f"{stats['median']:.2f} msg/s (min {stats['min']:.2f}, max {stats['max']:.2f}), "
            f"{off:+.1f} %",
            "within ±5 %",
        )
    ]
    return rows, {"configured_per_s": rate, "users": users, "achieved_per_s": stats}


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rate", type=float, default=25.0)
    args = parser.parse_args()
    rows, figures = asyncio.run(measure(args.runs, args.users, args.rate))
    save("broadcast", figures)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
