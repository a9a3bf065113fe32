"""The import graph of `src/trt` (docs/architecture.md, "Packages and their order").

Packages stand in one order, foundation first; a module may import its own package and the
packages before it, never one after it. A new upward import (a cycle in the making) fails here
with the module and the import that broke the order. aiogram belongs to the adapter
(`telegram/`) and the presentation (`bot/`); the presentation is known only to itself and the
composition root (`app.py`).
"""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from trt.billing.ledger import Ledger
from trt.db.models import Job
from trt.jobs.state import JobStatus
from trt.jobs.transitions import IllegalTransitionError, JobTransitions

SRC = Path(__file__).resolve().parents[2] / "src"

# Foundation first. Top-level modules are packages of their own here.
ORDER = (
    "trt",  # trt/__init__.py: the version
    "errors",
    "receipts",
    "config",
    "logs",
    "concurrency",
    "faults",
    "media",
    "i18n",
    "db",
    "telemetry",
    "leadership",
    "users",
    "billing",
    "catalog",
    "pipeline",
    "kie",
    "telegram",
    "assistant",
    "payments",
    "jobs",
    "admin",
    "web",
    "bot",
    "models_cli",
    "app",
    "sandbox",
    "cli",
    "__main__",
)
ADAPTERS = ("bot", "telegram")  # the only packages that import aiogram
PRESENTATION_USERS = ("bot", "app")  # who may import bot/


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "trt"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "trt").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(module: str, source: str, *, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in `source`, lazy and relative ones too."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from trt import app` imports the module trt.app
                yield node.lineno, f"{target}.{alias.name}"


MODULES = modules()


def edges() -> Iterator[tuple[str, int, str]]:
    for module, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        for line, target in imports(module, source, is_package=path.name == "__init__.py"):
            yield module, line, target


def test_every_package_has_its_place_in_the_order() -> None:
    assert {package_of(m) for m in MODULES} == set(ORDER)


def test_no_module_imports_a_package_above_its_own() -> None:
    rank = {name: index for index, name in enumerate(ORDER)}
    upward = sorted(
        f"{module}:{line} imports {target}"
        for module, line, target in edges()
        if target in MODULES
        and package_of(target) != package_of(module)
        and rank[package_of(target)] > rank[package_of(module)]
    )
    assert upward == []


@pytest.mark.parametrize(
    ("rule", "forbidden", "allowed"),
    [
        ("aiogram outside the adapter and the presentation", "aiogram", ADAPTERS),
        ("bot/ outside itself and the composition root", "trt.bot", PRESENTATION_USERS),
    ],
)
def test_the_telegram_library_and_the_presentation_stay_in_their_packages(
    rule: str, forbidden: str, allowed: tuple[str, ...]
) -> None:
    found = sorted(
        f"{module}:{line} imports {target}"
        for module, line, target in edges()
        if (target == forbidden or target.startswith(forbidden + "."))
        and package_of(module) not in allowed
    )
    assert found == [], rule


def test_the_scanner_sees_lazy_and_relative_imports() -> None:
    source = "def f():\n    from trt.bot import app\nfrom ..bot import flow\n"
    found = set(imports("trt.jobs.x", source, is_package=False))
    assert {(2, "trt.bot.app"), (3, "trt.bot.flow")} <= found


def test_a_job_changes_state_only_through_its_transitions() -> None:
    """Every write of `Job.status` is in jobs/transitions.py (the job service creates a job
    CONFIRMED: a new row, not a move). A keyword or a dict key, a value or a CASE."""
    writers = sorted(
        module
        for module, path in MODULES.items()
        if re.search(
            r"(status=|\"status\": )(JobStatus\.\w+\.value|to\.value|bindparam\(\"to\"\)|case\()",
            path.read_text(encoding="utf-8"),
        )
        and not module.startswith("trt.sandbox")
    )
    assert writers == ["trt.jobs.service", "trt.jobs.transitions"]


def test_a_move_the_state_machine_does_not_allow_is_refused() -> None:
    transitions = JobTransitions(Ledger(is_sqlite=True))
    job = Job(id="j1")
    with pytest.raises(IllegalTransitionError, match="delivered"):
        asyncio.run(
            transitions.move(
                None,  # type: ignore[arg-type]  # refused before any statement
                job,
                JobStatus.CONFIRMED,
                sources=(JobStatus.DELIVERED,),
            )
        )
