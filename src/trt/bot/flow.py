"""The generation flow's logic, apart from Telegram: what to ask next, what each screen says.

Everything comes from the catalogue through the pipeline; nothing here knows a model.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from trt.assistant import PromptAssistant
from trt.billing.wallets import WalletService
from trt.bot.callbacks import (
    Confirm,
    FlowAction,
    Menu,
    ParamMenu,
    ParamOpen,
    ParamSet,
)
from trt.bot.keyboards import pager_row
from trt.catalog.pricing import Quote
from trt.catalog.rules import media_items
from trt.catalog.schema import ModelSpec, Role, Ui
from trt.i18n import plural, t
from trt.jobs.service import JobService
from trt.pipeline import ModelSchema, ParamView, UnifiedModelPipeline, duration_rule

OPTIONS_PER_PAGE = 12
TELEGRAM_DOWNLOAD_LIMIT_MB = 20  # the Bot API's getFile cannot fetch bigger user files
# The assistant's offer shows its text and the user's (a message holds 4,096 characters).
ASSIST_MAX_CHARS = 1500


class Flow(StatesGroup):
    collecting = State()
    confirming = State()
    suggesting = State()  # the prompt assistant's text is shown: use it, edit it, or keep mine


@dataclass
class Draft:
    """What the user has chosen so far (kept in the FSM data)."""

    slug: str
    params: dict[str, Any] = field(default_factory=dict)
    answered: list[str] = field(default_factory=list)
    draft: str = field(default_factory=lambda: uuid.uuid4().hex)
    # What the user typed, once the prompt assistant's text replaced it (kept on the job).
    original: str | None = None
    # The assistant's offer on screen: {"kind", "text", "previous"} (previous: the prompt
    # «↩️ Оставить мой» restores).
    suggestion: dict[str, str] | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "slug": self.slug,
            "params": self.params,
            "answered": self.answered,
            "draft": self.draft,
        }
        if self.original is not None:
            data["original"] = self.original
        if self.suggestion is not None:
            data["suggestion"] = self.suggestion
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Draft | None:
        if not isinstance(data.get("slug"), str):
            return None
        original = data.get("original")
        suggestion = data.get("suggestion")
        valid = isinstance(suggestion, dict) and all(
            isinstance(suggestion.get(key), str) for key in ("kind", "text", "previous")
        )
        return cls(
            data["slug"],
            dict(data.get("params") or {}),
            list(data.get("answered") or []),
            str(data.get("draft") or uuid.uuid4().hex),
            original if isinstance(original, str) else None,
            dict(suggestion) if valid and isinstance(suggestion, dict) else None,
        )

    def prompt_original(self, prompt_param: str | None) -> str | None:
        """What the user typed, if a different text goes to the model as `prompt_param`."""
        if self.original is None or prompt_param is None:
            return None
        return self.original if self.params.get(prompt_param) != self.original else None


async def save_draft(
    state: FSMContext, draft: Draft, *, confirming: bool = False, suggesting: bool = False
) -> None:
    await state.set_state(
        Flow.suggesting if suggesting else Flow.confirming if confirming else Flow.collecting
    )
    await state.set_data(draft.to_data())


@dataclass(frozen=True, slots=True)
class FlowServices:
    """What the flow's screens read, injected into handlers as `flow` (built once)."""

    pipeline: UnifiedModelPipeline
    jobs: JobService
    wallets: WalletService
    assistant: PromptAssistant | None = None

    @property
    def assist(self) -> bool:
        """Whether «✨ Улучшить промпт» and the translation are offered."""
        return self.assistant is not None and self.assistant.enabled

    async def next_screen(
        self, state: FSMContext, draft: Draft, user_id: int, lang: str
    ) -> tuple[str, InlineKeyboardMarkup]:
        """The assistant's offer while one is open, else the next question, or the
        confirmation once everything is answered (the draft saved in the matching state)."""
        schema = self.pipeline.get_schema(draft.slug, lang)
        if draft.suggestion is not None:
            await save_draft(state, draft, suggesting=True)
            return suggestion_screen(schema.model, draft.suggestion, lang)
        view = next_question(schema, draft)
        if view is not None:
            await save_draft(state, draft)
            return question_screen(schema, draft, view, lang)
        await save_draft(state, draft, confirming=True)
        return await self.confirm_screen(draft, user_id, lang)

    async def confirm_screen(
        self, draft: Draft, user_id: int, lang: str
    ) -> tuple[str, InlineKeyboardMarkup]:
        """The confirmation of `draft` at the user's balance now."""
        model = self.pipeline.resolve_model(draft.slug)
        text, markup, _quote = confirm_screen(
            self.pipeline,
            draft,
            lang,
            balance_kop=(await self.wallets.balance(user_id)).available_kop,
            free_left=await self.jobs.free_left(user_id) if model.free else None,
            assist=self.assist,
        )
        return text, markup


