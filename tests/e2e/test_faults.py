"""Faults of Telegram and of the database, in-process (the sandbox over real HTTP, real
databases). After each: the ledger invariants hold, the job was charged once, the result was
delivered (at least once where Telegram's answer was lost after it acted) and the user was told.

KIE's faults (429 / 455 / 5xx / malformed / resets / timeouts / duplicate, forged and missing
callbacks) are in tests/e2e/test_engine.py; kill -9 at each step in the *_processes tests; the
whole matrix is in docs/operations.md § Failure modes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select

from tests.e2e_support import RunningBot, running_bot
from trt.db.models import HoldResolution, Job
from trt.jobs.state import JobStatus
from trt.leadership import asyncpg_dsn
from trt.sandbox.driver import SandboxUser
from trt.sandbox.telegram import MethodFault
from trt.telemetry.events import Event

USER = 4343
FUNDS = 100_000


@pytest.fixture
async def user(bot: RunningBot) -> SandboxUser:
    await bot.give_money(USER, FUNDS)
    return await bot.client.user(USER, "Тест")


async def generate(
    bot: RunningBot, user_id: int = USER, prompt: str = "a red fox", draft: str | None = None
) -> str:
    return await bot.create_job(user_id, prompt, draft=draft)


async def charged_once(bot: RunningBot, job_id: str) -> int:
    """The job is delivered and its hold captured once at its price; returns the price."""
    async with bot.services.database.unit_of_work(readonly=True) as session:
        job = await session.get(Job, job_id)
        assert job is not None
        assert job.status == JobStatus.DELIVERED.value
        resolution = await session.get(HoldResolution, job.hold_id)
    assert resolution is not None
    assert (resolution.outcome, resolution.captured_kop) == ("captured", job.price_kop)
    assert await bot.ledger_problems() == []
    return job.price_kop


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the sender's logic, no SQL
@pytest.mark.parametrize(
    ("fault", "most_photos"),
    [
        (MethodFault("sendPhoto", 500, "Internal Server Error", times=2), 1),
        (MethodFault("sendPhoto", 429, "Too Many Requests: retry after 1", retry_after=1), 1),
        # Telegram sent the photo, then its answer was lost: the one case that can repeat a
        # message (no Bot API call is idempotent); the charge is still once.
        (MethodFault("sendPhoto", 502, "Bad Gateway", after_effect=True), 2),
    ],
    ids=["500-twice", "429-retry-after", "502-after-sending"],
)
async def test_telegram_errors_on_the_result_are_retried_and_charged_once(
    bot: RunningBot, user: SandboxUser, fault: MethodFault, most_photos: int
) -> None:
    fault = dataclasses.replace(fault)  # the parameters are shared by both backends' runs
    bot.sandbox.telegram.faults.append(fault)
    job_id = await generate(bot)
    await bot.events.wait_for(Event.DELIVERED, job_id=job_id, timeout_s=30)
    price = await charged_once(bot, job_id)
    assert await bot.balance(USER) == (FUNDS - price, 0)
    assert fault.times == 0  # the fault was met
    calls = [r for r in bot.sandbox.telegram.requests if r.method == "sendPhoto"]
    if fault.retry_after:
        failed, sent = calls[0], calls[-1]
        assert sent.at - failed.at >= fault.retry_after  # retry_after waited out
    photos = [m for m in await user.messages() if m.photo_file_id]
    assert 1 <= len(photos) <= most_photos
    assert await bot.client.violations() == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # 12 paced tries: 14 s
async def test_a_result_telegram_keeps_refusing_is_refunded_and_the_user_told(
    bot: RunningBot, user: SandboxUser
) -> None:
    """Telegram fails the result for good (12 tries): the price comes back and the user is
    told why, by a text (which Telegram still takes)."""
    bot.sandbox.telegram.faults.append(
        MethodFault("sendPhoto", 500, "Internal Server Error", times=10**6)
    )
    job_id = await generate(bot)
    failed = await bot.events.wait_for(Event.JOB_FAILED, job_id=job_id, timeout_s=30)
    assert failed["amount_kop"] > 0
    async with bot.services.database.unit_of_work(readonly=True) as session:
        job = await session.get(Job, job_id)
    assert job is not None
    assert (job.status, job.error_code) == (JobStatus.FAILED.value, "delivery")
    assert await bot.balance(USER) == (FUNDS, 0)  # captured, then refunded in full
    assert await bot.ledger_problems() == []
    told = await user.next_event(("message",), timeout_s=10)
    while not told.message.text.startswith("❌"):
        told = await user.next_event(("message",), timeout_s=10)
    assert "Не удалось доставить результат" in told.message.text
    assert "Возвращено 7,60 ₽" in told.message.text


async def test_an_edit_that_changes_nothing_is_answered_and_never_sent(bot: RunningBot) -> None:
    """Tapping the button of the screen already shown: the tap is answered, nothing fails (the
    contract fixture checks the chain), and no edit Telegram would refuse as "message is not
    modified" is sent (the tap carries the message: the bot sees it shows the screen)."""
    user = await bot.client.user(USER + 1, "Тест")
    await user.send("/start")
    menu = await user.next_message()
    data = menu.button("💰 Баланс")["callback_data"]
    for _ in range(2):
        mark = len(bot.events.records)
        answer = await user.click_data(menu.message_id, data)
        assert answer.answered
        done = await bot.events.handled(
            Event.CALLBACK_RECEIVED, since=mark, callback_id=answer.query_id
        )
        assert done["event"] == Event.DISPATCH_OK
    errors = [r for r in bot.sandbox.telegram.requests if not r.ok]
    assert not any("message is not modified" in str(r.error) for r in errors)
    edits = [r for r in bot.sandbox.telegram.requests if r.method == "editMessageText"]
    assert len(edits) == 1  # the first tap changed the screen; the second sent nothing


