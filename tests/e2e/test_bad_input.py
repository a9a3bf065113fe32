"""Hostile and broken input, end to end: callback data, texts, files, command arguments,
forged KIE callbacks and YooKassa notifications.

Each case must get a clear answer (or, for the HTTP endpoints, a refusal below 500), no
exception may reach anyone (the event contract fails a test on any DISPATCH_ERROR), no money
may move and the sandbox must see zero Bot API violations. Hypothesis generates most cases; the
tests run the bot on an event loop of their own so that Hypothesis drives it example by
example. Every test prints how many cases it tried (`-s` shows them; docs/operations.md
quotes the counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiogram.filters.callback_data import CallbackData
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.e2e_support import RunningBot, open_model, prompt_sent, running_bot, tap_screen
from trt.bot import callbacks
from trt.bot.routers.admin import Admin
from trt.db.models import Job, LedgerPosting, Payment
from trt.jobs.state import JobStatus
from trt.payments.yookassa import CardPayments
from trt.sandbox.driver import Message, SandboxUser
from trt.sandbox.media import render_png
from trt.telemetry.events import Event

YOOKASSA_PATH = CardPayments.notification_path

T = TypeVar("T")
ADMIN, VICTIM, INTRUDER = 8100, 8101, 8102
FUNDS = 100_000
APOLOGY = "Что-то пошло не так"  # the error middleware's answer: must never be needed here
PREFIXES = sorted(
    {
        cls.__prefix__
        for cls in vars(callbacks).values()
        if isinstance(cls, type) and issubclass(cls, CallbackData) and cls is not CallbackData
    }
    | {Admin.__prefix__}
)
EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=True,  # the same cases on every run: a failure is replayable, CI is stable
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Scene:
    """A bot with money on the books: a victim with a delivered job and a pending payment."""

    loop: asyncio.AbstractEventLoop
    bot: RunningBot
    victim_job: str
    victim_payment: str

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)


@contextlib.contextmanager
def scene(tmp_path: Path, **options: Any) -> Iterator[Scene]:
    """`running_bot` on a loop of its own: Hypothesis's examples are synchronous calls."""
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    try:
        bot = loop.run_until_complete(
            stack.enter_async_context(
                running_bot(tmp_path, admin_ids=(ADMIN,), callbacks=True, **options)
            )
        )
        job, payment = loop.run_until_complete(_victim(bot))
        yield Scene(loop, bot, job, payment)
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


async def _victim(bot: RunningBot) -> tuple[str, str]:
    await bot.give_money(VICTIM, FUNDS)
    await bot.give_money(INTRUDER, FUNDS)
    bot.sandbox.telegram.ensure_user(VICTIM)
    job_id = await bot.create_job(VICTIM, "the victim's fox")
    await bot.events.wait_for(Event.DELIVERED, job_id=job_id, timeout_s=30)
    payment = await bot.services.payments.create(
        user_id=VICTIM, chat_id=VICTIM, lang="ru", method="manual", amount_kop=50_000, cid="setup"
    )
    return job_id, payment.id


async def money(bot: RunningBot) -> tuple[Any, ...]:
    """Everything a hostile input must not change: postings, balances, jobs, payments."""
    async with bot.services.database.unit_of_work(readonly=True) as session:
        postings = await session.scalar(select(func.count()).select_from(LedgerPosting))
        jobs = sorted((await session.execute(select(Job.id, Job.status))).all())
        payments = sorted((await session.execute(select(Payment.id, Payment.status))).all())
    balances = [await bot.balance(user) for user in (VICTIM, INTRUDER)]
    return postings, jobs, payments, balances


