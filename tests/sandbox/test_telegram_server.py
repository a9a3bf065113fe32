"""The sandbox Bot API server: each emulated method, the strict checks, webhooks, payments."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.methods import GetUpdates
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InaccessibleMessage,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    LabeledPrice,
)
from aiohttp import ClientSession, web
from PIL import Image

from tests.sandbox.conftest import TOKEN, Telegram
from trt.sandbox.client_api import add_client_api
from trt.sandbox.driver import SandboxClient
from trt.sandbox.media import render_png, sample
from trt.sandbox.runner import start_app
from trt.sandbox.telegram import FloodControl, TelegramServer

USER = 2002


@pytest.fixture
async def bot(telegram: Telegram) -> AsyncIterator[Bot]:
    telegram.server.ensure_user(USER, "Bob")
    bot = telegram.bot()
    yield bot
    await bot.session.close()


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=f"b{i}", callback_data=d)] for i, d in enumerate(data)
        ]
    )


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


async def raw_call(telegram: Telegram, method: str, **params: Any) -> tuple[int, dict[str, Any]]:
    async with (
        ClientSession() as session,
        session.post(
            f"{telegram.url}/bot{TOKEN}/{method}", data={k: str(v) for k, v in params.items()}
        ) as response,
    ):
        return response.status, await response.json()


def kinds(telegram: Telegram) -> list[str]:
    return [p.kind for v in telegram.server.violations for p in v.problems]


# ---------------------------------------------------------------- basics and strictness
async def test_get_me_and_unknown_token(telegram: Telegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (424242, True, "trt_sandbox_bot")
    async with (
        ClientSession() as session,
        session.post(f"{telegram.url}/bot1:wrong/getMe") as response,
    ):
        assert response.status == 401
        assert (await response.json())["description"] == "Unauthorized"


async def test_unknown_method_is_a_violation(telegram: Telegram) -> None:
    status, body = await raw_call(telegram, "sendTelepathy", chat_id=USER)
    assert (status, body["description"]) == (404, "Not Found")
    assert kinds(telegram) == ["unknown_method"]


async def test_unknown_parameter_is_a_violation(telegram: Telegram, bot: Bot) -> None:
    status, body = await raw_call(telegram, "sendMessage", chat_id=USER, text="x", colour="red")
    assert status == 400
    assert body == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: unknown parameter colour",
    }
    assert kinds(telegram) == ["unknown_parameter"]


async def test_missing_required_parameter(telegram: Telegram) -> None:
    status, body = await raw_call(telegram, "sendMessage", chat_id=USER)
    assert (status, body["description"]) == (400, "Bad Request: message text is empty")
    assert kinds(telegram) == ["missing_parameter"]


async def test_wrong_type(telegram: Telegram) -> None:
    status, body = await raw_call(
        telegram, "sendMessage", chat_id=USER, text="x", disable_notification="perhaps"
    )
    assert status == 400
    assert "disable_notification" in body["description"]
    assert kinds(telegram) == ["wrong_type"]


async def test_nested_objects_are_checked(telegram: Telegram) -> None:
    markup = json.dumps({"inline_keyboard": [[{"text": "a", "callback_data": "x", "colour": 1}]]})
    status, _body = await raw_call(
        telegram, "sendMessage", chat_id=USER, text="x", reply_markup=markup
    )
    assert status == 400
    assert telegram.server.violations[0].problems[0].field.endswith(".colour")


@pytest.mark.parametrize("data", ["x" * 65, "ы" * 33, ""])
async def test_callback_data_outside_1_to_64_bytes(bot: Bot, telegram: Telegram, data: str) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="b", callback_data="ok")]]
    ).model_dump(exclude_none=True)
    markup["inline_keyboard"][0][0]["callback_data"] = data
    status, body = await raw_call(
        telegram, "sendMessage", chat_id=USER, text="x", reply_markup=json.dumps(markup)
    )
    assert (status, body["description"]) == (400, "Bad Request: BUTTON_DATA_INVALID")


async def test_callback_data_of_exactly_64_bytes_passes(bot: Bot, telegram: Telegram) -> None:
    await bot.send_message(USER, "x", reply_markup=keyboard("ы" * 32))
    assert telegram.server.violations == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("x" * 4097, "Bad Request: message is too long"), ("", "Bad Request: message text is empty")],
)
async def test_text_limits(bot: Bot, text: str, expected: str) -> None:
    with pytest.raises(TelegramBadRequest, match=expected):
        await bot.send_message(USER, text)


async def test_text_limit_counts_after_html_parsing(bot: Bot, telegram: Telegram) -> None:
    await bot.send_message(USER, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    assert telegram.server.violations == []


@pytest.mark.parametrize("text", ["<b>open", "a < b", "Tom & Jerry", "<blink>x</blink>"])
async def test_bad_html_cannot_be_parsed(bot: Bot, text: str) -> None:
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(USER, text, parse_mode="HTML")


async def test_caption_limit(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(USER, BufferedInputFile(png(), "p.png"), caption="x" * 1025)


async def test_unknown_and_blocked_chats(telegram: Telegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999, "x")
    telegram.server.blocked_by.add(USER)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(USER, "x")


# ---------------------------------------------------------------- editing and deleting
async def test_edits(bot: Bot, telegram: Telegram) -> None:
    sent = await bot.send_message(USER, "one", reply_markup=keyboard("a"))
    edited = await bot.edit_message_text(
        "two", chat_id=USER, message_id=sent.message_id, reply_markup=keyboard("b")
    )
    assert not isinstance(edited, bool)
    assert edited.text == "two"
    assert edited.edit_date is not None
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "two", chat_id=USER, message_id=sent.message_id, reply_markup=keyboard("b")
        )
    markup_only = await bot.edit_message_reply_markup(
        chat_id=USER, message_id=sent.message_id, reply_markup=keyboard("c")
    )
    assert not isinstance(markup_only, bool)
    assert markup_only.reply_markup is not None
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=999)
    with pytest.raises(TelegramBadRequest, match="there is no caption in the message to edit"):
        await bot.edit_message_caption(chat_id=USER, message_id=sent.message_id, caption="c")
    users_message, _seq = await telegram.server.user_sends(USER, text="hello")
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("x", chat_id=USER, message_id=users_message["message_id"])


async def test_caption_and_media_edits(bot: Bot) -> None:
    photo = await bot.send_photo(USER, BufferedInputFile(png(), "p.png"), caption="one")
    captioned = await bot.edit_message_caption(
        chat_id=USER, message_id=photo.message_id, caption="two"
    )
    assert not isinstance(captioned, bool)
    assert captioned.caption == "two"
    with pytest.raises(TelegramBadRequest, match="there is no text in the message to edit"):
        await bot.edit_message_text("x", chat_id=USER, message_id=photo.message_id)
    replaced = await bot.edit_message_media(
        InputMediaPhoto(media=BufferedInputFile(png(100, 50), "q.png"), caption="three"),
        chat_id=USER,
        message_id=photo.message_id,
    )
    assert not isinstance(replaced, bool)
    assert replaced.photo is not None
    assert (replaced.photo[-1].width, replaced.photo[-1].height) == (100, 50)


async def test_delete(bot: Bot) -> None:
    sent = await bot.send_message(USER, "bye")
    assert await bot.delete_message(USER, sent.message_id) is True
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER, sent.message_id)


# ---------------------------------------------------------------- media and files
async def test_photo_upload_and_resend_by_file_id(bot: Bot, telegram: Telegram) -> None:
    sent = await bot.send_photo(USER, BufferedInputFile(render_png("cat", 320, 200), "c.png"))
    assert sent.photo is not None
    size = sent.photo[-1]
    assert (size.width, size.height) == (320, 200)
    again = await bot.send_photo(USER, size.file_id)
    assert again.photo is not None
    assert again.photo[-1].file_id == size.file_id
    assert telegram.server.violations == []


async def test_photo_rules(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(USER, BufferedInputFile(b"not an image", "x.png"))
    with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID_DIMENSIONS"):
        await bot.send_photo(USER, BufferedInputFile(png(10, 300), "tall.png"))
    huge = b"\x89PNG" + b"\0" * (10 * 1024 * 1024 + 1)
    with pytest.raises(TelegramBadRequest, match="PHOTO_SAVE_FILE_INVALID"):
        await bot.send_photo(USER, BufferedInputFile(huge, "huge.png"))


async def test_files_over_50_mb_are_too_large(bot: Bot) -> None:
    with pytest.raises(TelegramEntityTooLarge):
        await bot.send_document(USER, BufferedInputFile(b"\0" * (50 * 1024 * 1024 + 1), "a.bin"))


async def test_video_audio_voice_document(bot: Bot, telegram: Telegram) -> None:
    video = await bot.send_video(
        USER, BufferedInputFile(sample("sample.mp4"), "v.mp4"), duration=2, width=320, height=240
    )
    assert video.video is not None
    assert video.video.mime_type == "video/mp4"
    audio = await bot.send_audio(
        USER, BufferedInputFile(sample("sample.mp3"), "a.mp3"), title="Song"
    )
    assert audio.audio is not None
    assert audio.audio.title == "Song"
    voice = await bot.send_voice(USER, BufferedInputFile(sample("sample.ogg"), "v.ogg"))
    assert voice.voice is not None
    document = await bot.send_document(USER, BufferedInputFile(b"%PDF-1.4", "r.pdf"))
    assert document.document is not None
    assert document.document.file_name == "r.pdf"
    assert telegram.server.violations == []


async def test_media_group(bot: Bot) -> None:
    sent = await bot.send_media_group(
        USER,
        [
            InputMediaPhoto(media=BufferedInputFile(png(), "a.png"), caption="first"),
            InputMediaPhoto(media=BufferedInputFile(png(30, 30), "b.png")),
        ],
    )
    assert len(sent) == 2
    assert sent[0].media_group_id == sent[1].media_group_id is not None
    with pytest.raises(TelegramBadRequest, match="wrong number of messages"):
        await bot.send_media_group(USER, [InputMediaPhoto(media=BufferedInputFile(png(), "a.png"))])


async def test_get_file_and_download_a_users_photo(telegram: Telegram, bot: Bot) -> None:
    alice = await telegram.client.user(USER, "Bob")
    picture = render_png("from the user", 200, 100)
    message = await alice.send_file(picture)
    file_id = message.photo_file_id
    assert file_id is not None
    info = await bot.get_file(file_id)
    assert info.file_size == len(picture)
    downloaded = await bot.download(file_id)
    assert downloaded is not None
    assert downloaded.read() == picture
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await bot.get_file("nope")


async def test_get_file_refuses_files_over_20_mb(telegram: Telegram, bot: Bot) -> None:
    stored = telegram.server.store_file(b"\0" * (20 * 1024 * 1024 + 1), "video/mp4", "big.mp4")
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(stored.file_id)


# ---------------------------------------------------------------- callbacks and commands
async def test_callback_answered_once_and_timed(telegram: Telegram, bot: Bot) -> None:
    sent = await bot.send_message(USER, "tap", reply_markup=keyboard("go"))
    record = await telegram.server.user_clicks(USER, sent.message_id, "go")
    updates = await bot(GetUpdates())
    query = updates[-1].callback_query
    assert query is not None
    assert query.data == "go"
    with pytest.raises(TelegramBadRequest, match="MESSAGE_TOO_LONG"):
        await bot.answer_callback_query(query.id, text="x" * 201)
    assert await bot.answer_callback_query(query.id, text="ok") is True
    assert record.wait_s is not None
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)


async def test_callback_from_a_deleted_message_is_inaccessible(
    telegram: Telegram, bot: Bot
) -> None:
    await telegram.server.user_clicks(USER, 777, "stale")
    updates = await bot(GetUpdates())
    query = updates[-1].callback_query
    assert query is not None
    assert isinstance(query.message, InaccessibleMessage)
    assert query.message.message_id == 777


async def test_chat_action_and_commands(telegram: Telegram, bot: Bot) -> None:
    assert await bot.send_chat_action(USER, "upload_photo") is True
    commands = [
        BotCommand(command="start", description="Начать"),
        BotCommand(command="help", description="Помощь"),
    ]
    assert await bot.set_my_commands(commands) is True
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Name", description="x")])
    assert await bot.delete_my_commands() is True
    assert await bot.get_my_commands() == []


# ---------------------------------------------------------------- getUpdates and webhooks
async def test_get_updates_offset_and_long_poll(telegram: Telegram, bot: Bot) -> None:
    await telegram.server.user_sends(USER, text="one")
    first = await bot.get_updates()
    assert [u.message.text for u in first if u.message] == ["one"]
    assert len(await bot.get_updates(offset=first[-1].update_id)) == 1  # not yet confirmed
    waiting = asyncio.create_task(bot.get_updates(offset=first[-1].update_id + 1, timeout=10))
    await telegram.server.wait_for(lambda: telegram.server._poll_generation >= 3)
    await telegram.server.user_sends(USER, text="two")
    second = await waiting
    assert [u.message.text for u in second if u.message] == ["two"]


async def test_allowed_updates_filters(telegram: Telegram, bot: Bot) -> None:
    await bot.get_updates(allowed_updates=["callback_query"])
    await telegram.server.user_sends(USER, text="ignored")
    assert await bot.get_updates(timeout=0) == []


async def test_second_poller_conflicts(telegram: Telegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await telegram.server.wait_for(lambda: telegram.server._poll_generation >= 1)
    second = asyncio.create_task(bot.get_updates(timeout=10))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await first
    await telegram.server.user_sends(USER, text="wake")
    assert len(await second) == 1


async def test_webhook_delivery_and_redelivery(telegram: Telegram, bot: Bot) -> None:
    received: list[dict[str, Any]] = []
    answers = [500, 200, 200]

    async def hook(request: web.Request) -> web.Response:
        assert request.headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret"
        received.append(await request.json())
        return web.Response(status=answers.pop(0) if answers else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = await start_app(app)
    try:
        assert await bot.set_webhook(f"{receiver.url}/hook", secret_token="s3cret") is True
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        await telegram.server.user_sends(USER, text="one")
        await telegram.server.user_sends(USER, text="two")
        await telegram.server.wait_for(lambda: len(received) >= 3 and not telegram.server.updates)
        texts = [u["message"]["text"] for u in received]
        assert texts == ["one", "one", "two"]  # the failed delivery was repeated, order kept
        info = await bot.get_webhook_info()
        assert info.url == f"{receiver.url}/hook"
        assert info.pending_update_count == 0
        assert (
            info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
        )
        assert await bot.delete_webhook() is True
        await telegram.server.user_sends(USER, text="three")
        assert [u.message.text for u in await bot.get_updates() if u.message] == ["three"]
    finally:
        await receiver.stop()


async def test_webhook_to_a_dead_receiver_keeps_the_update(telegram: Telegram, bot: Bot) -> None:
    await bot.set_webhook("http://127.0.0.1:9/hook")
    await telegram.server.user_sends(USER, text="kept")
    await telegram.server.wait_for(
        lambda: (
            telegram.server.webhook is not None
            and telegram.server.webhook.last_error_message is not None
        )
    )
    info = await bot.get_webhook_info()
    assert info.pending_update_count == 1
    assert (info.last_error_message or "").startswith("Connection failed")


# ---------------------------------------------------------------- flood control
async def test_flood_control_answers_429_with_retry_after() -> None:
    server = TelegramServer(TOKEN, flood=FloodControl(per_chat_per_s=1))
    add_client_api(server)
    running = await start_app(server.app)
    server.ensure_user(USER)
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(running.url)))
    try:
        await bot.send_message(USER, "first")
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(USER, "second")
        assert caught.value.retry_after == 1
    finally:
        await bot.session.close()
        await running.stop()


# ---------------------------------------------------------------- Stars payments
async def test_stars_invoice_payment_refund_and_transactions(telegram: Telegram, bot: Bot) -> None:
    invoice = await bot.send_invoice(
        USER,
        title="100 ₽",
        description="Пополнение баланса",
        payload="topup:42",
        currency="XTR",
        prices=[LabeledPrice(label="100 ₽", amount=50)],
    )
    assert invoice.invoice is not None
    assert invoice.invoice.total_amount == 50
    paying = asyncio.create_task(telegram.server.user_pays(USER, invoice.message_id))
    await telegram.server.wait_for(
        lambda: any("pre_checkout_query" in u for u in telegram.server.updates)
    )
    updates = await bot.get_updates()
    query = updates[-1].pre_checkout_query
    assert query is not None
    assert (query.invoice_payload, query.total_amount) == ("topup:42", 50)
    assert await bot.answer_pre_checkout_query(query.id, ok=True) is True
    assert await paying == (True, None)
    paid = (await bot.get_updates(offset=updates[-1].update_id + 1))[-1].message
    assert paid is not None
    assert paid.successful_payment is not None
    charge_id = paid.successful_payment.telegram_payment_charge_id
    transactions = await bot.get_star_transactions()
    assert [t.id for t in transactions.transactions] == [charge_id]
    assert await bot.refund_star_payment(USER, charge_id) is True
    with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(USER, charge_id)
    assert telegram.server.violations == []


async def test_refused_pre_checkout_takes_no_money(telegram: Telegram, bot: Bot) -> None:
    invoice = await bot.send_invoice(
        USER,
        title="t",
        description="d",
        payload="p",
        currency="XTR",
        prices=[LabeledPrice(label="x", amount=1)],
    )
    paying = asyncio.create_task(telegram.server.user_pays(USER, invoice.message_id))
    await telegram.server.wait_for(lambda: bool(telegram.server.updates))
    query = (await bot.get_updates())[-1].pre_checkout_query
    assert query is not None
    await bot.answer_pre_checkout_query(query.id, ok=False, error_message="Пакет устарел")
    assert await paying == (False, "Пакет устарел")
    assert telegram.server.star_transactions == []
    with pytest.raises(TelegramBadRequest, match="STARS_INVOICE_INVALID"):
        await bot.send_invoice(
            USER,
            title="t",
            description="d",
            payload="p",
            currency="XTR",
            prices=[LabeledPrice(label="a", amount=1), LabeledPrice(label="b", amount=2)],
        )


# ---------------------------------------------------------------- several users at once
async def test_several_users_and_the_driver(telegram: Telegram, bot: Bot) -> None:
    async with SandboxClient(telegram.url) as client:
        users = [await client.user(3000 + i, f"U{i}") for i in range(3)]
        for user in users:
            await bot.send_message(user.user_id, f"hello {user.first_name}")
        for user in users:
            message = await user.next_message()
            assert message.text == f"hello {user.first_name}"
        assert len(await users[0].messages()) == 1
