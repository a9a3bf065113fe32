"""The generation flow: start a model, answer its questions, confirm, and the job begins.

Handlers are thin: they read the draft from the FSM (in the database), ask the pipeline, and
render. Uploads are recorded as Telegram file ids (`tg:…`); the engine moves them to KIE.
Confirm carries the draft key: a double tap or a stale tap creates no second job.
"""

from __future__ import annotations

import html
from typing import Any

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from trt.billing.ledger import InsufficientFundsError
from trt.bot.callbacks import (
    Confirm,
    FlowAction,
    ParamMenu,
    ParamOpen,
    ParamSet,
    Refresh,
    StartModel,
)
from trt.bot.files import file_of
from trt.bot.flow import (
    TELEGRAM_DOWNLOAD_LIMIT_MB,
    Draft,
    Flow,
    FlowServices,
    confirm_screen,
    media_count,
    next_question,
    option_rows,
    save_draft,
    settings_screen,
)
from trt.bot.keyboards import main_menu, model_card
from trt.bot.routers.assist import offer_translation
from trt.bot.screens import show
from trt.catalog.pricing import format_money
from trt.catalog.rules import media_items, telegram_reference
from trt.catalog.schema import ParamType, Role
from trt.faults import failpoint
from trt.i18n import t
from trt.jobs.service import JobLimitError, JobService, JobValidationError
from trt.logs import get_logger
from trt.media import canonical_format
from trt.pipeline import ParamView, UnifiedModelPipeline, duration_rule
from trt.telemetry.events import Reason, reject

log = get_logger(__name__)


def build() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_start_model, StartModel.filter())
    router.callback_query.register(on_flow_action, FlowAction.filter())
    router.callback_query.register(on_param_set, ParamSet.filter(), flags={"manual_answer": True})
    router.callback_query.register(on_param_menu, ParamMenu.filter())
    router.callback_query.register(on_param_open, ParamOpen.filter())
    router.callback_query.register(on_confirm, Confirm.filter(), flags={"manual_answer": True})
    router.callback_query.register(on_refresh, Refresh.filter())
    router.message.register(
        on_media,
        Flow.collecting,
        F.photo | F.document | F.video | F.audio | F.voice | F.video_note | F.animation,
    )
    router.message.register(on_text, Flow.collecting, F.text)
    router.message.register(on_other_input, Flow.collecting)
    router.message.register(on_input_while_confirming, Flow.confirming)
    return router


async def _draft(state: FSMContext) -> Draft | None:
    return Draft.from_data(await state.get_data())


async def on_start_model(
    callback: CallbackQuery,
    callback_data: StartModel,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
    flow: FlowServices,
) -> None:
    model = pipeline.catalog.get(callback_data.slug)
    if model is None or not pipeline.is_enabled(model):
        reject(Reason.STATE_MISMATCH, f"model {callback_data.slug} unknown or disabled")
        await show(callback, t(lang, "catalog.disabled"), main_menu(lang))
        return
    draft = Draft(model.slug)
    text, markup = await flow.next_screen(state, draft, callback.from_user.id, lang)
    await show(callback, text, markup)


async def on_flow_action(
    callback: CallbackQuery,
    callback_data: FlowAction,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
    flow: FlowServices,
) -> None:
    draft = await _draft(state)
    if callback_data.action == "cancel" or draft is None:
        if draft is None and callback_data.action != "cancel":
            reject(Reason.STATE_MISMATCH, "no draft in progress")
        await state.clear()
        key = "flow.cancelled" if callback_data.action == "cancel" else "flow.stale"
        await show(callback, t(lang, key), main_menu(lang))
        return
    schema = pipeline.get_schema(draft.slug, lang)
    if callback_data.action == "back":
        if not draft.answered:
            await state.clear()
            model = schema.model
            await show(callback, html.escape(model.title.get(lang)), model_card(lang, model))
            return
        last = draft.answered.pop()
        draft.params.pop(last, None)
    elif callback_data.action in ("done", "skip"):
        view = next_question(schema, draft)
        if view is not None and view.media is not None:
            count = media_count(draft, view.name)
            if count >= view.least or (callback_data.action == "skip" and view.optional):
                draft.answered.append(view.name)
                if count == 0:
                    draft.params.pop(view.name, None)
            else:
                reject(Reason.STATE_MISMATCH, f"{view.name} has {count} of {view.least} files")
    elif callback_data.action == "edit" and schema.model.prompt_param is not None:
        prompt = schema.model.prompt_param
        draft.answered = [name for name in draft.answered if name != prompt]
        draft.params.pop(prompt, None)
    text, markup = await flow.next_screen(state, draft, callback.from_user.id, lang)
    await show(callback, text, markup)


