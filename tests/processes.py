"""Real `trt` processes for tests: spawn, await a logged event, signal, collect output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

EVENT_TIMEOUT_S = 30.0


def trt_env(**variables: str) -> dict[str, str]:
    """A child environment holding only the system basics plus `variables`."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(variables)
    return env


class TrtProcess:
    """A `python -m trt …` child whose JSON log lines can be awaited one event at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, *args: str, env: Mapping[str, str], cwd: str, prefix: Sequence[str] = ()
    ) -> TrtProcess:
        """`python [prefix] -m trt args` (a prefix: a profiler's own `-m` and options)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *prefix,
            "-m",
            "trt",
            *args,
            env=dict(env),
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            async with self._changed:
                self.lines.append(line)
                try:
                    parsed = json.loads(line)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    self.events.append(parsed)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_event(
        self, name: str, timeout_s: float = EVENT_TIMEOUT_S, **match: Any
    ) -> dict[str, Any]:
        """The first logged event called `name` (with the fields in `match`); fails if the
        process ends without it."""

        def found() -> dict[str, Any] | None:
            return next(
                (
                    e
                    for e in self.events
                    if e.get("event") == name and all(e.get(k) == v for k, v in match.items())
                ),
                None,
            )

        async def wait() -> dict[str, Any]:
            async with self._changed:
                while (event := found()) is None:
                    if self._reader.done():
                        raise AssertionError(
                            f"process ended without {name!r}:\n" + "\n".join(self.lines)
                        )
                    await self._changed.wait()
                return event

        return await asyncio.wait_for(wait(), timeout_s)

    async def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    async def finish(self, timeout_s: float = EVENT_TIMEOUT_S) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        await self._reader
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._reader

    @property
    def output(self) -> str:
        return "\n".join(self.lines)
