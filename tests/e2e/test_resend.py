"""«📤 Прислать снова» from the history: a kept file goes under the name it was first sent with,
extension included (before, a re-sent file lost its extension); a result that was too big to
keep is sent as its link again (before, the tap ended in an apology)."""

from __future__ import annotations

from sqlalchemy import update

from tests.e2e_support import RunningBot
from tests.e2e_support import tap_screen as tap
from trt.db.models import JobResult
from trt.kie.client import Limits
from trt.media import extension_of, result_file_name
from trt.sandbox.driver import Message, SandboxUser
from trt.telemetry.events import Event


def test_an_extension_for_every_type_trt_sends() -> None:
    assert extension_of("image/png") == ".png"
    assert extension_of("audio/x-wav") == ".wav"  # an alias of one format
    assert extension_of("IMAGE/JPG") == ".jpg"
    assert extension_of("application/x-unknown") == ""
    assert extension_of(None) == ""
    assert result_file_name("0123456789abcdef", 2, "video/mp4") == "trt-01234567-2.mp4"


async def delivered(bot: RunningBot, user_id: int) -> tuple[SandboxUser, str]:
    user = await bot.client.user(user_id, "Ира")
    await user.send("/start")
    await user.next_message()
    await bot.give_money(user_id, 100_000)
    job_id = await bot.create_job(user_id, "a lighthouse")
    await bot.events.wait_for(Event.DELIVERED, job_id=job_id, timeout_s=30)
    return user, job_id


async def send_again(user: SandboxUser) -> Message:
    await user.send("/history")
    listing = await user.next_message()
    card = await tap(user, next(b for b in listing.button_labels if "Nano Banana" in b), listing)
    answer = await user.click("📤 Прислать снова", card)
    assert answer.answered
    return await user.next_message(timeout_s=30)


async def test_a_kept_result_sent_again_keeps_its_name_and_extension(bot: RunningBot) -> None:
    user, job_id = await delivered(bot, 4301)
    # A result Telegram refused as a file (sent as a link then) keeps its bytes and no file id:
    # sending it again uploads the bytes.
    picture = next(iter(bot.sandbox.kie._rendered.values()))
    async with bot.services.database.unit_of_work() as session:
        await session.execute(
            update(JobResult)
            .where(JobResult.job_id == job_id)
            .values(telegram_file_id=None, data=picture)
        )
    before = set(bot.sandbox.telegram.files)
    resent = await send_again(user)
    assert resent.photo_file_id is not None
    [new] = [bot.sandbox.telegram.files[f] for f in set(bot.sandbox.telegram.files) - before]
    assert new.file_name == result_file_name(job_id, 0, "image/png")
    assert new.file_name.endswith(".png")
    assert await bot.client.violations() == []


async def test_a_result_too_big_to_keep_is_sent_again_as_its_link(bot: RunningBot) -> None:
    bot.services.kie.limits = Limits(max_download_bytes=4096)  # below the picture's size
    user, _job_id = await delivered(bot, 4302)
    [task] = bot.sandbox.kie.tasks.values()
    resent = await send_again(user)
    assert resent.text.startswith("✅ Готово: Nano Banana 2\nФайл слишком большой для Telegram")
    assert task.result_urls[0] in resent.text
    assert await bot.client.violations() == []
