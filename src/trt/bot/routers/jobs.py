"""The user's jobs: result buttons (again, change), the history, re-sending a result."""

from __future__ import annotations

import html
from typing import Any

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from trt.bot.callbacks import FollowUp, HistoryPage, JobAction, Menu
from trt.bot.files import file_of
from trt.bot.flow import Draft, Flow, FlowServices, questions, settings_screen
from trt.bot.keyboards import main_menu, pager_row
from trt.bot.notices import link_text
from trt.bot.screens import show
from trt.catalog.pricing import format_money
from trt.catalog.rules import media_duration, telegram_reference
from trt.catalog.schema import FollowUp as FollowUpSpec
from trt.catalog.schema import ParamType
from trt.i18n import t
from trt.jobs.service import JobService, JobView
from trt.logs import get_logger
from trt.pipeline import CATEGORY_ICONS, UnifiedModelPipeline
from trt.telegram.sender import OutgoingFile, RetryLater, Sender, Undeliverable
from trt.telemetry.events import Reason, reject

log = get_logger(__name__)
HISTORY_PAGE = 8
STATUS_ICONS = {
    "delivered": "✅",
    "succeeded": "✅",
    "failed": "❌",
    "timed_out": "⌛",
}


def build() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_job_action, JobAction.filter(), flags={"manual_answer": True})
    router.callback_query.register(on_follow_up, FollowUp.filter(), flags={"manual_answer": True})
    router.callback_query.register(on_history, Menu.filter(F.screen == "history"))
    router.callback_query.register(on_history_page, HistoryPage.filter())
    return router


