"""The operator's panel through the sandbox: nobody else gets in, figures match the database,
knobs take effect at once and are audited, users can be blocked, a job refunded once."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.e2e_support import RunningBot, running_bot
from trt.bot.callbacks import ManualVerdict
from trt.bot.routers.admin import ADMIN_COMMANDS, Admin
from trt.catalog.pricing import format_money
from trt.db.models import AuditEntry, Job, LedgerPosting, RuntimeSetting, User
from trt.sandbox.driver import Message, SandboxUser
from trt.telemetry.events import Event

ADMIN = 9100
FUNDS = 100_000


@pytest.fixture
async def bot(tmp_path: Path, database_url: str | None) -> AsyncIterator[RunningBot]:
    async with running_bot(tmp_path, database_url=database_url, admin_ids=(ADMIN,)) as running:
        yield running
        assert await running.ledger_problems() == []
        assert await running.client.violations() == []


async def tap(user: SandboxUser, label: str, message: Message) -> Message:
    answer = await user.click(label, message)
    assert answer.answered
    return (await user.next_event(("edit", "message"))).message


async def snapshot(bot: RunningBot) -> tuple[int, int, int, int]:
    """What an admin action would change: postings, settings, audit entries, blocked users."""
    async with bot.services.database.unit_of_work(readonly=True) as session:
        return (
            int(await session.scalar(select(func.count()).select_from(LedgerPosting)) or 0),
            int(await session.scalar(select(func.count()).select_from(RuntimeSetting)) or 0),
            int(await session.scalar(select(func.count()).select_from(AuditEntry)) or 0),
            int(await session.scalar(select(func.count()).where(User.is_blocked.is_(True))) or 0),
        )


async def test_a_non_admin_is_refused_every_admin_command_and_button(bot: RunningBot) -> None:
    victim = 9201
    await bot.give_money(victim, FUNDS)
    intruder = await bot.client.user(9202, "Чужой")
    await intruder.send("/start")
    menu = await intruder.next_message()
    before = await snapshot(bot)
    arguments = {
        "stats": "30",
        "user": str(victim),
        "adjust": f"{victim} 1000 gift",
        "block": str(victim),
        "unblock": str(victim),
        "model": "nb2 off",
        "price": "nb2 5",
        "markup": "3",
        "rate": "200",
        "refund_job": "x",
    }
    commands = list(ADMIN_COMMANDS)
    for command in commands:
        await intruder.send(f"/{command} {arguments.get(command, '')}".strip())
        reply = await intruder.next_message()
        assert reply.text.startswith("Я понимаю кнопки"), (command, reply.text)
    buttons = [
        Admin(section=section, arg=arg).pack()
        for section, arg in (
            ("panel", ""),
            ("stats", "30"),
            ("chart", "30"),
            ("users", ""),
            ("catalog", ""),
            ("jobs", ""),
            ("block", str(victim)),
            ("unblock", str(victim)),
        )
    ]
    buttons.append(ManualVerdict(payment="0" * 32, approve=True).pack())
    for data in buttons:
        answer = await intruder.click_data(menu.message_id, data)
        assert (answer.answered, answer.text) == (True, "Это не ваша кнопка."), data
    assert await snapshot(bot) == before
    assert await bot.balance(victim) == (FUNDS, 0)
    denied = [
        r
        for r in bot.events.records
        if r.get("reason_code") == "ACCESS_DENIED" and r.get("user_id") == 9202
    ]
    assert len(denied) == len(commands) + len(buttons)


async def test_stats_match_a_scripted_day_and_the_chart_is_a_png(bot: RunningBot) -> None:
    for user_id in (9301, 9302, 9303):
        await bot.give_money(user_id, FUNDS, key=f"day:{user_id}")
        await bot.client.user(user_id, "Гость")
    jobs = bot.services.jobs
    made = []
    for index, prompt in enumerate(["a fox", "a cat", "[fail] a dog"]):
        created = await jobs.create(
            user_id=9301 + index,
            chat_id=9301 + index,
            lang="ru",
            model_slug="nb2",
            params={"prompt": prompt},
            draft_key=f"day-{index}",
        )
        made.append(created.job.id)
    ends = (Event.HOLD_CAPTURED, Event.HOLD_CAPTURED, Event.HOLD_RELEASED)
    for job_id, end in zip(made, ends, strict=True):
        await bot.events.wait_for(end, job_id=job_id, timeout_s=20)
    for job_id in made[:2]:  # the statuses read twice below must not move in between
        await bot.events.wait_for(Event.DELIVERED, job_id=job_id, timeout_s=20)
    stats = await bot.services.dispatcher["operations"].stats(1)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        users = int(await session.scalar(select(func.count(User.id))) or 0)
        statuses = dict(
            (await session.execute(select(Job.status, func.count()).group_by(Job.status))).all()
        )
    assert stats.users_total == users
    assert stats.users_new == users
    assert sum(stats.jobs_by_status.values()) == 3
    assert stats.jobs_by_model["nb2"] == 3
    assert dict(stats.jobs_by_status) == statuses
    price = FUNDS - (await bot.balance(9301))[0]
    assert stats.revenue_kop == 2 * price
    assert (stats.refunds, stats.refunded_kop) == (1, price)
    assert stats.failure_rate_by_model == {"nb2": pytest.approx(1 / 3)}
    assert sum(stats.failures_by_code.values()) == 1
    assert stats.average_result_s is not None
    admin = await bot.client.user(ADMIN, "Админ")
    await admin.send("/admin")
    panel = await admin.next_message()
    screen = await tap(admin, "📊 Статистика", panel)
    assert "Пользователи: всего" in screen.text
    assert "Баланс KIE:" in screen.text
    await admin.click("📈 График за 30 дней", screen)
    photo = await admin.next_message()
    assert photo.photo_file_id is not None
    image = Image.open(io.BytesIO(await admin.download(photo.photo_file_id)))
    assert image.format == "PNG"
    assert image.size == (900, 420)


async def test_a_price_override_shows_at_once_and_is_audited(bot: RunningBot) -> None:
    await bot.give_money(9401, FUNDS)
    user = await bot.client.user(9401, "Вера")
    admin = await bot.client.user(ADMIN, "Админ")
    pipeline = bot.services.pipeline
    model = pipeline.catalog.get("nb2")
    assert model is not None
    before_kop = pipeline.cheapest_quote(model).amount_kop
    await admin.send("/price nb2 4")
    done = await admin.next_message()
    after_kop = pipeline.cheapest_quote(model).amount_kop
    assert after_kop == before_kop * 2  # markup 4 instead of the configured 2
    assert done.text.startswith("Модель «Nano Banana 2»: теперь от")
    await user.send("/start")
    menu = await user.next_message()
    listing = await tap(user, "🎨 Картинки и дизайн", menu)
    label = next(b for b in listing.button_labels if b.startswith("Nano Banana 2 ·"))
    card = await tap(user, label, listing)
    price_text = format_money(after_kop)  # what every screen shows for an amount
    assert f"💰 от {price_text}" in card.text
    await tap(user, "▶️ Начать", card)
    await user.send("маяк")
    screen = await user.next_message()
    while "💰 Цена" not in screen.text:  # the first choices are the cheapest (1K)
        screen = await tap(user, screen.button_labels[0], screen)
    assert f"💰 Цена: {price_text}" in screen.text
    async with bot.services.database.unit_of_work(readonly=True) as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.target == "model:nb2:markup")
        )
    assert entry is not None
    assert (entry.admin_id, entry.before, entry.after) == (ADMIN, None, "4")
    await admin.send("/price nb2 reset")
    await admin.next_message()
    assert pipeline.cheapest_quote(model).amount_kop == before_kop


async def test_an_admin_blocks_adjusts_and_refunds_a_job_once(bot: RunningBot) -> None:
    await bot.give_money(9501, FUNDS)
    user = await bot.client.user(9501, "Вера")
    admin = await bot.client.user(ADMIN, "Админ")
    await admin.send("/adjust 9501 -100 goodwill test")
    assert (await admin.next_message()).text.startswith("Баланс 9501 изменён на −100 ₽")
    assert await bot.balance(9501) == (FUNDS - 100_00, 0)
    await admin.send("/adjust 9501 -100000 too much")
    assert (await admin.next_message()).text.startswith("Нельзя списать больше доступного")
    created = await bot.services.jobs.create(
        user_id=9501,
        chat_id=9501,
        lang="ru",
        model_slug="nb2",
        params={"prompt": "a fox"},
        draft_key="refund-me",
    )
    await bot.events.wait_for(Event.DELIVERED, job_id=created.job.id, timeout_s=20)
    paid = (await bot.balance(9501))[0]
    await admin.send(f"/refund_job {created.job.id}")
    assert (await admin.next_message()).text.startswith("↩️ Возвращено")
    await admin.send(f"/refund_job {created.job.id}")
    assert (await admin.next_message()).text == "Оплата за эту задачу уже возвращена."
    assert (await bot.balance(9501))[0] == paid + created.job.price_kop
    await admin.send("/user 9501")
    card = await admin.next_message()
    assert "Баланс:" in card.text
    await admin.click("🚫 Заблокировать", card)
    blocked = await admin.next_message()
    assert blocked.text.startswith("🚫 Пользователь 9501 заблокирован.")
    await user.send("/start")
    notice = await user.next_message()
    assert notice.text.startswith("Доступ к боту ограничен.")
    async with bot.services.database.unit_of_work(readonly=True) as session:
        actions = list(await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions == ["adjust", "refund_job", "block"]


async def test_a_broadcast_from_preview_to_done_skips_who_blocked_the_bot(bot: RunningBot) -> None:
    admin = await bot.client.user(ADMIN, "Админ")
    users = [await bot.client.user(9600 + i, "Гость") for i in range(12)]
    for user in users:
        await user.send("/start")
        await user.next_message()
    await users[0].block_bot()
    english = await bot.client.user(9650, "Emma", language_code="en")
    await english.send("/start")
    await english.next_message()
    await admin.send("/broadcast")
    assert (await admin.next_message()).text.startswith("📣 Пришлите текст рассылки")
    await admin.send("Скидка 20% до воскресенья")
    preview = await admin.next_message()
    assert preview.text == "Скидка 20% до воскресенья"
    control = await admin.next_message()
    assert "Получателей: 14" in control.text  # 12 guests, Emma, the admin
    control = await tap(admin, "русский", control)
    assert "Получателей: 13 · сегмент: русский" in control.text
    await admin.click("🚀 Отправить", control)
    service = bot.services.broadcasts
    broadcast_id = 1
    while (progress := await service.progress(broadcast_id)) is None or progress.status != "done":
        await admin.next_event(("edit", "message"), timeout_s=20)
    assert (progress.total, progress.sent, progress.blocked) == (13, 12, 1)
    for user in users[1:]:
        got = [m for m in await user.messages() if m.from_bot and "Скидка" in m.text]
        assert len(got) == 1
        assert got[0].text == "Скидка 20% до воскресенья"
    assert not [m for m in await english.messages() if "Скидка" in m.text]
    # Who blocked the bot is left out of the next broadcast.
    assert await service.audience({"kind": "lang", "lang": "ru"}) == 12
    async with bot.services.database.unit_of_work(readonly=True) as session:
        actions = list(await session.scalars(select(AuditEntry.action)))
    assert actions == ["broadcast"]


async def test_a_broadcast_pauses_resumes_and_cancels(bot: RunningBot) -> None:
    service = bot.services.broadcasts
    for i in range(5):
        await bot.client.user(9700 + i, "Гость")
        await bot.services.dispatcher["users"].touch(9700 + i, None, "ru")
    broadcast_id = await service.create(
        admin_id=ADMIN, text="пауза", segment={"kind": "all"}, rate_per_s=0.5
    )
    assert await service.start(broadcast_id, admin_id=ADMIN) == 5
    assert await service.start(broadcast_id, admin_id=ADMIN) == 0  # a draft starts once
    assert await service.set_status(broadcast_id, "paused", admin_id=ADMIN) == "paused"
    assert await service.set_status(broadcast_id, "paused", admin_id=ADMIN) is None
    assert await service.set_status(broadcast_id, "running", admin_id=ADMIN) == "running"
    assert await service.set_status(broadcast_id, "cancelled", admin_id=ADMIN) == "cancelled"
    assert await service.set_status(broadcast_id, "running", admin_id=ADMIN) is None
    progress = await service.progress(broadcast_id)
    assert progress is not None
    assert progress.status == "cancelled"
    assert progress.sent <= 2  # at 0.5 / s, a cancel seconds later stops it early


async def test_alerts_reach_admins_once_per_cooldown(bot: RunningBot) -> None:
    admin = await bot.client.user(ADMIN, "Админ")
    # The alerts loop checks once as the instance starts leading: let it see plenty first.
    kie = bot.sandbox.kie
    await kie.wait_for(lambda: any(path == "/api/v1/chat/credit" for _m, path, _t in kie.requests))
    kie.credits = 10
    await bot.give_money(9801, FUNDS)
    for index in range(5):
        created = await bot.services.jobs.create(
            user_id=9801,
            chat_id=9801,
            lang="ru",
            model_slug="nb2",
            params={"prompt": "[fail] a fox"},
            draft_key=f"alert-{index}",
        )
        await bot.events.wait_for(Event.HOLD_RELEASED, job_id=created.job.id, timeout_s=20)
    assert sorted(await bot.services.alerts.check()) == ["failing:nb2", "kie_credits"]
    texts = sorted([(await admin.next_message()).text for _ in range(2)])
    assert texts[0].startswith("⚠️ Модель nb2 часто падает: 100% из 5 задач за час.")
    assert texts[1].startswith("⚠️ На балансе KIE осталось 10 кредитов")
    assert await bot.services.alerts.check() == []  # the same problems: quiet until cooldown
