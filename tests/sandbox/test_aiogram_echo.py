"""aiogram itself, pointed at the sandbox, runs an echo bot with zero violations."""

from __future__ import annotations

import asyncio

from aiogram import Dispatcher, F, Router
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from tests.sandbox.conftest import Telegram


async def test_echo_bot_through_the_sandbox(telegram: Telegram) -> None:
    router = Router()

    @router.message(F.text)
    async def echo(message: Message) -> None:
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="Ещё раз", callback_data="again")]]
        )
        await message.answer(
            f"<b>Эхо:</b> {message.text}", parse_mode="HTML", reply_markup=keyboard
        )

    @router.callback_query(F.data == "again")
    async def again(callback: CallbackQuery) -> None:
        await callback.answer("Готово")
        assert isinstance(callback.message, Message)
        await callback.message.edit_text("Нажато")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    bot = telegram.bot()
    polling = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, polling_timeout=1)
    )
    try:
        alice = await telegram.client.user(1001, "Alice")
        await alice.send("привет")
        reply = await alice.next_message()
        assert reply.text == "Эхо: привет"
        assert reply.raw["entities"] == [{"type": "bold", "offset": 0, "length": 4}]
        assert reply.button_labels == ["Ещё раз"]
        answer = await alice.click("Ещё раз", reply)
        assert answer.answered
        assert answer.text == "Готово"
        edited = await alice.next_event(("edit",))
        assert edited.message.text == "Нажато"
        assert edited.message.buttons == []
    finally:
        await dispatcher.stop_polling()
        await polling
        await bot.session.close()
    assert await telegram.client.violations() == []
    methods = {r["method"] for r in (await telegram.client.records())["requests"]}
    assert {
        "getMe",
        "getUpdates",
        "sendMessage",
        "answerCallbackQuery",
        "editMessageText",
    } <= methods
