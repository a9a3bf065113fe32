"""A local KIE.ai server: market jobs, Veo and Suno, uploads, credits, callbacks with HMAC.

It validates every request against KIE's own schemas (the vendor dump, not TRT's catalogue),
answers with KIE's envelopes and quirks (JSON strings in `param` and `resultJson`, `msg` and
`message`, unix-millisecond times), moves tasks through waiting → queuing → generating →
success | fail, and posts callbacks. Its behaviour can be scripted per task, by prompt keywords
or through `/sandbox/kie/…` (docs/sandbox.md lists both).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from trt.catalog.schema import Family
from trt.catalog.vendor import (
    VendorDump,
    VendorModel,
    accepted_media,
    check_vendor_input,
    load_vendor,
)
from trt.media import sniff_mime
from trt.sandbox.media import render_png, sample
from trt.sandbox.multipart import read_multipart

UNAUTHORIZED = {"code": 401, "msg": "You do not have access permissions"}
CALLBACK_ATTEMPTS = 3
_KEYWORD = re.compile(r"\[([a-z0-9-]+)(?::([^\]]*))?\]", re.IGNORECASE)
_VIDEO_HINTS = (
    "video",
    "kling",
    "hailuo",
    "seedance",
    "veo",
    "avatar",
    "infinitalk",
    "omnihuman",
    "/v1-",
)
_AUDIO_HINTS = ("speech", "dialogue", "elevenlabs", "audio-isolation", "suno")


@dataclass
class Script:
    """How one task (and its create call) behaves. Defaults: a normal, successful task."""

    create_status: int | None = None  # answer createTask with this code, creating nothing
    create_lost: bool = False  # create the task but answer 500 (an unknown outcome)
    create_malformed: bool = False  # answer createTask with broken JSON
    create_reset: bool = False  # drop the connection of the createTask call
    create_delay_s: float = 0.0  # answer createTask this late
    fail_code: str | None = None  # end in `fail` with this failCode …
    fail_msg: str = "Internal server error"  # … and failMsg
    generate_s: float | None = None  # time spent generating (default: the server's)
    never: bool = False  # never finishes
    callback: str = "normal"  # normal | none | duplicate | minimal
    record_status: int | None = None  # recordInfo answers this code for the task
    results: int = 1  # number of result files
    truncate: int = 0  # this many downloads of each result are cut off mid-body

    @classmethod
    def from_prompt(cls, prompt: str) -> Script:
        """Keywords in square brackets anywhere in the prompt (documented in docs/sandbox.md)."""
        script = cls()
        for match in _KEYWORD.finditer(prompt):
            name, arg = match[1].lower(), (match[2] or "").strip()
            if name == "fail":
                code, _, message = arg.partition(":")
                script.fail_code = code or "500"
                script.fail_msg = message or script.fail_msg
            elif name == "slow":
                script.generate_s = float(arg or 5)
            elif name == "never":
                script.never = True
            elif name == "http":
                script.create_status = int(arg or 500)
            elif name == "lost":
                script.create_lost = True
            elif name == "malformed":
                script.create_malformed = True
            elif name == "reset":
                script.create_reset = True
            elif name == "timeout":
                script.create_delay_s = float(arg or 30)
            elif name == "nocallback":
                script.callback = "none"
            elif name == "dupcallback":
                script.callback = "duplicate"
            elif name == "mincallback":
                script.callback = "minimal"
            elif name == "record":
                script.record_status = int(arg or 500)
            elif name == "results":
                script.results = max(1, min(int(arg or 1), 10))
            elif name == "truncate":
                script.truncate = int(arg) if arg.isdigit() else 1_000_000
        return script


@dataclass
class ChatScript:
    """How one chat answer behaves. Defaults: a normal answer (see `chat_answer`)."""

    status: int | None = None  # answer with this error code
    delay_s: float = 0.0  # answer this late
    garbage: bool = False  # answer with a body that is not JSON
    answer: str | None = None  # answer exactly this

    @classmethod
    def from_text(cls, text: str) -> ChatScript:
        """`[assist-fail:CODE]`, `[assist-slow:S]`, `[assist-empty]`, `[assist-garbage]` in
        the user's prompt (documented in docs/sandbox.md)."""
        script = cls()
        for match in _KEYWORD.finditer(text):
            name, arg = match[1].lower(), (match[2] or "").strip()
            if name == "assist-fail":
                script.status = int(arg or 500)
            elif name == "assist-slow":
                script.delay_s = float(arg or 30)
            elif name == "assist-empty":
                script.answer = ""
            elif name == "assist-garbage":
                script.garbage = True
        return script