async def on_param_set(
    callback: CallbackQuery,
    callback_data: ParamSet,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
    flow: FlowServices,
) -> None:
    draft = await _draft(state)
    model = pipeline.catalog.get(callback_data.slug)
    if draft is None or model is None or draft.slug != model.slug:
        reject(Reason.STATE_MISMATCH, "the choice is not for the draft in progress")
        await callback.answer(t(lang, "flow.stale"))
        await show(callback, t(lang, "start.menu"), main_menu(lang))
        return
    names = list(model.params)
    if not 0 <= callback_data.param < len(names):
        reject(Reason.VALIDATION_FAILED, f"no parameter #{callback_data.param}")
        await callback.answer(t(lang, "flow.stale"))
        return
    view = pipeline.get_schema(model.slug, lang).param(names[callback_data.param])
    if not 0 <= callback_data.value < len(view.options):
        reject(Reason.VALIDATION_FAILED, f"no option #{callback_data.value} of {view.name}")
        await callback.answer(t(lang, "flow.stale"))
        return
    await callback.answer()
    draft.params[view.name] = view.options[callback_data.value].value
    confirming = await state.get_state() == Flow.confirming.state
    schema = pipeline.get_schema(model.slug, lang)
    if view.name not in draft.answered:
        draft.answered.append(view.name)
    if confirming and next_question(schema, draft) is None:
        text, markup = settings_screen(pipeline, draft, lang)
        await save_draft(state, draft, confirming=True)
        await show(callback, text, markup)
        return
    # A new mode may ask for what the old one did not (frames, references): ask it now.
    text, markup = await flow.next_screen(state, draft, callback.from_user.id, lang)
    await show(callback, text, markup)


async def on_param_menu(
    callback: CallbackQuery,
    callback_data: ParamMenu,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
) -> None:
    draft = await _draft(state)
    if draft is None or draft.slug != callback_data.slug:
        reject(Reason.STATE_MISMATCH, "settings of a draft not in progress")
        await show(callback, t(lang, "flow.stale"), main_menu(lang))
        return
    text, markup = settings_screen(pipeline, draft, lang)
    await show(callback, text, markup)


async def on_param_open(
    callback: CallbackQuery,
    callback_data: ParamOpen,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
) -> None:
    draft = await _draft(state)
    model = pipeline.catalog.get(callback_data.slug)
    names = list(model.params) if model else []
    if (
        draft is None
        or model is None
        or draft.slug != model.slug
        or not (0 <= callback_data.param < len(names))
    ):
        reject(Reason.STATE_MISMATCH, "a parameter of a draft not in progress")
        await show(callback, t(lang, "flow.stale"), main_menu(lang))
        return
    schema = pipeline.get_schema(model.slug, lang)
    view = schema.param(names[callback_data.param])
    rows = option_rows(model, schema, view, draft, lang, callback_data.page)
    confirming = await state.get_state() == Flow.confirming.state
    back = ParamMenu(slug=model.slug) if confirming else FlowAction(action="back")
    rows.append([InlineKeyboardButton(text=t(lang, "menu.back"), callback_data=back.pack())])
    await show(
        callback,
        t(lang, "flow.ask_choice", label=html.escape(view.label)),
        InlineKeyboardMarkup(inline_keyboard=rows),
    )


async def on_refresh(
    callback: CallbackQuery,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
    flow: FlowServices,
) -> None:
    """🔄 after a deploy: the flow's current screen (question or confirmation), or the menu."""
    draft = await _draft(state)
    if draft is None or pipeline.catalog.get(draft.slug) is None:
        await show(callback, t(lang, "start.menu"), main_menu(lang))
        return
    text, markup = await flow.next_screen(state, draft, callback.from_user.id, lang)
    await show(callback, text, markup)


