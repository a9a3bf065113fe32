"""Every enabled model, driven by a user through the sandbox in each of its input modes
(issue 19): the mode chosen first where a model has modes, optional uploads skipped and given,
lists of files at their minimum and at their maximum, photos, videos and audio as a user sends
them. Each case must show a price, hold and capture exactly that, send KIE a body its own
schema accepts (with the files given, and nothing for the ones skipped), deliver the result,
and leave zero Bot API violations.

Parametrized by category; within one, every case runs as its own user at the same time.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.e2e_support import RunningBot, prompt_sent, running_bot
from trt.bot.callbacks import ParamSet, StartModel
from trt.bot.flow import Draft, next_question
from trt.catalog.pricing import format_money
from trt.catalog.rules import media_items, telegram_reference
from trt.catalog.schema import Category, MediaKind, ModelSpec, ParamType, Role
from trt.catalog.vendor import check_vendor_input
from trt.db.models import Hold, HoldResolution, Job
from trt.kie.client import RateLimiter
from trt.pipeline import ModelSchema, ParamView, UnifiedModelPipeline
from trt.sandbox.driver import Message, SandboxUser
from trt.sandbox.media import render_png, sample
from trt.telemetry.events import Event

FUNDS_KOP = 5_000_000
PRICE = re.compile(r"💰 Цена: (.+)")
PARALLEL = 12  # users at once: enough to overlap, not so many that a slow machine times out
TEXT = "рыжая лиса в снегу, акварель"
CLIPS = {
    MediaKind.VIDEO: ("sample.mp4", "video/mp4"),
    MediaKind.AUDIO: ("sample.mp3", "audio/mpeg"),
}


@dataclass(frozen=True)
class Case:
    """One way through a model: the mode's values and how many files each upload gets."""

    model: ModelSpec
    name: str
    modes: dict[str, Any]
    counts: dict[str, int]

    @property
    def id(self) -> str:
        return f"{self.model.slug}[{self.name}]"


@dataclass
class Outcome:
    case: Case
    shown: str = ""
    job_id: str = ""
    problems: list[str] = field(default_factory=list)


def cases_of(pipeline: UnifiedModelPipeline, model: ModelSpec) -> list[Case]:
    """Each mode × {every optional upload skipped and lists at their least; every upload given
    and lists at their most}."""
    schema = pipeline.get_schema(model.slug)
    controllers = [v for v in schema.params if v.name in schema.controllers]
    mode_values = [[o.value for o in view.options] for view in controllers]
    found: list[Case] = []
    for combo in itertools.product(*mode_values):
        modes = dict(zip((v.name for v in controllers), combo, strict=True))
        uploads = [v for v in schema.in_mode(modes) if v.media is not None and v.ui.value == "ask"]
        least = {v.name: 0 if v.optional else v.least for v in uploads}
        most = {v.name: v.most for v in uploads}
        label = ",".join(f"{k}={v}" for k, v in modes.items())
        found.append(Case(model, f"{label}least" if label else "least", modes, least))
        if most != least:
            found.append(Case(model, f"{label}most" if label else "most", modes, most))
    return found


def seconds_for(view: ParamView) -> int:
    assert view.media is not None
    low, high = view.media.min_duration_s or 1, view.media.max_duration_s or 5
    return int(max(low, min(high, 5)))


async def send_upload(user: SandboxUser, view: ParamView, index: int) -> Message:
    """A file as a user sends it: photos as photos, clips as video or audio with a length."""
    assert view.media is not None
    if view.media.kind is MediaKind.IMAGE:
        return await user.send_file(render_png(f"input {index}", 96, 64))
    name, mime = CLIPS[view.media.kind]
    return await user.send_file(
        sample(name),
        filename=name,
        mime_type=mime,
        kind=view.media.kind.value,
        duration_s=seconds_for(view),
    )


async def next_screen(user: SandboxUser) -> Message:
    return (await user.next_event(("edit", "message"), timeout_s=30)).message


async def answer(
    user: SandboxUser, case: Case, schema: ModelSchema, view: ParamView, screen: Message
) -> tuple[Message, Any]:
    """Answer one question as the case wants; the screen that follows and the value given."""
    model = case.model
    if view.media is not None:
        count = case.counts[view.name]
        if count == 0:
            data = screen.button("⏭ Пропустить")["callback_data"]
            await user.click_data(screen.message_id, data)
            return await next_screen(user), None
        given = []
        for index in range(count):
            await send_upload(user, view, index)
            screen = await user.next_message(timeout_s=30)
            seconds = seconds_for(view) if view.media.kind is not MediaKind.IMAGE else None
            given.append(telegram_reference(f"file-{index}", seconds))
        if count < view.most:
            done = "✅ Готово" if view.most == 1 else f"✅ Готово ({count})"
            await user.click_data(screen.message_id, screen.button(done)["callback_data"])
            screen = await next_screen(user)
        return screen, given if view.type is ParamType.ARRAY else given[0]
    if view.role in (Role.PROMPT, Role.TEXT):
        # A model that wants English is offered a translation first; the user keeps TEXT.
        return await prompt_sent(user, TEXT), TEXT
    if view.options:
        wanted = case.modes.get(view.name, view.default)
        values = [o.value for o in view.options]
        position = values.index(wanted) if wanted in values else 0
        data = ParamSet(
            slug=model.slug, param=list(model.params).index(view.name), value=position
        ).pack()
        await user.click_data(screen.message_id, data)
        return await next_screen(user), values[position]
    await user.send(str(view.default))
    return await user.next_message(timeout_s=30), view.default


