"""Integrity against a network that behaves like a real one (issue 18): result files that
arrive in chunks or are cut off, callbacks that are only wake-ups, public endpoints that
cannot be abused."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.e2e.test_engine import PRICE_NB2_1K, USER, job_row, settled_outbox, until_finished
from tests.e2e_support import RunningBot
from trt.db.models import JobResult
from trt.jobs.state import JobStatus
from trt.kie.client import Limits
from trt.sandbox.driver import SandboxUser

SANDBOX_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
async def user(bot: RunningBot) -> SandboxUser:
    await bot.give_money(USER, 100_000)
    return await bot.client.user(USER, "Тест")


async def test_a_result_served_in_chunks_is_delivered_whole(
    bot: RunningBot, user: SandboxUser
) -> None:
    # The sandbox KIE sends 8 KB chunks with pauses, like a CDN: reading only what is
    # buffered (the old client) delivered the first chunk of the picture and charged for it.
    job_id = await bot.create_job(USER, "a fox on a chunked network")
    result = (await until_finished(bot, user))[-1]
    assert result.photo_file_id is not None
    delivered = await user.download(result.photo_file_id)
    task = next(iter(bot.sandbox.kie.tasks.values()))
    original = bot.sandbox.kie._rendered[task.task_id]
    assert len(original) > bot.sandbox.kie.chunk_bytes  # it did come in several chunks
    assert delivered == original
    await settled_outbox(bot, job_id)
    assert (await job_row(bot, job_id)).status == JobStatus.DELIVERED.value
    assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)


@SANDBOX_ONLY
async def test_a_result_cut_off_once_is_downloaded_again_and_charged_once(
    bot: RunningBot, user: SandboxUser
) -> None:
    job_id = await bot.create_job(USER, "[truncate:1] a fox behind a flaky CDN")
    result = (await until_finished(bot, user))[-1]
    assert result.photo_file_id is not None
    task = next(iter(bot.sandbox.kie.tasks.values()))
    assert task.downloads == {"0.png": 2}
    assert await user.download(result.photo_file_id) == bot.sandbox.kie._rendered[task.task_id]
    await settled_outbox(bot, job_id)
    assert (await job_row(bot, job_id)).download_attempts == 1
    assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)
    assert await bot.ledger_problems() == []


@SANDBOX_ONLY
async def test_a_result_always_cut_off_is_refunded_never_captured(
    bot: RunningBot, user: SandboxUser
) -> None:
    job_id = await bot.create_job(USER, "[truncate] a fox that never arrives whole")
    failure = (await until_finished(bot, user))[-1]
    assert failure.text.startswith("❌ Не получилось: Nano Banana 2")
    assert "не удалось скачать результат" in failure.text
    assert "Возвращено 7,60 ₽" in failure.text
    job = await job_row(bot, job_id)
    assert (job.status, job.download_attempts) == (JobStatus.FAILED.value, 2)
    task = next(iter(bot.sandbox.kie.tasks.values()))
    assert task.downloads == {"0.png": 3}
    assert await bot.balance(USER) == (100_000, 0)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        kept = await session.scalar(
            select(func.count()).select_from(JobResult).where(JobResult.job_id == job_id)
        )
    assert kept == 0
    assert await bot.ledger_problems() == []


@SANDBOX_ONLY
async def test_a_result_over_the_cap_goes_as_a_link_without_being_kept(
    bot: RunningBot, user: SandboxUser
) -> None:
    bot.services.kie.limits = Limits(max_download_bytes=4096)  # below the picture's size
    job_id = await bot.create_job(USER, "a fox too big to send")
    link = (await until_finished(bot, user))[-1]
    assert link.photo_file_id is None
    task = next(iter(bot.sandbox.kie.tasks.values()))
    assert task.result_urls[0] in link.text
    await settled_outbox(bot, job_id)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        stored = await session.scalar(select(JobResult).where(JobResult.job_id == job_id))
    assert stored is not None
    assert stored.data is None
    assert stored.size_bytes == len(bot.sandbox.kie._rendered[task.task_id])
    assert (await job_row(bot, job_id)).status == JobStatus.DELIVERED.value
    assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)


async def test_downloads_only_over_https_from_kies_hosts(bot: RunningBot) -> None:
    kie = bot.services.kie
    for url in (
        "http://tempfile.aiquickdraw.com/p/a.png",  # KIE's host, but plain http
        "https://example.com/a.png",  # not KIE's
        "ftp://tempfile.aiquickdraw.com/a.png",
    ):
        with pytest.raises(Exception, match="refusing") as refused:
            await kie.download(url)
        assert refused.typename == "KieError"
