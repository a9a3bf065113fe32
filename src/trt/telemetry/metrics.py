"""Prometheus metrics for `/metrics`: fed by telemetry events, plus gauges read at scrape time.

Counters and histograms move with events (a telemetry sink, so metrics cannot disagree with the
logs); job and ledger gauges are read from the database when Prometheus scrapes, so every
instance reports the shared truth.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select

from trt.db.database import Database
from trt.db.models import Job, LedgerAccount
from trt.telemetry.events import Event

GAUGES_TTL_S = 15.0  # scrapes within this window reuse the gauges read from the database
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, database: Database, *, role: str = "passive") -> None:
        self.database = database
        self.registry = CollectorRegistry()
        r = self.registry
        self.updates = Counter(
            "trt_updates_total", "Telegram updates by type", ["type"], registry=r
        )
        self.callbacks = Counter(
            "trt_callbacks_total", "Callback queries by handler", ["handler"], registry=r
        )
        self.rejections = Counter(
            "trt_rejections_total", "Refusals by reason code", ["reason"], registry=r
        )
        self.dispatch = Histogram(
            "trt_dispatch_seconds",
            "Update handling time",
            ["outcome"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.callback_answer = Histogram(
            "trt_callback_answer_seconds",
            "Time from a tap's arrival to its answerCallbackQuery",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.kie_errors = Counter(
            "trt_kie_errors_total", "KIE errors by code", ["code"], registry=r
        )
        self.deliveries = Counter(
            "trt_deliveries_total", "Results delivered", ["outcome"], registry=r
        )
        self.callbacks_refused = Counter(
            "trt_kie_callbacks_refused_total",
            "KIE callbacks refused before anything was stored, by reason",
            ["reason"],
            registry=r,
        )
        self.jobs = Gauge("trt_jobs", "Jobs by state and model", ["state", "model"], registry=r)
        self.ledger = Gauge("trt_ledger_kopecks", "Ledger totals", ["kind"], registry=r)
        self.role = Gauge("trt_leader_role", "1 for this instance's role", ["role"], registry=r)
        self.epoch = Gauge("trt_leader_epoch", "The fencing epoch held (0: none)", registry=r)
        self.set_role(role, None)
        self._gauges_read_at: float | None = None

    def set_role(self, role: str, epoch: int | None) -> None:
        """A leadership listener: exactly one of active / passive is 1."""
        for name in ("active", "passive"):
            self.role.labels(role=name).set(1 if name == str(role) else 0)
        self.epoch.set(epoch or 0)

    def sink(self, record: dict[str, Any]) -> None:
        """Telemetry sink: every event that a metric counts."""
        name = record.get("event")
        if name == Event.UPDATE_RECEIVED:
            self.updates.labels(type=str(record.get("kind") or "unknown")).inc()
        elif name == Event.CALLBACK_ACCEPTED:
            self.callbacks.labels(handler=str(record.get("handler", "?"))).inc()
        elif name in (Event.CALLBACK_REJECTED, Event.MESSAGE_REJECTED, Event.PASSIVE_REJECT):
            self.rejections.labels(reason=str(record.get("reason_code", "?"))).inc()
        elif name in (Event.DISPATCH_OK, Event.DISPATCH_ERROR):
            latency = record.get("latency_ms")
            outcome = "ok" if name == Event.DISPATCH_OK else "error"
            if isinstance(latency, (int, float)):
                self.dispatch.labels(outcome=outcome).observe(latency / 1000)
            if outcome == "error":
                self.rejections.labels(reason=str(record.get("reason_code", "?"))).inc()
        elif name == Event.CALLBACK_ANSWERED:
            latency = record.get("latency_ms")
            if isinstance(latency, (int, float)):
                self.callback_answer.observe(latency / 1000)
        elif name == Event.KIE_ERROR:
            self.kie_errors.labels(code=str(record.get("code", "?"))).inc()
        elif name == Event.DELIVERED:
            self.deliveries.labels(outcome=str(record.get("outcome", "sent"))).inc()

    async def refresh(self) -> None:
        """Read the job and ledger gauges from the database (at scrape time).

        At most once per `GAUGES_TTL_S`: the reads are GROUP BYs over jobs and the ledger, and
        a scrape loop (or anyone with the token) must not turn into database load."""
        now = time.monotonic()
        if self._gauges_read_at is not None and now - self._gauges_read_at < GAUGES_TTL_S:
            return
        self._gauges_read_at = now
        async with self.database.unit_of_work(readonly=True) as session:
            rows = (
                await session.execute(
                    select(Job.status, Job.model_slug, func.count()).group_by(
                        Job.status, Job.model_slug
                    )
                )
            ).all()
            wallets = (
                await session.execute(
                    select(
                        func.coalesce(func.sum(LedgerAccount.posted_kop), 0),
                        func.coalesce(func.sum(LedgerAccount.pending_debit_kop), 0),
                    ).where(LedgerAccount.user_id.is_not(None))
                )
            ).one()
            revenue = await session.scalar(
                select(func.coalesce(func.sum(LedgerAccount.posted_kop), 0)).where(
                    LedgerAccount.code == "revenue"
                )
            )
        self.jobs.clear()
        for status, model, count in rows:
            self.jobs.labels(state=status, model=model).set(count)
        self.ledger.labels(kind="wallets_posted").set(int(wallets[0]))
        self.ledger.labels(kind="holds_open").set(int(wallets[1]))
        self.ledger.labels(kind="revenue").set(int(revenue or 0))

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)