def questions(schema: ModelSchema, draft: Draft) -> list[ParamView]:
    """What the flow asks, in order: the mode first (it decides what else is asked), then
    the uploads that mode needs, the prompt, the optional uploads (references, an end frame:
    «⏭ Пропустить»), then choices."""
    asked = [p for p in schema.in_mode(draft.params) if p.ui is Ui.ASK]
    controllers = schema.controllers
    modes = [p for p in asked if p.name in controllers]
    rest = [p for p in asked if p.name not in controllers]
    needed = [p for p in rest if p.media is not None and not p.optional]
    prompt = [p for p in rest if p.role is Role.PROMPT]
    optional = [p for p in rest if p.media is not None and p.optional]
    choices = [p for p in rest if p.media is None and p.role is not Role.PROMPT]
    return modes + needed + prompt + optional + choices


def next_question(schema: ModelSchema, draft: Draft) -> ParamView | None:
    for view in questions(schema, draft):
        if view.name not in draft.answered:
            return view
    return None


def media_count(draft: Draft, name: str) -> int:
    return len(media_items(draft.params.get(name)))


def media_limit(view: ParamView) -> int:
    return view.most


def nav_row(lang: str) -> list[InlineKeyboardButton]:
    return [
        InlineKeyboardButton(
            text=t(lang, "menu.back"), callback_data=FlowAction(action="back").pack()
        ),
        InlineKeyboardButton(
            text=t(lang, "flow.cancel"), callback_data=FlowAction(action="cancel").pack()
        ),
    ]


def question_screen(
    schema: ModelSchema, draft: Draft, view: ParamView, lang: str
) -> tuple[str, InlineKeyboardMarkup]:
    model = schema.model
    title = html.escape(model.title.get(lang))
    label = html.escape(view.label)
    rows: list[list[InlineKeyboardButton]] = []
    if view.media is not None:
        count = media_count(draft, view.name)
        if count:
            text = t(lang, "flow.ask_media_more", label=label, count=count, max=view.most)
        else:
            text = t(
                lang,
                "flow.ask_media",
                label=label,
                what=media_wanted(view, lang),
                model=title,
                rules=media_rules(view, lang),
            )
        if count >= view.least:
            done = (
                t(lang, "flow.done_count", count=count) if view.most > 1 else t(lang, "flow.done")
            )
            rows.append(
                [InlineKeyboardButton(text=done, callback_data=FlowAction(action="done").pack())]
            )
        elif count == 0 and view.optional:
            rows.append(
                [
                    InlineKeyboardButton(
                        text=t(lang, "flow.skip"), callback_data=FlowAction(action="skip").pack()
                    )
                ]
            )
    elif view.role in (Role.PROMPT, Role.TEXT):
        limit = view.rule or plural(lang, "plural.chars", 4000)
        text = t(lang, "flow.ask_prompt", label=label, model=title, limit=limit)
    elif view.options:
        text = t(lang, "flow.ask_choice", label=label)
        rows.extend(option_rows(model, schema, view, draft, lang, page=0))
    else:
        rule = f" ({view.rule})" if view.rule else ""
        text = t(lang, "flow.ask_number", label=label, rule=rule)
    rows.append(nav_row(lang))
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