async def on_confirm(
    callback: CallbackQuery,
    callback_data: Confirm,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
    jobs: JobService,
    flow: FlowServices,
    cid: str | None = None,
) -> None:
    draft = await _draft(state)
    if draft is None or draft.draft != callback_data.draft:
        # A second tap, or a confirmation from an old message: never a second job.
        existing = await jobs.by_draft(callback_data.draft)
        if existing is not None:
            reject(Reason.DUPLICATE, f"job {existing.id} exists for this confirmation")
            status = t(lang, f"status.{existing.status.value}")
            await callback.answer(t(lang, "flow.already", status=status))
            return
        reject(Reason.STATE_MISMATCH, "a confirmation of another draft")
        await callback.answer(t(lang, "flow.stale"))
        await show(callback, t(lang, "flow.stale"), main_menu(lang))
        return
    await callback.answer()
    model = pipeline.resolve_model(draft.slug)
    user_id = callback.from_user.id
    message = callback.message
    chat_id = message.chat.id if message is not None else user_id
    # The screen says «accepted» (and loses its buttons) before the job exists: the engine
    # edits this same message next, and must never be overwritten by this handler.
    await show(
        callback,
        t(lang, "flow.accepted", model=html.escape(model.title.get(lang))),
        InlineKeyboardMarkup(inline_keyboard=[]),
    )
    try:
        created = await jobs.create(
            user_id=user_id,
            chat_id=chat_id,
            lang=lang,
            model_slug=model.slug,
            params=draft.params,
            draft_key=draft.draft,
            status_message_id=message.message_id if isinstance(message, Message) else None,
            cid=cid,
            prompt_original=draft.prompt_original(model.prompt_param),
        )
    except InsufficientFundsError as short:
        reject(Reason.INSUFFICIENT_FUNDS, f"needs {short.needed_kop}, has {short.available_kop}")
        missing = format_money(short.needed_kop - short.available_kop)
        text, markup, _q = confirm_screen(
            pipeline,
            draft,
            lang,
            balance_kop=short.available_kop,
            free_left=None,
            assist=flow.assist,
        )
        await show(callback, text + "\n\n" + t(lang, "jobs.insufficient", missing=missing), markup)
        return
    except JobLimitError as limit:
        reject(Reason.LIMIT_REACHED, f"{limit.scope} limit of {limit.count} active jobs")
        key = "jobs.limit_user" if limit.scope == "user" else "jobs.limit_global"
        await show(callback, t(lang, key, count=limit.count), main_menu(lang))
        return
    except JobValidationError as invalid:
        reject(Reason.VALIDATION_FAILED, str(invalid)[:300])
        said = [t(lang, "catalog.disabled")] if invalid.disabled else invalid.messages
        await show(callback, "\n".join(html.escape(m) for m in said), main_menu(lang))
        return
    failpoint("job.confirmed")
    await state.clear()
    log.info(
        "job_confirmed",
        job_id=created.job.id,
        model=model.slug,
        price_kop=created.job.price_kop,
        created=created.created,
    )


async def _current_question(
    state: FSMContext, pipeline: UnifiedModelPipeline, lang: str
) -> tuple[Draft, ParamView] | None:
    draft = await _draft(state)
    if draft is None:
        return None
    view = next_question(pipeline.get_schema(draft.slug, lang), draft)
    return (draft, view) if view is not None else None


async def on_media(
    message: Message,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
    flow: FlowServices,
) -> None:
    current = await _current_question(state, pipeline, lang)
    if current is None:
        reject(Reason.STATE_MISMATCH, "input without a question")
        await message.answer(t(lang, "flow.stale"), reply_markup=main_menu(lang))
        return
    draft, view = current
    if view.media is None:
        reject(Reason.VALIDATION_FAILED, f"a file where {view.name} asks for a value")
        await message.answer(
            t(lang, "flow.need_text", label=html.escape(view.label))
            if view.role in (Role.PROMPT, Role.TEXT)
            else t(lang, "flow.need_choice")
        )
        return
    refusal = _refusal(pipeline, draft, view, message, lang)
    if refusal is not None:
        reason, text = refusal
        reject(Reason.VALIDATION_FAILED, reason)
        await message.answer(text)
        return
    file = file_of(message)
    assert file is not None  # _refusal refused a message without one
    reference = telegram_reference(file.file_id, file.duration_s)
    if view.type is ParamType.ARRAY:
        items = [*media_items(draft.params.get(view.name)), reference]
        draft.params[view.name] = items
        if len(items) >= view.most:
            draft.answered.append(view.name)
    else:
        draft.params[view.name] = reference
        draft.answered.append(view.name)
    text, markup = await flow.next_screen(state, draft, message.chat.id, lang)
    await message.answer(text, reply_markup=markup)


