"""The generation engine end to end: sandbox KIE and Telegram over real HTTP, real databases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from sqlalchemy import func, select

from tests.e2e_support import RunningBot, running_bot
from trt.billing.ledger import InsufficientFundsError
from trt.db.models import HoldResolution, Job, Outbox
from trt.jobs.service import JobLimitError
from trt.jobs.state import JobStatus
from trt.sandbox.driver import Message, SandboxUser
from trt.telemetry.events import Event

USER = 4242
PRICE_NB2_1K = 760  # 8 credits × $0.005 × 95 ₽/$ × 2 = 7.60 ₽
HMAC = "e2e-hmac-key"


async def start(
    bot: RunningBot,
    prompt: str = "a red fox",
    *,
    slug: str = "nb2",
    draft: str | None = None,
    **params: Any,
) -> str:
    return await bot.create_job(USER, prompt, slug=slug, draft=draft, **params)


async def job_row(bot: RunningBot, job_id: str) -> Job:
    async with bot.services.database.unit_of_work(readonly=True) as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def until_finished(bot: RunningBot, user: SandboxUser) -> list[Message]:
    """Every message the bot sends the user until a result or a failure arrives."""
    seen = []
    while True:
        message = (await user.next_event(("message", "edit"), timeout_s=30)).message
        seen.append(message)
        if message.media_file_id() or message.text.startswith(("❌", "✅")):
            return seen


async def settled_outbox(bot: RunningBot, job_id: str, timeout_s: float = 10) -> None:
    """Wait until the job's messages are marked sent (the relay's write after Telegram's
    answer: no event announces it, so this polls the database, bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        async with bot.services.database.unit_of_work(readonly=True) as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(Outbox)
                .where(Outbox.job_id == job_id, Outbox.sent_at.is_(None))
            )
        if pending == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"outbox of {job_id} not settled in {timeout_s} s")


@pytest.fixture
async def user(bot: RunningBot) -> SandboxUser:
    await bot.give_money(USER, 100_000)
    return await bot.client.user(USER, "Тест")


async def test_success_charges_exactly_the_price_and_delivers_once(
    bot: RunningBot, user: SandboxUser
) -> None:
    # Slow enough that the progress note goes out first (it is due a second after the task
    # is created; a note later than its result is skipped by design).
    job_id = await start(bot, "[slow:2] a red fox")
    messages = await until_finished(bot, user)
    result = messages[-1]
    assert result.photo_file_id is not None
    assert result.text == "✅ Готово: Nano Banana 2"
    assert any("Генерирую" in m.text for m in messages[:-1])
    # No chat action before the note: the note's arrival would clear it at once.
    assert not [r for r in bot.sandbox.telegram.requests if r.method == "sendChatAction"]
    await settled_outbox(bot, job_id)
    job = await job_row(bot, job_id)
    assert job.status == JobStatus.DELIVERED.value
    assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        resolution = await session.get(HoldResolution, job.hold_id)
    assert resolution is not None
    assert (resolution.outcome, resolution.captured_kop) == ("captured", PRICE_NB2_1K)
    photos = [m for m in await user.messages() if m.photo_file_id]
    assert len(photos) == 1
    assert await bot.ledger_problems() == []
    assert await bot.client.violations() == []


async def test_a_result_faster_than_its_progress_note_comes_alone(
    bot: RunningBot, user: SandboxUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The «Генерирую…» note is due a while after KIE took the task (here longer than the job
    takes): the result arrives alone, and the job's ending settled the note as skipped."""
    monkeypatch.setattr("trt.jobs.engine.PROGRESS_NOTE_AFTER_S", 60.0)
    job_id = await start(bot, "a quick fox")
    messages = await until_finished(bot, user)
    assert [m.photo_file_id is not None for m in messages] == [True]
    await settled_outbox(bot, job_id)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        notes = list(
            await session.scalars(
                select(Outbox.outcome).where(Outbox.job_id == job_id, Outbox.kind == "running")
            )
        )
    assert notes == ["skipped"]
    assert (await job_row(bot, job_id)).status == JobStatus.DELIVERED.value


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        ("[fail:400:Content policy violation]", "запрос отклонён правилами контента"),
        ("[fail:501:boom]", "генерация не удалась"),
        ("[http:402]", "сервис генерации временно недоступен"),
        ("[http:422]", "провайдер отклонил параметры запроса"),
        ("[http:401]", "сервис генерации временно недоступен"),
        ("[http:433]", "сервис генерации временно недоступен"),
        ("[http:505]", "модель временно отключена"),
    ],
)
async def test_failures_refund_and_say_why(
    bot: RunningBot, user: SandboxUser, prompt: str, reason: str
) -> None:
    job_id = await start(bot, prompt)
    messages = await until_finished(bot, user)
    failure = messages[-1]
    assert failure.text.startswith("❌ Не получилось: Nano Banana 2")
    assert reason in failure.text
    assert "Возвращено 7,60 ₽" in failure.text  # the exact refund, kopecks and all
    assert (await job_row(bot, job_id)).status == JobStatus.FAILED.value
    assert await bot.balance(USER) == (100_000, 0)
    assert await bot.ledger_problems() == []


@pytest.mark.parametrize("code", [429, 455])
async def test_retryable_create_errors_are_retried_and_charged_once(
    bot: RunningBot, user: SandboxUser, code: int
) -> None:
    async with ClientSession() as http:
        await http.post(
            f"{bot.sandbox.kie_app.url}/sandbox/kie/scripts",
            json={"match": "retry me", "create_status": code, "times": 2},
        )
    job_id = await start(bot, "retry me")
    messages = await until_finished(bot, user)
    assert messages[-1].photo_file_id is not None
    job = await job_row(bot, job_id)
    assert job.attempts == 3
    assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)
    assert len(bot.sandbox.kie.tasks) == 1


