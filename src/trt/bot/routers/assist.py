"""The prompt assistant in the generation flow: «✨ Улучшить промпт» on the confirmation, an
offered RU → EN translation when a prompt is typed for a model that wants English, and the
offer's screen: ✅ Использовать, ✏️ Изменить (send your own text), ↩️ Оставить мой.

Nothing is charged before the user has chosen; whatever the assistant does (fail, time out,
run over the allowance), the user's own prompt stays and the flow goes on.
"""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from trt.assistant import Assisted, AssistKind, AssistStatus, PromptAssistant, wants_translation
from trt.bot.callbacks import FlowAction
from trt.bot.flow import (
    Draft,
    Flow,
    FlowServices,
    assistable,
    suggestion_screen,
)
from trt.bot.keyboards import main_menu
from trt.bot.screens import show
from trt.catalog.schema import ModelSpec
from trt.i18n import t
from trt.pipeline import UnifiedModelPipeline
from trt.telemetry.events import Reason, reject

# The longest text the assistant may answer with (the offer's screen shows it whole).
ANSWER_MAX_CHARS = 2000
SUGGESTION_ACTIONS = frozenset({"use", "mine", "retype"})


def build() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_improve, FlowAction.filter(F.action == "improve"))
    router.callback_query.register(
        on_suggestion, FlowAction.filter(F.action.in_(SUGGESTION_ACTIONS))
    )
    router.message.register(on_own_text, Flow.suggesting, F.text)
    router.message.register(on_other_input, Flow.suggesting)
    return router


def answer_limit(model: ModelSpec) -> int:
    prompt = model.prompt_param
    declared = model.params[prompt].max_length if prompt else None
    return min(declared or ANSWER_MAX_CHARS, ANSWER_MAX_CHARS)


def note(outcome: Assisted, kind: AssistKind, assistant: PromptAssistant, lang: str) -> str:
    """A line above the next screen when the assistant's text is not offered ("" for none)."""
    if outcome.status in (AssistStatus.OK, AssistStatus.OFF):
        return ""
    if outcome.status is AssistStatus.UNCHANGED:
        return t(lang, f"assist.unchanged_{kind.value}")
    if outcome.status is AssistStatus.DAILY_LIMIT:
        return t(lang, "assist.daily_limit", count=assistant.settings.daily)
    return t(lang, f"assist.{outcome.status.value}")


def _with_note(text: str, line: str) -> str:
    return f"{line}\n\n{text}" if line else text


async def offer_translation(
    message: Message,
    draft: Draft,
    name: str,
    prompt: str,
    *,
    lang: str,
    state: FSMContext,
    flow: FlowServices,
    cid: str | None,
) -> bool:
    """For a model that wants English: translate `prompt` and offer it. False (nothing done)
    when there is nothing to offer; True when the next screen has been sent."""
    model = flow.pipeline.resolve_model(draft.slug)
    assistant = flow.assistant
    if not flow.assist or not wants_translation(model, prompt) or not assistable(prompt):
        return False
    assert assistant is not None
    progress = await message.answer(t(lang, "assist.translating"))
    user_id = message.from_user.id if message.from_user else message.chat.id
    outcome = await assistant.assist(
        AssistKind.TRANSLATE,
        user_id=user_id,
        model=model,
        prompt=prompt,
        limit=answer_limit(model),
        cid=cid,
    )
    if outcome.ok and outcome.text is not None:
        draft.suggestion = {"kind": "translate", "text": outcome.text, "previous": prompt}
    else:
        draft.params[name] = prompt
        draft.answered.append(name)
    text, markup = await flow.next_screen(state, draft, user_id, lang)
    await _replace(
        progress, _with_note(text, note(outcome, AssistKind.TRANSLATE, assistant, lang)), markup
    )
    return True


async def _replace(progress: Message, text: str, markup: InlineKeyboardMarkup) -> None:
    """The «Перевожу…» message becomes the next screen (a new message if it cannot)."""
    try:
        await progress.edit_text(text, reply_markup=markup)
    except TelegramBadRequest:
        await progress.answer(text, reply_markup=markup)