def _refusal(
    pipeline: UnifiedModelPipeline, draft: Draft, view: ParamView, message: Message, lang: str
) -> tuple[str, str] | None:
    """Why this upload cannot be taken for `view` (for the event, for the user), or None.

    Everything Telegram tells before the bytes are fetched is checked here, before any money
    is held: kind, format, size, count, and for video and audio the length."""
    media = view.media
    assert media is not None
    file = file_of(message)
    what = t(lang, f"flow.what_{media.kind.value}")
    if file is None:
        return "no usable file in the message", t(
            lang, "flow.need_media", what=what, how=t(lang, f"flow.send_as_{media.kind.value}")
        )
    formats = ", ".join(media.formats).upper()
    if file.mime is not None:
        major, _, subtype = file.mime.partition("/")
        allowed = {canonical_format(f) for f in media.formats}
        if major != media.kind.value or canonical_format(subtype) not in allowed:
            return f"{file.mime} is not one of {formats}", t(
                lang, "flow.wrong_type", formats=formats
            )
    if file.size == 0:
        return "an empty file", t(lang, "flow.empty_file")
    limit_mb = min(media.max_mb, TELEGRAM_DOWNLOAD_LIMIT_MB)
    if file.size is not None and file.size > limit_mb * 1024 * 1024:
        return f"{file.size} bytes over {limit_mb} MB", t(lang, "flow.too_big", mb=int(limit_mb))
    if view.type is ParamType.ARRAY and media_count(draft, view.name) >= view.most:
        return f"more than {view.most} files", t(lang, "flow.too_many", max=view.most)
    model = pipeline.resolve_model(draft.slug)
    timed = media.min_duration_s is not None or media.max_duration_s is not None
    if (timed or view.name in model.price.multiply_by) and file.duration_s is None:
        return "no length known for a timed upload", t(lang, "flow.need_length")
    if file.duration_s is not None:
        low, high = media.min_duration_s, media.max_duration_s
        if (low is not None and file.duration_s < int(low)) or (
            high is not None and file.duration_s > high
        ):
            rule = duration_rule(low, high, lang)
            return f"{file.duration_s} s outside {rule}", t(
                lang, "flow.too_long", what=what.capitalize(), rule=rule, seconds=file.duration_s
            )
    return None


async def on_text(
    message: Message,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
    flow: FlowServices,
    cid: str | None = None,
) -> None:
    current = await _current_question(state, pipeline, lang)
    if current is None:
        reject(Reason.STATE_MISMATCH, "input without a question")
        await message.answer(t(lang, "flow.stale"), reply_markup=main_menu(lang))
        return
    draft, view = current
    if view.media is not None:
        reject(Reason.VALIDATION_FAILED, f"text where {view.name} asks for a file")
        await message.answer(_need_media(view, lang))
        return
    if view.options and view.role not in (Role.PROMPT, Role.TEXT):
        reject(Reason.VALIDATION_FAILED, f"text where {view.name} asks for a button")
        await message.answer(t(lang, "flow.need_choice"))
        return
    candidate: dict[str, Any] = {**draft.params, view.name: message.text or ""}
    errors = [
        e for e in pipeline.validate(draft.slug, candidate, lang).errors if e.field == view.name
    ]
    if errors:
        reject(Reason.VALIDATION_FAILED, "; ".join(e.message for e in errors)[:300])
        await message.answer("\n".join(html.escape(e.message) for e in errors))
        return
    checked = pipeline.validate(
        draft.slug, pipeline.apply_defaults(pipeline.get_schema(draft.slug, lang), candidate), lang
    )
    value = checked.params.get(view.name, message.text)
    if (
        view.role is Role.PROMPT
        and isinstance(value, str)
        and await offer_translation(
            message,
            draft,
            view.name,
            value,
            lang=lang,
            state=state,
            flow=flow,
            cid=cid,
        )
    ):
        return
    draft.params[view.name] = value
    draft.answered.append(view.name)
    text, markup = await flow.next_screen(state, draft, message.chat.id, lang)
    await message.answer(text, reply_markup=markup)


async def on_other_input(
    message: Message, lang: str, state: FSMContext, pipeline: UnifiedModelPipeline
) -> None:
    current = await _current_question(state, pipeline, lang)
    if current is None:
        reject(Reason.STATE_MISMATCH, "input without a question")
        await message.answer(t(lang, "flow.stale"), reply_markup=main_menu(lang))
        return
    _draft_value, view = current
    reject(Reason.VALIDATION_FAILED, f"unsupported input for {view.name}")
    if view.media is not None:
        await message.answer(_need_media(view, lang))
    else:
        await message.answer(t(lang, "flow.need_text", label=html.escape(view.label)))


async def on_input_while_confirming(message: Message, lang: str) -> None:
    reject(Reason.STATE_MISMATCH, "input while the confirmation is shown")
    await message.answer(t(lang, "flow.need_choice"))


def _need_media(view: ParamView, lang: str) -> str:
    assert view.media is not None
    kind = view.media.kind.value
    return t(
        lang,
        "flow.need_media",
        what=t(lang, f"flow.what_{kind}"),
        how=t(lang, f"flow.send_as_{kind}"),
    )
