"""Alerts to admins, rate-limited: KIE credits running low, a model failing too often, and a
payment that only the reconciliation found (a sign that updates or notifications are missed).

Runs on the ACTIVE instance. Each alert has a key (its kind and subject) and is sent at most
once per `cooldown_s` per key, so a persisting problem does not flood the admins' chats.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from trt.catalog.pricing import format_money
from trt.db.database import Database
from trt.db.models import Job, utcnow
from trt.i18n import DEFAULT_LANG, t
from trt.kie.client import KieClient
from trt.kie.errors import KieError
from trt.logs import get_logger
from trt.telegram.sender import RetryLater, Sender, Undeliverable
from trt.telemetry.events import Event

log = get_logger(__name__)
CHECK_EVERY_S = 300.0
FAILURE_WINDOW = timedelta(hours=1)
MIN_FINISHED = 5  # a failure rate over fewer jobs says nothing


class Alerts:
    def __init__(
        self,
        database: Database,
        sender: Sender,
        kie: KieClient | None,
        *,
        admin_ids: frozenset[int],
        low_credits: int = 1000,
        failure_rate: float = 0.3,
        cooldown_s: float = 3600.0,
    ) -> None:
        self.database = database
        self.sender = sender
        self.kie = kie
        self.admin_ids = admin_ids
        self.low_credits = low_credits
        self.failure_rate = failure_rate
        self.cooldown_s = cooldown_s
        self._last: dict[str, float] = {}
        self._pending: set[asyncio.Task[bool]] = set()

    async def alert(self, key: str, text: str) -> bool:
        """Send `text` to every admin unless `key` was alerted within the cooldown."""
        now = time.monotonic()
        if now - self._last.get(key, -self.cooldown_s) < self.cooldown_s:
            return False
        self._last[key] = now
        log.warning("admin_alert", key=key)
        for admin_id in sorted(self.admin_ids):
            try:
                await self.sender.text(admin_id, text)
            except (RetryLater, Undeliverable) as error:
                log.warning("admin_alert_not_sent", admin_id=admin_id, error=str(error)[:200])
        return True

    def sink(self, record: dict[str, Any]) -> None:
        """Telemetry sink: a reconciliation credit becomes an alert (sent in the background)."""
        if record.get("event") == Event.PAYMENT_CREDITED and record.get("reconciled"):
            text = t(
                DEFAULT_LANG,
                "alerts.reconciled",
                method=record.get("method"),
                amount=format_money(int(record.get("amount_kop") or 0)),
                user_id=record.get("user_id"),
            )
            task = asyncio.get_running_loop().create_task(
                self.alert(f"reconciled:{record.get('payment_id')}", text)
            )
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def check(self) -> list[str]:
        """Look at KIE's balance and the models' failure rates; the keys alerted now."""
        sent = []
        if self.kie is not None:
            try:
                credits = await self.kie.credit()
            except KieError as error:
                log.warning("kie_credit_unknown", error=str(error)[:200])
            else:
                if credits < self.low_credits and await self.alert(
                    "kie_credits", t(DEFAULT_LANG, "alerts.kie_low", credits=credits)
                ):
                    sent.append("kie_credits")
        since = utcnow() - FAILURE_WINDOW
        async with self.database.unit_of_work(readonly=True) as session:
            rows = (
                await session.execute(
                    select(Job.model_slug, Job.status).where(
                        Job.finished_at >= since, Job.finished_at.is_not(None)
                    )
                )
            ).all()
        finished: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for model, status in rows:
            finished[model] += 1
            if status in ("failed", "timed_out"):
                failed[model] += 1
        for model, count in finished.items():
            rate = failed[model] / count
            if count >= MIN_FINISHED and rate >= self.failure_rate:
                text = t(
                    DEFAULT_LANG, "alerts.failing", model=model, rate=f"{rate:.0%}", count=count
                )
                if await self.alert(f"failing:{model}", text):
                    sent.append(f"failing:{model}")
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except Exception:  # alerts are a courtesy: never stop the ACTIVE work
                log.exception("alerts_check_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_EVERY_S)