def option_rows(
    model: ModelSpec, schema: ModelSchema, view: ParamView, draft: Draft, lang: str, page: int
) -> list[list[InlineKeyboardButton]]:
    index = list(model.params).index(view.name)
    current = draft.params.get(view.name, view.default)
    options = list(enumerate(view.options))
    pages = max(1, -(-len(options) // OPTIONS_PER_PAGE))
    page = min(max(page, 0), pages - 1)
    chunk = options[page * OPTIONS_PER_PAGE : (page + 1) * OPTIONS_PER_PAGE]
    buttons = [
        InlineKeyboardButton(
            text=("• " if option.value == current else "") + option.label,
            callback_data=ParamSet(slug=model.slug, param=index, value=position).pack(),
        )
        for position, option in chunk
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    navigation = pager_row(
        lang, page, pages, lambda target: ParamOpen(slug=model.slug, param=index, page=target)
    )
    if navigation:
        rows.append(navigation)
    return rows


def confirm_screen(
    pipeline: UnifiedModelPipeline,
    draft: Draft,
    lang: str,
    *,
    balance_kop: int,
    free_left: int | None,
    assist: bool = False,
) -> tuple[str, InlineKeyboardMarkup, Quote]:
    model = pipeline.resolve_model(draft.slug)
    params = pipeline.apply_defaults(pipeline.get_schema(model.slug, lang), draft.params)
    quote = pipeline.quote(model.slug, params)
    free = model.free and bool(free_left)
    text = pipeline.format_confirmation_text(
        model, params, quote, balance_kop, lang, free_left=free_left if model.free else None
    )
    affordable = free or balance_kop >= quote.amount_kop
    first = (
        InlineKeyboardButton(
            text=t(lang, "flow.generate"), callback_data=Confirm(draft=draft.draft).pack()
        )
        if affordable
        else InlineKeyboardButton(
            text=t(lang, "flow.top_up"), callback_data=Menu(screen="balance").pack()
        )
    )
    rows = [[first]]
    prompt = draft.params.get(model.prompt_param) if model.prompt_param else None
    if assist and isinstance(prompt, str) and assistable(prompt):
        rows.append(
            [
                InlineKeyboardButton(
                    text=t(lang, "assist.improve"),
                    callback_data=FlowAction(action="improve").pack(),
                )
            ]
        )
    second = []
    if pipeline.get_schema(model.slug, lang).options:
        second.append(
            InlineKeyboardButton(
                text=t(lang, "flow.settings"), callback_data=ParamMenu(slug=model.slug).pack()
            )
        )
    if model.prompt_param is not None:
        second.append(
            InlineKeyboardButton(
                text=t(lang, "flow.edit"), callback_data=FlowAction(action="edit").pack()
            )
        )
    if second:
        rows.append(second)
    rows.append(
        [
            InlineKeyboardButton(
                text=t(lang, "flow.cancel"), callback_data=FlowAction(action="cancel").pack()
            )
        ]
    )
    return text, InlineKeyboardMarkup(inline_keyboard=rows), quote


def assistable(prompt: str) -> bool:
    """Whether the assistant is offered for this prompt (a longer one would not fit its
    screen, a Telegram message, beside the user's own text)."""
    return 0 < len(prompt.strip()) <= ASSIST_MAX_CHARS


def suggestion_screen(
    model: ModelSpec, suggestion: dict[str, str], lang: str, *, retype: bool = False
) -> tuple[str, InlineKeyboardMarkup]:
    """The assistant's text, to use, edit (send your own) or leave for the user's own."""
    text = html.escape(suggestion["text"])
    previous = html.escape(_clip(suggestion["previous"], 400))
    title = html.escape(model.title.get(lang))
    if retype:
        body = t(lang, "assist.retype", text=text)
    elif suggestion["kind"] == "translate":
        body = t(lang, "assist.translated", model=title, text=text, previous=previous)
    else:
        body = t(lang, "assist.improved", model=title, text=text, previous=previous)
    use = InlineKeyboardButton(
        text=t(lang, "assist.use"), callback_data=FlowAction(action="use").pack()
    )
    mine = InlineKeyboardButton(
        text=t(lang, "assist.mine"), callback_data=FlowAction(action="mine").pack()
    )
    edit = InlineKeyboardButton(
        text=t(lang, "assist.edit"), callback_data=FlowAction(action="retype").pack()
    )
    rows = [[use, mine]] if retype else [[use, edit], [mine]]
    return body, InlineKeyboardMarkup(inline_keyboard=rows)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def settings_screen(
    pipeline: UnifiedModelPipeline, draft: Draft, lang: str
) -> tuple[str, InlineKeyboardMarkup]:
    schema = pipeline.get_schema(draft.slug, lang)
    model = schema.model
    params = pipeline.apply_defaults(schema, draft.params)
    rows = []
    used = {view.name for view in schema.in_mode(draft.params)}
    for view in schema.options:
        if view.name not in used:
            continue  # not used in the chosen mode
        if view.role in (Role.PROMPT, Role.TEXT) or view.ui is Ui.HIDDEN:
            continue
        if not view.options:
            continue  # free numbers without presets stay at their defaults
        value = params.get(view.name, view.default)
        shown = (
            pipeline.catalog.value_label(model, view.name, value, lang)
            if value is not None
            else "—"
        )
        index = list(model.params).index(view.name)
        rows.append(
            [
                InlineKeyboardButton(
                    text=t(lang, "flow.setting_button", label=view.label, value=shown),
                    callback_data=ParamOpen(slug=model.slug, param=index, page=0).pack(),
                )
            ]
        )
    rows.append(
        [
            InlineKeyboardButton(
                text=t(lang, "flow.to_confirm"), callback_data=FlowAction(action="confirm").pack()
            )
        ]
    )
    text = t(lang, "flow.settings_title", model=html.escape(model.title.get(lang)))
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


def media_wanted(view: ParamView, lang: str) -> str:
    """«фото», «1–3 фото», «до 14 фото», «2 фото»: what an upload step asks for."""
    assert view.media is not None
    kind = view.media.kind.value
    if view.most == 1:
        return t(lang, f"flow.what_{kind}")
    what = plural(lang, f"plural.{kind}", view.most).split(" ", 1)[1]
    if view.least == view.most:
        return t(lang, "flow.count_exact", count=view.most, what=what)
    if view.optional:
        return t(lang, "flow.count_max", maximum=view.most, what=what)
    return t(lang, "flow.count_range", minimum=view.least, maximum=view.most, what=what)


def media_rules(view: ParamView, lang: str) -> str:
    """Formats, size and length limits of an upload step, and whether it may be skipped."""
    media = view.media
    assert media is not None
    lines = [
        t(
            lang,
            "flow.media_rules",
            formats=", ".join(media.formats).upper(),
            mb=_mb(min(media.max_mb, TELEGRAM_DOWNLOAD_LIMIT_MB)),
        )
    ]
    if media.min_duration_s is not None or media.max_duration_s is not None:
        rule = duration_rule(media.min_duration_s, media.max_duration_s, lang)
        lines.append(t(lang, "flow.media_length", rule=rule))
    if view.optional:
        lines.append(t(lang, "flow.media_optional"))
    return "\n".join(lines)


def _mb(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
