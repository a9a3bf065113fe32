"""Failing and stuck jobs, and a job's refund by hand."""

from __future__ import annotations

import html

from aiogram.filters import CommandObject
from aiogram.types import (
    Message,
)

from trt.admin.operations import Operations
from trt.catalog.pricing import format_money
from trt.i18n import t


# -- jobs -------------------------------------------------------------------------------------
async def jobs_text(operations: Operations, lang: str) -> str:
    rows = await operations.troubled_jobs()
    lines = [t(lang, "admin.jobs_title")]
    for job_id, model, status, code, cid in rows:
        cid_text = f"<code>{html.escape(cid)}</code>" if cid else "-"
        error = html.escape(code or "-")
        lines.append(
            f"  <code>{job_id}</code> {html.escape(model)} · {status} · {error} · cid {cid_text}"
        )
    if not rows:
        lines.append("  —")
    lines.append(t(lang, "admin.jobs_help"))
    return "\n".join(lines)


async def on_jobs_command(message: Message, lang: str, operations: Operations) -> None:
    await message.answer(await jobs_text(operations, lang))


async def on_refund_job(
    message: Message,
    command: CommandObject,
    lang: str,
    operations: Operations,
    cid: str | None = None,
) -> None:
    assert message.from_user is not None
    job_id = (command.args or "").strip()
    if not job_id:
        await message.answer(t(lang, "admin.refund_job_usage"))
        return
    refunded = await operations.refund_job(job_id, admin_id=message.from_user.id, cid=cid)
    if refunded is None:
        await message.answer(t(lang, "admin.refund_job_none"))
    elif refunded == 0:
        await message.answer(t(lang, "admin.refund_job_again"))
    else:
        await message.answer(t(lang, "admin.refund_job_done", amount=format_money(refunded)))
