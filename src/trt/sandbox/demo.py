"""`trt demo`: the sandbox Telegram and KIE servers, the bot against them, and the web chat.

Everything runs in one process on local ports; nothing needs a token or the network. The web
chat (served by the sandbox Telegram server) is where a person plays the users.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from trt import app as runtime
from trt.billing.wallets import WalletService
from trt.config import Config, load_config
from trt.logs import get_logger
from trt.payments.yookassa import CardPayments
from trt.sandbox.client_api import add_client_api
from trt.sandbox.kie import KieServer
from trt.sandbox.runner import RunningApp, start_app
from trt.sandbox.telegram import TelegramServer
from trt.sandbox.yookassa import YooKassaServer
from trt.users import UserService

DEMO_TOKEN = "777000:SANDBOX-demo-token-not-secret"  # noqa: S105 - the sandbox's, public
DEMO_KIE_KEY = "sandbox-kie-key"
DEMO_HMAC_KEY = "sandbox-kie-webhook-hmac-key"
WEBCHAT_DIR = Path(__file__).with_name("webchat")
DEMO_BALANCE_KOP = 500_00
DEMO_ACCOUNT = "bonus:demo"
DEMO_USERS = (
    (100001, "Алиса", "ru"),
    (100002, "Борис", "ru"),
    (100003, "Emma", "en"),
)

log = get_logger(__name__)


DEMO_TRANSFER_DETAILS = "Сбербанк, карта 2202 2000 0000 0000, получатель ООО «ТРТ» (песочница)"


@dataclass
class Sandbox:
    telegram: TelegramServer
    kie: KieServer
    yookassa: YooKassaServer
    telegram_app: RunningApp
    kie_app: RunningApp
    yookassa_app: RunningApp

    async def stop(self) -> None:
        await self.telegram_app.stop()
        await self.kie_app.stop()
        await self.yookassa_app.stop()

    def point_yookassa_at(self, services: runtime.Services) -> None:
        """The shop's notification URL (YooKassa's dashboard setting): this bot's server."""
        self.yookassa.notification_url = services.http_url + CardPayments.notification_path


def add_webchat(server: TelegramServer) -> None:
    """Serve the web chat page and its assets from the Telegram sandbox."""

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEBCHAT_DIR / "index.html")

    server.app.router.add_get("/", index)
    server.app.router.add_static("/webchat/", WEBCHAT_DIR)


async def start_sandbox(
    *,
    host: str = "127.0.0.1",
    telegram_port: int = 0,
    kie_port: int = 0,
    yookassa_port: int = 0,
    token: str = DEMO_TOKEN,
    kie_key: str = DEMO_KIE_KEY,
    kie_step_s: float = 1.0,
    kie_generate_s: float = 3.0,
) -> Sandbox:
    """The sandbox servers (Telegram with the web chat, KIE, YooKassa) on the given ports (0:
    any free port)."""
    telegram = TelegramServer(token)
    add_client_api(telegram)
    add_webchat(telegram)
    for user_id, name, lang in DEMO_USERS:
        telegram.ensure_user(user_id, name, language_code=lang)
    kie = KieServer(kie_key, step_s=kie_step_s, generate_s=kie_generate_s)
    yookassa = YooKassaServer()
    telegram_app = await start_app(telegram.app, host, telegram_port)
    kie_app = await start_app(kie.app, host, kie_port)
    yookassa_app = await start_app(yookassa.app, host, yookassa_port)
    kie.base_url = kie_app.url
    yookassa.base_url = yookassa_app.url
    return Sandbox(telegram, kie, yookassa, telegram_app, kie_app, yookassa_app)


