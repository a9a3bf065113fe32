"""Runtime settings and the audit log: operators' changes, persisted, effective everywhere.

A change is one transaction (the setting and its audit entry together) and applies at once on
the instance that made it; every other instance notices within `REFRESH_S` (it watches the
newest `updated_at`) and applies it too. Nothing here needs a deploy or a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from trt.catalog.knobs import Knobs
from trt.db.database import Database
from trt.db.models import AuditEntry, RuntimeSetting, utcnow
from trt.logs import get_logger
from trt.pipeline import UnifiedModelPipeline

log = get_logger(__name__)
REFRESH_S = 2.0
RATE, MARKUP = "usd_rub_rate", "price_markup"


def model_key(slug: str, knob: str) -> str:
    return f"model:{slug}:{knob}"


def knobs_of(values: dict[str, Any]) -> Knobs:
    """The knobs a set of stored settings means (a malformed value is ignored, and logged)."""
    model_markup: dict[str, Decimal] = {}
    model_enabled: dict[str, bool] = {}
    rate = markup = None
    for key, value in values.items():
        try:
            if key == RATE:
                rate = Decimal(str(value))
            elif key == MARKUP:
                markup = Decimal(str(value))
            elif key.startswith("model:") and key.endswith(":markup"):
                model_markup[key.split(":")[1]] = Decimal(str(value))
            elif key.startswith("model:") and key.endswith(":enabled"):
                model_enabled[key.split(":")[1]] = bool(value)
        except (InvalidOperation, ValueError):
            log.warning("runtime_setting_ignored", key=key, value=str(value)[:50])
    return Knobs(rate, markup, model_markup, model_enabled)


async def audit(
    session: AsyncSession,
    *,
    admin_id: int,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
    cid: str | None = None,
) -> None:
    """One audit entry, in the caller's transaction (it lands with the change or not at all)."""
    session.add(
        AuditEntry(
            at=utcnow(),
            admin_id=admin_id,
            action=action,
            target=target[:128],
            before=before,
            after=after,
            cid=cid,
        )
    )


class RuntimeSettings:
    def __init__(self, database: Database, pipeline: UnifiedModelPipeline) -> None:
        self.database = database
        self.pipeline = pipeline
        self._seen: tuple[Any, int] | None = None

    async def load(self) -> Knobs:
        async with self.database.unit_of_work(readonly=True) as session:
            rows = (await session.execute(select(RuntimeSetting.key, RuntimeSetting.value))).all()
            self._seen = await self._version(session)
        knobs = knobs_of(dict(rows))
        self.pipeline.apply_knobs(knobs)
        return knobs

    async def set(
        self, key: str, value: Any, *, admin_id: int, cid: str | None = None
    ) -> tuple[Any, Any]:
        """Store one setting (None removes it) with its audit entry; (before, after)."""
        async with self.database.unit_of_work() as session:
            row = await session.get(RuntimeSetting, key, with_for_update=True)
            before = row.value if row is not None else None
            if value is None:
                if row is not None:
                    await session.delete(row)
            elif row is None:
                session.add(
                    RuntimeSetting(key=key, value=value, updated_at=utcnow(), updated_by=admin_id)
                )
            else:
                row.value = value
                row.updated_at = utcnow()
                row.updated_by = admin_id
            await audit(
                session,
                admin_id=admin_id,
                action="setting",
                target=key,
                before=before,
                after=value,
                cid=cid,
            )
        await self.load()
        return before, value

    async def current(self) -> dict[str, Any]:
        async with self.database.unit_of_work(readonly=True) as session:
            rows = (await session.execute(select(RuntimeSetting.key, RuntimeSetting.value))).all()
        return dict(rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Apply other instances' changes: reload whenever the settings' version moves."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH_S)
            if stop.is_set():
                return
            try:
                async with self.database.unit_of_work(readonly=True) as session:
                    version = await self._version(session)
                if version != self._seen:
                    knobs = await self.load()
                    log.info("runtime_settings_applied", knobs=str(knobs)[:300])
            except Exception as error:  # the database is away: keep the last knobs
                log.warning("runtime_settings_refresh_failed", error=str(error)[:200])

    async def _version(self, session: AsyncSession) -> tuple[Any, int]:
        # The newest change and the count: a deletion moves the count.
        row = (
            await session.execute(
                select(func.max(RuntimeSetting.updated_at), func.count(RuntimeSetting.key))
            )
        ).one()
        return row[0], int(row[1])
