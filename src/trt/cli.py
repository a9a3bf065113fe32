"""The `trt` command: one entry point with a subcommand per task.

Exit codes: 0 done, 1 unexpected failure, 2 bad configuration or usage, 3 database schema behind.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
from collections.abc import Callable, Sequence

from trt import __version__
from trt import models_cli as catalog_commands
from trt.catalog.loader import CatalogError
from trt.config import Config, ConfigError, load_config
from trt.logs import configure_logging, get_logger, resolve_format
from trt.pipeline import UnknownModelError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_SCHEMA_BEHIND = 3

log = get_logger(__name__)


def _setup(command: str) -> Config:
    config = load_config()
    configure_logging(
        resolve_format(config.logging.format, command=command),
        config.logging.level,
        secrets=config.secrets(),
    )
    return config


def imports_settled() -> None:
    """Startup's imports are done: turn the cyclic garbage collector back on (`python -m trt`
    starts with it off), with what they built frozen.

    Those imports create a few hundred thousand objects that live as long as the process
    (aiogram's Bot API types above all); collections during them scan that growing heap again
    and again and free nothing (~0.2 s of `trt run`'s start, docs/performance.md). Frozen, they
    are out of the collector's generations, so no later collection scans them either.
    """
    gc.freeze()
    gc.enable()


def cmd_run(_args: argparse.Namespace) -> int:
    gc.disable()  # the console script's path too (see imports_settled)
    try:
        from trt.app import SchemaBehindError, run
    finally:
        imports_settled()

    config = _setup("run")
    config.require()
    try:
        asyncio.run(run(config))
    except SchemaBehindError as exc:
        log.error("schema_behind", current=exc.current, head=exc.head, fix="trt migrate")
        print(f"trt: {exc}", file=sys.stderr)
        return EXIT_SCHEMA_BEHIND
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from trt.db import migrate
    from trt.db.database import Database

    config = _setup("migrate")

    async def go() -> str | None:
        database = Database(config.database.url)
        try:
            await migrate.upgrade(database, args.revision)
            return (await migrate.schema_state(database)).current
        finally:
            await database.dispose()

    current = asyncio.run(go())
    print(f"database at revision {current} (head {migrate.head_revision()})")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    config = load_config()
    values = config.masked()
    if args.json:
        print(json.dumps(values, ensure_ascii=False, indent=2))
    else:
        width = max(len(name) for name in values)
        for name, value in values.items():
            print(f"{name.ljust(width)}  {value}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from trt.config import LogFormat
    from trt.sandbox import demo

    config = load_config()
    configure_logging(config.logging.format or LogFormat.CONSOLE, config.logging.level)
    return demo.main(args.port, args.database)


def cmd_promo(args: argparse.Namespace) -> int:
    """`trt promo add CODE RUBLES --uses N [--expires DATE]` and `trt promo list`."""
    from datetime import UTC, datetime

    from trt.db.database import Database
    from trt.payments.bonuses import BonusService

    config = _setup("promo")

    async def go() -> int:
        database = Database(config.database.url)
        try:
            bonuses = BonusService(database, config.payments)
            if args.action == "add":
                expires = (
                    datetime.fromisoformat(args.expires).replace(tzinfo=UTC)
                    if args.expires
                    else None
                )
                try:
                    promo = await bonuses.create_promo(
                        args.code, args.rubles * 100, max_uses=args.uses, expires_at=expires
                    )
                except ValueError as error:
                    print(f"trt: {error}", file=sys.stderr)
                    return EXIT_CONFIG
                until = promo.expires_at.date().isoformat() if promo.expires_at else "no expiry"
                print(f"promo {promo.code}: {args.rubles} ₽ × {promo.max_uses} uses, {until}")
                return EXIT_OK
            for promo in await bonuses.promos():
                until = promo.expires_at.isoformat() if promo.expires_at else "-"
                rubles = promo.amount_kop / 100
                print(f"{promo.code:20} {rubles:>10.2f} ₽  {promo.uses}/{promo.max_uses}  {until}")
            return EXIT_OK
        finally:
            await database.dispose()

    return asyncio.run(go())


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"trt {__version__}")
    return EXIT_OK


Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trt",
        description="TRT: AI generation in Telegram, paid from a rouble balance.",
        epilog="Configuration comes from the environment and .env; see `trt config`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    add(
        "run",
        cmd_run,
        "Run the bot: migrate an SQLite database (a Postgres one must be current), serve "
        "until SIGINT/SIGTERM. Needs BOT_TOKEN and KIE_API_KEY.",
    )
    migrate_parser = add("migrate", cmd_migrate, "Upgrade the database schema (DATABASE_URL).")
    migrate_parser.add_argument(
        "revision", nargs="?", default="head", help="target revision (default: head)"
    )
    config_parser = add("config", cmd_config, "Print the effective configuration, secrets masked.")
    config_parser.add_argument("--json", action="store_true", help="print JSON")
    demo_parser = add(
        "demo",
        cmd_demo,
        "Run the sandbox: local Telegram and KIE servers, the bot against them, and a web "
        "chat to play the users in. Needs no tokens and no network.",
    )
    demo_parser.add_argument(
        "--port",
        type=int,
        default=8080,
        help="web chat / Telegram sandbox port; KIE uses the next one (default 8080)",
    )
    demo_parser.add_argument(
        "--database", default="trt-demo.db", help="SQLite file for the demo (default ./trt-demo.db)"
    )
    promo_parser = add("promo", cmd_promo, "Create and list promo codes (DATABASE_URL).")
    promo_sub = promo_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    promo_add = promo_sub.add_parser("add", help="create a promo code")
    promo_add.add_argument("code", help="3-32 of A-Z, 0-9, _ and - (case-insensitive)")
    promo_add.add_argument("rubles", type=int, help="roubles credited per use")
    promo_add.add_argument("--uses", type=int, default=1, help="how many users (default 1)")
    promo_add.add_argument("--expires", help="last moment it works, ISO date/time (UTC)")
    promo_sub.add_parser("list", help="every promo code with its uses")
    add("version", cmd_version, "Print the version.")
    catalog_commands.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    if handler is not cmd_run:
        imports_settled()
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"trt: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CatalogError as exc:
        print(f"trt: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UnknownModelError as exc:
        print(f"trt: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # Output piped into `head` and the reader left: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