def clip(text: str, limit: int = 64) -> str:
    """At most `limit` UTF-8 bytes (Telegram's bound for callback data), whole characters."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def hostile_values(scene_: Scene) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            "",
            "0",
            "-1",
            "9" * 40,  # a huge number
            "1e309",
            "nan",
            "True",
            "None",
            "../../etc/passwd",
            "<b>x</b>",
            "' OR 1=1 --",
            "\u202e",
            "🙂🙂",
            "nb2",
            "zimg",
            "retry",
            "open",
            scene_.victim_job,  # another user's job
            scene_.victim_payment,  # another user's payment
            uuid.uuid4().hex,  # an id that never existed (stale)
        ]
    ) | st.text(max_size=12)


def callback_data(scene_: Scene) -> st.SearchStrategy[str]:
    structured = st.builds(
        lambda prefix, fields: ":".join([prefix, *fields]),
        st.sampled_from(PREFIXES),
        st.lists(hostile_values(scene_), max_size=4),
    )
    raw_text = st.text(min_size=1, max_size=64)
    raw_bytes = st.binary(min_size=1, max_size=64).map(lambda b: b.decode("utf-8", "replace"))
    return (structured | raw_text | raw_bytes).map(clip).filter(bool)


async def tap(bot: RunningBot, user: SandboxUser, message_id: int, data: str) -> None:
    mark = len(bot.events.records)
    answer = await user.click_data(message_id, data)
    assert answer.answered, data
    done = await bot.events.handled(
        Event.CALLBACK_RECEIVED, since=mark, callback_id=answer.query_id
    )
    assert done["event"] == Event.DISPATCH_OK, (data, done)
    assert not (answer.text or "").startswith(APOLOGY), data


async def say(bot: RunningBot, user: SandboxUser, text: str) -> str:
    """Send `text`; the bot's reply (every message gets one)."""
    mark = len(bot.events.records)
    await user.send(text)
    done = await bot.events.handled(Event.MESSAGE_RECEIVED, since=mark, user_id=user.user_id)
    assert done["event"] == Event.DISPATCH_OK, (text[:80], done)
    reply = await user.next_message(timeout_s=10)
    assert not reply.text.startswith(APOLOGY), (text[:80], reply.text)
    return reply.text


def test_hostile_callback_data_is_answered_and_moves_no_money(tmp_path: Path) -> None:
    tried: list[str] = []
    with scene(tmp_path) as s:
        user = s.run(s.bot.client.user(INTRUDER, "Чужой"))
        s.run(user.send("/start"))
        menu = s.run(user.next_message())
        before = s.run(money(s.bot))

        @EXAMPLES
        @example(data="cat:")  # a category no catalogue has (hypothesis found it)
        @example(data="cp:nope:0")
        @given(data=callback_data(s))
        def case(data: str) -> None:
            tried.append(data)
            s.run(tap(s.bot, user, menu.message_id, data))

        case()
        assert s.run(money(s.bot)) == before
        assert s.run(s.bot.ledger_problems()) == []
        assert s.run(s.bot.client.violations()) == []
    print(f"bad input: {len(tried)} callback data cases")  # noqa: T201 - the report
    assert len(tried) >= 100


HOSTILE_TEXTS = [
    " ",
    "\u200f\u200fمرحبا بالعالم",  # RTL
    "🙂" * 500,
    "\x00\x01\x07\x1b[31mred\x1b[0m",  # control characters
    "<b>bold</b><script>alert(1)</script>&amp;&lt;",
    "*bold* _it_ [link](http://example.com) `code` ||spoiler||",
    "Ж" * 10_000,
    "/start@some_other_bot",
    "/nonexistent_command with args",
    "\n\n\n",
]


def test_hostile_text_gets_a_clear_answer(tmp_path: Path) -> None:
    tried: list[str] = []
    with scene(tmp_path) as s:
        user = s.run(s.bot.client.user(INTRUDER, "Чужой"))
        s.run(user.send("/start"))
        s.run(user.next_message())
        before = s.run(money(s.bot))

        @EXAMPLES
        @given(
            text=st.sampled_from(HOSTILE_TEXTS)
            | st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=300)
        )
        def case(text: str) -> None:
            tried.append(text)
            s.run(say(s.bot, user, text))

        case()
        assert s.run(money(s.bot)) == before
        assert s.run(s.bot.client.violations()) == []
    print(f"bad input: {len(tried)} text cases")  # noqa: T201 - the report
    assert len(tried) >= 100


PROMPTS = [
    "<b>кот</b> & <i>пёс</i> </code>",  # HTML must reach the screen as typed, escaped
    "*кот* _пёс_ [x](tg://user?id=1)",
    "\u202eкот наоборот",
    "кот\x00\x1b",
    "🐈" * 200,
]


def test_hostile_prompts_are_shown_as_typed_and_too_long_is_refused(tmp_path: Path) -> None:
    with scene(tmp_path) as s:
        user = s.run(s.bot.client.user(INTRUDER, "Чужой"))
        for prompt in PROMPTS:
            s.run(open_model(user, "🎨 Картинки и дизайн", "Z-Image"))
            # Z-Image asks for English: its translation is offered; the user keeps their text.
            question = s.run(prompt_sent(user, prompt))
            screen = s.run(tap_screen(user, "1:1 квадрат", question))
            assert "💰 Цена:" in screen.text, (prompt, screen.text)
            shown = prompt.replace("\x00", "").replace("\x1b", "")
            assert shown[:100] in screen.text.replace("\x00", "").replace("\x1b", ""), (
                prompt,
                screen.text,
            )
        s.run(open_model(user, "🎨 Картинки и дизайн", "Z-Image"))
        refused = s.run(_send_and_read(user, "ж" * 10_000))
        assert "не длиннее 1000 символов" in refused.text
        assert s.run(s.bot.client.violations()) == []
    print(f"bad input: {len(PROMPTS) + 1} prompt cases")  # noqa: T201 - the report


