"""The `trt` command as an operator runs it: real processes, real databases."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.processes import TrtProcess, trt_env
from trt.cli import main
from trt.db import migrate
from trt.db.database import Database
from trt.sandbox.runner import start_app
from trt.sandbox.telegram import TelegramServer

TOKEN = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
KIE_KEY = "kie-test-key-0123456789"


@contextlib.contextmanager
def environment(env: dict[str, str], cwd: Path) -> Iterator[None]:
    """This process with exactly `env` as its environment and `cwd` as its directory."""
    saved, here = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(here)


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`trt …` run in this process (the commands that do not serve: no interpreter start,
    which costs seconds here); `run_trt` where the process itself is under test."""
    out, err = io.StringIO(), io.StringIO()
    with environment(env, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    return subprocess.CompletedProcess(["trt", *args], code, out.getvalue(), err.getvalue())


def run_trt(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed interpreter and arguments
        [sys.executable, "-m", "trt", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_without_secrets_names_them_and_exits_2(tmp_path: Path) -> None:
    result = run_trt("run", env=trt_env(), cwd=tmp_path)  # the real exit code and stream
    assert result.returncode == 2
    assert "BOT_TOKEN" in result.stderr
    assert "KIE_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_variable_is_named_with_its_rule(tmp_path: Path) -> None:
    env = trt_env(BOT_TOKEN=TOKEN, KIE_API_KEY=KIE_KEY, BOT_MODE="fax", HTTP_PORT="x")
    result = run_trt("run", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "BOT_MODE" in result.stderr
    assert "'polling' or 'webhook'" in result.stderr
    assert "HTTP_PORT" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
async def telegram_url() -> AsyncIterator[str]:
    """A sandbox Telegram for `trt run` to poll (no process may reach the real one)."""
    server = TelegramServer(TOKEN)
    running = await start_app(server.app)
    yield running.url
    await running.stop()


async def test_run_migrates_empty_sqlite_logs_ready_and_stops_on_sigterm(
    tmp_path: Path, telegram_url: str
) -> None:
    db_file = tmp_path / "fresh.db"
    env = trt_env(
        BOT_TOKEN=TOKEN,
        KIE_API_KEY=KIE_KEY,
        DATABASE_URL=f"sqlite+aiosqlite:///{db_file}",
        TELEGRAM_API_BASE=telegram_url,
    )
    process = await TrtProcess.start("run", env=env, cwd=str(tmp_path))
    try:
        ready = await process.wait_event("ready")
        assert ready["level"] == "info"
        assert ready["bot_id"] == 123456
        await process.signal(signal.SIGTERM)
        assert await process.finish() == 0
    finally:
        await process.kill()
    # Every line is one JSON object (machines read these logs), and no secret leaked.
    for line in process.lines:
        assert isinstance(json.loads(line), dict), line
    assert TOKEN not in process.output
    assert KIE_KEY not in process.output
    names = [e["event"] for e in process.events]
    assert names[-1] == "stopped"
    assert names.index("ready") < names.index("stopping") < names.index("stopped")
    database = Database(f"sqlite+aiosqlite:///{db_file}")
    try:
        assert (await migrate.schema_state(database)).is_current
    finally:
        await database.dispose()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_run_refuses_a_postgres_schema_behind(
    empty_database_url: str, tmp_path: Path, telegram_url: str
) -> None:
    env = trt_env(
        BOT_TOKEN=TOKEN,
        KIE_API_KEY=KIE_KEY,
        DATABASE_URL=empty_database_url,
        TELEGRAM_API_BASE=telegram_url,
    )
    result = run_trt("run", env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert "trt migrate" in result.stderr
    assert "Traceback" not in result.stderr

    migrated = run_trt("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert f"database at revision {migrate.head_revision()}" in migrated.stdout

    process = await TrtProcess.start("run", env=env, cwd=str(tmp_path))
    try:
        await process.wait_event("ready")
        await process.signal(signal.SIGINT)
        assert await process.finish() == 0
    finally:
        await process.kill()


def test_config_prints_effective_values_with_secrets_masked(tmp_path: Path) -> None:
    env = trt_env(
        BOT_TOKEN=TOKEN,
        KIE_API_KEY=KIE_KEY,
        DATABASE_URL="postgresql://trt:pw-secret@db/trt",
        ADMIN_IDS="5,3",
    )
    result = cli("config", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["ADMIN_IDS"] == "3,5"
    assert shown["BOT_TOKEN"] == "*** (set)"
    assert shown["DATABASE_URL"] == "postgresql+asyncpg://trt:***@db/trt"
    for secret in (TOKEN, KIE_KEY, "pw-secret"):
        assert secret not in result.stdout

    table = cli("config", env=env, cwd=tmp_path)
    assert table.returncode == 0
    assert "KIE_API_KEY" in table.stdout
    assert KIE_KEY not in table.stdout


@pytest.mark.parametrize("command", ["run", "migrate", "config", "version"])
def test_every_subcommand_has_help(command: str, tmp_path: Path) -> None:
    result = cli(command, "--help", env=trt_env(), cwd=tmp_path)
    assert result.returncode == 0
    assert f"usage: trt {command}" in result.stdout


def test_version_via_module_and_console_script(tmp_path: Path) -> None:
    result = run_trt("version", env=trt_env(), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("trt ")
    script = Path(sys.executable).with_name("trt")
    direct = subprocess.run(  # noqa: S603 - the installed console script
        [str(script), "version"], capture_output=True, text=True, check=False
    )
    assert direct.stdout == result.stdout
