"""A sandbox user for tests and benchmarks: talks to the bot through the sandbox over HTTP.

    async with SandboxClient(base_url) as sandbox:
        alice = await sandbox.user(1001, "Alice")
        await alice.send("/start")
        menu = await alice.next_message()
        answer = await alice.click("🎨 Картинки и дизайн")
        assert answer.answered
        edited = await alice.next_event()

Every wait is on an event the server reports (long polling), never a sleep.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import ClientSession, ClientTimeout, FormData

DEFAULT_WAIT_S = 15.0


class SandboxError(AssertionError):
    """What a test user expected did not happen."""


@dataclass
class Message:
    """A message as the user sees it."""

    raw: dict[str, Any]

    @property
    def message_id(self) -> int:
        return int(self.raw["message_id"])

    @property
    def text(self) -> str:
        return str(self.raw.get("text") or self.raw.get("caption") or "")

    @property
    def html(self) -> str:
        """The text as the bot wrote it (HTML source where it used parse_mode HTML)."""
        return str(self.raw.get("_html") or self.text)

    @property
    def from_bot(self) -> bool:
        return bool(self.raw.get("from", {}).get("is_bot"))

    @property
    def buttons(self) -> list[dict[str, Any]]:
        markup = self.raw.get("reply_markup") or {}
        return [b for row in markup.get("inline_keyboard", []) for b in row]

    @property
    def button_labels(self) -> list[str]:
        return [str(b.get("text", "")) for b in self.buttons]

    def button(self, label: str) -> dict[str, Any]:
        """The button whose text equals `label`, else the only one that contains it."""
        exact = [b for b in self.buttons if b.get("text") == label]
        if exact:
            return exact[0]
        partial = [b for b in self.buttons if label in str(b.get("text", ""))]
        if len(partial) == 1:
            return partial[0]
        raise SandboxError(f"no single button {label!r} in {self.button_labels}")

    @property
    def photo_file_id(self) -> str | None:
        photos = self.raw.get("photo") or []
        return str(photos[-1]["file_id"]) if photos else None

    def media_file_id(self) -> str | None:
        for kind in ("video", "audio", "voice", "document"):
            if kind in self.raw:
                return str(self.raw[kind]["file_id"])
        return self.photo_file_id


@dataclass
class Event:
    seq: int
    kind: str
    payload: dict[str, Any]

    @property
    def message(self) -> Message:
        return Message(self.payload)


@dataclass
class CallbackAnswer:
    query_id: str
    answered: bool
    wait_s: float | None
    text: str | None
    show_alert: bool


@dataclass
class SandboxUser:
    client: SandboxClient
    user_id: int
    first_name: str
    cursor: int = 0
    seen: list[Event] = field(default_factory=list)

    async def send(self, text: str) -> Message:
        raw = await self.client.post(f"/sandbox/api/users/{self.user_id}/send", {"text": text})
        self.cursor = max(self.cursor, int(raw["seq"]))
        return Message(raw["message"])

    async def send_file(
        self,
        data: bytes,
        *,
        filename: str = "photo.png",
        mime_type: str = "image/png",
        as_photo: bool = True,
        kind: str | None = None,
        duration_s: int | None = None,
        caption: str | None = None,
    ) -> Message:
        """Send a file: a photo (default), a document (`as_photo=False`), or `kind` video,
        audio, voice or video_note with its length in seconds."""
        form = FormData()
        # A stream, not raw bytes: aiohttp warns that big raw bodies block the event loop.
        form.add_field("file", io.BytesIO(data), filename=filename, content_type=mime_type)
        form.add_field("as", kind or ("photo" if as_photo else "document"))
        if duration_s is not None:
            form.add_field("duration", str(duration_s))
        if caption is not None:
            form.add_field("caption", caption)
        raw = await self.client.post_form(f"/sandbox/api/users/{self.user_id}/upload", form)
        if raw.get("ok") is False:
            raise SandboxError(f"upload refused: {raw.get('description')}")
        self.cursor = max(self.cursor, int(raw["seq"]))
        return Message(raw["message"])

    async def messages(self) -> list[Message]:
        raw = await self.client.get(f"/sandbox/api/users/{self.user_id}/messages")
        return [Message(m) for m in raw]

    async def last_bot_message(self) -> Message:
        bot_messages = [m for m in await self.messages() if m.from_bot]
        if not bot_messages:
            raise SandboxError("the bot has not written to this user")
        return bot_messages[-1]

    async def next_event(
        self, kinds: tuple[str, ...] = ("message", "edit"), timeout_s: float = DEFAULT_WAIT_S
    ) -> Event:
        """The next event of `kinds` after the cursor (bot messages only for `message`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SandboxError(f"no {kinds} event for user {self.user_id} in {timeout_s} s")
            raw = await self.client.get(
                "/sandbox/api/events",
                {"chat_id": self.user_id, "after": self.cursor, "timeout": min(left, 20.0)},
            )
            for item in raw["events"]:
                event = Event(item["seq"], item["kind"], item["payload"])
                self.cursor = max(self.cursor, event.seq)
                self.seen.append(event)
                if event.kind not in kinds:
                    continue
                if event.kind == "message" and not event.message.from_bot:
                    continue
                return event

    async def next_message(self, timeout_s: float = DEFAULT_WAIT_S) -> Message:
        """The next message the bot sends (not an edit)."""
        return (await self.next_event(("message",), timeout_s)).message

    async def click(
        self, label: str, message: Message | None = None, *, wait_answer: bool = True
    ) -> CallbackAnswer:
        """Tap the button labelled `label` on `message` (default: the last bot message)."""
        target = message or await self.last_bot_message()
        data = target.button(label).get("callback_data")
        if data is None:
            raise SandboxError(f"button {label!r} has no callback data")
        return await self.click_data(target.message_id, str(data), wait_answer=wait_answer)

    async def click_data(
        self, message_id: int, data: str, *, wait_answer: bool = True
    ) -> CallbackAnswer:
        """Send a callback query with any data (forged data included)."""
        raw = await self.client.post(
            f"/sandbox/api/users/{self.user_id}/click", {"message_id": message_id, "data": data}
        )
        query_id = str(raw["query_id"])
        if not wait_answer:
            return CallbackAnswer(query_id, False, None, None, False)
        return await self.callback_answer(query_id)

    async def callback_answer(
        self, query_id: str, wait_s: float = DEFAULT_WAIT_S
    ) -> CallbackAnswer:
        raw = await self.client.get(f"/sandbox/api/callbacks/{query_id}", {"wait": wait_s})
        return CallbackAnswer(
            query_id, raw["answered"], raw["wait_s"], raw["text"], raw["show_alert"]
        )

    async def pay(self, message: Message) -> tuple[bool, str | None]:
        raw = await self.client.post(
            f"/sandbox/api/users/{self.user_id}/pay", {"message_id": message.message_id}
        )
        return bool(raw.get("ok")), raw.get("error") or raw.get("description")

    async def block_bot(self, blocked: bool = True) -> None:
        await self.client.post(f"/sandbox/api/users/{self.user_id}/block", {"blocked": blocked})

    async def download(self, file_id: str) -> bytes:
        return await self.client.get_bytes(f"/sandbox/api/files/{file_id}")


class SandboxClient:
    """HTTP access to a running sandbox Telegram server's user side."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: ClientSession | None = None

    async def __aenter__(self) -> SandboxClient:
        self._session = ClientSession(timeout=ClientTimeout(total=60))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> ClientSession:
        assert self._session is not None, "use `async with SandboxClient(...)`"
        return self._session

    async def get(self, path: str, query: dict[str, Any] | None = None) -> Any:
        params = {k: str(v) for k, v in (query or {}).items()}
        async with self.session.get(self.base_url + path, params=params) as response:
            response.raise_for_status()
            return await response.json()

    async def get_bytes(self, path: str) -> bytes:
        async with self.session.get(self.base_url + path) as response:
            response.raise_for_status()
            return await response.read()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with self.session.post(self.base_url + path, json=body) as response:
            if response.status >= 500:
                response.raise_for_status()
            return await response.json()

    async def post_form(self, path: str, form: FormData) -> Any:
        async with self.session.post(self.base_url + path, data=form) as response:
            return await response.json()

    async def last_event(self) -> int:
        return int((await self.get("/sandbox/api/info"))["last_event"])

    async def user(
        self,
        user_id: int,
        first_name: str = "",
        *,
        language_code: str = "ru",
        username: str | None = None,
    ) -> SandboxUser:
        body: dict[str, Any] = {
            "id": user_id,
            "first_name": first_name or f"User {user_id}",
            "language_code": language_code,
        }
        if username:
            body["username"] = username
        await self.post("/sandbox/api/users", body)
        return SandboxUser(self, user_id, body["first_name"], cursor=await self.last_event())

    async def records(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.get("/sandbox/api/records")
        return result

    async def violations(self) -> list[dict[str, Any]]:
        return list((await self.records())["violations"])
