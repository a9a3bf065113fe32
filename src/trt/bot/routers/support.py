"""/debug (a user's own last event chain, for support) and /trace <cid> (admins, anyone's;
registered on the admin router)."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from trt.i18n import t
from trt.telemetry.store import EventStore

MAX_LINES = 30
DETAIL_FIELDS = (
    "handler",
    "screen",
    "reason_code",
    "reason_detail",
    "callback_data",
    "latency_ms",
    "job_id",
    "task_id",
)


def build() -> Router:
    router = Router(name=__name__)
    router.message.register(on_debug, Command("debug"))
    return router


def render_chain(cid: str, events: list[tuple[datetime, str, dict[str, Any]]]) -> str:
    lines = []
    for at, name, fields in events[-MAX_LINES:]:
        details = " ".join(
            f"{key}={fields[key]}" for key in DETAIL_FIELDS if fields.get(key) not in (None, "")
        )
        lines.append(f"{at.strftime('%H:%M:%S.%f')[:-3]} {name} {details}".rstrip())
    return "<pre>" + html.escape("\n".join(lines)) + "</pre>"


async def on_debug(message: Message, lang: str, events: EventStore, cid: str | None = None) -> None:
    assert message.from_user is not None
    last = await events.last_cid(message.from_user.id, before_cid=cid)
    if last is None:
        await message.answer(t(lang, "debug.none"))
        return
    chain = await events.chain(last)
    await message.answer(t(lang, "debug.title", cid=last) + "\n" + render_chain(last, chain))


async def on_trace(
    message: Message,
    command: CommandObject,
    lang: str,
    events: EventStore,
) -> None:
    """`/trace <cid>` (admins: registered on the admin router, behind its guard)."""
    target = (command.args or "").strip()
    if not target:
        await message.answer(t(lang, "debug.usage"))
        return
    chain = await events.chain(target)
    if not chain:
        await message.answer(t(lang, "debug.empty", cid=html.escape(target)))
        return
    await message.answer(
        t(lang, "debug.title", cid=html.escape(target)) + "\n" + render_chain(target, chain)
    )
