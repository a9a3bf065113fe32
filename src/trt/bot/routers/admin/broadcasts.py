"""Broadcasts: compose, preview, start, pause / resume / cancel, progress."""

from __future__ import annotations

import contextlib
import html

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    InlineKeyboardMarkup,
    Message,
)

from trt.admin.broadcast import BroadcastService, Progress
from trt.bot.routers.admin.common import SEGMENTS, BroadcastFlow, _button
from trt.i18n import t
from trt.telemetry.events import Reason, reject


# -- broadcasts -------------------------------------------------------------------------------
async def on_broadcast_command(message: Message, lang: str, state: FSMContext) -> None:
    await state.set_state(BroadcastFlow.text)
    await message.answer(t(lang, "admin.broadcast_ask"))


async def control_screen(
    broadcasts: BroadcastService, broadcast_id: int, segment: str, lang: str
) -> tuple[str, InlineKeyboardMarkup]:
    count = await broadcasts.audience(SEGMENTS[segment])
    text = t(lang, "admin.broadcast_preview", count=count, segment=t(lang, f"admin.seg_{segment}"))
    names = list(SEGMENTS)
    rows = [
        [
            _button(
                ("• " if name == segment else "") + t(lang, f"admin.seg_{name}"),
                "bcs",
                f"{broadcast_id}.{name}",
            )
            for name in names[i : i + 3]
        ]
        for i in range(0, len(names), 3)
    ]
    rows.append(
        [
            _button(t(lang, "admin.broadcast_go"), "bcgo", str(broadcast_id)),
            _button(t(lang, "admin.broadcast_cancel"), "bcx", str(broadcast_id)),
        ]
    )
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


def progress_screen(
    progress: Progress, lang: str = "ru"
) -> tuple[str, InlineKeyboardMarkup | None]:
    text = t(
        lang,
        "admin.broadcast_progress",
        id=progress.broadcast_id,
        status=t(lang, f"admin.bc_{progress.status}"),
        sent=progress.sent,
        total=progress.total,
        failed=progress.failed,
        blocked=progress.blocked,
        unknown=progress.unknown,
    )
    bid = str(progress.broadcast_id)
    if progress.status == "running":
        row = [_button(t(lang, "admin.broadcast_pause"), "bcp", bid)]
    elif progress.status == "paused":
        row = [_button(t(lang, "admin.broadcast_resume"), "bcr", bid)]
    else:
        return text, None
    row.append(_button(t(lang, "admin.broadcast_cancel"), "bcx", bid))
    return text, InlineKeyboardMarkup(inline_keyboard=[row])


async def on_broadcast_text(
    message: Message, lang: str, state: FSMContext, broadcasts: BroadcastService, bot: Bot
) -> None:
    assert message.from_user is not None
    await state.clear()
    text = message.html_text
    broadcast_id = await broadcasts.create(
        admin_id=message.from_user.id, text=text, segment=SEGMENTS["all"]
    )
    try:  # the preview is the real message: HTML Telegram refuses is found here, not at 2,000
        await bot.send_message(message.chat.id, text)
    except TelegramBadRequest as error:
        await broadcasts.set_status(broadcast_id, "cancelled", admin_id=message.from_user.id)
        await message.answer(t(lang, "admin.broadcast_bad", error=html.escape(error.message)))
        return
    screen, markup = await control_screen(broadcasts, broadcast_id, "all", lang)
    await message.answer(screen, reply_markup=markup)


async def on_broadcast_button(
    message: Message,
    lang: str,
    broadcasts: BroadcastService,
    section: str,
    arg: str,
    admin_id: int,
    cid: str | None,
) -> None:
    raw_id, _, segment = arg.partition(".")
    if not raw_id.isdigit() or len(raw_id) > 18:
        reject(Reason.VALIDATION_FAILED, f"broadcast button {section} {arg!r}")
        return
    broadcast_id = int(raw_id)
    if section == "bcs" and segment in SEGMENTS:
        await broadcasts.set_segment(broadcast_id, SEGMENTS[segment])
        screen, markup = await control_screen(broadcasts, broadcast_id, segment, lang)
        await message.edit_text(screen, reply_markup=markup)
        return
    if section == "bcgo":
        await broadcasts.start(
            broadcast_id,
            admin_id=admin_id,
            progress_chat_id=message.chat.id,
            progress_message_id=message.message_id,
            cid=cid,
        )
    elif section in ("bcp", "bcr", "bcx"):
        status = {"bcp": "paused", "bcr": "running", "bcx": "cancelled"}[section]
        await broadcasts.set_status(broadcast_id, status, admin_id=admin_id, cid=cid)
    progress = await broadcasts.progress(broadcast_id)
    if progress is not None:
        shown, buttons = progress_screen(progress, lang)
        with contextlib.suppress(TelegramBadRequest):  # "not modified": the same numbers
            await message.edit_text(shown, reply_markup=buttons)