async def test_telegram_5xx_in_a_handler_still_answers_the_tap(bot: RunningBot) -> None:
    user = await bot.client.user(USER + 2, "Тест")
    await user.send("/start")
    menu = await user.next_message()
    bot.sandbox.telegram.faults.append(MethodFault("editMessageText", 502, "Bad Gateway"))
    answer = await user.click("💰 Баланс", menu)
    assert answer.answered
    # The screen arrives (the sender retried the edit, or sent it anew).
    shown = (await user.next_event(("edit", "message"))).message
    assert "Баланс" in shown.text


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_connections_terminated_mid_transaction_lose_nothing(
    tmp_path: Path, database_url: str
) -> None:
    """For three seconds (longer, up to fifteen, until at least five were cut), every
    connection of the bot's that is inside a transaction or a statement is terminated, ten
    times a second, while 20 paid jobs run: each cut transaction rolls back, the work is
    retried, and every job ends delivered and charged once. (Since a statement that stands
    alone runs without a transaction block, docs/performance.md item 21, fewer connections
    sit inside one at any moment: three seconds alone once cut only four.)"""
    users = list(range(6000, 6020))
    async with running_bot(tmp_path, database_url=database_url, kie_generate_s=0.5) as bot:
        for user_id in users:
            await bot.give_money(user_id, FUNDS)
            bot.sandbox.telegram.ensure_user(user_id)
        jobs = [await generate(bot, user_id, f"fox {user_id}") for user_id in users]
        admin = await asyncpg.connect(asyncpg_dsn(database_url))
        terminated = 0
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            while loop.time() < started + 3.0 or (terminated < 5 and loop.time() < started + 15):
                killed = await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND state IN ('active', 'idle in transaction') "
                    "AND backend_type = 'client backend'"
                )
                terminated += len(killed)
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
        assert terminated >= 5, terminated  # connections really were cut mid-work
        for job_id in jobs:
            await bot.events.wait_for(
                (Event.DELIVERED, Event.JOB_FAILED, Event.JOB_TIMED_OUT),
                job_id=job_id,
                timeout_s=60,
            )
        async with bot.services.database.unit_of_work(readonly=True) as session:
            states = set(await session.scalars(select(Job.status).where(Job.id.in_(jobs))))
            captured = await session.scalar(
                select(func.count())
                .select_from(HoldResolution)
                .where(HoldResolution.outcome == "captured")
            )
        assert states == {JobStatus.DELIVERED.value}
        assert captured == len(jobs)
        assert await bot.ledger_problems() == []
        for chat in users:
            photos = [m for m in bot.sandbox.telegram.messages[chat].values() if m.get("photo")]
            assert len(photos) >= 1, chat  # at least once: a cut outbox mark may repeat it
