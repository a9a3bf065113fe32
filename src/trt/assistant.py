"""The prompt assistant: a cheap KIE chat model improves a prompt, or translates it to English
for the models whose providers ask for English.

It is an offer, never a gate: every way it can fail (off, over the allowance, too fast, KIE
down, an empty or over-long answer) is an `Assisted` with a status, and the flow keeps the
user's own prompt. Nothing is charged for it: each user has `PROMPT_ASSISTANT_DAILY` uses a
(UTC) day, counted from the `prompt_assists` rows so that the allowance holds across
instances, and at most `PROMPT_ASSISTANT_PER_MINUTE` attempts a minute. No user-facing text
lives here: bot/ renders the statuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import case, func, insert, select

from trt.catalog.schema import Category, ModelSpec
from trt.config import AssistantSettings
from trt.db.database import Database
from trt.db.models import PromptAssist, utcnow
from trt.kie.client import KieClient
from trt.kie.errors import KieError
from trt.logs import get_logger
from trt.telemetry.events import Event, telemetry

log = get_logger(__name__)

_CYRILLIC = re.compile(r"[А-Яа-яЁё]")
_FENCE = re.compile(r"^```[a-z]*\s*|\s*```$")
_LABEL = re.compile(r"^(?:improved |translated |english )?prompt\s*:\s*", re.IGNORECASE)
_QUOTES = {'"': '"', "«": "»", "“": "”", "'": "'"}

# What a better prompt adds, by category (the model is told; it is not user text).
_FOCUS = {
    Category.IMAGE: "subject, composition, lighting, colour, style and lens",
    Category.EDIT: "exactly what to change and what to keep unchanged",
    Category.ENHANCE: "what to restore or sharpen",
    Category.VIDEO: "the action, camera movement, pacing, lighting and style",
    Category.AUDIO: "genre, mood, instruments, tempo and vocals",
}


class AssistKind(StrEnum):
    IMPROVE = "improve"
    TRANSLATE = "translate"


class AssistStatus(StrEnum):
    OK = "ok"  # `text` is the suggestion
    UNCHANGED = "unchanged"  # the model had nothing to add
    OFF = "off"  # switched off, or no KIE client
    BUSY = "busy"  # this user's previous request is still running
    DAILY_LIMIT = "daily_limit"
    RATE_LIMIT = "rate_limit"
    FAILED = "failed"  # KIE failed or answered something unusable


@dataclass(frozen=True, slots=True)
class Assisted:
    status: AssistStatus
    text: str | None = None
    left: int | None = None  # uses left today, after this one
    detail: str = ""  # why it failed, for the event and the log (never shown to users)

    @property
    def ok(self) -> bool:
        return self.status is AssistStatus.OK


def has_cyrillic(text: str) -> bool:
    return _CYRILLIC.search(text) is not None


def wants_translation(model: ModelSpec, prompt: str) -> bool:
    """Whether a prompt typed for `model` is offered an English translation."""
    return model.english_prompt and has_cyrillic(prompt)


def instructions(kind: AssistKind, model: ModelSpec, limit: int | None) -> str:
    """The system message: what the chat model is asked to do with the user's prompt."""
    title = model.title.en
    bound = f" Stay under {limit} characters." if limit else ""
    keep = (
        "Keep every detail the user gave. Keep any text in quotes exactly as written: it is "
        "text to appear in the result."
    )
    only = "Answer with the prompt only: no preface, no explanation, no quotes, no markdown."
    if kind is AssistKind.TRANSLATE:
        return (
            f"Translate the user's prompt for the generation model {title} into English. "
            f"{keep} Add nothing, leave nothing out.{bound} Answer in English. {only}"
        )
    language = (
        "Answer in English."
        if model.english_prompt
        else "Answer in the language the user wrote in."
    )
    return (
        f"Improve the user's prompt for the {model.category.value} generation model {title}, "
        f"so that it gives a better result. {keep} Make it concrete about "
        f"{_FOCUS[model.category]}; do not invent a different subject or scene.{bound} "
        f"{language} {only}"
    )


def clean(answer: str) -> str:
    """The prompt inside a chat answer: without code fences, a «Prompt:» label, or quotes
    around the whole of it."""
    text = _FENCE.sub("", answer.strip()).strip()
    text = _LABEL.sub("", text).strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        inner = text[1:-1]
        if text[0] not in inner and text[-1] not in inner:
            text = inner.strip()
    return text