@pytest.mark.parametrize("prompt", ["[lost]", "[malformed]", "[reset]"])
async def test_unknown_create_outcome_is_never_resent_and_refunded_without_callbacks(
    bot: RunningBot, user: SandboxUser, prompt: str
) -> None:
    job_id = await start(bot, prompt)
    messages = await until_finished(bot, user)
    assert messages[-1].text.startswith("❌")
    job = await job_row(bot, job_id)
    assert job.status == JobStatus.TIMED_OUT.value
    assert job.attempts == 1  # createTask was sent once, never again
    assert await bot.balance(USER) == (100_000, 0)


async def test_never_finishing_task_times_out_and_refunds(tmp_path: Path) -> None:
    async with running_bot(tmp_path, engine={"deadline_factor": 0.04}) as bot:
        await bot.give_money(USER, 100_000)
        user = await bot.client.user(USER, "Тест")
        job_id = await start(bot, "[never]")
        messages = await until_finished(bot, user)
        assert "слишком много времени" in messages[-1].text
        assert (await job_row(bot, job_id)).status == JobStatus.TIMED_OUT.value
        assert await bot.balance(USER) == (100_000, 0)


async def test_double_confirm_makes_one_job_and_one_hold(
    bot: RunningBot, user: SandboxUser
) -> None:
    first = await start(bot, draft="draft-1")
    second = await start(bot, draft="draft-1")
    assert first == second
    await until_finished(bot, user)
    assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)


async def test_limits_and_insufficient_funds_write_nothing(
    bot: RunningBot, user: SandboxUser
) -> None:
    await start(bot, "[slow:5] one")
    await start(bot, "[slow:5] two")
    with pytest.raises(JobLimitError):
        await start(bot, "three")
    poor = 777
    await bot.give_money(poor, 100)
    with pytest.raises(InsufficientFundsError):
        await bot.services.jobs.create(
            user_id=poor,
            chat_id=poor,
            lang="ru",
            model_slug="nb2",
            params={"prompt": "x"},
            draft_key="poor-1",
        )
    async with bot.services.database.unit_of_work(readonly=True) as session:
        count = await session.scalar(
            select(func.count()).select_from(Job).where(Job.user_id == poor)
        )
    assert count == 0
    assert await bot.balance(poor) == (100, 0)


async def test_callbacks_complete_jobs_duplicates_and_forgeries_are_harmless(
    tmp_path: Path,
) -> None:
    async with running_bot(
        tmp_path, callbacks=True, hmac_key=HMAC, engine={"poll_scale": 50}
    ) as bot:
        await bot.give_money(USER, 100_000)
        user = await bot.client.user(USER, "Тест")
        job_id = await start(bot, "[dupcallback] a cat")
        messages = await until_finished(bot, user)
        assert messages[-1].photo_file_id is not None
        job = await job_row(bot, job_id)
        assert job.callback_payload is not None  # completed by the callback, not by polling
        assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)
        base = bot.services.http_url
        async with ClientSession() as http:
            forged = {
                "code": 200,
                "msg": "ok",
                "data": {"taskId": job.kie_task_id, "state": "fail"},
            }
            async with http.post(
                f"{base}/kie/callback/{job.callback_token}", json=forged
            ) as response:
                assert response.status == 401  # no valid signature
            async with http.post(f"{base}/kie/callback/not-a-token", json=forged) as response:
                assert response.status in (401, 404)
        # The photo reaches the user before the outbox commits the delivery: await that.
        await bot.events.wait_for(Event.DELIVERED, job_id=job_id)
        assert (await job_row(bot, job_id)).status == JobStatus.DELIVERED.value
        photos = [m for m in await user.messages() if m.photo_file_id]
        assert len(photos) == 1


async def test_lost_callback_is_completed_by_polling(tmp_path: Path) -> None:
    async with running_bot(tmp_path, callbacks=True) as bot:
        await bot.give_money(USER, 100_000)
        user = await bot.client.user(USER, "Тест")
        job_id = await start(bot, "[nocallback] a cat")
        messages = await until_finished(bot, user)
        assert messages[-1].photo_file_id is not None
        assert (await job_row(bot, job_id)).callback_payload is None


async def test_lost_create_is_adopted_from_its_callback(tmp_path: Path) -> None:
    async with running_bot(
        tmp_path, callbacks=True, engine={"reconcile_window_s": 30, "poll_scale": 50}
    ) as bot:
        await bot.give_money(USER, 100_000)
        user = await bot.client.user(USER, "Тест")
        job_id = await start(bot, "[lost] a cat")
        messages = await until_finished(bot, user)
        assert messages[-1].photo_file_id is not None
        job = await job_row(bot, job_id)
        assert job.attempts == 1
        assert job.kie_task_id is not None
        assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)


async def test_a_user_who_blocked_the_bot_is_charged_and_the_job_counts_as_delivered(
    bot: RunningBot, user: SandboxUser
) -> None:
    await user.block_bot()
    job_id = await start(bot, "[slow:0.3] a fox")
    delivered = await bot.events.wait_for(Event.DELIVERED, job_id=job_id, timeout_s=20)
    assert delivered["outcome"] == "blocked"
    assert (await job_row(bot, job_id)).status == JobStatus.DELIVERED.value
    assert await bot.balance(USER) == (100_000 - PRICE_NB2_1K, 0)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        outcomes = set(await session.scalars(select(Outbox.outcome).where(Outbox.job_id == job_id)))
    assert "blocked" in outcomes
    assert not [m for m in await user.messages() if m.from_bot]