_LATIN = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        [
            "a",
            "b",
            "v",
            "g",
            "d",
            "e",
            "yo",
            "zh",
            "z",
            "i",
            "y",
            "k",
            "l",
            "m",
            "n",
            "o",
            "p",
            "r",
            "s",
            "t",
            "u",
            "f",
            "kh",
            "ts",
            "ch",
            "sh",
            "shch",
            "",
            "y",
            "",
            "e",
            "yu",
            "ya",
        ],
        strict=True,
    )
)
_MORE = {
    "ru": ", высокая детализация, выразительная композиция, мягкий естественный свет",
    "en": ", highly detailed, expressive composition, soft natural light",
}


def transliterate(text: str) -> str:
    """Cyrillic letters as Latin ones, quoted parts left alone: the sandbox's stand-in for a
    translation (no model runs here), so that a test can tell a translated prompt."""
    out = []
    quoted = False
    for char in text:
        if char in '«»"':
            quoted = char == "«" or (char == '"' and not quoted)
        latin = _LATIN.get(char.lower())
        if latin is None or quoted:
            out.append(char)
        else:
            out.append(latin.capitalize() if char.isupper() else latin)
    return "".join(out)


def chat_answer(system: str, user: str) -> str:
    """What the sandbox's chat model says to the prompt assistant: a «translation» when asked
    to translate or to answer in English, an «improvement» (the prompt plus detail) otherwise.
    Bracketed keywords survive, so a scripted generation still behaves as scripted."""
    english = system.startswith("Translate") or "Answer in English" in system
    text = transliterate(user) if english else user
    if system.startswith("Translate"):
        return text
    cyrillic = re.search("[А-Яа-яЁё]", text) is not None
    return text.rstrip(" .") + _MORE["ru" if cyrillic and not english else "en"]


def _chat_problem(body: dict[str, Any] | None) -> str | None:
    """Why KIE would refuse this chat body, or None."""
    if body is None:
        return "the body is not a JSON object"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages is required"
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
        ):
            return "each message needs a role: system, user or assistant"
        if not isinstance(message.get("content"), (str, list)):
            return "each message needs a content"
    if not any(m["role"] == "user" for m in messages):
        return "no user message"
    if body.get("stream"):
        return "stream: the sandbox answers whole messages only"
    return None


@dataclass
class KieTask:
    task_id: str
    family: Family
    model: str
    body: dict[str, Any]  # the complete create body, echoed in `param`
    prompt: str
    output: str  # image | video | audio
    script: Script
    create_ms: int
    state: str = "waiting"
    update_ms: int = 0
    complete_ms: int | None = None
    result_urls: list[str] = field(default_factory=list)
    callbacks_sent: int = 0
    credits: int = 0
    downloads: dict[str, int] = field(default_factory=dict)  # result name → times served

    @property
    def callback_url(self) -> str | None:
        url = self.body.get("callBackUrl")
        return url if isinstance(url, str) and url else None


@dataclass
class StoredUpload:
    name: str
    data: bytes
    mime_type: str


def now_ms() -> int:
    return int(time.time() * 1000)


