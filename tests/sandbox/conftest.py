from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from trt.sandbox.client_api import add_client_api
from trt.sandbox.driver import SandboxClient
from trt.sandbox.runner import RunningApp, start_app
from trt.sandbox.telegram import TelegramServer

TOKEN = "424242:SANDBOX-test-token"


@dataclass
class Telegram:
    server: TelegramServer
    running: RunningApp
    client: SandboxClient

    @property
    def url(self) -> str:
        return self.running.url

    def bot(self) -> Bot:
        session = AiohttpSession(api=TelegramAPIServer.from_base(self.url))
        return Bot(TOKEN, session=session)


@pytest.fixture
async def telegram() -> AsyncIterator[Telegram]:
    server = TelegramServer(TOKEN, webhook_retry_s=(0.05, 0.5))
    add_client_api(server)
    running = await start_app(server.app)
    async with SandboxClient(running.url) as client:
        yield Telegram(server, running, client)
    await running.stop()
