"""Checking emitted events against the contract: required fields, reason codes, callback chains.

Used by `make smoke-buttons` and by the end-to-end tests (every event those emit is checked),
so the contract in `events.py` and `docs/monitoring.md` is what production emits, not a wish.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from trt.telemetry.events import REQUIRED, Event, Reason

# May be None in a complete record: the value is absent for the update (a callback on an
# inline message has no chat), yet the field must be present.
NULLABLE = frozenset({"chat_id", "user_id", "update_id", "task_id", "latency_ms"})
DECISIONS = (Event.CALLBACK_ACCEPTED, Event.CALLBACK_REJECTED, Event.PASSIVE_REJECT)
ENDS = (Event.DISPATCH_OK, Event.DISPATCH_ERROR)
# A tap's chain, in order; a step missing from a chain is judged by `check_records`.
CALLBACK_ORDER = (
    Event.UPDATE_RECEIVED,
    Event.CALLBACK_RECEIVED,
    Event.CALLBACK_ROUTED,
    Event.CALLBACK_ACCEPTED,
    Event.UI_RENDER,
    Event.DISPATCH_OK,
)


def field_problems(record: dict[str, Any]) -> list[str]:
    """What one record lacks: unknown event, a missing required field, an unknown reason."""
    name = record.get("event")
    if name not in set(Event):
        return [f"unknown event {name!r}"]
    event = Event(str(name))
    problems = [
        f"{event} without {key}"
        for key in REQUIRED[event]
        if key not in record or (record[key] is None and key not in NULLABLE)
    ]
    code = record.get("reason_code")
    if code is not None and code not in set(Reason):
        problems.append(f"{event} with an undeclared reason code {code!r}")
    return problems


def by_cid(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("cid"):
            chains[str(record["cid"])].append(record)
    return chains


def chain_problems(chain: list[dict[str, Any]], *, strict: bool = False) -> list[str]:
    """What a finished callback chain lacks (a chain still in progress is not judged).

    `strict` (the button crawl, where no tap is refused before routing): every tap is routed,
    and every accepted tap shows a screen.
    """
    names = [Event(str(r["event"])) for r in chain if r.get("event") in set(Event)]
    if Event.CALLBACK_RECEIVED not in names or not any(end in names for end in ENDS):
        return []
    problems: list[str] = []
    label = "→".join(names)
    if Event.UPDATE_RECEIVED not in names:
        problems.append(f"no UPDATE_RECEIVED in {label}")
    decided = any(decision in names for decision in DECISIONS)
    if not decided and Event.DISPATCH_ERROR not in names:
        problems.append(f"no decision (accepted / rejected) in {label}")
    if Event.CALLBACK_ACCEPTED in names and Event.CALLBACK_ROUTED not in names:
        problems.append(f"accepted without CALLBACK_ROUTED in {label}")
    if Event.CALLBACK_ACCEPTED in names and Event.CALLBACK_REJECTED in names:
        accepted_at = names.index(Event.CALLBACK_ACCEPTED)
        if names.index(Event.CALLBACK_REJECTED) < accepted_at:
            problems.append(f"accepted after a rejection in {label}")
    if Event.CALLBACK_ANSWERED not in names:
        problems.append(f"a silent click (no CALLBACK_ANSWERED) in {label}")
    if strict and Event.CALLBACK_ROUTED not in names:
        problems.append(f"not routed: {label}")
    if strict and Event.CALLBACK_ACCEPTED in names and Event.UI_RENDER not in names:
        problems.append(f"accepted without UI_RENDER in {label}")
    positions = [names.index(step) for step in CALLBACK_ORDER if step in names]
    if positions != sorted(positions):
        problems.append(f"out of order: {label}")
    return problems


def check_records(records: Iterable[dict[str, Any]], *, strict: bool = False) -> list[str]:
    """Every problem of the records, fields and chains; empty when all keep the contract."""
    records = list(records)
    problems: list[str] = []
    for record in records:
        problems.extend(field_problems(record))
        if record.get("event") == Event.DISPATCH_ERROR:
            problems.append(f"DISPATCH_ERROR: {record.get('reason_detail')}")
    for chain in by_cid(records).values():
        problems.extend(chain_problems(chain, strict=strict))
    return problems
