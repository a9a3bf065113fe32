"""The prompt assistant through the sandbox (issue 20): a Russian prompt for a model that wants
English is offered a translation, «✨ Улучшить промпт» on the confirmation offers a better one;
the user uses, edits or keeps it before anything is charged; the job carries the prompt that
went and keeps the typed one in history; a failing, slow or exhausted assistant leaves the
normal flow intact, the user's own prompt going as typed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.e2e_support import RunningBot, open_model, running_bot
from tests.e2e_support import tap_screen as tap
from trt.db.models import Job, PromptAssist
from trt.sandbox.driver import Message, SandboxUser
from trt.sandbox.kie import ChatScript
from trt.telemetry.events import Event

FUNDS = 100_000
TYPED = "рыжий кот в космосе, акварель"
TRANSLATED = "ryzhiy kot v kosmose, akvarel"  # the sandbox's stand-in for a translation
MORE_EN = ", highly detailed, expressive composition, soft natural light"
MORE_RU = ", высокая детализация, выразительная композиция, мягкий естественный свет"


def start(tmp_path: Path, database_url: str | None, **assistant: Any) -> Any:
    return running_bot(tmp_path, database_url=database_url, assistant=assistant)


@pytest.fixture
async def bot(tmp_path: Path, database_url: str | None) -> AsyncIterator[RunningBot]:
    async with start(tmp_path, database_url) as running:
        yield running
        assert await running.ledger_problems() == []


async def new_user(bot: RunningBot, user_id: int) -> SandboxUser:
    user = await bot.client.user(user_id, "Лев")
    await user.send("/start")
    await user.next_message()
    await bot.give_money(user_id, FUNDS)
    return user


async def typed_prompt(user: SandboxUser, model: str, prompt: str) -> Message:
    """Open `model`, send `prompt`; the screen that follows it (after «Перевожу…» when the
    assistant translates)."""
    await open_model(user, "🎨 Картинки и дизайн", model)
    await user.send(prompt)
    first = await user.next_message()
    if not first.text.startswith("🌐 Перевожу"):
        return first
    return (await user.next_event(("edit",))).message


async def to_confirmation(user: SandboxUser, screen: Message) -> Message:
    """Imagen 4 Fast asks the aspect ratio after the prompt."""
    assert screen.text.startswith("Формат кадра"), screen.text
    return await tap(user, "16:9 горизонтально", screen)


async def delivered_job(bot: RunningBot, user: SandboxUser, confirmation: Message) -> Job:
    assert "💰 Цена:" in confirmation.text
    await tap(user, "✅ Сгенерировать", confirmation)
    while True:
        message = (await user.next_event(("message", "edit"), timeout_s=30)).message
        if message.photo_file_id is not None:
            break
        assert not message.text.startswith("❌"), message.text
    async with bot.services.database.unit_of_work(readonly=True) as session:
        job = await session.scalar(select(Job).where(Job.user_id == user.user_id))
    assert job is not None
    return job


async def assists(bot: RunningBot, user_id: int) -> int:
    async with bot.services.database.unit_of_work(readonly=True) as session:
        count = await session.scalar(
            select(func.count()).select_from(PromptAssist).where(PromptAssist.user_id == user_id)
        )
    return int(count or 0)


async def test_a_russian_prompt_is_offered_a_translation_and_the_typed_one_stays_in_history(
    bot: RunningBot,
) -> None:
    user = await new_user(bot, 4101)
    offer = await typed_prompt(user, "Imagen 4 Fast", TYPED)
    assert offer.text.startswith("🌐 «Imagen 4 Fast» лучше понимает английский.")
    assert TRANSLATED in offer.text
    assert TYPED in offer.text
    assert "Пока ничего не списано" in offer.text
    assert offer.button_labels == ["✅ Использовать", "✏️ Изменить", "↩️ Оставить мой"]
    assert await bot.balance(4101) == (FUNDS, 0)  # nothing held while the offer is open
    [chat] = bot.sandbox.kie.chats
    assert chat["model"] == "gemini-3-flash"
    assert chat["stream"] is False
    assert chat["messages"][0]["content"].startswith("Translate the user's prompt")
    assert chat["messages"][1] == {"role": "user", "content": TYPED}

    confirmation = await to_confirmation(user, await tap(user, "✅ Использовать", offer))
    assert TRANSLATED in confirmation.text
    job = await delivered_job(bot, user, confirmation)
    assert job.params["prompt"] == TRANSLATED
    assert job.prompt_original == TYPED
    [task] = bot.sandbox.kie.tasks.values()
    assert task.prompt == TRANSLATED  # what KIE got

    await user.send("/history")
    listing = await user.next_message()
    card = await tap(user, next(b for b in listing.button_labels if "Imagen" in b), listing)
    assert f"«{TRANSLATED}»" in card.text
    assert f"✍️ Ваш текст: «{TYPED}»" in card.text
    events = [r for r in bot.events.records if r["event"] == Event.PROMPT_ASSISTED]
    assert [(e["kind"], e["status"], e["model"]) for e in events] == [("translate", "ok", "im4f")]


async def test_the_offer_can_be_kept_or_edited_and_the_confirmation_improves(
    bot: RunningBot,
) -> None:
    user = await new_user(bot, 4102)
    # «↩️ Оставить мой»: the typed prompt goes as typed, no original is kept.
    offer = await typed_prompt(user, "Imagen 4 Fast", TYPED)
    confirmation = await to_confirmation(user, await tap(user, "↩️ Оставить мой", offer))
    assert TYPED in confirmation.text
    # «✨ Улучшить промпт» on the confirmation: Imagen wants English, so the improvement is too.
    improved = await tap(user, "✨ Улучшить промпт", confirmation)
    if improved.text.startswith("✨ Улучшаю"):
        improved = (await user.next_event(("edit",))).message
    assert improved.text.startswith("✨ Улучшенное описание для «Imagen 4 Fast»:")
    assert TRANSLATED + MORE_EN in improved.text
    # ✏️ Изменить: the user's own edit goes exactly as typed.
    retype = await tap(user, "✏️ Изменить", improved)
    assert retype.text.startswith("✏️ Пришлите описание сообщением")
    assert retype.button_labels == ["✅ Использовать", "↩️ Оставить мой"]
    await user.send("red cat in space, watercolour, stars")
    confirmation = await user.next_message()
    assert "💰 Цена:" in confirmation.text
    assert "red cat in space, watercolour, stars" in confirmation.text
    job = await delivered_job(bot, user, confirmation)
    assert job.params["prompt"] == "red cat in space, watercolour, stars"
    assert job.prompt_original == TYPED
    assert await assists(bot, 4102) == 2


async def test_a_model_that_understands_russian_is_improved_in_russian(bot: RunningBot) -> None:
    user = await new_user(bot, 4103)
    await open_model(user, "🎨 Картинки и дизайн", "Nano Banana 2")
    await user.send(TYPED)
    screen = await user.next_message()  # no translation offered: the references come next
    assert screen.text.startswith("📎 Референсы")
    screen = await tap(user, "⏭ Пропустить", screen)
    screen = await tap(user, "16:9 горизонтально", screen)
    confirmation = await tap(user, "2K", screen)
    improved = await tap(user, "✨ Улучшить промпт", confirmation)
    if improved.text.startswith("✨ Улучшаю"):
        improved = (await user.next_event(("edit",))).message
    assert TYPED + MORE_RU in improved.text
    confirmation = await tap(user, "✅ Использовать", improved)
    assert TYPED + MORE_RU in confirmation.text
    assert (
        "Answer in the language the user wrote in."
        in bot.sandbox.kie.chats[0]["messages"][0]["content"]
    )
    job = await delivered_job(bot, user, confirmation)
    assert (job.params["prompt"], job.prompt_original) == (TYPED + MORE_RU, TYPED)


FAILURES = {
    "500": {"status": 500},
    "429": {"status": 429},
    "not-json": {"garbage": True},
    "empty": {"answer": ""},
    "timeout": {"delay_s": 3},
    # A model that wants English gets no Russian «translation» nor a Russian improvement.
    "not-english": {"answer": "рыжий кот в космосе, подробно"},
}


async def test_a_failing_assistant_leaves_the_flow_intact(
    tmp_path: Path, database_url: str | None
) -> None:
    """Each way the chat model fails, for the translation and for «✨ Улучшить промпт»."""
    async with start(tmp_path, database_url, timeout_s=1, per_minute=100) as bot:
        for number, (name, failure) in enumerate(FAILURES.items()):
            user_id = 4110 + number
            user = await new_user(bot, user_id)
            bot.sandbox.kie.chat_scripts.extend([ChatScript(**failure)] * 2)
            screen = await typed_prompt(user, "Imagen 4 Fast", TYPED)
            # The typed prompt is taken, the next question follows, the user is told why.
            assert screen.text.startswith(
                "⚠️ Помощник сейчас не ответил — описание уйдёт как вы его написали."
            ), name
            assert "Формат кадра" in screen.text
            confirmation = await tap(user, "16:9 горизонтально", screen)
            improved = await tap(user, "✨ Улучшить промпт", confirmation)
            if improved.text.startswith("✨ Улучшаю"):
                improved = (await user.next_event(("edit",))).message
            assert improved.text.startswith("⚠️ Помощник сейчас не ответил"), name
            assert "💰 Цена:" in improved.text  # the confirmation, as it was
            job = await delivered_job(bot, user, improved)
            assert (job.params["prompt"], job.prompt_original) == (TYPED, None)
            events = [
                r
                for r in bot.events.records
                if r["event"] == Event.PROMPT_ASSISTED and r.get("user_id") == user_id
            ]
            assert [e["status"] for e in events] == ["failed", "failed"], name
        assert await bot.client.violations() == []
        assert await bot.ledger_problems() == []


async def test_the_daily_allowance_and_the_rate_limit_are_kept(
    tmp_path: Path, database_url: str | None
) -> None:
    async with start(tmp_path, database_url, daily=2, per_minute=3) as bot:
        user = await new_user(bot, 4105)
        for _ in range(2):
            offer = await typed_prompt(user, "Imagen 4 Fast", TYPED)
            assert offer.text.startswith("🌐")
            await user.send("/cancel")
            await user.next_message()
        screen = await typed_prompt(user, "Imagen 4 Fast", TYPED)
        assert screen.text.startswith(
            "ℹ️ Помощник на сегодня исчерпан (2 в день) — описание уйдёт как вы его написали."
        )
        assert "Формат кадра" in screen.text
        assert len(bot.sandbox.kie.chats) == 2  # the third was not sent
        assert await assists(bot, 4105) == 2
    # Failures do not use the allowance, but count towards the rate limit.
    (tmp_path / "rate").mkdir()
    async with start(tmp_path / "rate", database_url, daily=10, per_minute=2) as bot:
        user = await new_user(bot, 4106)
        bot.sandbox.kie.chat_scripts.extend([ChatScript(status=500)] * 5)
        for _ in range(2):
            screen = await typed_prompt(user, "Imagen 4 Fast", TYPED)
            assert screen.text.startswith("⚠️ Помощник сейчас не ответил")
            await user.send("/cancel")
            await user.next_message()
        screen = await typed_prompt(user, "Imagen 4 Fast", TYPED)
        assert screen.text.startswith("ℹ️ Слишком частые запросы к помощнику")
        assert len(bot.sandbox.kie.chats) == 2


async def test_once_more_repeats_the_prompt_that_went_and_keeps_the_typed_one(
    bot: RunningBot,
) -> None:
    user = await new_user(bot, 4107)
    offer = await typed_prompt(user, "Imagen 4 Fast", TYPED)
    confirmation = await to_confirmation(user, await tap(user, "✅ Использовать", offer))
    await tap(user, "✅ Сгенерировать", confirmation)
    while (
        result := (await user.next_event(("message",), timeout_s=30)).message
    ).photo_file_id is None:
        pass
    again = await user.click("🔁 Ещё раз", result)
    assert again.answered
    confirmation = await user.next_message()
    assert "💰 Цена:" in confirmation.text
    assert TRANSLATED in confirmation.text
    assert "✨ Улучшить промпт" in confirmation.button_labels
    mark = len(bot.events.records)
    await tap(user, "✅ Сгенерировать", confirmation)
    await bot.events.wait_for(Event.JOB_CREATED, user_id=4107, since=mark)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        jobs = list(await session.scalars(select(Job).where(Job.user_id == 4107)))
    assert len(jobs) == 2
    assert {(j.params["prompt"], j.prompt_original) for j in jobs} == {(TRANSLATED, TYPED)}
    assert len(bot.sandbox.kie.chats) == 1  # the repeat asked the assistant nothing
