"""Startup: `trt run` until it is ready (leading, webhook set), against the bare aiogram bot's
start on the same machine; the catalogue's load and check.

    .venv/bin/python -m bench.startup [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Row, print_table, save, summary
from bench.intake import BenchTelegram, Target
from trt.catalog.loader import load_catalog
from trt.sandbox.runner import start_app


async def started_s(name: str, workdir: Path) -> float:
    server = BenchTelegram()
    app = await start_app(server.app)
    target = Target(name, workdir)
    try:
        await target.start(app.url, server)
        return target.started_s
    finally:
        await target.stop()
        await app.stop()


def import_s() -> float:
    """The interpreter and `import trt.app` alone (aiogram, SQLAlchemy, pydantic …)."""
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", "import trt.app"], check=True)
    return time.monotonic() - began


def catalogue_ms() -> float:
    began = time.perf_counter()
    load_catalog()
    return (time.perf_counter() - began) * 1000


async def measure(runs: int) -> tuple[list[Row], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        trt = [await started_s("trt-sqlite", Path(tmp)) for _ in range(runs)]
        bare = [await started_s("bare", Path(tmp)) for _ in range(runs)]
    imports = [import_s() for _ in range(runs)]
    catalogue = [catalogue_ms() for _ in range(runs)]
    figures = {
        "trt_run_to_ready_s": summary(trt),
        "bare_aiogram_to_ready_s": summary(bare),
        "import_trt_app_s": summary(imports),
        "catalogue_load_check_ms": summary(catalogue),
    }

    def cell(values: list[float], unit: str, digits: int = 2) -> str:
        return (
            f"{statistics.median(values):.{digits}f} {unit} "
            f"(min {min(values):.{digits}f}, max {max(values):.{digits}f})"
        )

    rows: list[Row] = [
        ("startup: trt run → ready (SQLite, webhook)", cell(trt, "s"), "≤ 1.3 × bare"),
        ("startup: bare aiogram bot → webhook set", cell(bare, "s"), "baseline"),
        ("startup: interpreter + import trt.app", cell(imports, "s"), ""),
        ("catalogue load and check", cell(catalogue, "ms", 0), "≤ 100 ms"),
    ]
    return rows, figures


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    rows, figures = asyncio.run(measure(parser.parse_args().runs))
    save("startup", figures)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