async def _send_and_read(user: SandboxUser, text: str) -> Message:
    await user.send(text)
    return await user.next_message()


def test_bad_files_are_refused_and_a_fake_image_is_refunded(tmp_path: Path) -> None:
    with scene(tmp_path) as s:
        bot = s.bot
        user = s.run(bot.client.user(INTRUDER, "Чужой"))
        s.run(open_model(user, "✨ Улучшение фото", "Удалить фон"))
        replies = []
        cases: list[Callable[[], Awaitable[Message]]] = [
            lambda: user.send_file(
                b"%PDF-1.4", filename="a.pdf", mime_type="application/pdf", as_photo=False
            ),
            lambda: user.send_file(
                b"plain text", filename="notes.txt", mime_type="text/plain", as_photo=False
            ),
            lambda: user.send_file(
                render_png("big", 64, 64) + b"\0" * (21 * 1024 * 1024),
                filename="huge.png",
                mime_type="image/png",
                as_photo=False,
            ),
        ]
        for send in cases:
            s.run(send())
            replies.append(s.run(user.next_message()).text)
        # A zero-byte file: Telegram's apps cannot send one, its metadata can still say 0.
        s.run(
            bot.sandbox.telegram.user_sends(
                INTRUDER,
                document={
                    "file_id": "BQACAgIAAxkBAAIBzero",
                    "file_unique_id": "zero",
                    "file_name": "empty.png",
                    "mime_type": "image/png",
                    "file_size": 0,
                },
            )
        )
        replies.append(s.run(user.next_message()).text)
        assert "не подходит" in replies[0] or "не изображение" in replies[0], replies[0]
        assert "не подходит" in replies[1], replies[1]
        assert "слишком большой" in replies[2], replies[2]
        assert "пустой" in replies[3], replies[3]
        assert s.run(bot.balance(INTRUDER)) == (FUNDS, 0)

        # A "photo" that is not an image: the name and the type lie, the bytes do not.
        s.run(
            user.send_file(
                b"\x89PNG but not really" * 50,
                filename="fake.png",
                mime_type="image/png",
                as_photo=False,
            )
        )
        screen = s.run(user.next_message())
        assert "💰 Цена:" in screen.text, screen.text
        s.run(tap_screen(user, "✅ Сгенерировать", screen))
        failed = s.run(bot.events.wait_for(Event.JOB_FAILED, timeout_s=30))  # the only one
        assert failed["reason_detail"].startswith("input_format"), failed
        told = s.run(_until_text(user, "❌"))
        assert "не является изображением" in told.text
        assert s.run(bot.balance(INTRUDER)) == (FUNDS, 0)  # the hold came back
        assert s.run(bot.ledger_problems()) == []
        assert s.run(bot.client.violations()) == []
    print("bad input: 5 file cases")  # noqa: T201 - the report


async def _until_text(user: SandboxUser, start: str) -> Message:
    while True:
        message = (await user.next_event(("message", "edit"), timeout_s=30)).message
        if message.text.startswith(start):
            return message


ODD_USER_COMMANDS = [
    "/start ref_!!!",
    "/start ref_-1",
    "/start ref_" + "z" * 60,
    "/start ref_zzzzzzzzzzzzz",  # 13 base-36 digits: more than any id, more than BIGINT
    "/start " + "x" * 500,
    "/promo",
    "/promo " + "Ж" * 300,
    "/promo <b>FREE</b>",
    "/history 99999999999999999999",
    "/balance junk",
    "/help me please",
    "/debug ../../",
    "/cancel now",
    "/refund 1",  # an admin command from a user
    "/adjust 8101 100000 gift",
]
ODD_ADMIN_COMMANDS = [
    "/adjust",
    "/adjust abc",
    "/adjust 8101 99999999999999999999999999 x",
    "/adjust 8101 1e309 x",
    "/adjust 8101 -99999999999 x",
    "/adjust 99999999999999999999 100 x",
    "/price nb2 -5",
    "/price nope 5",
    "/price nb2 abc",
    "/rate 0",
    "/rate abc",
    "/rate -100",
    "/markup 1e309",
    "/markup -1",
    "/user 999999999999999999999",
    "/user <b>",
    "/refund_job ../../",
    "/refund_job " + uuid.uuid4().hex,
    "/model nb2 maybe",
    "/model nope off",
    "/stats -1",
    "/stats 99999999999999",
    "/block abc",
    "/trace 'or 1=1",
    "/refund nope",
]