def kie_signature(key: str, task_id: str, timestamp: str) -> str:
    """KIE's callback signature: base64(HMAC-SHA256(key, taskId + "." + timestamp))."""
    mac = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class KieServer:
    def __init__(
        self,
        api_key: str,
        *,
        credits: int = 1_000_000,
        credits_per_task: int = 1,
        step_s: float = 0.05,
        generate_s: float = 0.2,
        hmac_key: str | None = None,
        callback_retry_s: float = 0.2,
        vendor: VendorDump | None = None,
        chunk_bytes: int = 8 * 1024,
        chunk_pause_s: float = 0.005,
    ) -> None:
        self.api_key = api_key
        # Results are served as a CDN serves them over a real network: in chunks, with pauses
        # between them, so a client that reads only what is buffered gets a part of the file.
        self.chunk_bytes = chunk_bytes
        self.chunk_pause_s = chunk_pause_s
        # Each image shows its prompt; off, one image per size serves every task (a benchmark:
        # drawing text costs the load generator ~15 ms of CPU an image).
        self.draw_results = True
        self.credits = credits
        self.credits_per_task = credits_per_task
        self.step_s = step_s
        self.generate_s = generate_s
        self.hmac_key = hmac_key
        self.callback_retry_s = callback_retry_s
        self.vendor = vendor or load_vendor()
        self.tasks: dict[str, KieTask] = {}
        self.uploads: dict[str, StoredUpload] = {}
        self.scripts: list[tuple[str, Script, int]] = []  # (prompt substring, script, times)
        self.callbacks: list[dict[str, Any]] = []  # what was posted, for tests
        self.chats: list[dict[str, Any]] = []  # chat completion bodies, for tests
        self.chat_scripts: list[ChatScript] = []  # how the next chat answers behave
        self._rendered: dict[str, bytes] = {}  # task id (or size) → its picture, drawn once
        self.requests: list[tuple[str, str, float]] = []  # (method, path, monotonic time)
        self.base_url = ""  # set by the runner once the port is known
        self._ids = itertools.count(1)
        self._runs: set[asyncio.Task[None]] = set()
        self._http: ClientSession | None = None
        self._changed = asyncio.Condition()
        self.app = self._build_app()

    # ------------------------------------------------------------------ app
    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=200 * 1024 * 1024, middlewares=[self._auth])
        add = app.router
        add.add_post("/api/v1/jobs/createTask", self._create_market)
        add.add_get("/api/v1/jobs/recordInfo", self._record_market)
        add.add_post("/api/v1/veo/generate", self._create_veo)
        add.add_get("/api/v1/veo/record-info", self._record_veo)
        add.add_post("/api/v1/generate", self._create_suno)
        add.add_post("/api/v1/generate/upload-cover", self._create_suno_cover)
        add.add_post("/api/v1/generate/upload-extend", self._create_suno_extend)
        add.add_get("/api/v1/generate/record-info", self._record_suno)
        add.add_get("/api/v1/chat/credit", self._credit)
        add.add_post("/api/v1/common/download-url", self._download_url)
        add.add_post("/api/file-stream-upload", self._upload_stream)
        add.add_post("/api/file-url-upload", self._upload_url)
        add.add_post("/api/file-base64-upload", self._upload_base64)
        add.add_get("/files/{task_id}/{name}", self._result_file)
        add.add_get("/files/uploads/{name}", self._uploaded_file)
        add.add_post("/sandbox/kie/scripts", self._add_script)
        add.add_get("/sandbox/kie/tasks", self._list_tasks)
        add.add_post("/sandbox/kie/credits", self._set_credits)
        add.add_post("/sandbox/kie/tasks/{task_id}/finish", self._finish_task)
        add.add_post("/sandbox/kie/chat", self._script_chat)
        add.add_post("/{model}/v1/chat/completions", self._chat)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self._http = ClientSession(timeout=ClientTimeout(total=15))

    async def _on_cleanup(self, _app: web.Application) -> None:
        for run in list(self._runs):
            run.cancel()
        for run in list(self._runs):
            with contextlib.suppress(asyncio.CancelledError):
                await run
        if self._http is not None:
            await self._http.close()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, time.monotonic()))
        public = request.path.startswith(("/files/", "/sandbox/"))
        if not public and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(UNAUTHORIZED, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, condition: Any, timeout_s: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout_s)

    # ------------------------------------------------------------------ creating tasks
    def _script_for(self, prompt: str) -> Script:
        for index, (needle, script, times) in enumerate(self.scripts):
            if needle == "*" or needle in prompt:
                if times <= 1:
                    self.scripts.pop(index)
                else:
                    self.scripts[index] = (needle, script, times - 1)
                return script
        return Script.from_prompt(prompt)

    async def _body(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _create(
        self,
        request: web.Request,
        family: Family,
        model: str,
        values: dict[str, Any],
        body: dict[str, Any],
    ) -> web.StreamResponse:
        prompt = str(values.get("prompt") or values.get("text") or "")
        script = self._script_for(prompt)
        if script.create_reset:
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPInternalServerError()  # never reaches the closed connection
        if script.create_malformed:
            return web.Response(
                text='{"code": 200, "msg": "success", "data": {',
                status=200,
                content_type="application/json",
            )
        if script.create_status is not None:
            return _envelope(script.create_status, _status_message(script.create_status))
        vendor_model = self.vendor.models.get((family, model))
        if vendor_model is None:
            return _envelope(422, f"The model {model!r} is not supported")
        problems = check_vendor_input(vendor_model, values) + self._media_problems(
            vendor_model, values
        )
        if problems:
            return _envelope(422, "; ".join(problems))
        if self.credits < self.credits_per_task:
            return _envelope(402, "Credits insufficient")
        task_id = f"task_{model.replace('/', '-')}_{now_ms()}{next(self._ids):04d}"
        created = now_ms()
        task = KieTask(
            task_id=task_id,
            family=family,
            model=model,
            body=body,
            prompt=prompt,
            output=_output_kind(family, model),
            script=script,
            create_ms=created,
            update_ms=created,
        )
        self.tasks[task_id] = task
        run = asyncio.create_task(self._run(task), name=f"kie-{task_id}")
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        await self._notify()
        if script.create_delay_s:
            # A slow answer, not a slow create: the task exists and runs (as at KIE, where a
            # timed-out createTask has usually taken effect); the client may give up waiting.
            await asyncio.sleep(script.create_delay_s)
        if script.create_lost:
            return _envelope(500, "Server error, please try again later")
        return web.json_response({"code": 200, "msg": "success", "data": {"taskId": task_id}})

    def _media_problems(self, model: VendorModel, values: dict[str, Any]) -> list[str]:
        """Files given by URL that KIE would refuse: an upload whose bytes are not one of the
        types the parameter's description accepts (a "video" that is a photo, an MP3 where
        only images go). URLs of other hosts are not fetched here."""
        problems = []
        prefix = f"{self.base_url}/files/uploads/"
        for name, value in values.items():
            accepted = accepted_media(model.params.get(name) or {})
            if not accepted:
                continue
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, str) or not item.startswith(prefix):
                    continue
                stored = self.uploads.get(item[len(prefix) :])
                if stored is None:
                    problems.append(f"{name}: {item} was never uploaded")
                    continue
                mime = sniff_mime(stored.data)
                if mime not in accepted:
                    problems.append(f"{name}: a {mime or 'unknown'} file, not {sorted(accepted)}")
        return problems

    async def _create_market(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if body is None or not isinstance(body.get("model"), str):
            return _envelope(422, "model is required")
        values = body.get("input")
        if not isinstance(values, dict):
            return _envelope(422, "input is required")
        unknown = set(body) - {"model", "input", "callBackUrl"}
        if unknown:
            return _envelope(422, f"unknown fields {sorted(unknown)}")
        return await self._create(request, Family.MARKET, body["model"], values, body)

    async def _create_veo(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if body is None:
            return _envelope(422, "invalid JSON body")
        model = str(body.get("model", "veo3_fast"))
        values = {k: v for k, v in body.items() if k not in ("model", "callBackUrl")}
        return await self._create(request, Family.VEO, model, values, body)

    async def _create_suno_cover(self, request: web.Request) -> web.StreamResponse:
        return await self._create_suno(request, Family.SUNO_COVER)

    async def _create_suno_extend(self, request: web.Request) -> web.StreamResponse:
        return await self._create_suno(request, Family.SUNO_EXTEND)

    async def _create_suno(
        self, request: web.Request, family: Family = Family.SUNO
    ) -> web.StreamResponse:
        body = await self._body(request)
        if body is None:
            return _envelope(422, "invalid JSON body")
        if not body.get("callBackUrl"):
            return _envelope(422, "callBackUrl is required")
        model = str(body.get("model", ""))
        values = {k: v for k, v in body.items() if k not in ("model", "callBackUrl")}
        return await self._create(request, family, model, values, body)

    # ------------------------------------------------------------------ the lifecycle
    async def _run(self, task: KieTask) -> None:
        for state in ("queuing", "generating"):
            await asyncio.sleep(self.step_s)
            task.state = state
            task.update_ms = now_ms()
            await self._notify()
        if task.script.never:
            return
        generate_s = task.script.generate_s
        await asyncio.sleep(self.generate_s if generate_s is None else generate_s)
        await self._complete(task, task.script.fail_code is None)

    async def _complete(self, task: KieTask, success: bool) -> None:
        task.complete_ms = task.update_ms = now_ms()
        if success:
            extension = {"image": "png", "video": "mp4", "audio": "mp3"}[task.output]
            task.result_urls = [
                f"{self.base_url}/files/{task.task_id}/{n}.{extension}"
                for n in range(task.script.results)
            ]
            task.credits = self.credits_per_task
            self.credits -= task.credits
            task.state = "success"
        else:
            task.state = "fail"
        await self._notify()
        if task.callback_url and task.script.callback != "none":
            copies = 2 if task.script.callback == "duplicate" else 1
            for payload in self._callback_payloads(task):
                for _ in range(copies):
                    await self._post_callback(task, payload)

    def _callback_payloads(self, task: KieTask) -> list[dict[str, Any]]:
        if task.script.callback == "minimal":
            return [
                {
                    "code": 200 if task.state == "success" else 501,
                    "msg": "done",
                    "data": {"taskId": task.task_id},
                }
            ]
        if task.family.protocol is Family.VEO:
            return [_veo_callback(task)]
        if task.family.protocol is Family.SUNO:
            return _suno_callbacks(task)
        return [_market_callback(task)]

    async def _post_callback(self, task: KieTask, payload: dict[str, Any]) -> None:
        url = task.callback_url
        assert url is not None
        assert self._http is not None
        headers = {"Content-Type": "application/json"}
        if self.hmac_key:
            stamp = str(int(time.time()))
            headers["X-Webhook-Timestamp"] = stamp
            headers["X-Webhook-Signature"] = kie_signature(self.hmac_key, task.task_id, stamp)
        for attempt in range(CALLBACK_ATTEMPTS):
            status: int | None = None
            try:
                async with self._http.post(
                    url, data=json.dumps(payload), headers=headers
                ) as response:
                    status = response.status
            except (OSError, TimeoutError, ClientError):  # a failed attempt, retried as at KIE
                status = None
            self.callbacks.append(
                {
                    "task_id": task.task_id,
                    "payload": payload,
                    "status": status,
                    "attempt": attempt + 1,
                }
            )
            task.callbacks_sent += 1
            await self._notify()
            if status is not None and 200 <= status < 300:
                return
            await asyncio.sleep(self.callback_retry_s * (attempt + 1))

    # ------------------------------------------------------------------ status queries
    def _task_or_error(self, request: web.Request) -> KieTask | web.Response:
        task_id = request.query.get("taskId", "")
        if not task_id:
            return _envelope(400, "taskId required")
        task = self.tasks.get(task_id)
        if task is None:
            return _envelope(404, "task not found")
        if task.script.record_status is not None:
            return _envelope(task.script.record_status, _status_message(task.script.record_status))
        return task

    async def _record_market(self, request: web.Request) -> web.Response:
        found = self._task_or_error(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response({"code": 200, "message": "success", "data": _market_record(found)})

    async def _record_veo(self, request: web.Request) -> web.Response:
        found = self._task_or_error(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response({"code": 200, "msg": "success", "data": _veo_record(found)})

    async def _record_suno(self, request: web.Request) -> web.Response:
        found = self._task_or_error(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response({"code": 200, "msg": "success", "data": _suno_record(found)})

    async def _credit(self, _request: web.Request) -> web.Response:
        answer = web.json_response({"code": 200, "msg": "success", "data": self.credits})
        await self._notify()  # tests wait for the bot's look at the balance
        return answer

    async def _download_url(self, request: web.Request) -> web.Response:
        body = await self._body(request) or {}
        url = str(body.get("url", ""))
        if not url.startswith(f"{self.base_url}/files/"):
            return _envelope(422, "Only files generated by KIE are supported")
        expires = int(time.time()) + 1200
        return web.json_response(
            {
                "code": 200,
                "msg": "success",
                "data": f"{url}?expires={expires}&sig={secrets.token_hex(8)}",
            }
        )

    # ------------------------------------------------------------------ files
    async def _result_file(self, request: web.Request) -> web.StreamResponse:
        task = self.tasks.get(request.match_info["task_id"])
        name = request.match_info["name"]
        if task is None or f"{self.base_url}/files/{task.task_id}/{name}" not in task.result_urls:
            raise web.HTTPNotFound()
        if name.endswith(".png"):
            width, height = _dimensions(task)
            key = task.task_id if self.draw_results else f"{width}x{height}"
            data = self._rendered.get(key)
            if data is None:
                text = task.prompt if self.draw_results else "TRT"
                data = render_png(text, width, height, label=task.model)
                self._rendered[key] = data
            content_type = "image/png"
        elif name.endswith(".mp4"):
            data, content_type = sample("sample.mp4"), "video/mp4"
        else:
            data, content_type = sample("sample.mp3"), "audio/mpeg"
        served = task.downloads.get(name, 0)
        task.downloads[name] = served + 1
        cut = len(data) // 2 if served < task.script.truncate else None
        return await self._send_chunked(request, data, content_type, cut_at=cut)

    async def _send_chunked(
        self, request: web.Request, data: bytes, content_type: str, *, cut_at: int | None
    ) -> web.StreamResponse:
        """`data` in chunks with pauses; with `cut_at`, the connection drops at that byte
        (the Content-Length promised the whole file, as a failing CDN's does)."""
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.content_length = len(data)
        await response.prepare(request)
        end = len(data) if cut_at is None else cut_at
        try:
            for start in range(0, end, self.chunk_bytes):
                await response.write(data[start : min(start + self.chunk_bytes, end)])
                if self.chunk_pause_s:
                    await asyncio.sleep(self.chunk_pause_s)
        except ConnectionResetError:
            return response  # the client stopped reading (a result over its size limit)
        if cut_at is not None:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response

    async def _uploaded_file(self, request: web.Request) -> web.Response:
        stored = self.uploads.get(request.match_info["name"])
        if stored is None:
            raise web.HTTPNotFound()
        return web.Response(body=stored.data, content_type=stored.mime_type)

    def _store_upload(
        self, data: bytes, name: str | None, mime: str | None, upload_path: str
    ) -> web.Response:
        if not data:
            return web.json_response(
                {"success": False, "code": 400, "msg": "file is empty"}, status=400
            )
        original = name or "upload.bin"
        stored_name = f"{secrets.token_hex(6)}-{original}"
        mime_type = mime or "application/octet-stream"
        self.uploads[stored_name] = StoredUpload(stored_name, data, mime_type)
        url = f"{self.base_url}/files/uploads/{stored_name}"
        uploaded = now_ms()
        return web.json_response(
            {
                "success": True,
                "code": 200,
                "msg": "File uploaded successfully",
                "data": {
                    "fileId": stored_name,
                    "fileName": stored_name,
                    "originalName": original,
                    "fileSize": len(data),
                    "mimeType": mime_type,
                    "uploadPath": upload_path,
                    "fileUrl": url,
                    "downloadUrl": url,
                    "uploadTime": uploaded,
                    "expiresAt": uploaded + 3 * 24 * 3600 * 1000,
                },
            }
        )

    async def _upload_stream(self, request: web.Request) -> web.Response:
        fields, files = await read_multipart(request)
        upload = files.get("file")
        if upload is None:
            return web.json_response(
                {"success": False, "code": 400, "msg": "file is required"}, status=400
            )
        return self._store_upload(
            upload.data,
            fields.get("fileName") or upload.filename,
            upload.content_type,
            fields.get("uploadPath", ""),
        )

    async def _upload_url(self, request: web.Request) -> web.Response:
        body = await self._body(request) or {}
        url = str(body.get("fileUrl", ""))
        assert self._http is not None
        try:
            async with self._http.get(url) as response:
                if response.status != 200:
                    raise OSError(f"HTTP {response.status}")
                data = await response.read()
                mime = response.content_type
        except (OSError, TimeoutError, ValueError) as exc:
            return web.json_response(
                {"success": False, "code": 400, "msg": f"download failed: {exc}"}, status=400
            )
        return self._store_upload(
            data,
            body.get("fileName") or url.rsplit("/", 1)[-1],
            mime,
            str(body.get("uploadPath", "")),
        )

    async def _upload_base64(self, request: web.Request) -> web.Response:
        body = await self._body(request) or {}
        raw = str(body.get("base64Data", ""))
        mime = None
        if raw.startswith("data:") and "," in raw:
            header, raw = raw.split(",", 1)
            mime = header[5:].split(";")[0] or None
        try:
            data = base64.b64decode(raw, validate=True)
        except ValueError:
            return web.json_response(
                {"success": False, "code": 400, "msg": "invalid base64"}, status=400
            )
        return self._store_upload(data, body.get("fileName"), mime, str(body.get("uploadPath", "")))

    # ------------------------------------------------------------------ chat models
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        """KIE's OpenAI-shaped chat models (the prompt assistant uses one)."""
        model = request.match_info["model"]
        if model not in self.vendor.chat_models:
            return _envelope(404, _status_message(404))
        body = await self._body(request)
        problem = _chat_problem(body)
        if problem is not None:
            return _envelope(422, problem)
        assert body is not None
        self.chats.append({"model": model, **body})
        messages = body["messages"]
        system = " ".join(str(m["content"]) for m in messages if m["role"] == "system")
        user = str(next(m["content"] for m in reversed(messages) if m["role"] == "user"))
        script = self.chat_scripts.pop(0) if self.chat_scripts else ChatScript.from_text(user)
        if script.delay_s:
            await asyncio.sleep(script.delay_s)
        if script.status is not None:
            return _envelope(script.status, _status_message(script.status))
        if script.garbage:
            return web.Response(text="<html>upstream error</html>", content_type="text/html")
        answer = script.answer if script.answer is not None else chat_answer(system, user)
        return web.json_response(
            {
                "id": f"chatcmpl-sandbox-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(system + user) // 4 + 1,
                    "completion_tokens": len(answer) // 4 + 1,
                    "total_tokens": len(system + user + answer) // 4 + 2,
                },
            }
        )

    async def _script_chat(self, request: web.Request) -> web.Response:
        body = await self._body(request) or {}
        times = int(body.pop("times", 1))
        try:
            script = ChatScript(**body)
        except TypeError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        self.chat_scripts.extend([script] * times)
        return web.json_response({"ok": True, "queued": len(self.chat_scripts)})

    # ------------------------------------------------------------------ scripting API
    async def _add_script(self, request: web.Request) -> web.Response:
        body = await self._body(request) or {}
        match = str(body.pop("match", "*"))
        times = int(body.pop("times", 1))
        try:
            script = Script(**body)
        except TypeError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        self.scripts.append((match, script, times))
        return web.json_response({"ok": True})

    async def _list_tasks(self, _request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "taskId": t.task_id,
                    "family": t.family.value,
                    "model": t.model,
                    "state": t.state,
                    "callbacks": t.callbacks_sent,
                    "script": asdict(t.script),
                }
                for t in self.tasks.values()
            ]
        )

    async def _set_credits(self, request: web.Request) -> web.Response:
        body = await self._body(request) or {}
        self.credits = int(body.get("credits", self.credits))
        return web.json_response({"credits": self.credits})

    async def _finish_task(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            raise web.HTTPNotFound()
        body = await self._body(request) or {}
        await self._complete(task, bool(body.get("success", True)))
        return web.json_response({"state": task.state})


# ---------------------------------------------------------------------- payload shapes
def _envelope(code: int, message: str) -> web.Response:
    status = code if 400 <= code < 600 else 200
    return web.json_response({"code": code, "msg": message, "data": None}, status=status)


def _status_message(code: int) -> str:
    return {
        401: "You do not have access permissions",
        402: "Credits insufficient",
        404: "Not found",
        422: "Validation error",
        429: "Too many requests, please slow down",
        433: "Sub-key usage limit exceeded",
        455: "Service unavailable: system maintenance",
        500: "Server error, please try again later",
        501: "Generation failed",
        505: "Feature disabled",
    }.get(code, "Error")


def _output_kind(family: Family, model: str) -> str:
    if family is Family.VEO:
        return "video"
    if family.protocol is Family.SUNO:
        return "audio"
    lowered = model.lower()
    if "to-video" in lowered:  # speech-to-video is video, though it names speech
        return "video"
    if any(hint in lowered for hint in _AUDIO_HINTS):
        return "audio"
    if any(hint in lowered for hint in _VIDEO_HINTS):
        return "video"
    return "image"


def _dimensions(task: KieTask) -> tuple[int, int]:
    values = task.body.get("input") if task.family is Family.MARKET else task.body
    ratio = str((values or {}).get("aspect_ratio") or "1:1")
    try:
        width, height = (int(x) for x in ratio.split(":"))
    except ValueError:
        return 512, 512
    scale = 512 / max(width, height)
    return max(64, int(width * scale)), max(64, int(height * scale))


def _market_record(task: KieTask) -> dict[str, Any]:
    record: dict[str, Any] = {
        "taskId": task.task_id,
        "model": task.model,
        "state": task.state,
        "param": json.dumps(task.body, ensure_ascii=False),
        "resultJson": json.dumps({"resultUrls": task.result_urls}) if task.result_urls else "",
        "failCode": (task.script.fail_code or "") if task.state == "fail" else "",
        "failMsg": task.script.fail_msg if task.state == "fail" else "",
        "createTime": task.create_ms,
        "updateTime": task.update_ms,
        "completeTime": task.complete_ms,
    }
    if task.state == "success":
        record["creditsConsumed"] = task.credits
        record["costTime"] = max(1, ((task.complete_ms or task.create_ms) - task.create_ms) // 1000)
    return record


def _market_callback(task: KieTask) -> dict[str, Any]:
    data = _market_record(task)
    if task.state == "success":
        return {"code": 200, "msg": "Playground task completed successfully.", "data": data}
    data.pop("resultJson", None)
    return {"code": 501, "msg": "Playground task failed.", "data": data}


def _fail_code(task: KieTask) -> int | None:
    """The failed task's code as an integer (None while it has not failed)."""
    code = task.script.fail_code or ""
    return int(code) if task.state == "fail" and code.isdigit() else None


def _veo_record(task: KieTask) -> dict[str, Any]:
    flag = {"success": 1, "fail": 2}.get(task.state, 0)
    return {
        "taskId": task.task_id,
        "paramJson": json.dumps(task.body, ensure_ascii=False),
        "completeTime": task.complete_ms,
        "response": {
            "taskId": task.task_id,
            "resultUrls": task.result_urls,
            "originUrls": [],
            "resolution": str(task.body.get("resolution", "720p")),
        }
        if task.state == "success"
        else None,
        "successFlag": flag,
        "errorCode": _fail_code(task),
        "errorMessage": task.script.fail_msg if flag == 2 else "",
        "createTime": task.create_ms,
        "fallbackFlag": False,
    }


def _veo_callback(task: KieTask) -> dict[str, Any]:
    if task.state == "success":
        return {
            "code": 200,
            "msg": "Veo3.1 video generated successfully.",
            "data": {
                "taskId": task.task_id,
                "info": {
                    "resultUrls": task.result_urls,
                    "originUrls": [],
                    "resolution": str(task.body.get("resolution", "720p")),
                },
                "fallbackFlag": False,
            },
        }
    return {
        "code": _fail_code(task) or 501,
        "msg": task.script.fail_msg,
        "data": {"taskId": task.task_id, "fallbackFlag": False},
    }


def _suno_items(task: KieTask, snake: bool) -> list[dict[str, Any]]:
    items = []
    for index, url in enumerate(task.result_urls or [""]):
        item = {
            "id": f"{task.task_id}-{index}",
            "audioUrl": url,
            "streamAudioUrl": url,
            "imageUrl": "",
            "prompt": task.prompt,
            "modelName": f"chirp-{task.model.lower()}",
            "title": task.prompt[:40] or "Untitled",
            "tags": str(task.body.get("style", "")),
            "createTime": task.create_ms,
            "duration": 3.0,
        }
        if snake:
            item = {re.sub(r"([A-Z])", r"_\1", key).lower(): value for key, value in item.items()}
        items.append(item)
    return items


def _suno_record(task: KieTask) -> dict[str, Any]:
    status = {"success": "SUCCESS", "fail": "GENERATE_AUDIO_FAILED"}.get(task.state, "PENDING")
    return {
        "taskId": task.task_id,
        "param": json.dumps(task.body, ensure_ascii=False),
        "response": {"taskId": task.task_id, "sunoData": _suno_items(task, snake=False)}
        if task.state == "success"
        else None,
        "status": status,
        "type": f"chirp-{task.model.lower()}",
        "operationType": "generate",
        "errorCode": _fail_code(task),
        "errorMessage": task.script.fail_msg if task.state == "fail" else None,
    }


def _suno_callbacks(task: KieTask) -> list[dict[str, Any]]:
    if task.state != "success":
        return [
            {
                "code": 501,
                "msg": task.script.fail_msg,
                "data": {"callbackType": "error", "task_id": task.task_id, "data": None},
            }
        ]
    items = _suno_items(task, snake=True)
    return [
        {
            "code": 200,
            "msg": "Text generation completed successfully.",
            "data": {"callbackType": "text", "task_id": task.task_id, "data": items},
        },
        {
            "code": 200,
            "msg": "First track completed successfully.",
            "data": {"callbackType": "first", "task_id": task.task_id, "data": items[:1]},
        },
        {
            "code": 200,
            "msg": "All generated successfully.",
            "data": {"callbackType": "complete", "task_id": task.task_id, "data": items},
        },
    ]
