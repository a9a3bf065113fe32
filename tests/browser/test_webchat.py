"""The web chat in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.e2e_support import RunningBot, running_bot
from trt.sandbox.driver import SandboxUser
from trt.sandbox.media import SAMPLES_DIR as SAMPLES

CHROMIUM = os.environ.get("TRT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
    reason=f"no Chromium at {CHROMIUM} (make browser installs it)",
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        await browser.close()


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[RunningBot]:
    async with running_bot(tmp_path) as running:
        yield running


async def test_start_menu_category_and_model_card(browser: Browser, bot: RunningBot) -> None:
    page = await browser.new_page(viewport={"width": 900, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{bot.url}/?user=100001")
    await page.fill("#text-input", "/start")
    await page.press("#text-input", "Enter")
    category = page.locator(".row.bot .keyboard button", has_text="Картинки и дизайн")
    await expect(category).to_be_visible()
    await expect(page.locator(".row.bot .bubble").first).to_contain_text("Привет, Алиса")
    await category.click()
    model = page.locator(".row.bot .keyboard button", has_text="Z-Image")
    await expect(model).to_be_visible()
    await expect(page.locator(".row.bot .bubble").last).to_contain_text("Выберите модель")
    await model.click()
    card = page.locator(".row.bot .bubble").last
    await expect(card).to_contain_text("💰 бесплатно")
    await expect(card.locator("b")).to_have_text("Z-Image")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "webchat.png"), full_page=True)
    assert errors == []
    assert await bot.client.violations() == []


async def test_one_generation_delivers_an_image(browser: Browser, bot: RunningBot) -> None:
    page = await browser.new_page(viewport={"width": 900, "height": 1000})
    await page.goto(f"{bot.url}/?user=100002")
    await page.fill("#text-input", "/start")
    await page.press("#text-input", "Enter")
    await page.locator(".row.bot .keyboard button", has_text="Картинки и дизайн").last.click()
    await page.locator(".row.bot .keyboard button", has_text="Z-Image").last.click()
    await page.locator(".row.bot .keyboard button", has_text="Начать").last.click()
    await expect(page.locator(".row.bot .bubble").last).to_contain_text("Описание")
    await page.fill("#text-input", "маяк на закате, акварель")
    await page.press("#text-input", "Enter")
    # Z-Image asks for English: the assistant's translation is offered in place, then taken.
    offer = page.locator(".row.bot .bubble", has_text="лучше понимает английский").last
    await expect(offer).to_contain_text("mayak na zakate, akvarel")
    await page.locator(".row.bot .keyboard button", has_text="Использовать").last.click()
    await page.locator(".row.bot .keyboard button", has_text="1:1 квадрат").last.click()
    generate = page.locator(".row.bot .keyboard button", has_text="Сгенерировать").last
    await expect(generate).to_be_visible()
    await expect(page.locator(".row.bot .bubble").last).to_contain_text("бесплатно")
    await generate.click()
    image = page.locator(".row.bot .bubble img").last
    await expect(image).to_be_visible(timeout=20_000)
    natural_width = await image.evaluate("element => element.naturalWidth")
    assert natural_width == 512
    await expect(page.locator(".row.bot .bubble").last).to_contain_text("Готово: Z-Image")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "webchat-generation.png"), full_page=True)
    assert await bot.client.violations() == []


async def test_an_audio_file_goes_in_with_the_length_the_browser_measured(
    browser: Browser, bot: RunningBot
) -> None:
    page = await browser.new_page(viewport={"width": 900, "height": 1000})
    await page.goto(f"{bot.url}/?user=100001")
    await page.fill("#text-input", "/start")
    await page.press("#text-input", "Enter")
    await page.locator(".row.bot .keyboard button", has_text="Музыка и голос").last.click()
    await page.locator(".row.bot .keyboard button", has_text="Очистить голос").last.click()
    await page.locator(".row.bot .keyboard button", has_text="Начать").last.click()
    await expect(page.locator(".row.bot .bubble").last).to_contain_text("пришлите аудио")
    await page.set_input_files("#photo-input", str(SAMPLES / "sample.ogg"))
    confirmation = page.locator(".row.bot .bubble").last
    await expect(confirmation).to_contain_text("💰 Цена:")
    await expect(confirmation).to_contain_text("1 аудио,")  # and its seconds
    messages = await SandboxUser(bot.client, 100001, "Алиса").messages()
    audio = next(m for m in messages if not m.from_bot and m.raw.get("audio"))
    assert audio.raw["audio"]["duration"] >= 1
    assert await bot.client.violations() == []