def result_keyboard(
    pipeline: UnifiedModelPipeline, lang: str, job_id: str, model_slug: str
) -> InlineKeyboardMarkup:
    """Under a result: the catalogue's follow-ups for it (each takes the result as input),
    then «🔁 Ещё раз» / «🎛 Изменить» and «🏠 Меню»."""
    follow = [
        InlineKeyboardButton(
            text=spec.label.get(lang), callback_data=FollowUp(job=job_id, index=index).pack()
        )
        for index, spec in follow_ups_for(pipeline, model_slug)
    ]
    rows = [follow[i : i + 2] for i in range(0, len(follow), 2)]
    rows.append(
        [
            InlineKeyboardButton(
                text=t(lang, "result.again"),
                callback_data=JobAction(action="again", job=job_id).pack(),
            ),
            InlineKeyboardButton(
                text=t(lang, "result.edit"),
                callback_data=JobAction(action="edit", job=job_id).pack(),
            ),
        ]
    )
    rows.append(
        [InlineKeyboardButton(text=t(lang, "menu.home"), callback_data=Menu(screen="main").pack())]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def follow_ups_for(
    pipeline: UnifiedModelPipeline, model_slug: str
) -> list[tuple[int, FollowUpSpec]]:
    """The follow-ups offered under a result of `model_slug` (enabled targets only)."""
    model = pipeline.catalog.get(model_slug)
    if model is None:
        return []
    found = []
    for index, spec in enumerate(pipeline.catalog.source.follow_ups):
        target = pipeline.catalog.get(spec.model)
        if (
            target is None
            or (target.slug == model.slug and model.slug not in spec.only)
            or not pipeline.is_enabled(target)
            or model.output not in spec.after
            or (spec.only and model.slug not in spec.only)
        ):
            continue
        found.append((index, spec))
    return found


async def _own_job(
    callback: CallbackQuery, jobs: JobService, job_id: str, lang: str
) -> JobView | None:
    """The tapping user's job, or None after refusing politely (forged or someone else's:
    nothing moves)."""
    job = await jobs.get(job_id)
    if job is None or job.user_id != callback.from_user.id:
        reject(Reason.ACCESS_DENIED, "job of another user or unknown", job_id=job_id)
        await callback.answer(t(lang, "errors.denied"), show_alert=True)
        return None
    return job


async def on_follow_up(
    callback: CallbackQuery,
    callback_data: FollowUp,
    pipeline: UnifiedModelPipeline,
    jobs: JobService,
    sender: Sender,
    state: FSMContext,
    lang: str,
    flow: FlowServices,
) -> None:
    """The result becomes the next model's input: no re-upload, a normal confirmation."""
    job = await _own_job(callback, jobs, callback_data.job, lang)
    if job is None:
        return
    offered = dict(follow_ups_for(pipeline, job.model_slug))
    spec = offered.get(callback_data.index)
    inputs = await jobs.result_inputs(job.id) or _tapped_result(callback)
    if spec is None or not inputs:
        reject(Reason.STATE_MISMATCH, f"follow-up #{callback_data.index} not offered or no result")
        await callback.answer(t(lang, "errors.follow_up_gone"), show_alert=True)
        return
    target = pipeline.resolve_model(spec.model)
    param = target.params[spec.param]
    value: Any = inputs[0] if param.type is not ParamType.ARRAY else inputs[: param.max_items or 1]
    if spec.param in target.price.multiply_by and media_duration(inputs[0]) is None:
        # Priced per second, and the result's length is unknown (sent as a link).
        reject(Reason.VALIDATION_FAILED, "a per-second follow-up of a result without a length")
        await callback.answer(t(lang, "errors.follow_up_gone"), show_alert=True)
        return
    refusals = [
        error.message
        for error in pipeline.validate(target.slug, {spec.param: value}, lang).errors
        if error.field == spec.param
    ]
    if refusals:
        # The result does not fit the next model (too long a clip): said now, not after
        # a confirmation that could only fail.
        reject(Reason.VALIDATION_FAILED, "; ".join(refusals)[:300])
        await callback.answer(refusals[0][:200], show_alert=True)
        return
    await callback.answer()
    draft = Draft(target.slug, {spec.param: value}, [spec.param])
    text, markup = await flow.next_screen(state, draft, callback.from_user.id, lang)
    await _send_new(callback, sender, text, markup)


def _tapped_result(callback: CallbackQuery) -> list[str]:
    """The file of the result message tapped: a tap quicker than the relay's record of the
    delivery (the message is out, its file ids not yet stored) still finds its input."""
    message = callback.message
    file = file_of(message) if isinstance(message, Message) else None
    return [telegram_reference(file.file_id, file.duration_s)] if file else []


def _price(job: JobView, lang: str) -> str:
    return t(lang, "history.free") if job.is_free else format_money(job.price_kop)


async def history_screen(
    jobs: JobService, pipeline: UnifiedModelPipeline, user_id: int, lang: str, page: int
) -> tuple[str, InlineKeyboardMarkup]:
    items = await jobs.history(user_id, offset=page * HISTORY_PAGE, limit=HISTORY_PAGE + 1)
    if not items and page == 0:
        return t(lang, "history.empty"), main_menu(lang)
    more = len(items) > HISTORY_PAGE
    rows = []
    for job in items[:HISTORY_PAGE]:
        model = pipeline.catalog.get(job.model_slug)
        title = model.title.get(lang) if model else job.model_slug
        icon = STATUS_ICONS.get(job.status.value, "⏳")
        label = t(
            lang,
            "history.row",
            icon=icon,
            model=title,
            price=_price(job, lang),
            date=job.created_at.strftime("%d.%m %H:%M"),
        )
        rows.append(
            [
                InlineKeyboardButton(
                    text=label[:60], callback_data=JobAction(action="open", job=job.id).pack()
                )
            ]
        )
    navigation = pager_row(
        lang, page, page + (2 if more else 1), lambda target: HistoryPage(page=target)
    )
    if navigation:
        rows.append(navigation)
    rows.append(
        [InlineKeyboardButton(text=t(lang, "menu.home"), callback_data=Menu(screen="main").pack())]
    )
    pages = page + (2 if more else 1)
    return (
        t(lang, "history.title", page=page + 1, pages=pages),
        InlineKeyboardMarkup(inline_keyboard=rows),
    )


async def on_history(
    callback: CallbackQuery, lang: str, jobs: JobService, pipeline: UnifiedModelPipeline
) -> None:
    text, markup = await history_screen(jobs, pipeline, callback.from_user.id, lang, 0)
    await show(callback, text, markup)


async def on_history_page(
    callback: CallbackQuery,
    callback_data: HistoryPage,
    lang: str,
    jobs: JobService,
    pipeline: UnifiedModelPipeline,
) -> None:
    text, markup = await history_screen(
        jobs, pipeline, callback.from_user.id, lang, max(0, callback_data.page)
    )
    await show(callback, text, markup)


async def on_job_action(
    callback: CallbackQuery,
    callback_data: JobAction,
    lang: str,
    state: FSMContext,
    jobs: JobService,
    pipeline: UnifiedModelPipeline,
    sender: Sender,
    flow: FlowServices,
) -> None:
    job = await _own_job(callback, jobs, callback_data.job, lang)
    if job is None:
        return
    await callback.answer()
    model = pipeline.catalog.get(job.model_slug)
    if (
        callback_data.action in ("again", "edit")
        and model is not None
        and pipeline.is_enabled(model)
    ):
        schema = pipeline.get_schema(model.slug, lang)
        draft = Draft(model.slug, dict(job.params), original=job.prompt_original)
        draft.answered = [v.name for v in questions(schema, draft)]
        await state.set_state(Flow.confirming)
        await state.set_data(draft.to_data())
        text, markup = await flow.confirm_screen(draft, job.user_id, lang)
        if callback_data.action == "edit":
            text, markup = settings_screen(pipeline, draft, lang)
        await _send_new(callback, sender, text, markup)
        return
    if callback_data.action == "resend":
        await _resend(callback, job, jobs, pipeline, sender, lang)
        return
    await show(callback, _card(job, pipeline, lang), _card_keyboard(job, lang))


def _card(job: JobView, pipeline: UnifiedModelPipeline, lang: str) -> str:
    model = pipeline.catalog.get(job.model_slug)
    title = model.title.get(lang) if model else job.model_slug
    icon = CATEGORY_ICONS[model.category] if model else ""
    prompt = model.prompt_param if model else None
    text = str(job.params.get(prompt, "")) if prompt else ""
    params = f"«{html.escape(text[:300])}»" if text else ""
    if job.prompt_original:
        params += "\n" + t(lang, "history.original", text=html.escape(job.prompt_original[:300]))
    return t(
        lang,
        "history.card",
        model=f"{icon} {html.escape(title)}",
        status=t(lang, f"status.{job.status.value}"),
        price=_price(job, lang),
        date=job.created_at.strftime("%d.%m.%Y %H:%M"),
        params=params,
    )


def _card_keyboard(job: JobView, lang: str) -> InlineKeyboardMarkup:
    rows = []
    if job.status.value in ("delivered", "succeeded"):
        rows.append(
            [
                InlineKeyboardButton(
                    text=t(lang, "history.resend"),
                    callback_data=JobAction(action="resend", job=job.id).pack(),
                )
            ]
        )
    rows.append(
        [
            InlineKeyboardButton(
                text=t(lang, "history.repeat"),
                callback_data=JobAction(action="again", job=job.id).pack(),
            )
        ]
    )
    rows.append(
        [InlineKeyboardButton(text=t(lang, "menu.back"), callback_data=HistoryPage(page=0).pack())]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def _send_new(
    callback: CallbackQuery, sender: Sender, text: str, markup: InlineKeyboardMarkup
) -> None:
    """A new message (the tapped one is a result: it stays as it is)."""
    try:
        await sender.text(callback.from_user.id, text, markup=markup)
    except (RetryLater, Undeliverable) as error:
        log.warning("send_failed", error=str(error))


async def _resend(
    callback: CallbackQuery,
    job: JobView,
    jobs: JobService,
    pipeline: UnifiedModelPipeline,
    sender: Sender,
    lang: str,
) -> None:
    files = await jobs.result_files(job.id)
    if not files:
        await show(callback, t(lang, "history.no_result"), _card_keyboard(job, lang))
        return
    items = [OutgoingFile(f.data, f.file_id, f.mime_type, f.filename) for f in files if f.sendable]
    # A result too big for Telegram was never kept: its link again (KIE keeps it about a day).
    links = [f for f in files if not f.sendable]
    try:
        if items:
            await sender.files(callback.from_user.id, items, job.output_kind, "", None)
        if links:
            model = pipeline.catalog.get(job.model_slug)
            text = link_text(
                lang,
                html.escape(model.title.get(lang) if model else job.model_slug),
                max(f.size_bytes for f in links),
                [f.url for f in links],
            )
            await sender.text(callback.from_user.id, text)
    except (RetryLater, Undeliverable) as error:
        log.warning("resend_failed", job_id=job.id, error=str(error))
