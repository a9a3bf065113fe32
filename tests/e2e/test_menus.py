"""The menus a new user walks through, end to end through the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.e2e_support import RunningBot, open_model, prompt_sent, running_bot
from trt.telemetry.events import Event

T = TypeVar("T")


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[RunningBot]:
    async with running_bot(tmp_path) as running:
        yield running


async def test_start_each_category_a_model_card_and_back(bot: RunningBot) -> None:
    alice = await bot.client.user(5001, "Алиса")
    await alice.send("/start")
    menu = await alice.next_message()
    assert menu.text.startswith("👋 Привет, Алиса!")
    assert menu.button_labels == [
        "🎨 Картинки и дизайн",
        "🖌 Редактирование фото",
        "✨ Улучшение фото",
        "🎬 Видео",
        "🎵 Музыка и голос",
        "💰 Баланс",
        "🕘 История",
        "❓ Помощь",
    ]
    for label, model in [
        ("🎨 Картинки и дизайн", "Nano Banana 2"),
        ("🖌 Редактирование фото", "Nano Banana Edit"),
        ("✨ Улучшение фото", "Удалить фон"),
        ("🎬 Видео", "Kling 2.6 ·"),
        ("🎵 Музыка и голос", "Suno V5"),
    ]:
        answer = await alice.click(label)
        assert answer.answered
        listing = (await alice.next_event(("edit",))).message
        assert "Выберите модель" in listing.text
        button = listing.button(model)
        assert " · от " in button["text"] or "бесплатно" in button["text"]
        await alice.click(button["text"], listing)
        card = (await alice.next_event(("edit",))).message
        assert "💰" in card.text
        assert "📎 Нужно:" in card.text
        await alice.click("🏠 Меню", card)
        await alice.next_event(("edit",))
    assert await bot.client.violations() == []
    assert (await bot.client.records())["unanswered_callbacks"] == []


async def test_pages_of_a_long_category(bot: RunningBot) -> None:
    bob = await bot.client.user(5002, "Bob", language_code="en")
    await bob.send("/start")
    await bob.next_message()
    await bob.click("🎨 Images & design")
    first = (await bob.next_event(("edit",))).message
    assert "▶️" in first.button_labels
    await bob.click("▶️", first)
    second = (await bob.next_event(("edit",))).message
    assert "◀️" in second.button_labels
    models_first = {label for label in first.button_labels if " · " in label}
    models_second = {label for label in second.button_labels if " · " in label}
    assert len(models_first) == 8
    assert models_second
    assert models_first.isdisjoint(models_second)


async def test_unknown_callback_is_answered_and_opens_the_menu(bot: RunningBot) -> None:
    carol = await bot.client.user(5003, "Carol")
    await carol.send("/start")
    menu = await carol.next_message()
    answer = await carol.click_data(menu.message_id, "test:unknown")
    assert answer.answered
    assert answer.text == "Кнопка устарела — открываю меню"
    reopened = (await carol.next_event(("edit", "message"))).message
    assert "Главное меню" in reopened.text


async def test_text_outside_a_flow_gets_a_hint_and_help_works(bot: RunningBot) -> None:
    dave = await bot.client.user(5004, "Dave")
    await dave.send("нарисуй кота")
    hint = await dave.next_message()
    assert "/start" in hint.text
    await dave.send("/help")
    help_text = await dave.next_message()
    assert "Поддержка: @trt_support" in help_text.text
    assert await bot.client.violations() == []


async def test_filters_run_on_the_event_loop_not_on_worker_threads(
    bot: RunningBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiogram sends a plain-function filter (a State, F.text) through asyncio.to_thread; a text
    # outside a flow crosses every flow's state filters on its way to the fallback, and a text
    # inside a flow matches one. None of it may leave the event loop (trt.bot.app).
    crossings: list[str] = []
    to_thread = asyncio.to_thread

    async def recorded(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        crossings.append(repr(function)[:120])
        return await to_thread(function, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", recorded)
    erin = await bot.client.user(5005, "Erin")
    await erin.send("нарисуй кота")
    assert "/start" in (await erin.next_message()).text
    await open_model(erin, "🎨 Картинки и дизайн", "Nano Banana 2")
    await prompt_sent(erin, "a cat in a hat")  # matched by Flow.collecting and F.text
    assert crossings == []
    assert await bot.client.violations() == []


async def test_taps_that_show_the_same_screen_send_no_edit_telegram_refuses(
    bot: RunningBot,
) -> None:
    # The fallback re-opens the menu; on a message that shows the menu already, an edit would
    # be answered 400 "message is not modified" (the sandbox counts that as a violation).
    dora = await bot.client.user(5004, "Дора")
    await dora.send("/start")
    menu = await dora.next_message()
    first = await dora.click_data(menu.message_id, "test:unknown")
    assert first.answered
    await dora.next_event(("edit",))  # the greeting becomes the menu: a real change
    mark = len(bot.sandbox.telegram.requests)
    for number in range(64):
        since = len(bot.events.records)
        answer = await dora.click_data(menu.message_id, f"zz:{number}")
        assert answer.answered
        await bot.events.handled(Event.CALLBACK_RECEIVED, since=since)  # handled to the end
    edits = [r for r in bot.sandbox.telegram.requests[mark:] if r.method.startswith("edit")]
    assert edits == []
    assert await bot.client.violations() == []
