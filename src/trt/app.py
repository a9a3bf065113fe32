"""The application runtime behind `trt run`: storage first, then the services, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from aiogram.exceptions import TelegramAPIError, TelegramNetworkError

from trt import __version__
from trt.bot.app import create_bot, create_dispatcher, set_commands
from trt.catalog.loader import default_catalog
from trt.catalog.pricing import Rates
from trt.config import BotMode, Config, mask_database_url
from trt.db import migrate
from trt.db.database import Database
from trt.pipeline import UnifiedModelPipeline
from trt.telemetry.logs import get_logger

log = get_logger(__name__)


class SchemaBehindError(Exception):
    """The Postgres schema is older than this code; an operator must run `trt migrate`."""

    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"database schema is at {current or 'an empty schema'}, this version needs {head}: "
            "run `trt migrate` (same DATABASE_URL) before starting"
        )


async def prepare_storage(config: Config) -> Database:
    """Connect; migrate SQLite automatically, refuse a Postgres schema that is behind.

    Postgres is shared by instances of different versions during a rolling deploy, so its schema
    moves only by an explicit `trt migrate` (a release step); an embedded SQLite file belongs to
    this process alone and is upgraded in place.
    """
    database = Database(config.database.url)
    try:
        await database.ping()
        state = await migrate.schema_state(database)
        if not state.is_current:
            if not database.is_sqlite:
                raise SchemaBehindError(state.current, state.head)
            await migrate.upgrade(database)
            log.info("schema_migrated", from_revision=state.current, to_revision=state.head)
    except BaseException:
        await database.dispose()
        raise
    return database


async def run(
    config: Config, stop: asyncio.Event | None = None, *, install_signal_handlers: bool = True
) -> None:
    """Serve until SIGINT/SIGTERM (or until `stop` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if install_signal_handlers else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    database = await prepare_storage(config)
    pipeline = UnifiedModelPipeline(
        default_catalog(), Rates(config.pricing.usd_rub_rate, config.pricing.price_markup)
    )
    bot = create_bot(config)
    dispatcher = create_dispatcher(config, database, pipeline)
    polling: asyncio.Task[None] | None = None
    try:
        try:
            await set_commands(bot)
        except (TelegramAPIError, TelegramNetworkError) as error:
            # The command menu is cosmetic; Telegram being unreachable must not stop start-up
            # (polling retries on its own).
            log.warning("set_commands_failed", error=str(error))
        if config.telegram.mode is BotMode.POLLING:
            polling = asyncio.create_task(
                dispatcher.start_polling(
                    bot,
                    handle_signals=False,
                    close_bot_session=False,
                    allowed_updates=dispatcher.resolve_used_update_types(),
                ),
                name="telegram-polling",
            )
        log.info(
            "ready",
            version=__version__,
            python=sys.version.split()[0],
            database=mask_database_url(config.database.url),
            bot_mode=config.telegram.mode.value,
            bot_id=config.telegram.bot_id,
            models=len(pipeline.catalog),
        )
        await stop.wait()
        log.info("stopping", reason="signal")
    finally:
        if polling is not None:
            with contextlib.suppress(RuntimeError):  # polling already stopped
                await dispatcher.stop_polling()
            await polling
        await bot.session.close()
        await database.dispose()
        for signum in signals:
            loop.remove_signal_handler(signum)
    log.info("stopped")
