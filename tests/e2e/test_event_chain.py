"""The telemetry contract over real traffic: every callback's chain is complete."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e_support import running_bot
from trt.telemetry.events import REQUIRED, Event, telemetry

CHAIN = [
    Event.UPDATE_RECEIVED,
    Event.CALLBACK_RECEIVED,
    Event.CALLBACK_ROUTED,
    Event.CALLBACK_ACCEPTED,
    Event.UI_RENDER,
    Event.DISPATCH_OK,
]


async def test_callback_chains_are_complete_with_their_fields(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = []
    telemetry.sinks.append(records.append)
    try:
        async with running_bot(tmp_path) as bot:
            user = await bot.client.user(8001, "Вера")
            await user.send("/start")
            menu = await user.next_message()
            await user.click("🎨 Картинки и дизайн", menu)
            listing = (await user.next_event(("edit",))).message
            await user.click(listing.button_labels[0], listing)
            await user.next_event(("edit",))
            unknown = await user.click_data(menu.message_id, "test:unknown")
            assert unknown.answered
            await user.next_event(("edit", "message"))
    finally:
        telemetry.sinks.remove(records.append)
    by_cid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("cid"):
            by_cid[str(record["cid"])].append(record)
    callback_chains = [
        chain
        for chain in by_cid.values()
        if any(r["event"] == Event.CALLBACK_RECEIVED for r in chain)
    ]
    assert len(callback_chains) == 3
    for chain in callback_chains:
        names = [r["event"] for r in chain]
        if Event.CALLBACK_REJECTED in names:
            # A refused tap is decided once: rejected, never also accepted.
            assert Event.CALLBACK_ACCEPTED not in names
            assert names.index(Event.CALLBACK_ROUTED) < names.index(Event.CALLBACK_REJECTED)
            rejected = next(r for r in chain if r["event"] == Event.CALLBACK_REJECTED)
            assert rejected["reason_code"] == "UNKNOWN_CALLBACK"
            expected = [e for e in CHAIN if e is not Event.CALLBACK_ACCEPTED]
        else:
            expected = CHAIN
        assert [n for n in names if n in CHAIN] == expected, names
        answered = [r for r in chain if r["event"] == Event.CALLBACK_ANSWERED]
        assert len(answered) == 1
        assert answered[0]["latency_ms"] > 0
        assert answered[0]["callback_id"] == chain[0]["callback_id"]
        assert names.index(Event.CALLBACK_ANSWERED) < names.index(Event.DISPATCH_OK)
        for record in chain:
            required = REQUIRED[Event(record["event"])]
            missing = [f for f in required if f not in record]
            assert missing == [], (record["event"], missing)


async def test_debug_shows_the_users_last_chain_and_trace_is_for_admins(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        user = await bot.client.user(8002, "Вера")
        await user.send("/start")
        menu = await user.next_message()
        await user.click("🎨 Картинки и дизайн", menu)
        await user.next_event(("edit",))
        await user.send("/debug")
        debug = await user.next_message()
        assert debug.text.startswith("🔎 Последнее действие, код ")
        for step in CHAIN:
            assert step.value in debug.text
        assert "screen=🎨 Картинки и дизайн" in debug.text
        cid = debug.text.split("код ", 1)[1].split(":", 1)[0]
        await user.send(f"/trace {cid}")
        refused = await user.next_message()
        assert "CALLBACK_ROUTED" not in refused.text  # not an admin: no one else's chain


async def test_metrics_and_health(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        user = await bot.client.user(8003, "Вера")
        await user.send("/start")
        menu = await user.next_message()
        await user.click_data(menu.message_id, "test:unknown")
        await user.next_event(("edit", "message"))
        async with aiohttp.ClientSession() as http:
            async with http.get(bot.services.http_url + "/metrics") as response:
                assert response.status == 200
                text = await response.text()
            async with http.get(bot.services.http_url + "/healthz") as response:
                assert (await response.json()) == {"status": "ok"}
            async with http.get(bot.services.http_url + "/readyz") as response:
                ready = await response.json()
                assert (ready["ready"], ready["role"]) == (True, "active")
        assert 'trt_updates_total{type="message"}' in text
        assert 'trt_rejections_total{reason="UNKNOWN_CALLBACK"} 1.0' in text
        assert "trt_dispatch_seconds_bucket" in text
        assert 'trt_leader_role{role="active"} 1.0' in text
        assert 'trt_leader_role{role="passive"} 0.0' in text
        assert "trt_leader_epoch 1.0" in text
        assert "trt_callback_answer_seconds_count 1.0" in text


async def test_a_paid_jobs_events_follow_its_cid(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.give_money(8004, 100_000)
        await bot.client.user(8004, "Вера")
        created = await bot.services.jobs.create(
            user_id=8004,
            chat_id=8004,
            lang="ru",
            model_slug="nb2",
            params={"prompt": "a fox"},
            draft_key="chain-1",
            cid="chaincid0001",
        )
        await bot.events.wait_for(Event.DELIVERED, job_id=created.job.id)
        records = list(bot.events.records)
    chain = [r["event"] for r in records if r.get("cid") == "chaincid0001"]
    expected = [
        Event.JOB_CREATED,
        Event.HOLD_PLACED,
        Event.KIE_TASK_CREATED,
        Event.JOB_SUCCEEDED,
        Event.HOLD_CAPTURED,
        Event.DELIVERED,
    ]
    assert [e for e in chain if e in expected] == expected
    for record in records:
        if record.get("cid") == "chaincid0001":
            missing = [f for f in REQUIRED[Event(record["event"])] if f not in record]
            assert missing == [], (record["event"], missing)


async def test_a_raising_sink_never_costs_the_user_an_answer(
    tmp_path: Path, event_contract: list[dict[str, Any]]
) -> None:
    calls = 0

    def broken(_record: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise OSError("disk full")

    failures_before = telemetry.failures
    telemetry.sinks.insert(0, broken)  # before the others: they still get every event
    try:
        async with running_bot(tmp_path) as bot:
            user = await bot.client.user(8005, "Вера")
            await user.send("/start")
            menu = await user.next_message()
            answer = await user.click("🎨 Картинки и дизайн", menu)
            assert answer.answered
            listing = (await user.next_event(("edit",))).message
            assert listing.text.startswith("🎨 Картинки и дизайн")
            assert await bot.client.violations() == []
    finally:
        telemetry.sinks.remove(broken)
    assert calls > 0
    assert telemetry.failures - failures_before == calls
    # The other sinks saw the whole chain (the contract fixture checks it is complete).
    assert {Event.CALLBACK_ANSWERED, Event.UI_RENDER, Event.DISPATCH_OK} <= {
        r["event"] for r in event_contract
    }


async def test_a_crashed_active_loop_is_restarted_with_its_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(tmp_path) as bot:
        service = bot.services.broadcasts
        original = service._next_running
        calls = 0
        again = asyncio.Event()

        async def flaky() -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("database away")
            again.set()
            return await original()

        monkeypatch.setattr(service, "_next_running", flaky)
        # The broadcasts loop is already waiting; wake it so it calls the flaky lookup now.
        service.wake.set()
        await asyncio.wait_for(again.wait(), 10)  # the group came back after the crash
        user = await bot.client.user(8006, "Вера")
        await user.send("/start")
        assert (await user.next_message()).text.startswith("👋")
