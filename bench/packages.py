"""Own time by package from a cProfile file (the profile table in docs/performance.md).

    BENCH_PROFILE=/tmp/trt.prof BENCH_BURST=1000 .venv/bin/python -m bench.intake \
        --runs 1 --seconds 3 --targets trt-postgres
    .venv/bin/python -m bench.packages /tmp/trt.prof [--top 15]

A function's own time (cProfile's `tottime`) is charged to the package its file lives in: a
third-party distribution by its top-level directory under site-packages, TRT's code as `trt`,
the standard library by its top-level module (asyncio, json, logging, copy), and C functions
(`~` in cProfile's listing: socket calls, isinstance, dict methods) as "C builtins".
"""

from __future__ import annotations

import argparse
import pstats
import sys
from collections import defaultdict
from pathlib import Path

from bench.common import Row, print_table

BUILTINS = "C builtins"


def package_of(filename: str) -> str:
    """The package a profiled function's file belongs to."""
    if filename.startswith("~"):
        return BUILTINS
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return "frozen and generated"
    parts = Path(filename).parts
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        top = rest[0] if rest else filename
        return top.removesuffix(".py").split(".")[0]
    if "trt" in parts:
        return "trt"
    for index, part in enumerate(parts):
        if part.startswith("python3") and index + 1 < len(parts):
            return parts[index + 1].removesuffix(".py")
    return Path(filename).stem


def by_package(path: str) -> tuple[float, dict[str, float]]:
    """The profile's total own time and each package's share of it, in seconds."""
    stats = pstats.Stats(path)
    totals: dict[str, float] = defaultdict(float)
    for (filename, _line, _name), row in stats.stats.items():  # type: ignore[attr-defined]
        totals[package_of(filename)] += row[2]  # tottime
    return sum(totals.values()), dict(totals)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", help="a cProfile output file (BENCH_PROFILE)")
    parser.add_argument("--top", type=int, default=15, help="packages to list")
    args = parser.parse_args(argv)
    total, totals = by_package(args.profile)
    rows: list[Row] = []
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1])[: args.top]:
        rows.append((name, f"{seconds:.2f} s", f"{100 * seconds / total:.1f} %"))
    rows.append(("total", f"{total:.2f} s", "100 %"))
    print_table(rows, header=("package", "own time", "share"))


if __name__ == "__main__":
    main(sys.argv[1:])
