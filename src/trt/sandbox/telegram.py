"""A local Telegram Bot API server: the official URL layout, strict, with simulated users.

The bot talks to it exactly as to api.telegram.org (`TELEGRAM_API_BASE`); tests, the web chat
and the benchmarks act as users through `/sandbox/api/…` (see `trt.sandbox.driver`). Every
call is checked against the Bot API spec; a call that breaks it gets Telegram's 400 answer and
is recorded in `violations`, which end-to-end tests assert to be empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from trt.media import image_mime, image_size
from trt.sandbox.botapi import FileRef, Problem, load_spec, parse_html
from trt.sandbox.multipart import Upload, read_multipart

PHOTO_UPLOAD_LIMIT = 10 * 1024 * 1024
FILE_UPLOAD_LIMIT = 50 * 1024 * 1024
URL_PHOTO_LIMIT = 5 * 1024 * 1024
URL_FILE_LIMIT = 20 * 1024 * 1024
GETFILE_LIMIT = 20 * 1024 * 1024
PRE_CHECKOUT_TIMEOUT_S = 10.0
DEFAULT_ALLOWED_UPDATES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "purchased_paid_media",
        "message_reaction",
        "message_reaction_count",
        "chat_member",
    }
    - {"chat_member", "message_reaction", "message_reaction_count"}
)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query id is invalid"
SEND_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendVideo",
        "sendAudio",
        "sendVoice",
        "sendDocument",
        "sendMediaGroup",
        "sendInvoice",
        "editMessageText",
        "editMessageReplyMarkup",
        "editMessageCaption",
        "editMessageMedia",
    }
)


class ApiError(Exception):
    """An answer of `{"ok": false}` with Telegram's code and wording."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    mime_type: str
    file_name: str | None
    file_path: str
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class CallbackRecord:
    query_id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    created_at: float
    answered_at: float | None = None
    answer_text: str | None = None
    show_alert: bool = False

    @property
    def wait_s(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.created_at


@dataclass
class Violation:
    method: str
    problems: list[Problem]
    params: dict[str, Any]


@dataclass
class RequestRecord:
    method: str
    params: dict[str, Any]
    ok: bool
    error: str | None
    at: float


@dataclass
class Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class FloodControl:
    """Optional rate limits answering 429 with `retry_after`, like Telegram's flood control."""

    per_chat_per_s: float | None = None
    global_per_s: float | None = None
    _chat_next: dict[int, float] = field(default_factory=dict)
    _global_next: float = 0.0

    def check(self, chat_id: int | None, now: float) -> int | None:
        """Seconds to wait (429) or None; admits the call when allowed."""
        waits = []
        if self.global_per_s:
            waits.append(self._global_next - now)
        if self.per_chat_per_s and chat_id is not None:
            waits.append(self._chat_next.get(chat_id, 0.0) - now)
        wait = max(waits, default=0.0)
        if wait > 0:
            return max(1, int(wait + 0.999))
        if self.global_per_s:
            self._global_next = max(self._global_next, now) + 1 / self.global_per_s
        if self.per_chat_per_s and chat_id is not None:
            previous = max(self._chat_next.get(chat_id, 0.0), now)
            self._chat_next[chat_id] = previous + 1 / self.per_chat_per_s
        return None


@dataclass
class MethodFault:
    """A scripted failure of one Bot API method, for fault-injection tests.

    The next `times` calls of `method` (to `chat_id`, when given) wait `delay_s`, then answer
    `status` with `description`; with `after_effect` the call takes effect first (the message
    is sent) and only its answer is the error, like a 5xx after Telegram did the work.
    """

    method: str
    status: int
    description: str
    times: int = 1
    retry_after: int | None = None
    after_effect: bool = False
    delay_s: float = 0.0
    chat_id: int | None = None

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        return (
            self.times > 0
            and self.method == method
            and (self.chat_id is None or params.get("chat_id") == self.chat_id)
        )


@dataclass
class ChatEvent:
    """Something the user's client shows: a new, edited or deleted message, a toast."""

    seq: int
    kind: str  # message | edit | delete | toast | action
    chat_id: int
    payload: dict[str, Any]


Handler = Callable[[dict[str, Any], dict[str, Upload]], Awaitable[Any]]


class TelegramServer:
    """State of one bot's Telegram world plus the aiohttp app that serves it."""

    def __init__(
        self,
        token: str,
        *,
        bot_username: str = "trt_sandbox_bot",
        bot_name: str = "TRT Sandbox",
        flood: FloodControl | None = None,
        webhook_retry_s: tuple[float, float] = (0.2, 5.0),
        check_responses: bool = True,
    ) -> None:
        self.spec = load_spec()
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_user = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.flood = flood
        self.webhook_retry_s = webhook_retry_s
        self.check_responses = check_responses
        self.not_modified_is_violation = True
        self.users: dict[int, dict[str, Any]] = {}
        self.blocked_by: set[int] = set()
        self.messages: dict[int, dict[int, dict[str, Any]]] = {}
        self._message_ids: dict[int, itertools.count[int]] = {}
        self.updates: list[dict[str, Any]] = []
        # Telegram's ids "start from a certain positive number": a fresh server must not reuse
        # the ids an earlier one gave the same bot (its inbox would take them for repeats).
        self._update_ids = itertools.count(100_000_000 + int(time.time() * 1000) % 10**12)
        self.allowed_updates: frozenset[str] = DEFAULT_ALLOWED_UPDATES
        self.webhook: Webhook | None = None
        self.files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self.callbacks: dict[str, CallbackRecord] = {}
        self.pre_checkouts: dict[str, asyncio.Future[tuple[bool, str | None]]] = {}
        self.star_transactions: list[dict[str, Any]] = []
        # Every successful payment made, with its user: tests deliver one again (a repeat).
        self.successful_payments: list[tuple[int, dict[str, Any]]] = []
        self.refunded_charges: set[str] = set()
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.violations: list[Violation] = []
        self.requests: list[RequestRecord] = []
        self.faults: list[MethodFault] = []
        self.events: list[ChatEvent] = []
        self._event_seq = itertools.count(1)
        self._changed = asyncio.Condition()
        self._poll_generation = 0
        self._closing = False
        self._pusher: asyncio.Task[None] | None = None
        self._http: ClientSession | None = None
        self._media_groups = itertools.count(1)
        self.handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_reply_markup,
            "editMessageCaption": self._edit_caption,
            "editMessageMedia": self._edit_media,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendPhoto": self._send_photo,
            "sendVideo": self._send_video,
            "sendAudio": self._send_audio,
            "sendVoice": self._send_voice,
            "sendDocument": self._send_document,
            "sendMediaGroup": self._send_media_group,
            "sendChatAction": self._send_chat_action,
            "getFile": self._get_file,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendInvoice": self._send_invoice,
            "answerPreCheckoutQuery": self._answer_pre_checkout,
            "refundStarPayment": self._refund_star_payment,
            "getStarTransactions": self._get_star_transactions,
        }
        self.app = self._build_app()

    # ------------------------------------------------------------------ the aiohttp app
    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=FILE_UPLOAD_LIMIT + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        # Long polls (getUpdates, the users' event stream) end now instead of at their timeout.
        self._closing = True
        await self._notify()

    async def _on_startup(self, _app: web.Application) -> None:
        self._http = ClientSession(timeout=ClientTimeout(total=30))

    async def _on_cleanup(self, _app: web.Application) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
        if self._http is not None:
            await self._http.close()

    async def _handle_api(self, request: web.Request) -> web.Response:
        response = await self._dispatch_api(request)
        await self._notify()  # tests wait on recorded requests
        return response

    async def _dispatch_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error_response(ApiError(401, "Unauthorized"))
        requested = request.match_info["method"]
        method = self.spec.method_name(requested)
        raw, uploads = await _read_params(request)
        if method is None:
            problem = Problem("unknown_method", requested, "Not Found")
            self.violations.append(Violation(requested, [problem], raw))
            self._record(requested, raw, ApiError(404, "Not Found"))
            return _error_response(ApiError(404, "Not Found"))
        params, problems = self.spec.decode_and_check(method, raw, set(uploads))
        if problems:
            self.violations.append(Violation(method, problems, _printable(raw)))
            error = ApiError(400, problems[0].description)
            self._record(method, raw, error)
            return _error_response(error)
        handler = self.handlers.get(method)
        if handler is None:
            problem = Problem("unsupported", method, f"Bad Request: {method} is not emulated")
            self.violations.append(Violation(method, [problem], _printable(raw)))
            error = ApiError(400, problem.description)
            self._record(method, raw, error)
            return _error_response(error)
        fault = next((f for f in self.faults if f.matches(method, params)), None)
        try:
            if fault is not None:
                fault.times -= 1
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                if not fault.after_effect:
                    raise ApiError(fault.status, fault.description, fault.retry_after)
            if method in SEND_METHODS:
                self._check_flood(params)
            result = await handler(params, uploads)
            if fault is not None:
                raise ApiError(fault.status, fault.description, fault.retry_after)
        except ApiError as error:
            self._record(method, raw, error)
            return _error_response(error)
        self._record(method, raw, None)
        if self.check_responses:
            returns = self.spec.methods[method].get("returns", [])
            wrong = self.spec.check_value(result, returns, "result") if returns else []
            if wrong:  # the sandbox's own bug: tests fail on it like on a bot's violation
                self.violations.append(Violation(method, wrong, {"response": result}))
        return web.json_response({"ok": True, "result": result})

    def _record(self, method: str, raw: dict[str, Any], error: ApiError | None) -> None:
        self.requests.append(
            RequestRecord(
                method=method,
                params=_printable(raw),
                ok=error is None,
                error=None if error is None else error.description,
                at=time.monotonic(),
            )
        )

    def _check_flood(self, params: dict[str, Any]) -> None:
        if self.flood is None:
            return
        chat = params.get("chat_id")
        retry_after = self.flood.check(chat if isinstance(chat, int) else None, time.monotonic())
        if retry_after is not None:
            raise ApiError(
                429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
            )

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        stored = self._files_by_path.get(request.match_info["path"])
        if stored is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=stored.data, content_type=stored.mime_type)

    async def _get_me(self, _params: dict[str, Any], _uploads: dict[str, Upload]) -> Any:
        return self.bot_user

    # ------------------------------------------------------------------ updates
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def push_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Queue an update for the bot (dropped, as by Telegram, if its type is not allowed)."""
        if kind not in self.allowed_updates:
            return None
        update = {"update_id": next(self._update_ids), kind: payload}
        self.updates.append(update)
        await self._notify()
        return update

    async def _get_updates(self, params: dict[str, Any], _uploads: dict[str, Upload]) -> Any:
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        if isinstance(offset, int):
            if offset < 0:
                self.updates = self.updates[offset:]
            else:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if "allowed_updates" in params:
            wanted = params["allowed_updates"]
            self.allowed_updates = frozenset(wanted) if wanted else DEFAULT_ALLOWED_UPDATES
        limit = max(1, min(int(params.get("limit", 100)), 100))
        timeout_s = max(0, int(params.get("timeout", 0)))
        self._poll_generation += 1
        generation = self._poll_generation
        await self._notify()  # an older waiting poll ends with 409; tests see the new poller
        deadline = time.monotonic() + timeout_s
        async with self._changed:
            while not self.updates and not self._closing:
                if generation != self._poll_generation:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only "
                        "one bot instance is running",
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
            if generation != self._poll_generation and not self.updates:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make "
                    "sure that only one bot instance is running",
                )
            return self.updates[:limit]

    async def _set_webhook(self, params: dict[str, Any], _uploads: dict[str, Upload]) -> Any:
        url = params["url"]
        if not url:
            return await self._delete_webhook({}, {})
        if not url.startswith(("https://", "http://")):
            raise ApiError(
                400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
            )
        secret = params.get("secret_token")
        if secret is not None and not all(c.isalnum() or c in "_-" for c in secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        max_connections = int(params.get("max_connections", 40))
        if not 1 <= max_connections <= 100:
            raise ApiError(400, "Bad Request: bad webhook: max_connections must be 1-100")
        if params.get("drop_pending_updates"):
            self.updates.clear()
        if "allowed_updates" in params:
            wanted = params["allowed_updates"]
            self.allowed_updates = frozenset(wanted) if wanted else DEFAULT_ALLOWED_UPDATES
        self.webhook = Webhook(url=url, secret_token=secret, max_connections=max_connections)
        self._poll_generation += 1  # a waiting getUpdates ends
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.create_task(self._push_loop(), name="sandbox-webhook")
        await self._notify()
        return True

    async def _delete_webhook(self, params: dict[str, Any], _uploads: dict[str, Upload]) -> Any:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self.updates.clear()
        await self._notify()
        return True

    async def _get_webhook_info(self, _params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        info: dict[str, Any] = {
            "url": self.webhook.url if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates),
        }
        if self.webhook is not None:
            info["max_connections"] = self.webhook.max_connections
            info["allowed_updates"] = sorted(self.allowed_updates)
            if self.webhook.last_error_date is not None:
                info["last_error_date"] = self.webhook.last_error_date
                info["last_error_message"] = self.webhook.last_error_message
        return info

    async def _push_loop(self) -> None:
        """Deliver queued updates to the webhook in order; redeliver until a 2xx answer."""
        attempt = 0
        while True:
            async with self._changed:
                while self.webhook is not None and not self.updates:
                    await self._changed.wait()
            hook = self.webhook
            if hook is None:
                return
            update = self.updates[0]
            headers = {"Content-Type": "application/json"}
            if hook.secret_token:
                headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
            failure: str | None = None
            try:
                assert self._http is not None
                async with self._http.post(
                    hook.url,
                    data=json.dumps(update),
                    headers=headers,
                    timeout=ClientTimeout(total=60),
                ) as response:
                    if not 200 <= response.status < 300:
                        failure = (
                            f"Wrong response from the webhook: {response.status} {response.reason}"
                        )
            except (OSError, TimeoutError, ClientError) as exc:  # a failed delivery, retried
                failure = f"Connection failed: {exc.__class__.__name__}"
            if failure is None:
                if self.updates and self.updates[0] is update:
                    self.updates.pop(0)
                attempt = 0
                await self._notify()
                continue
            hook.last_error_date = int(time.time())
            hook.last_error_message = failure
            await self._notify()
            base, cap = self.webhook_retry_s
            attempt += 1
            await asyncio.sleep(min(cap, base * 2 ** (attempt - 1)))

    # ------------------------------------------------------------------ messages
    def _chat_of(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if isinstance(chat_id, str):
            if chat_id.lstrip("-").isdigit():
                chat_id = int(chat_id)
            else:
                raise ApiError(400, "Bad Request: chat not found")
        if not isinstance(chat_id, int) or chat_id not in self.users:
            raise ApiError(400, "Bad Request: chat not found")
        if chat_id in self.blocked_by:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _chat_object(self, chat_id: int) -> dict[str, Any]:
        user = self.users[chat_id]
        chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
        if user.get("username"):
            chat["username"] = user["username"]
        return chat

    def _new_message(self, chat_id: int, *, from_bot: bool, **content: Any) -> dict[str, Any]:
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        message = {
            "message_id": next(counter),
            "from": self.bot_user if from_bot else self.users[chat_id],
            "chat": self._chat_object(chat_id),
            "date": int(time.time()),
            **{k: v for k, v in content.items() if v is not None},
        }
        self.messages.setdefault(chat_id, {})[message["message_id"]] = message
        return message

    async def _emit(self, kind: str, chat_id: int, payload: dict[str, Any]) -> int:
        event = ChatEvent(next(self._event_seq), kind, chat_id, payload)
        self.events.append(event)
        await self._notify()
        return event.seq

    async def _bot_message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        message = self._new_message(chat_id, from_bot=True, **content)
        await self._emit("message", chat_id, message)
        return message

    @staticmethod
    def _text_content(params: dict[str, Any], key: str = "text") -> dict[str, Any]:
        """Text (or caption) as Telegram stores it: plain text plus entities.

        The source HTML is kept under `_html` for the web chat; it is never sent to the bot.
        """
        source = params.get(key)
        entities_key = "entities" if key == "text" else "caption_entities"
        content: dict[str, Any] = {key: source, entities_key: params.get(entities_key)}
        if isinstance(source, str) and params.get("parse_mode") == "HTML":
            plain, entities = parse_html(source)  # already validated by the spec check
            content[key] = plain
            content[entities_key] = entities or None
            content["_html"] = source
        else:
            content["_html"] = None
        markup = params.get("reply_markup")
        content["reply_markup"] = markup if markup and "inline_keyboard" in markup else None
        return content

    async def _send_message(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        chat_id = self._chat_of(params)
        return _public(await self._bot_message(chat_id, **self._text_content(params)))

    def _find_bot_message(self, params: dict[str, Any], action: str = "edit") -> dict[str, Any]:
        if "inline_message_id" in params:
            raise ApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        chat_id = self._chat_of(params)
        message_id = params.get("message_id")
        if not isinstance(message_id, int):
            raise ApiError(400, "Bad Request: message identifier is not specified")
        message = self.messages.get(chat_id, {}).get(message_id)
        if message is None:
            raise ApiError(400, f"Bad Request: message to {action} not found")
        if message["from"].get("id") != self.bot_id and action == "edit":
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    async def _apply_edit(self, message: dict[str, Any], changes: dict[str, Any]) -> Any:
        before = {k: message.get(k) for k in changes}
        if all(before[k] == changes[k] for k in changes):
            # Real Telegram refuses it, and it costs a request against the bot's limits: a bot
            # that knows what the message shows never sends it (tests count it as a violation).
            if self.not_modified_is_violation:
                problem = Problem("not_modified", "message_id", NOT_MODIFIED)
                where = {"chat_id": message["chat"]["id"], "message_id": message["message_id"]}
                self.violations.append(Violation("edit", [problem], where))
            raise ApiError(400, NOT_MODIFIED)
        for key, value in changes.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = value
        message["edit_date"] = int(time.time())
        await self._emit("edit", message["chat"]["id"], message)
        return _public(message)

    async def _edit_message_text(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        message = self._find_bot_message(params)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        if "text" not in params:
            raise ApiError(400, "Bad Request: message text is empty")
        return await self._apply_edit(message, self._text_content(params))

    async def _edit_reply_markup(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        message = self._find_bot_message(params)
        return await self._apply_edit(message, {"reply_markup": params.get("reply_markup")})

    async def _edit_caption(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        message = self._find_bot_message(params)
        if "text" in message:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        return await self._apply_edit(message, self._text_content(params, "caption"))

    async def _edit_media(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        message = self._find_bot_message(params)
        if "text" in message:
            raise ApiError(400, "Bad Request: there is no media in the message to edit")
        media = params["media"]
        content = await self._media_content(
            media.get("type", ""), media.get("media"), uploads, params
        )
        changes: dict[str, Any] = dict.fromkeys(("photo", "video", "audio", "document"))
        changes.update(content)
        changes.update(
            self._text_content({**media, "reply_markup": params.get("reply_markup")}, "caption")
        )
        return await self._apply_edit(message, changes)

    async def _delete_message(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        chat_id = self._chat_of(params)
        message_id = params["message_id"]
        if self.messages.get(chat_id, {}).pop(message_id, None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        await self._emit("delete", chat_id, {"message_id": message_id})
        return True

    async def _send_chat_action(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        chat_id = self._chat_of(params)
        await self._emit("action", chat_id, {"action": params["action"]})
        return True

    # ------------------------------------------------------------------ files and media
    def store_file(self, data: bytes, mime_type: str, file_name: str | None) -> StoredFile:
        file_id = "BQAC" + secrets.token_urlsafe(24)
        kind = mime_type.split("/")[0] if "/" in mime_type else "documents"
        extension = (
            (file_name or "").rsplit(".", 1)[-1] if file_name and "." in file_name else "bin"
        )
        stored = StoredFile(
            file_id=file_id,
            file_unique_id="AQAD" + secrets.token_urlsafe(8),
            data=data,
            mime_type=mime_type,
            file_name=file_name,
            file_path=f"{kind}s/file_{len(self.files)}.{extension}",
        )
        size = image_size(data) if kind == "image" else None
        if size is not None:
            stored.width, stored.height = size
        self.files[file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    async def _resolve_input_file(
        self, value: Any, uploads: dict[str, Upload], *, photo: bool, default_mime: str
    ) -> StoredFile:
        if isinstance(value, FileRef) or (isinstance(value, str) and value.startswith("attach://")):
            part = value.part if isinstance(value, FileRef) else value[len("attach://") :]
            upload = uploads.get(part)
            if upload is None:
                raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            limit = PHOTO_UPLOAD_LIMIT if photo else FILE_UPLOAD_LIMIT
            if len(upload.data) > FILE_UPLOAD_LIMIT:
                raise ApiError(413, "Request Entity Too Large")
            if len(upload.data) > limit:
                raise ApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
            if not upload.data:
                raise ApiError(400, "Bad Request: file must be non-empty")
            mime = upload.content_type or default_mime
            if mime == "application/octet-stream":
                mime = image_mime(upload.data) or default_mime
            return self.store_file(upload.data, mime, upload.filename)
        if isinstance(value, str) and value in self.files:
            return self.files[value]
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return await self._fetch_url(value, photo=photo, default_mime=default_mime)
        raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")

    async def _fetch_url(self, url: str, *, photo: bool, default_mime: str) -> StoredFile:
        limit = URL_PHOTO_LIMIT if photo else URL_FILE_LIMIT
        assert self._http is not None
        try:
            async with self._http.get(url) as response:
                if response.status != 200:
                    raise ApiError(400, "Bad Request: wrong type of the web page content")
                data = await response.content.read(limit + 1)
                mime = response.content_type or default_mime
        except (OSError, TimeoutError):
            raise ApiError(400, "Bad Request: failed to get HTTP URL content") from None
        if len(data) > limit:
            raise ApiError(400, "Bad Request: failed to get HTTP URL content")
        return self.store_file(data, mime, url.rsplit("/", 1)[-1] or None)

    async def _media_content(
        self, kind: str, value: Any, uploads: dict[str, Upload], params: dict[str, Any]
    ) -> dict[str, Any]:
        if kind == "photo":
            stored = await self._resolve_input_file(
                value, uploads, photo=True, default_mime="image/jpeg"
            )
            size = image_size(stored.data)
            if size is None:
                raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
            width, height = size
            if width + height > 10_000 or max(width, height) > 20 * min(width, height):
                raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
            return {"photo": [_photo_size(stored)]}
        if kind == "video":
            stored = await self._resolve_input_file(
                value, uploads, photo=False, default_mime="video/mp4"
            )
            return {
                "video": {
                    **_file_fields(stored),
                    "width": int(params.get("width", 320)),
                    "height": int(params.get("height", 240)),
                    "duration": int(params.get("duration", 2)),
                }
            }
        if kind == "audio":
            stored = await self._resolve_input_file(
                value, uploads, photo=False, default_mime="audio/mpeg"
            )
            audio = {**_file_fields(stored), "duration": int(params.get("duration", 3))}
            if params.get("title"):
                audio["title"] = params["title"]
            return {"audio": audio}
        if kind == "voice":
            stored = await self._resolve_input_file(
                value, uploads, photo=False, default_mime="audio/ogg"
            )
            return {"voice": {**_file_fields(stored), "duration": int(params.get("duration", 2))}}
        if kind == "document":
            stored = await self._resolve_input_file(
                value, uploads, photo=False, default_mime="application/octet-stream"
            )
            document = _file_fields(stored)
            if stored.file_name:
                document["file_name"] = stored.file_name
            return {"document": document}
        raise ApiError(400, f"Bad Request: unsupported media type {kind}")

    async def _send_media(
        self, kind: str, params: dict[str, Any], uploads: dict[str, Upload]
    ) -> Any:
        chat_id = self._chat_of(params)
        content = await self._media_content(kind, params[kind], uploads, params)
        content.update(self._text_content(params, "caption"))
        return _public(await self._bot_message(chat_id, **content))

    async def _send_photo(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        return await self._send_media("photo", params, uploads)

    async def _send_video(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        return await self._send_media("video", params, uploads)

    async def _send_audio(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        return await self._send_media("audio", params, uploads)

    async def _send_voice(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        return await self._send_media("voice", params, uploads)

    async def _send_document(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        return await self._send_media("document", params, uploads)

    async def _send_media_group(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        chat_id = self._chat_of(params)
        media = params["media"]
        if not 2 <= len(media) <= 10:
            raise ApiError(400, "Bad Request: wrong number of messages in the media group")
        group_id = str(next(self._media_groups))
        sent = []
        for item in media:
            content = await self._media_content(item["type"], item["media"], uploads, item)
            if item.get("caption"):
                content["caption"] = item["caption"]
            message = await self._bot_message(chat_id, media_group_id=group_id, **content)
            sent.append(_public(message))
        return sent

    async def _get_file(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        stored = self.files.get(params["file_id"])
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.size > GETFILE_LIMIT:
            raise ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }

    # ------------------------------------------------------------------ callbacks, commands
    async def _answer_callback_query(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        record = self.callbacks.get(params["callback_query_id"])
        if record is None or record.answered_at is not None:
            raise ApiError(400, QUERY_TOO_OLD)
        record.answered_at = time.monotonic()
        record.answer_text = params.get("text")
        record.show_alert = bool(params.get("show_alert", False))
        if record.answer_text:
            await self._emit(
                "toast",
                record.chat_id,
                {"text": record.answer_text, "show_alert": record.show_alert},
            )
        else:
            await self._notify()
        return True

    async def _set_my_commands(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        commands = params["commands"]
        if len(commands) > 100:
            raise ApiError(400, "Bad Request: too many commands")
        for command in commands:
            name = command.get("command", "")
            if not (1 <= len(name) <= 32) or not all(
                c.islower() or c.isdigit() or c == "_" for c in name
            ):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[_scope_key(params)] = commands
        return True

    async def _get_my_commands(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        return self.commands.get(_scope_key(params), [])

    async def _delete_my_commands(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        self.commands.pop(_scope_key(params), None)
        return True

    # ------------------------------------------------------------------ payments (Stars)
    async def _send_invoice(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        chat_id = self._chat_of(params)
        prices = params["prices"]
        if params["currency"] == "XTR" and len(prices) != 1:
            raise ApiError(400, "Bad Request: STARS_INVOICE_INVALID")
        if not 1 <= len(params["title"]) <= 32:
            raise ApiError(400, "Bad Request: INVOICE_TITLE_INVALID")
        if not 1 <= len(params["description"]) <= 255:
            raise ApiError(400, "Bad Request: INVOICE_DESCRIPTION_INVALID")
        if not 1 <= len(params["payload"].encode()) <= 128:
            raise ApiError(400, "Bad Request: INVOICE_PAYLOAD_INVALID")
        total = sum(int(p["amount"]) for p in prices)
        invoice = {
            "title": params["title"],
            "description": params["description"],
            "start_parameter": params.get("start_parameter", ""),
            "currency": params["currency"],
            "total_amount": total,
        }
        message = await self._bot_message(
            chat_id,
            invoice=invoice,
            _payload=params["payload"],
            reply_markup=params.get("reply_markup"),
        )
        return _public(message)

    async def _answer_pre_checkout(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        waiter = self.pre_checkouts.get(params["pre_checkout_query_id"])
        if waiter is None or waiter.done():
            raise ApiError(400, "Bad Request: QUERY_ID_INVALID")
        ok = bool(params["ok"])
        if not ok and not params.get("error_message"):
            raise ApiError(400, "Bad Request: error_message is required when ok is false")
        waiter.set_result((ok, params.get("error_message")))
        return True

    async def _refund_star_payment(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        charge_id = params["telegram_payment_charge_id"]
        payment = next(
            (
                t
                for t in self.star_transactions
                if t["id"] == charge_id
                and "source" in t
                and t["source"].get("user", {}).get("id") == params["user_id"]
            ),
            None,
        )
        if payment is None:
            raise ApiError(400, "Bad Request: CHARGE_NOT_FOUND")
        if charge_id in self.refunded_charges:
            raise ApiError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        self.refunded_charges.add(charge_id)
        self.star_transactions.append(
            {
                "id": charge_id,
                "amount": payment["amount"],
                "date": int(time.time()),
                "receiver": {
                    "type": "user",
                    "user": payment["source"]["user"],
                    "transaction_type": "invoice_payment",
                },
            }
        )
        return True

    async def _get_star_transactions(self, params: dict[str, Any], _u: dict[str, Upload]) -> Any:
        offset = int(params.get("offset", 0))
        limit = max(1, min(int(params.get("limit", 100)), 100))
        return {"transactions": self.star_transactions[offset : offset + limit]}

    # ------------------------------------------------------------------ the simulated users
    def ensure_user(
        self,
        user_id: int,
        first_name: str = "",
        username: str | None = None,
        language_code: str = "ru",
    ) -> dict[str, Any]:
        user = self.users.get(user_id)
        if user is None:
            user = {
                "id": user_id,
                "is_bot": False,
                "first_name": first_name or f"User {user_id}",
                "language_code": language_code,
            }
            if username:
                user["username"] = username
            self.users[user_id] = user
        return user

    async def user_sends(self, user_id: int, **content: Any) -> tuple[dict[str, Any], int]:
        """A user's message to the bot (text, photo, document, …), delivered as an update.

        Returns the message and the sequence number of its chat event: the bot's answer comes
        after it, so a client that follows events from there cannot miss the answer.
        """
        self.ensure_user(user_id)
        text = content.get("text")
        if isinstance(text, str) and text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        message = self._new_message(user_id, from_bot=False, **content)
        seq = await self._emit("message", user_id, message)
        await self.push_update("message", _public(message))
        return message, seq

    async def redeliver(self, user_id: int, message_id: int) -> None:
        """A user's earlier message as a new update: what the bot sees when an update it had
        stored is handled again (a crash before its inbox marked it done)."""
        message = self.messages[user_id][message_id]
        await self.push_update("message", _public(message))

    async def user_sends_file(
        self,
        user_id: int,
        data: bytes,
        *,
        filename: str,
        mime_type: str,
        as_photo: bool = True,
        kind: str | None = None,
        duration_s: int | None = None,
        caption: str | None = None,
    ) -> tuple[dict[str, Any], int]:
        """A file from the user, as Telegram's apps send it: a photo (recompressed, sizes), a
        document (as is, with its name), or a video, audio, voice or video note (with the
        length the app measured; Telegram passes the client's `duration` on)."""
        kind = kind or ("photo" if as_photo else "document")
        stored = self.store_file(data, mime_type, filename)
        if kind == "photo":
            if stored.width is None:
                raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
            return await self.user_sends(user_id, photo=[_photo_size(stored)], caption=caption)
        if kind == "document":
            document = {**_file_fields(stored), "file_name": filename}
            return await self.user_sends(user_id, document=document, caption=caption)
        duration = max(int(duration_s or 0), 0)
        fields = {**_file_fields(stored), "duration": duration}
        if kind == "video":
            video = {**fields, "width": 640, "height": 360, "file_name": filename}
            return await self.user_sends(user_id, video=video, caption=caption)
        if kind == "audio":
            audio = {**fields, "file_name": filename}
            return await self.user_sends(user_id, audio=audio, caption=caption)
        if kind == "voice":
            return await self.user_sends(user_id, voice=fields)
        if kind == "video_note":
            note = {k: v for k, v in fields.items() if k != "mime_type"}
            return await self.user_sends(user_id, video_note={**note, "length": 240})
        raise ApiError(400, f"Bad Request: unsupported upload kind {kind}")

    async def user_clicks(self, user_id: int, message_id: int, data: str) -> CallbackRecord:
        """A tap on an inline button: a callback_query update for the bot."""
        self.ensure_user(user_id)
        message = self.messages.get(user_id, {}).get(message_id)
        query_id = str(secrets.randbits(63))
        record = CallbackRecord(query_id, user_id, user_id, message_id, data, time.monotonic())
        self.callbacks[query_id] = record
        query: dict[str, Any] = {
            "id": query_id,
            "from": self.users[user_id],
            "chat_instance": str(user_id * 7919),
            "data": data,
        }
        if message is not None:
            query["message"] = _public(message)
        else:  # deleted or unknown: Telegram sends an InaccessibleMessage
            query["message"] = {
                "chat": self._chat_object(user_id),
                "message_id": message_id,
                "date": 0,
            }
        await self.push_update("callback_query", query)
        return record

    async def user_pays(
        self, user_id: int, message_id: int, *, lose_update: bool = False
    ) -> tuple[bool, str | None]:
        """The user taps Pay on an invoice: pre-checkout, then the payment if approved.

        `lose_update` charges the user but never delivers the `successful_payment` update (as
        when a bot misses it): only `getStarTransactions` shows the payment.
        """
        message = self.messages.get(user_id, {}).get(message_id)
        if message is None or "invoice" not in message:
            raise ApiError(400, "Bad Request: invoice not found")
        invoice = message["invoice"]
        query_id = str(secrets.randbits(63))
        waiter: asyncio.Future[tuple[bool, str | None]] = asyncio.get_running_loop().create_future()
        self.pre_checkouts[query_id] = waiter
        await self.push_update(
            "pre_checkout_query",
            {
                "id": query_id,
                "from": self.users[user_id],
                "currency": invoice["currency"],
                "total_amount": invoice["total_amount"],
                "invoice_payload": message["_payload"],
            },
        )
        try:
            ok, error = await asyncio.wait_for(asyncio.shield(waiter), PRE_CHECKOUT_TIMEOUT_S)
        except TimeoutError:
            ok, error = False, "The bot did not answer in time"
        finally:
            self.pre_checkouts.pop(query_id, None)
        if not ok:
            await self._emit(
                "toast", user_id, {"text": error or "Payment refused", "show_alert": True}
            )
            return False, error
        charge_id = "stxsandbox" + secrets.token_hex(12)
        paid = {
            "currency": invoice["currency"],
            "total_amount": invoice["total_amount"],
            "invoice_payload": message["_payload"],
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": "",
        }
        self.successful_payments.append((user_id, paid))
        if not lose_update:
            await self.user_sends(user_id, successful_payment=paid)
        self.star_transactions.append(
            {
                "id": charge_id,
                "amount": invoice["total_amount"],
                "date": int(time.time()),
                "source": {
                    "type": "user",
                    "user": self.users[user_id],
                    "transaction_type": "invoice_payment",
                    "invoice_payload": message["_payload"],
                },
            }
        )
        return True, None

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Block until `condition()` holds (re-checked on every state change)."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self._closing or condition()), timeout_s
            )

    def callback_waits_s(self) -> list[float]:
        return [r.wait_s for r in self.callbacks.values() if r.wait_s is not None]

    def chat_view(self, chat_id: int) -> list[dict[str, Any]]:
        return [_public(m, keep_private=True) for m in self.messages.get(chat_id, {}).values()]


