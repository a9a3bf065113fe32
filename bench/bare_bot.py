"""The baseline: a bare aiogram bot on a webhook, the least any bot can do per update.

One handler answers a callback and edits its message, one answers a message; no middlewares,
no database, no logging. `bench.intake` drives it with the same server and the same load as
TRT, so the ratio TRT / bare is what TRT's reliability costs on this machine.

    BOT_TOKEN=… TELEGRAM_API_BASE=… HTTP_PORT=… WEBHOOK_SECRET=… python -m bench.bare_bot
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

STARTED = time.monotonic()

from aiogram import Bot, Dispatcher, Router  # noqa: E402 - the import is part of startup
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402
from aiogram.exceptions import TelegramBadRequest  # noqa: E402
from aiogram.types import CallbackQuery, Message  # noqa: E402
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application  # noqa: E402
from aiohttp import web  # noqa: E402

router = Router()
SCREENS = ("Меню", "Баланс")


@router.callback_query()
async def on_tap(callback: CallbackQuery) -> None:
    await callback.answer()
    if isinstance(callback.message, Message):
        with contextlib.suppress(TelegramBadRequest):  # "message is not modified"
            await callback.message.edit_text(SCREENS[callback.data == "mn:balance"])


@router.message()
async def on_message(message: Message) -> None:
    await message.answer(SCREENS[0])


def main() -> None:
    api = TelegramAPIServer.from_base(os.environ["TELEGRAM_API_BASE"])
    bot = Bot(os.environ["BOT_TOKEN"], session=AiohttpSession(api=api))
    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    port = int(os.environ["HTTP_PORT"])
    secret = os.environ["WEBHOOK_SECRET"]

    async def on_startup(_app: web.Application) -> None:
        await bot.set_webhook(f"http://127.0.0.1:{port}/webhook", secret_token=secret)
        # One line the benchmark waits for: the process is up and the webhook is set.
        sys.stdout.write(f"ready {time.monotonic() - STARTED:.3f}\n")
        sys.stdout.flush()

    app = web.Application()
    app.on_startup.append(on_startup)
    SimpleRequestHandler(dispatcher, bot, secret_token=secret).register(app, path="/webhook")
    setup_application(app, dispatcher, bot=bot)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
