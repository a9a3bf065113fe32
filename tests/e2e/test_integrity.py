"""Integrity against a network that behaves like a real one (issue 18): result files that
arrive in chunks or are cut off, callbacks that are only wake-ups, public endpoints that
cannot be abused."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select, update

from tests.e2e.test_engine import PRICE_NB2_1K, USER, job_row, settled_outbox, until_finished
from tests.e2e_support import RunningBot, running_bot
from trt.db.models import FreeUsage, Job, JobResult, KieCallback, utcnow
from trt.jobs.service import JobLimitError
from trt.jobs.state import JobStatus
from trt.kie.client import Limits
from trt.sandbox.driver import SandboxUser
from trt.sandbox.kie import kie_signature
from trt.telemetry.events import Event

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


# -- KIE callbacks: wake-ups, never results -------------------------------------------------
HMAC = "integrity-hmac-key"


def signed(task_id: str, key: str = HMAC) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": kie_signature(key, task_id, stamp)}


async def post_callback(
    bot: RunningBot, token: str, body: dict[str, object], headers: dict[str, str]
) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{bot.services.http_url}/kie/callback/{token}",
            data=json.dumps(body),
            headers={"Content-Type": "application/json", **headers},
        ) as response,
    ):
        return response.status


async def test_a_signed_callback_claiming_success_is_checked_with_record_info(
    tmp_path: Path,
) -> None:
    # The signature covers the task id and the time, not the body: a callback that says
    # "success, here are the files" while KIE's record says the task is still running moves
    # no money. The job times out and is refunded, as KIE's own record says it should.
    async with running_bot(
        tmp_path, callbacks=True, hmac_key=HMAC, engine={"deadline_factor": 0.08}
    ) as bot:
        await bot.give_money(USER, 100_000)
        user = await bot.client.user(USER, "Тест")
        job_id = await bot.create_job(USER, "[never] [nocallback] a fox that never comes")
        created = await bot.events.wait_for(Event.KIE_TASK_CREATED, job_id=job_id)
        other = await bot.create_job(USER, "a real fox")  # its files are real KIE files
        await bot.events.wait_for(Event.DELIVERED, job_id=other, timeout_s=30)
        real_urls = (await job_row(bot, other)).result_urls
        job = await job_row(bot, job_id)
        claim = {
            "code": 200,
            "msg": "Playground task completed successfully.",
            "data": {
                "taskId": created["task_id"],
                "state": "success",
                "resultJson": json.dumps({"resultUrls": real_urls}),
            },
        }
        mark = len(bot.events.records)
        assert (
            await post_callback(bot, job.callback_token, claim, signed(created["task_id"])) == 200
        )
        await bot.events.wait_for(Event.KIE_POLL, job_id=job_id, since=mark)  # asked KIE
        await bot.events.wait_for(Event.JOB_TIMED_OUT, job_id=job_id, timeout_s=30)
        await settled_outbox(bot, job_id)
        texts = [m.text for m in await user.messages()]
        assert any(text.startswith("❌ Не получилось") for text in texts), texts
        assert (await job_row(bot, job_id)).status == JobStatus.TIMED_OUT.value
        assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)  # only the real fox
        assert await bot.ledger_problems() == []


async def test_a_lost_create_never_adopts_another_jobs_task(tmp_path: Path) -> None:
    async with running_bot(
        tmp_path,
        callbacks=True,
        hmac_key=HMAC,
        engine={"reconcile_window_s": 2.0, "deadline_factor": 0.08},
    ) as bot:
        await bot.give_money(USER, 100_000)
        user = await bot.client.user(USER, "Тест")
        other = await bot.create_job(USER, "[nocallback] someone else's fox")
        await bot.events.wait_for(Event.DELIVERED, job_id=other, timeout_s=30)
        foreign_task = (await job_row(bot, other)).kie_task_id
        assert foreign_task is not None
        # The create's answer is lost and KIE never calls back for it.
        job_id = await bot.create_job(USER, "[lost] [nocallback] a lost fox")
        while (await job_row(bot, job_id)).status != JobStatus.RECONCILING.value:
            await bot.events.wait_for(Event.KIE_ERROR, job_id=job_id)
        job = await job_row(bot, job_id)
        claim = {"code": 200, "msg": "done", "data": {"taskId": foreign_task}}
        assert await post_callback(bot, job.callback_token, claim, signed(foreign_task)) == 200
        await bot.events.wait_for(Event.JOB_TIMED_OUT, job_id=job_id, timeout_s=30)
        finished = await job_row(bot, job_id)
        assert finished.kie_task_id is None  # the other job's task was not taken
        assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)
        photos = [m for m in await user.messages() if m.photo_file_id]
        assert len(photos) == 1  # the other job's picture reached its own job only


async def test_callbacks_for_unknown_tokens_store_nothing_and_big_bodies_are_refused(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, callbacks=True, hmac_key=HMAC) as bot:
        body = {"code": 200, "msg": "x", "data": {"taskId": "task-forged"}}
        for _ in range(20):
            status = await post_callback(bot, uuid.uuid4().hex, body, signed("task-forged"))
            assert status == 404
        huge = {"code": 200, "msg": "x" * 70_000, "data": {"taskId": "task-forged"}}
        assert await post_callback(bot, uuid.uuid4().hex, huge, signed("task-forged")) == 413
        huge_stamp = {"X-Webhook-Timestamp": "9" * 5000, "X-Webhook-Signature": "x"}
        assert await post_callback(bot, uuid.uuid4().hex, body, huge_stamp) == 401
        async with bot.services.database.unit_of_work(readonly=True) as session:
            stored = await session.scalar(select(func.count()).select_from(KieCallback))
        assert stored == 0
        metrics = (await bot.services.metrics.render()).decode()
        assert 'trt_kie_callbacks_refused_total{reason="unknown_token"} 20.0' in metrics
        assert 'trt_kie_callbacks_refused_total{reason="too_large"} 1.0' in metrics
        assert 'trt_kie_callbacks_refused_total{reason="bad_signature"} 1.0' in metrics


@SANDBOX_ONLY
async def test_old_callbacks_are_pruned(bot: RunningBot, user: SandboxUser) -> None:
    job_id = await bot.create_job(USER, "a fox")
    await bot.events.wait_for(Event.DELIVERED, job_id=job_id, timeout_s=30)
    async with bot.services.database.unit_of_work() as session:
        for age_days in (30, 1):
            session.add(
                KieCallback(
                    job_id=job_id,
                    task_id="t",
                    payload={},
                    received_at=utcnow() - timedelta(days=age_days),
                )
            )
    await bot.services.engine.sweep()
    async with bot.services.database.unit_of_work(readonly=True) as session:
        ages = list(await session.scalars(select(KieCallback.received_at)))
    assert len(ages) == 1
    assert utcnow() - ages[0] < timedelta(days=2)


# -- the other public endpoints --------------------------------------------------------------
async def test_readyz_says_status_only_and_metrics_need_the_token(tmp_path: Path) -> None:
    async with running_bot(tmp_path, http={"METRICS_TOKEN": "metrics-secret-token"}) as bot:
        base = bot.services.http_url
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/metrics") as response:
                assert response.status == 401
            headers = {"Authorization": "Bearer wrong-token-value"}
            async with http.get(base + "/metrics", headers=headers) as response:
                assert response.status == 401
            headers = {"Authorization": "Bearer metrics-secret-token"}
            async with http.get(base + "/metrics", headers=headers) as response:
                assert response.status == 200
                assert "trt_ledger_kopecks" in await response.text()

            async def unreachable() -> None:
                raise OSError("could not connect to postgres://trt:hunter2@db.internal:5432")

            bot.services.database.ping = unreachable  # type: ignore[method-assign]
            async with http.get(base + "/readyz") as response:
                assert response.status == 503
                assert await response.json() == {
                    "ready": False,
                    "database": "unavailable",
                    "role": "active",
                }


# -- quotas ---------------------------------------------------------------------------------
@SANDBOX_ONLY
async def test_a_failed_free_job_gives_its_slot_back_to_the_day_it_was_taken(
    bot: RunningBot, user: SandboxUser
) -> None:
    job_id = await bot.create_job(USER, "[slow:1] [fail:500] a free fox", slug="zimg")
    job = await job_row(bot, job_id)
    assert job.is_free
    today = job.free_day
    assert today is not None
    # The job was confirmed "yesterday" and fails after midnight: yesterday gets the slot back.
    async with bot.services.database.unit_of_work() as session:
        await session.execute(
            update(FreeUsage).where(FreeUsage.user_id == USER).values(day="2026-01-01")
        )
        await session.execute(update(Job).where(Job.id == job_id).values(free_day="2026-01-01"))
        session.add(FreeUsage(user_id=USER, day=today, used=1))  # a run taken today
    await bot.events.wait_for(Event.JOB_FAILED, job_id=job_id, timeout_s=30)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        used = dict((await session.execute(select(FreeUsage.day, FreeUsage.used))).all())
    assert used == {"2026-01-01": 0, today: 1}


async def test_two_confirms_at_once_cannot_pass_the_active_jobs_limit(
    tmp_path: Path, database_url: str | None
) -> None:
    async with running_bot(
        tmp_path, database_url=database_url, engine={"max_active_per_user": 1}
    ) as bot:
        await bot.give_money(USER, 100_000)
        results = await asyncio.gather(
            *(bot.create_job(USER, f"[never] fox {n}") for n in range(4)),
            return_exceptions=True,
        )
        created = [r for r in results if isinstance(r, str)]
        refused = [r for r in results if isinstance(r, JobLimitError)]
        assert (len(created), len(refused)) == (1, 3), results
