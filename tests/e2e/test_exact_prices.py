"""The price shown is the price charged, to the kopeck (issue 17 §1).

Every priced combination the catalogue declares: the amount on the confirmation screen is the
hold; every enabled paid model with its defaults, through the engine: the hold is the capture
and «Баланс после» is the balance after it."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.e2e_support import running_bot
from tests.unit.catalog.conftest import complete_params, sample_media
from trt.billing.ledger import hold_id_for
from trt.billing.wallets import WalletService
from trt.catalog.loader import default_catalog
from trt.catalog.pricing import PricingError, Rates, format_money
from trt.catalog.rules import media_duration, telegram_reference
from trt.catalog.schema import MediaKind, ModelSpec
from trt.config import EngineSettings
from trt.db.database import Database
from trt.db.models import Hold, HoldResolution
from trt.jobs.service import JobService
from trt.kie.client import RateLimiter
from trt.pipeline import ParamView, UnifiedModelPipeline, _value_domain
from trt.sandbox.media import sample
from trt.telemetry.events import Event

FUNDS_KOP = 10_000_000
PRICE = re.compile(r"💰 Цена: (.+)")
AFTER = re.compile(r"💳 Баланс после: (.+)")


def priced_combinations(
    pipeline: UnifiedModelPipeline, model: ModelSpec
) -> Iterator[dict[str, Any]]:
    """Validated parameters for every value of every priced parameter (defaults elsewhere)."""
    names = [*model.price.by, *model.price.multiply_by]
    domains = [_value_domain(model.params[name]) for name in names]
    for combo in itertools.product(*domains):
        params = complete_params(pipeline, model.slug, **dict(zip(names, combo, strict=True)))
        checked = pipeline.validate(model.slug, params)
        if not checked.ok:
            continue  # a combination the model's own rules exclude
        try:
            pipeline.quote(model.slug, checked.params)
        except PricingError:
            continue  # not sold (no price for it): the screens never offer it
        yield checked.params


def paid_models(pipeline: UnifiedModelPipeline) -> list[ModelSpec]:
    return [m for m in pipeline.catalog.models.values() if pipeline.is_enabled(m) and not m.free]


def shown(text: str, pattern: re.Pattern[str]) -> str:
    found = pattern.search(text)
    assert found is not None, text
    return found[1].strip()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_priced_combination_holds_what_its_confirmation_shows(
    database: Database,
) -> None:
    pipeline = UnifiedModelPipeline(default_catalog(), Rates(Decimal("95"), Decimal("2")))
    jobs = JobService(
        database,
        pipeline,
        EngineSettings(max_active_per_user=100_000, max_in_flight=100_000),
        free_daily_quota=0,
    )
    await WalletService(database).credit(
        1, FUNDS_KOP, source="topup:test", idempotency_key="exact-prices"
    )
    checked = 0
    for model in paid_models(pipeline):
        for params in priced_combinations(pipeline, model):
            balance = (await WalletService(database).balance(1)).available_kop
            quote = pipeline.quote(model.slug, params)
            text = pipeline.format_confirmation_text(model, params, quote, balance)
            created = await jobs.create(
                user_id=1,
                chat_id=1,
                lang="ru",
                model_slug=model.slug,
                params=params,
                draft_key=f"exact-{checked}",
            )
            async with database.unit_of_work(readonly=True) as session:
                hold = await session.scalar(
                    select(Hold.amount_kop).where(Hold.id == hold_id_for(created.job.id))
                )
            assert hold is not None
            assert shown(text, PRICE) == format_money(hold), (model.slug, params)
            assert shown(text, AFTER) == format_money(balance - hold), (model.slug, params)
            checked += 1
    print(f"exact prices: {checked} priced combinations")  # noqa: T201 - the report
    assert checked >= 200


async def test_every_paid_model_captures_what_it_showed(tmp_path: Path) -> None:
    async with running_bot(tmp_path, callbacks=True, engine={"workers": 16}) as bot:
        bot.services.kie._creates = RateLimiter(10_000, 10.0)  # the sandbox has no limit
        bot.services.kie._records = RateLimiter(10_000, 1.0)
        pipeline = bot.services.pipeline
        telegram = bot.sandbox.telegram
        samples = {
            MediaKind.VIDEO: telegram.store_file(sample("sample.mp4"), "video/mp4", "in.mp4"),
            MediaKind.AUDIO: telegram.store_file(sample("sample.mp3"), "audio/mpeg", "in.mp3"),
        }

        def uploaded(view: ParamView) -> str:
            """Images by URL; video and audio as the user's files, with their lengths."""
            assert view.media is not None
            if view.media.kind is MediaKind.IMAGE:
                return sample_media(view)
            seconds = media_duration(sample_media(view))
            return telegram_reference(samples[view.media.kind].file_id, seconds)

        expected: dict[str, tuple[int, str, str, ModelSpec]] = {}
        for number, model in enumerate(paid_models(pipeline)):
            user_id = 700_000 + number  # a chat each: Telegram paces messages per chat
            await bot.give_money(user_id, FUNDS_KOP, key=f"exact:{user_id}")
            collected = complete_params(pipeline, model.slug, media=uploaded)
            params = pipeline.validate(model.slug, collected).params
            quote = pipeline.quote(model.slug, params)
            text = pipeline.format_confirmation_text(model, params, quote, FUNDS_KOP)
            created = await bot.services.jobs.create(
                user_id=user_id,
                chat_id=user_id,
                lang="ru",
                model_slug=model.slug,
                params=params,
                draft_key=f"exact-model-{model.slug}",
                cid=f"exact-{model.slug}",
            )
            expected[created.job.id] = (user_id, shown(text, PRICE), shown(text, AFTER), model)
        bot.services.wake.set()
        await asyncio.gather(
            *(
                bot.events.wait_for(Event.DELIVERED, job_id=job_id, timeout_s=60)
                for job_id in expected
            )
        )
        for job_id, (user_id, price, after, model) in expected.items():
            async with bot.services.database.unit_of_work(readonly=True) as session:
                job_hold = await session.scalar(
                    select(HoldResolution.captured_kop)
                    .join(Hold, Hold.id == HoldResolution.hold_id)
                    .where(Hold.reason == f"job:{job_id}")
                )
            assert job_hold is not None, model.slug
            assert format_money(job_hold) == price, model.slug
            posted, held = await bot.balance(user_id)
            assert (format_money(posted), held) == (after, 0), model.slug
        assert await bot.ledger_problems() == []
        print(f"exact prices: {len(expected)} models charged what they showed")  # noqa: T201