# ---------------------------------------------------------------------- helpers
def _file_fields(stored: StoredFile) -> dict[str, Any]:
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": stored.size,
        "mime_type": stored.mime_type,
    }


def _photo_size(stored: StoredFile) -> dict[str, Any]:
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "width": stored.width or 0,
        "height": stored.height or 0,
        "file_size": stored.size,
    }


def _public(message: dict[str, Any], *, keep_private: bool = False) -> dict[str, Any]:
    """The Message as Telegram returns it (without the sandbox's own `_` bookkeeping)."""
    if keep_private:
        return dict(message)
    return {k: v for k, v in message.items() if not k.startswith("_") and v is not None}


def _scope_key(params: dict[str, Any]) -> str:
    return json.dumps(
        [params.get("scope") or {"type": "default"}, params.get("language_code", "")],
        sort_keys=True,
    )


def _printable(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, (str, int, float, bool, list, dict)) else repr(v))
        for k, v in raw.items()
    }


def _error_response(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": error.code, "description": error.description}
    if error.retry_after is not None:
        body["parameters"] = {"retry_after": error.retry_after}
    return web.json_response(body, status=error.code)


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, Upload]]:
    """Parameters from the query string and the body (urlencoded, JSON or multipart)."""
    params: dict[str, Any] = dict(request.query)
    uploads: dict[str, Upload] = {}
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body = {}
            if isinstance(body, dict):
                params.update(body)
        elif request.content_type == "multipart/form-data":
            fields, uploads = await read_multipart(request)
            params.update(fields)
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = value
    return params, uploads