class PromptAssistant:
    def __init__(
        self, database: Database, kie: KieClient | None, settings: AssistantSettings
    ) -> None:
        self.database = database
        self.kie = kie
        self.settings = settings
        self._busy: set[int] = set()

    @property
    def enabled(self) -> bool:
        return self.settings.enabled and self.kie is not None and self.settings.daily > 0

    async def left_today(self, user_id: int) -> int:
        used, _recent = await self._usage(user_id)
        return max(0, self.settings.daily - used)

    async def assist(
        self,
        kind: AssistKind,
        *,
        user_id: int,
        model: ModelSpec,
        prompt: str,
        limit: int | None,
        cid: str | None = None,
    ) -> Assisted:
        """Ask the chat model; record the use; never raise for anything KIE does."""
        if not self.enabled or self.kie is None:
            return self._told(kind, model, Assisted(AssistStatus.OFF), cid)
        if user_id in self._busy:
            return self._told(kind, model, Assisted(AssistStatus.BUSY), cid)
        self._busy.add(user_id)
        try:
            used, recent = await self._usage(user_id)
            left = max(0, self.settings.daily - used)
            if left == 0:
                return self._told(kind, model, Assisted(AssistStatus.DAILY_LIMIT, left=0), cid)
            if recent >= self.settings.per_minute:
                return self._told(kind, model, Assisted(AssistStatus.RATE_LIMIT, left=left), cid)
            outcome = await self._ask(kind, model, prompt, limit, left)
            await self._record(user_id, kind, model, prompt, outcome, cid)
            return self._told(kind, model, outcome, cid)
        finally:
            self._busy.discard(user_id)

    async def _ask(
        self, kind: AssistKind, model: ModelSpec, prompt: str, limit: int | None, left: int
    ) -> Assisted:
        assert self.kie is not None
        messages = [
            {"role": "system", "content": instructions(kind, model, limit)},
            {"role": "user", "content": prompt},
        ]
        try:
            answer = await self.kie.chat(
                self.settings.model, messages, timeout_s=self.settings.timeout_s
            )
        except KieError as error:
            return Assisted(AssistStatus.FAILED, left=left, detail=str(error)[:200])
        text = clean(answer)
        if not text:
            return Assisted(AssistStatus.FAILED, left=left, detail="an empty answer")
        if limit is not None and len(text) > limit:
            return Assisted(
                AssistStatus.FAILED, left=left, detail=f"{len(text)} characters over {limit}"
            )
        english = kind is AssistKind.TRANSLATE or model.english_prompt
        if english and has_cyrillic(_unquoted(text)):
            return Assisted(AssistStatus.FAILED, left=left, detail="the answer is not English")
        if text == prompt.strip():
            return Assisted(AssistStatus.UNCHANGED, left=left - 1)
        return Assisted(AssistStatus.OK, text, left=left - 1)

    async def _usage(self, user_id: int) -> tuple[int, int]:
        """(successful uses today, attempts in the last minute)."""
        now = utcnow()
        day = datetime(now.year, now.month, now.day, tzinfo=UTC)
        minute_ago = now - timedelta(minutes=1)
        async with self.database.unit_of_work(readonly=True) as session:
            row = (
                await session.execute(
                    select(
                        func.count().filter(PromptAssist.ok.is_(True)),
                        func.sum(case((PromptAssist.created_at >= minute_ago, 1), else_=0)),
                    ).where(PromptAssist.user_id == user_id, PromptAssist.created_at >= day)
                )
            ).one()
        return int(row[0] or 0), int(row[1] or 0)

    async def _record(
        self,
        user_id: int,
        kind: AssistKind,
        model: ModelSpec,
        prompt: str,
        outcome: Assisted,
        cid: str | None,
    ) -> None:
        async with self.database.unit_of_work() as session:
            await session.execute(
                insert(PromptAssist).values(
                    user_id=user_id,
                    kind=kind.value,
                    model_slug=model.slug,
                    original=prompt,
                    result=outcome.text,
                    ok=outcome.status in (AssistStatus.OK, AssistStatus.UNCHANGED),
                    cid=cid,
                    created_at=utcnow(),
                )
            )

    def _told(
        self, kind: AssistKind, model: ModelSpec, outcome: Assisted, cid: str | None
    ) -> Assisted:
        telemetry.emit(
            Event.PROMPT_ASSISTED,
            cid=cid,
            kind=kind.value,
            model=model.slug,
            status=outcome.status.value,
            reason_detail=outcome.detail or None,
        )
        return outcome


def _unquoted(text: str) -> str:
    """`text` without its quoted parts (text to render stays in the user's language)."""
    return re.sub(r"«[^»]*»|\"[^\"]*\"|“[^”]*”", "", text)