async def drive(bot: RunningBot, user_id: int, case: Case) -> Outcome:
    """One user through one case, from the model's first question to the confirmation."""
    outcome = Outcome(case)
    pipeline = bot.services.pipeline
    schema = pipeline.get_schema(case.model.slug)
    user = await bot.client.user(user_id, "Тест")
    await bot.give_money(user_id, FUNDS_KOP, key=f"inputs:{user_id}")
    await user.send("/start")
    menu = await user.next_message()
    await user.click_data(menu.message_id, StartModel(slug=case.model.slug).pack())
    screen = await next_screen(user)
    mirror = Draft(case.model.slug)
    while (view := next_question(schema, mirror)) is not None:
        if view.label not in screen.text:
            outcome.problems.append(f"{view.name} asked with {screen.text[:80]!r}")
            return outcome
        screen, value = await answer(user, case, schema, view, screen)
        if value is not None:
            mirror.params[view.name] = value
        mirror.answered.append(view.name)
    params = pipeline.apply_defaults(schema, mirror.params)
    checked = pipeline.validate(case.model.slug, params)
    assert checked.ok, (case.id, checked.errors)
    price = pipeline.quote(case.model.slug, checked.params).amount_kop
    found = PRICE.search(screen.text)
    if found is None:
        outcome.problems.append(f"no price on {screen.text[:120]!r}")
        return outcome
    outcome.shown = found[1].strip()
    free = outcome.shown.startswith("бесплатно")
    if not free and outcome.shown != format_money(price):
        outcome.problems.append(f"shows {outcome.shown}, the catalogue prices {price} kop")
    await user.click_data(screen.message_id, screen.button("✅ Сгенерировать")["callback_data"])
    accepted = await next_screen(user)
    if not accepted.text.startswith("⏳ Задача принята"):
        outcome.problems.append(f"not accepted: {accepted.text[:120]!r}")
        return outcome
    created = await bot.events.wait_for(Event.JOB_CREATED, user_id=user_id, timeout_s=30)
    outcome.job_id = str(created["job_id"])
    return outcome


async def settle(bot: RunningBot, outcome: Outcome, user_id: int) -> None:
    """The job delivered, charged what was shown, and KIE sent what its schema accepts."""
    case = outcome.case
    await bot.events.wait_for(Event.DELIVERED, job_id=outcome.job_id, timeout_s=60)
    async with bot.services.database.unit_of_work(readonly=True) as session:
        job = await session.get(Job, outcome.job_id)
        assert job is not None
        captured = await session.scalar(
            select(HoldResolution.captured_kop)
            .join(Hold, Hold.id == HoldResolution.hold_id)
            .where(Hold.reason == f"job:{job.id}")
        )
    if outcome.shown.startswith("бесплатно"):
        if captured not in (None, 0):
            outcome.problems.append(f"free, yet {captured} kop captured")
    elif captured is None or format_money(captured) != outcome.shown:
        outcome.problems.append(f"showed {outcome.shown}, captured {captured}")
    task = bot.sandbox.kie.tasks.get(job.kie_task_id or "")
    if task is None:
        outcome.problems.append("no KIE task")
        return
    values = task.body.get("input") if case.model.family.value == "market" else task.body
    values = {k: v for k, v in values.items() if k not in ("model", "callBackUrl")}
    vendor = bot.sandbox.kie.vendor.models[(case.model.family, case.model.kie_id)]
    outcome.problems.extend(check_vendor_input(vendor, values))
    for name, count in case.counts.items():
        sent = media_items(values.get(name))
        if len(sent) != count:
            outcome.problems.append(f"{name}: {count} given, {len(sent)} sent to KIE")
        if any(
            not str(url).startswith(bot.sandbox.kie.base_url + "/files/uploads/") for url in sent
        ):
            outcome.problems.append(f"{name}: sent {sent}, not KIE uploads")
    expected = bot.services.pipeline.build_kie_payload(case.model.slug, dict(job.params))
    own = expected["input"] if case.model.family.value == "market" else expected
    for name, value in own.items():
        if name in ("model", "callBackUrl") or case.model.params[name].media is not None:
            continue
        if values.get(name) != value:
            outcome.problems.append(f"{name}: KIE got {values.get(name)!r}, expected {value!r}")
    if await bot.balance(user_id) != (FUNDS_KOP - (captured or 0), 0):
        outcome.problems.append(f"balance {await bot.balance(user_id)} after {captured}")


@pytest.mark.parametrize("category", [c.value for c in Category])
async def test_every_model_in_every_input_mode(tmp_path: Path, category: str) -> None:
    async with running_bot(tmp_path, callbacks=True, engine={"workers": 16}) as bot:
        bot.services.kie._creates = RateLimiter(10_000, 10.0)  # the sandbox has no limit
        bot.services.kie._records = RateLimiter(10_000, 1.0)
        bot.services.relay.sender.per_chat_interval_s = 0.0  # a chat each, no pacing wait
        pipeline = bot.services.pipeline
        cases = [
            case
            for model in pipeline.listed(Category(category))
            for case in cases_of(pipeline, model)
        ]
        gate = asyncio.Semaphore(PARALLEL)

        async def one(number: int, case: Case) -> Outcome:
            user_id = 810_000 + number
            async with gate:
                outcome = await drive(bot, user_id, case)
                if not outcome.problems:
                    await settle(bot, outcome, user_id)
                return outcome

        outcomes = await asyncio.gather(*(one(n, c) for n, c in enumerate(cases)))
        problems = [f"{o.case.id}: {p}" for o in outcomes for p in o.problems]
        assert problems == []
        assert await bot.client.violations() == []
        assert await bot.ledger_problems() == []
        modes = {c.name for c in cases}
        models = len({c.model.slug for c in cases})
        print(f"{category}: {len(cases)} cases, {models} models, {len(modes)} kinds")  # noqa: T201
        assert len(cases) >= len(pipeline.listed(Category(category)))
