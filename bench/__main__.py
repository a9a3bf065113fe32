"""`make bench`: every benchmark, one table, bench/results.json.

Startup, intake (TRT against a bare aiogram bot in the same run), the job engine and the
broadcast sender, each figure the median of several runs with min and max. Not part of
`make test`; docs/performance.md keeps the table with the machine it ran on.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time

from bench import broadcast, engine, intake, startup
from bench.common import Row, print_table, save
from trt.config import LogFormat
from trt.logs import configure_logging


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({model}), {system}, Python {platform.python_version()}"


async def main() -> int:
    configure_logging(LogFormat.CONSOLE, "WARNING")  # the benchmark's own jobs stay quiet
    began = time.monotonic()
    rows: list[Row] = []
    for name, run in (
        ("startup", lambda: startup.measure(5)),
        ("intake", lambda: intake.measure(3, 5.0)),
        ("engine", lambda: engine.measure(engine.parser().parse_args([]))),
        ("broadcast", lambda: broadcast.measure(3, 300, 25.0)),
    ):
        section_rows, figures = await run()
        save(name, figures)
        rows += section_rows
        sys.stderr.write(f"… {name} done at {time.monotonic() - began:.0f} s\n")
    save("machine", {"description": machine(), "total_s": round(time.monotonic() - began)})
    print(machine())  # noqa: T201 - the table's context
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