def test_commands_with_odd_arguments_get_a_clear_answer_and_move_no_money(
    tmp_path: Path,
) -> None:
    with scene(tmp_path) as s:
        bot = s.bot
        user = s.run(bot.client.user(INTRUDER, "Чужой"))
        admin = s.run(bot.client.user(ADMIN, "Админ"))
        before = s.run(money(bot))
        for command in ODD_USER_COMMANDS:
            s.run(say(bot, user, command))
        for command in ODD_ADMIN_COMMANDS:
            s.run(say(bot, admin, command))
        assert s.run(money(bot)) == before
        assert s.run(bot.ledger_problems()) == []
        assert s.run(bot.client.violations()) == []
    count = len(ODD_USER_COMMANDS) + len(ODD_ADMIN_COMMANDS)
    print(f"bad input: {count} command cases")  # noqa: T201 - the report


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def kie_bodies(scene_: Scene) -> st.SearchStrategy[Any]:
    ids = st.sampled_from(["", "task_1", "x" * 300]) | st.text(max_size=20)
    shaped = st.fixed_dictionaries(
        {
            "code": st.sampled_from([200, 500, 501, "200", None]),
            "data": st.fixed_dictionaries(
                {"taskId": ids, "state": st.sampled_from(["success", "fail", "", None])},
                optional={"resultJson": json_values | st.text(max_size=40)},
            )
            | json_values,
        }
    )
    return shaped | json_values


def yookassa_bodies(scene_: Scene) -> st.SearchStrategy[Any]:
    shaped = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["notification", "", None]),
            "event": st.sampled_from(["payment.succeeded", "payment.canceled", "refund.x", ""]),
            "object": st.fixed_dictionaries(
                {
                    "id": st.sampled_from([scene_.victim_payment, uuid.uuid4().hex, ""])
                    | st.text(max_size=40),
                    "status": st.sampled_from(["succeeded", "pending", "canceled"]),
                    "amount": json_values,
                    "metadata": json_values,
                }
            )
            | json_values,
        }
    )
    return shaped | json_values


async def post(http: aiohttp.ClientSession, url: str, body: Any, raw: bytes | None) -> int:
    data = raw if raw is not None else json.dumps(body, allow_nan=True).encode()
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as answer:
        return answer.status


def test_forged_kie_callbacks_and_yookassa_notifications_are_refused(tmp_path: Path) -> None:
    tried = 0
    with scene(tmp_path, hmac_key="bad-input-hmac") as s:
        bot = s.bot
        http = s.run(_session())
        base = bot.services.http_url
        async_job_token = s.run(_token_of(bot, s.victim_job))
        before = s.run(money(bot))
        try:

            @EXAMPLES
            @given(
                target=st.sampled_from(["kie", "kie-real-token", "yookassa"]),
                body=st.data(),
                raw=st.none() | st.binary(max_size=200),
            )
            def case(target: str, body: st.DataObject, raw: bytes | None) -> None:
                nonlocal tried
                tried += 1
                if target == "yookassa":
                    url, payload = base + YOOKASSA_PATH, body.draw(yookassa_bodies(s))
                else:
                    token = async_job_token if target == "kie-real-token" else uuid.uuid4().hex
                    url, payload = f"{base}/kie/callback/{token}", body.draw(kie_bodies(s))
                status = s.run(post(http, url, payload, raw))
                assert status < 500, (url, payload, raw)

            case()
        finally:
            s.run(http.close())
        assert s.run(money(bot)) == before  # nothing credited, no job moved
        assert s.run(bot.ledger_problems()) == []
    print(f"bad input: {tried} forged callback and notification cases")  # noqa: T201
    assert tried >= 100


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


async def _token_of(bot: RunningBot, job_id: str) -> str:
    async with bot.services.database.unit_of_work(readonly=True) as session:
        job = await session.get(Job, job_id)
    assert job is not None
    assert job.status == JobStatus.DELIVERED.value
    return job.callback_token
