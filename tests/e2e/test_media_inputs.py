"""Video, audio and voice inputs as a user sends them, the answers beyond the limits, and
one-tap follow-ups that take a result as the next model's input (issue 19)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update as sa_update

from tests.e2e_support import RunningBot, prompt_sent, running_bot
from tests.e2e_support import tap_screen as tap
from trt.bot.callbacks import StartModel
from trt.catalog.pricing import format_money
from trt.catalog.rules import telegram_reference
from trt.db.models import JobResult
from trt.sandbox.driver import Message, SandboxUser
from trt.sandbox.media import render_png, sample
from trt.telemetry.events import Event

FUNDS = 2_000_000


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[RunningBot]:
    async with running_bot(tmp_path, callbacks=True) as running:
        running.services.relay.sender.per_chat_interval_s = 0.0
        yield running


async def start(bot: RunningBot, user_id: int, slug: str) -> tuple[SandboxUser, Message]:
    user = await bot.client.user(user_id, "Вера")
    await bot.give_money(user_id, FUNDS, key=f"media:{user_id}")
    await user.send("/start")
    menu = await user.next_message()
    await user.click_data(menu.message_id, StartModel(slug=slug).pack())
    return user, (await user.next_event(("edit", "message"))).message


async def generate(bot: RunningBot, user: SandboxUser, screen: Message) -> Message:
    """Confirm, wait until the job is delivered, and return the message carrying the result's
    buttons (the last of the result's messages); later events are read from there on."""
    since = len(bot.events.records)
    await tap(user, "✅ Сгенерировать", screen)
    created = await bot.events.wait_for(
        Event.JOB_CREATED, user_id=user.user_id, since=since, timeout_s=30
    )
    await bot.events.wait_for(Event.DELIVERED, job_id=created["job_id"], timeout_s=30)
    user.cursor = await bot.client.last_event()
    return await user.last_bot_message()


async def until_result(user: SandboxUser) -> Message:
    while True:
        message = (await user.next_event(("message", "edit"), timeout_s=30)).message
        if message.media_file_id() or message.text.startswith("❌"):
            return message


async def test_a_talking_avatar_takes_a_photo_and_a_voice_priced_by_its_length(
    bot: RunningBot,
) -> None:
    user, screen = await start(bot, 9101, "klavs")
    assert screen.text.startswith("📎 Фото лица для «Говорящий аватар Kling»: пришлите фото")
    await user.send_file(render_png("face", 128, 128))
    screen = await user.next_message()
    assert screen.text.startswith("📎 Голос для «Говорящий аватар Kling»: пришлите аудио")
    assert "Длительность: от 1 до 15 с" in screen.text
    # Beyond the limits: a photo, a voice of 40 s, an audio file without a length.
    await user.send_file(render_png("not a voice", 64, 64))
    assert "нужен формат MPEG, WAV, AAC, MP4, OGG" in (await user.next_message()).text
    await user.send_file(
        sample("sample.ogg"), filename="v.ogg", mime_type="audio/ogg", kind="voice", duration_s=40
    )
    assert "длительность от 1 до 15 с, а у файла 40 с" in (await user.next_message()).text
    await user.send_file(
        sample("sample.mp3"), filename="v.mp3", mime_type="audio/mpeg", as_photo=False
    )
    assert "Не видно длительности файла" in (await user.next_message()).text
    assert await bot.balance(9101) == (FUNDS, 0)
    # A voice message of 7 s: taken, and the price is 7 s × 8 credits.
    await user.send_file(
        sample("sample.ogg"), filename="v.ogg", mime_type="audio/ogg", kind="voice", duration_s=7
    )
    screen = await user.next_message()
    assert screen.text.startswith("✍️ Описание")
    screen = await prompt_sent(user, "говорит спокойно")  # the translation offer: kept mine
    assert "Голос: 1 аудио, 7 с" in screen.text
    pipeline = bot.services.pipeline
    price = pipeline.quote(
        "klavs",
        {"image_url": "tg:x", "audio_url": telegram_reference("y", 7), "prompt": "p"},
    )
    assert price.credits == 56
    assert f"💰 Цена: {format_money(price.amount_kop)}" in screen.text
    await tap(user, "✅ Сгенерировать", screen)
    result = await until_result(user)
    assert result.raw.get("video") is not None
    task = next(t for t in bot.sandbox.kie.tasks.values() if t.model == "kling/ai-avatar-standard")
    audio = task.body["input"]["audio_url"]
    assert audio.startswith(bot.sandbox.kie.base_url + "/files/uploads/")
    assert audio.endswith(".ogg")  # the voice's bytes, named by what they are
    assert await bot.balance(9101) == (FUNDS - price.amount_kop, 0)
    assert await bot.client.violations() == []


async def test_a_video_whose_bytes_are_a_picture_is_refunded_with_a_clear_reason(
    bot: RunningBot,
) -> None:
    user, screen = await start(bot, 9102, "topazv")
    assert "пришлите видео" in screen.text
    # The client says video/mp4; the bytes are a PNG. Telegram passes it on; the engine
    # reads the bytes before anything reaches KIE, and the money comes back.
    await user.send_file(
        render_png("fake", 64, 64),
        filename="fake.mp4",
        mime_type="video/mp4",
        kind="video",
        duration_s=4,
    )
    screen = await user.next_message()
    screen = await tap(user, "×2", screen)
    await tap(user, "✅ Сгенерировать", screen)
    told = await until_result(user)
    assert "не является видео" in told.text
    assert await bot.balance(9102) == (FUNDS, 0)
    assert not [t for t in bot.sandbox.kie.tasks.values() if t.model == "topaz/video-upscale"]


async def test_a_result_goes_on_to_the_next_model_without_a_new_upload(bot: RunningBot) -> None:
    user, screen = await start(bot, 9103, "nb")
    await user.send("маяк на закате")
    screen = await user.next_message()
    screen = await tap(user, "1:1 квадрат", screen)
    await tap(user, "✅ Сгенерировать", screen)
    result = await until_result(user)
    assert result.photo_file_id is not None
    assert "⬆️ Улучшить" in result.button_labels
    # ⬆️ Улучшить: Topaz with this result as its photo; only the factor is asked.
    await user.click("⬆️ Улучшить", result)
    screen = await user.next_message()
    assert screen.text.startswith("Увеличение")
    screen = await tap(user, "×2", screen)
    assert "Фото: 1 фото" in screen.text
    await tap(user, "✅ Сгенерировать", screen)
    upscaled = await until_result(user)
    assert upscaled.photo_file_id is not None
    task = next(t for t in bot.sandbox.kie.tasks.values() if t.model == "topaz/image-upscale")
    uploaded = task.body["input"]["image_url"]
    name = uploaded.rsplit("/", 1)[-1]
    source = next(t for t in bot.sandbox.kie.tasks.values() if t.model == "google/nano-banana")
    # The upload is the very file the user received (its bytes, not KIE's URL again).
    assert bot.sandbox.kie.uploads[name].data == await user.download(result.photo_file_id)
    assert source.task_id != task.task_id
    # Someone else's result: refused, nothing started.
    other = await bot.client.user(9104, "Чужой")
    data = result.button("⬆️ Улучшить")["callback_data"]
    answer = await other.click_data(result.message_id, data)
    assert answer.text == "Это не ваша кнопка."
    assert await bot.client.violations() == []


async def test_music_is_extended_and_a_video_result_upscaled_by_its_length(
    bot: RunningBot,
) -> None:
    user, screen = await start(bot, 9105, "suno")
    assert screen.text.startswith("Как написать песню")
    screen = await tap(user, "По описанию", screen)
    await user.send("летняя песня про море")
    screen = await user.next_message()
    screen = await tap(user, "нет", screen)
    song = await generate(bot, user, screen)
    assert {"🎵 Продлить", "🎤 Кавер"} <= set(song.button_labels)
    await user.click("🎵 Продлить", song)
    screen = await user.next_message()
    assert "Suno Продолжение" in screen.text
    assert "💰 Цена:" in screen.text
    extended = await generate(bot, user, screen)
    assert "🎵 Продлить" in extended.button_labels
    task = next(t for t in bot.sandbox.kie.tasks.values() if t.family.value == "suno_extend")
    assert task.body["uploadUrl"].startswith(bot.sandbox.kie.base_url + "/files/uploads/")
    assert task.body["defaultParamFlag"] is False

    # A video result carries Telegram's length; Topaz Video is priced by it.
    user, screen = await start(bot, 9106, "grokt2v")
    await user.send("волны на закате")
    screen = await user.next_message()
    for label in ("16:9 горизонтально", "6 с", "480p"):
        screen = await tap(user, label, screen)
    clip = await generate(bot, user, screen)
    seconds = clip.raw["video"]["duration"]
    await user.click("⬆️ Улучшить видео", clip)
    screen = await user.next_message()
    screen = await tap(user, "×2", screen)
    price = bot.services.pipeline.quote(
        "topazv", {"video_url": telegram_reference("v", seconds), "upscale_factor": "2"}
    )
    assert f"💰 Цена: {format_money(price.amount_kop)}" in screen.text
    await tap(user, "✅ Сгенерировать", screen)
    assert (await until_result(user)).raw.get("video") is not None
    await asyncio.gather(
        *(
            bot.events.wait_for(Event.DELIVERED, job_id=job.id, timeout_s=30)
            for job in await bot.services.jobs.history(9106)
        )
    )
    assert await bot.ledger_problems() == []
    assert await bot.client.violations() == []


async def test_a_follow_up_tapped_before_the_delivery_is_recorded_takes_the_tapped_file(
    bot: RunningBot,
) -> None:
    """The result message is out a moment before the relay stores its file ids; a tap in that
    moment takes the file of the message tapped."""
    user, screen = await start(bot, 9107, "nb")
    await user.send("маяк на закате")
    screen = await user.next_message()
    screen = await tap(user, "1:1 квадрат", screen)
    result = await generate(bot, user, screen)
    # As if the relay had not yet recorded the delivery (sandbox result URLs are not https,
    # so only a recorded Telegram file could serve).
    async with bot.services.database.unit_of_work() as session:
        await session.execute(sa_update(JobResult).values(telegram_file_id=None))
    await user.click("⬆️ Улучшить", result)
    screen = await user.next_message()
    assert screen.text.startswith("Увеличение")
    screen = await tap(user, "×2", screen)
    assert "Фото: 1 фото" in screen.text
    await tap(user, "✅ Сгенерировать", screen)
    upscaled = await until_result(user)
    assert upscaled.photo_file_id is not None
    task = next(t for t in bot.sandbox.kie.tasks.values() if t.model == "topaz/image-upscale")
    name = task.body["input"]["image_url"].rsplit("/", 1)[-1]
    assert bot.sandbox.kie.uploads[name].data == await user.download(result.photo_file_id)
    assert await bot.client.violations() == []
