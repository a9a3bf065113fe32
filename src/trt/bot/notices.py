"""What the bot tells a user about their job, rendered from the outbox row's data.

jobs/ writes notices as data (`notice`, the model, amounts, the reason code, the language of
the person told); this is the one place they become words, at send time, in the user's
language. Rows written before notices were data carry their text already (`text`, `caption`)
and are sent as they are.
"""

from __future__ import annotations

import html
from typing import Any

from trt.catalog.pricing import format_money
from trt.i18n import t
from trt.kie.errors import kind_of
from trt.pipeline import CATEGORY_ICONS, UnifiedModelPipeline, format_eta


class Notices:
    """`trt.jobs.outbox.Notices` for the relay: a notice's text, a result's caption, links."""

    def __init__(self, pipeline: UnifiedModelPipeline) -> None:
        self.pipeline = pipeline

    def title(self, lang: str, slug: str) -> str:
        model = self.pipeline.catalog.get(slug)
        return model.title.get(lang) if model else slug

    def text(self, lang: str, slug: str, payload: dict[str, Any]) -> str:
        """A notice's text (progress, failure, undelivered, a referral bonus)."""
        notice = payload.get("notice")
        if notice is None:  # a row from before notices were data
            return str(payload.get("text") or payload.get("caption") or "")
        lang = str(payload.get("lang") or lang)  # who is told (an inviter has their own)
        model = self.title(lang, slug)
        refund = format_money(int(payload.get("refund_kop", 0)))
        if notice == "running":
            found = self.pipeline.catalog.get(slug)
            icon = CATEGORY_ICONS[found.category] if found else "⏳"
            eta = format_eta(found.typical_duration_s if found else 60, lang)
            return t(lang, "jobs.running", icon=icon, model=model, eta=eta)
        if notice == "result":
            key = "jobs.result_free" if payload.get("free") else "jobs.result"
            return t(lang, key, model=model)
        if notice == "failed":
            code = kind_of(str(payload.get("reason", ""))).code  # an unknown one: "unknown"
            reason = t(lang, f"kie_reasons.{code}")
            key = "jobs.failed_free" if payload.get("free") else "jobs.failed"
            return t(lang, key, model=model, reason=reason, refund=refund)
        if notice == "undelivered":
            return t(lang, "jobs.undelivered", model=model, refund=refund)
        if notice == "referral_bonus":
            amount = format_money(int(payload.get("amount_kop", 0)))
            return t(lang, "pay.referral_bonus", amount=amount)
        raise ValueError(f"unknown notice {notice!r}")

    def links(self, lang: str, slug: str, size_bytes: int, urls: list[str]) -> str:
        """A result sent as links (too big for Telegram, or refused by it)."""
        return link_text(lang, html.escape(self.title(lang, slug)), size_bytes, urls)


def link_text(lang: str, model: str, size_bytes: int, urls: list[str]) -> str:
    """A result sent as links; `model` is HTML."""
    return t(
        lang,
        "jobs.link",
        model=model,
        size=f"{size_bytes / 1024 / 1024:.0f} MB",
        url="\n".join(html.escape(url) for url in urls),  # `&` in a query is markup
    )
