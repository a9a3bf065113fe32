"""No secret leaves the process: the failures that carry the bot token (a Telegram error that
escapes a handler, a user's file whose download fails) are made to happen, and the JSON log,
the stored events, the job's error and `/debug` are searched for every secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tests.e2e_support import running_bot
from trt.config import LogFormat
from trt.db.models import EventRow, Job
from trt.logs import configure_logging
from trt.sandbox.media import render_png
from trt.sandbox.telegram import MethodFault
from trt.telemetry.events import Event

USER = 5151


@pytest.mark.dispatch_errors_expected
async def test_no_secret_in_logs_events_jobs_or_debug(
    tmp_path: Path, json_logs: None, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running_bot(tmp_path, hmac_key="secrets-test-hmac-key") as bot:
        secrets = bot.services.config.secrets()
        assert any(":" in s for s in secrets)  # the bot token is among them
        configure_logging(LogFormat.JSON, "INFO", secrets=secrets)
        await bot.give_money(USER, 100_000)
        user = await bot.client.user(USER, "Секрет")

        # 1. A Telegram error escapes a handler: the tap's answer is refused as too old, and
        #    the apology path logs the exception (with its frames, which hold the token URL).
        await user.send("/start")
        menu = await user.next_message()
        bot.sandbox.telegram.faults.append(
            MethodFault(
                "answerCallbackQuery",
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
                times=2,
            )
        )
        await user.click("🎨 Картинки и дизайн", menu, wait_answer=False)
        await bot.events.wait_for(Event.DISPATCH_ERROR, timeout_s=10)

        # 2. A user's file whose download fails after getFile (Telegram's file paths expire):
        #    the aiohttp error names the file URL, /bot<TOKEN>/ included.
        sent = await user.send_file(render_png("a cat", 64, 64), as_photo=True)
        assert sent.photo_file_id is not None
        stored = bot.sandbox.telegram.files[sent.photo_file_id]
        bot.sandbox.telegram._files_by_path.pop(stored.file_path)
        job_id = await bot.create_job(
            USER, "edit it", slug="nbedit", image_urls=[f"tg:{sent.photo_file_id}"]
        )
        failed = await bot.events.wait_for(Event.JOB_FAILED, timeout_s=30)
        assert failed["job_id"] == job_id
        await user.send("/debug")
        debug = await user.next_message()
        while "Последнее действие" not in debug.text:
            debug = await user.next_message()

        async with bot.services.database.unit_of_work(readonly=True) as session:
            job = await session.get(Job, job_id)
            events = list(await session.scalars(select(EventRow)))
        assert job is not None
        assert job.error_message
        assert "could not be fetched" in job.error_message
    logs = capfd.readouterr()
    stored_texts = [job.error_message, debug.text, *(str(e.fields) for e in events)]
    assert "dispatch_error" in logs.err or "DISPATCH_ERROR" in logs.err or "Traceback" in logs.err
    for secret in secrets:
        assert secret not in logs.err
        assert secret not in logs.out
        for text in stored_texts:
            assert secret not in text
    assert '"locals"' not in logs.err