def demo_config(
    sandbox: Sandbox,
    database_path: Path,
    http_port: int,
    *,
    public_base_url: str = "",
    database_url: str | None = None,
    engine: dict[str, Any] | None = None,
    hmac_key: str | None = None,
    rate_limit_per_10s: int = 40,
    payments: dict[str, Any] | None = None,
    admin_ids: tuple[int, ...] = (),
    http: dict[str, Any] | None = None,
    assistant: dict[str, Any] | None = None,
) -> Config:
    """The configuration of the bot against a sandbox (the demo, end-to-end tests)."""
    kie: dict[str, Any] = {
        "api_key": DEMO_KIE_KEY,
        "base_url": sandbox.kie_app.url,
        "upload_base_url": sandbox.kie_app.url,
    }
    # A public callback URL needs signed callbacks (the configuration insists): the sandbox
    # KIE signs with the key the bot checks.
    hmac_key = hmac_key or (DEMO_HMAC_KEY if public_base_url else None)
    sandbox.kie.hmac_key = hmac_key
    if hmac_key:
        kie["webhook_hmac_key"] = hmac_key
    # Receipts of manual transfers go to the admins: offered only when there are some.
    transfer = {"MANUAL_TRANSFER_DETAILS": DEMO_TRANSFER_DETAILS} if admin_ids else {}
    return load_config(
        telegram={
            "BOT_TOKEN": DEMO_TOKEN,
            "TELEGRAM_API_BASE": sandbox.telegram_app.url,
            "USER_RATE_LIMIT_PER_10S": rate_limit_per_10s,
        },
        kie=kie,
        database={"DATABASE_URL": database_url or f"sqlite+aiosqlite:///{database_path}"},
        http={"HTTP_PORT": http_port, "PUBLIC_BASE_URL": public_base_url, **(http or {})},
        engine=engine or {},
        payments={
            "YOOKASSA_SHOP_ID": sandbox.yookassa.shop_id,
            "YOOKASSA_SECRET_KEY": sandbox.yookassa.secret_key,
            "YOOKASSA_API_BASE": sandbox.yookassa_app.url + "/v3",
            **transfer,
            **(payments or {}),
        },
        admin={"ADMIN_IDS": ",".join(str(a) for a in admin_ids)},
        assistant=assistant or {},
    )


def sandbox_env(sandbox: Sandbox, database_url: str) -> dict[str, str]:
    """Environment variables of a `trt run` process against this sandbox (tests, benches)."""
    sandbox.kie.hmac_key = DEMO_HMAC_KEY  # callbacks are signed whenever they are on
    return {
        "BOT_TOKEN": DEMO_TOKEN,
        "TELEGRAM_API_BASE": sandbox.telegram_app.url,
        "KIE_API_KEY": DEMO_KIE_KEY,
        "KIE_BASE_URL": sandbox.kie_app.url,
        "KIE_UPLOAD_BASE_URL": sandbox.kie_app.url,
        "KIE_WEBHOOK_HMAC_KEY": DEMO_HMAC_KEY,
        "DATABASE_URL": database_url,
        "YOOKASSA_SHOP_ID": sandbox.yookassa.shop_id,
        "YOOKASSA_SECRET_KEY": sandbox.yookassa.secret_key,
        "YOOKASSA_API_BASE": sandbox.yookassa_app.url + "/v3",
        "LOG_FORMAT": "json",
    }


async def credit_demo_users(services: runtime.Services) -> None:
    """Each demo user starts with a demo balance (once per demo database)."""
    users = UserService(services.database)
    wallets = WalletService(services.database)
    for user_id, _name, lang in DEMO_USERS:
        await users.touch(user_id, None, lang)
        await wallets.credit(
            user_id,
            DEMO_BALANCE_KOP,
            source=DEMO_ACCOUNT,
            kind="bonus",
            idempotency_key=f"demo:{user_id}",
            memo="demo balance",
        )


async def run_demo(port: int, database_path: Path) -> None:
    """Serve the demo until Ctrl-C."""
    sandbox = await start_sandbox(telegram_port=port, kie_port=port + 1, yookassa_port=port + 3)
    stop = asyncio.Event()

    async def on_ready(services: runtime.Services) -> None:
        sandbox.point_yookassa_at(services)
        await credit_demo_users(services)

    try:
        # The demo's shop is a fiscal one, as a Russian shop is: receipts on both sides.
        sandbox.yookassa.receipts_required = True
        config = demo_config(
            sandbox,
            database_path,
            http_port=port + 2,
            admin_ids=(DEMO_USERS[0][0],),
            payments={"YOOKASSA_RECEIPTS": "true"},
        )
        bot_task = asyncio.create_task(runtime.run(config, stop, on_ready=on_ready), name="trt-bot")
        print(  # noqa: T201 - the demo's one line for the person who started it
            f"\nTRT demo is running: open {sandbox.telegram_app.url} in a browser "
            f"(Telegram sandbox {sandbox.telegram_app.url}, KIE sandbox {sandbox.kie_app.url}, "
            f"YooKassa sandbox {sandbox.yookassa_app.url}, database {database_path}; "
            f"{DEMO_USERS[0][1]} is the admin). Press Ctrl-C to stop.\n",
            flush=True,
        )
        await bot_task
    finally:
        await sandbox.stop()


def main(port: int, database: str) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(port, Path(database).resolve()))
    return 0