async def on_improve(
    callback: CallbackQuery,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
    flow: FlowServices,
    cid: str | None = None,
) -> None:
    draft = Draft.from_data(await state.get_data())
    model = pipeline.catalog.get(draft.slug) if draft else None
    prompt_param = model.prompt_param if model else None
    prompt = draft.params.get(prompt_param) if draft and prompt_param else None
    if (
        draft is None
        or model is None
        or not isinstance(prompt, str)
        or await state.get_state() != Flow.confirming.state
    ):
        reject(Reason.STATE_MISMATCH, "no confirmation with a prompt to improve")
        await show(callback, t(lang, "flow.stale"), main_menu(lang))
        return
    assistant = flow.assistant
    if not flow.assist or not assistable(prompt):
        reject(Reason.STATE_MISMATCH, "the assistant is not offered for this prompt")
        text, markup = await flow.next_screen(state, draft, callback.from_user.id, lang)
        await show(callback, text, markup)
        return
    assert assistant is not None
    await show(callback, t(lang, "assist.improving"), InlineKeyboardMarkup(inline_keyboard=[]))
    outcome = await assistant.assist(
        AssistKind.IMPROVE,
        user_id=callback.from_user.id,
        model=model,
        prompt=prompt,
        limit=answer_limit(model),
        cid=cid,
    )
    if outcome.ok and outcome.text is not None:
        draft.suggestion = {"kind": "improve", "text": outcome.text, "previous": prompt}
    text, markup = await flow.next_screen(state, draft, callback.from_user.id, lang)
    await show(
        callback, _with_note(text, note(outcome, AssistKind.IMPROVE, assistant, lang)), markup
    )


async def on_suggestion(
    callback: CallbackQuery,
    callback_data: FlowAction,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
    flow: FlowServices,
) -> None:
    offer = await _open_offer(state, pipeline)
    if offer is None:
        reject(Reason.STATE_MISMATCH, "no assistant's offer open")
        await show(callback, t(lang, "flow.stale"), main_menu(lang))
        return
    draft, model, suggestion = offer
    name = model.prompt_param
    assert name is not None  # _open_offer checked it
    if callback_data.action == "retype":
        text, markup = suggestion_screen(model, suggestion, lang, retype=True)
        await show(callback, text, markup)
        return
    _settle(draft, name, suggestion["text" if callback_data.action == "use" else "previous"])
    text, markup = await flow.next_screen(state, draft, callback.from_user.id, lang)
    await show(callback, text, markup)


async def _open_offer(
    state: FSMContext, pipeline: UnifiedModelPipeline
) -> tuple[Draft, ModelSpec, dict[str, str]] | None:
    """The draft with the assistant's offer open, its model (one with a prompt), the offer."""
    draft = Draft.from_data(await state.get_data())
    model = pipeline.catalog.get(draft.slug) if draft else None
    if draft is None or model is None or draft.suggestion is None or model.prompt_param is None:
        return None
    return draft, model, draft.suggestion


def _settle(draft: Draft, name: str, prompt: str) -> None:
    """`prompt` goes to the model; the user's first own text is kept as the original."""
    assert draft.suggestion is not None
    draft.original = draft.original or draft.suggestion["previous"]
    draft.params[name] = prompt
    if name not in draft.answered:
        draft.answered.append(name)
    draft.suggestion = None


async def on_own_text(
    message: Message,
    lang: str,
    state: FSMContext,
    pipeline: UnifiedModelPipeline,
    flow: FlowServices,
) -> None:
    """Text sent while the offer is shown: the user's own edit, taken as the prompt as typed."""
    offer = await _open_offer(state, pipeline)
    if offer is None:
        reject(Reason.STATE_MISMATCH, "text for an offer no longer open")
        await state.clear()
        await message.answer(t(lang, "flow.stale"), reply_markup=main_menu(lang))
        return
    draft, model, _suggestion = offer
    name = model.prompt_param
    assert name is not None  # _open_offer checked it
    typed = message.text or ""
    errors = [
        e
        for e in pipeline.validate(draft.slug, {**draft.params, name: typed}, lang).errors
        if e.field == name
    ]
    if errors:
        reject(Reason.VALIDATION_FAILED, "; ".join(e.message for e in errors)[:300])
        await message.answer("\n".join(html.escape(e.message) for e in errors))
        return
    _settle(draft, name, typed)
    text, markup = await flow.next_screen(state, draft, message.chat.id, lang)
    await message.answer(text, reply_markup=markup)


async def on_other_input(message: Message, lang: str) -> None:
    reject(Reason.VALIDATION_FAILED, "not text while the assistant's offer is shown")
    await message.answer(t(lang, "assist.need_text"))
