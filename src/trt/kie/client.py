"""The KIE.ai HTTP client: market and dedicated families behind one interface.

No retries here: retries live in one layer, the job worker (shared/reference/reliability.md
§3.2). Every call has explicit timeouts; every failure becomes a `KieError` from the one table
in `trt.kie.errors`. Client-side rate limits keep TRT under KIE's published limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import (
    ClientConnectionError,
    ClientConnectorError,
    ClientError,
    ClientPayloadError,
    ClientResponse,
    ClientSession,
    ClientTimeout,
    FormData,
)

from trt.catalog.schema import Family
from trt.concurrency import MemoryBudget
from trt.kie.errors import KieError

CREATE_PATHS = {
    Family.MARKET: "/api/v1/jobs/createTask",
    Family.VEO: "/api/v1/veo/generate",
    Family.SUNO: "/api/v1/generate",
    Family.SUNO_COVER: "/api/v1/generate/upload-cover",
    Family.SUNO_EXTEND: "/api/v1/generate/upload-extend",
}
STATUS_PATHS = {
    Family.MARKET: "/api/v1/jobs/recordInfo",
    Family.VEO: "/api/v1/veo/record-info",
    Family.SUNO: "/api/v1/generate/record-info",
    Family.SUNO_COVER: "/api/v1/generate/record-info",
    Family.SUNO_EXTEND: "/api/v1/generate/record-info",
}
# Where KIE serves results (README §1); the configured KIE hosts are allowed as well.
KIE_RESULT_HOSTS = frozenset(
    {
        "tempfile.aiquickdraw.com",
        "tempfileb.aiquickdraw.com",
        "static.aiquickdraw.com",
        "file.aiquickdraw.com",
    }
)
DOWNLOAD_CHUNK_BYTES = 64 * 1024
SPOOL_IN_MEMORY_BYTES = 1024 * 1024  # a result larger than this is spooled to disk
_RUNNING = {"waiting": "pending", "queuing": "pending", "generating": "running"}
_SUNO_RUNNING = {"PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS"}


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """A task's state in TRT's words: pending | running | succeeded | failed."""

    state: str
    result_urls: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")


class RateLimiter:
    """At most `count` requests in any `period_s` window, as the server counts them.

    A request occupies the window from the moment it is admitted until `period_s` after its
    answer: the server saw it somewhere in between, so two requests the server could count in
    one window are always both counted here (a limit on admission times alone is exceeded by
    network and event-loop delays).
    """

    def __init__(self, count: int, period_s: float) -> None:
        assert count > 0
        assert period_s > 0
        self.count = count
        self.period_s = period_s
        self._ends: list[float] = []  # answer times of finished requests
        self._in_flight = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._changed:
            while True:
                now = time.monotonic()
                self._ends = [end for end in self._ends if end > now - self.period_s]
                if len(self._ends) + self._in_flight < self.count:
                    self._in_flight += 1
                    break
                wait = (self._ends[0] + self.period_s - now) if self._ends else None
                # A real wait: the next slot opens when the oldest request leaves the window.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
        try:
            yield
        finally:
            async with self._changed:
                self._in_flight -= 1
                self._ends.append(time.monotonic())
                self._ends.sort()
                self._changed.notify_all()


@dataclass(frozen=True, slots=True)
class Download:
    """A downloaded result file; `data` is None when it is too big to send (a link then)."""

    url: str
    mime_type: str
    size_bytes: int
    data: bytes | None


@dataclass(frozen=True, slots=True)
class Limits:
    creates: int = 18  # KIE: 20 new tasks per 10 s per account; keep a margin
    creates_period_s: float = 10.0
    records: int = 8  # KIE: 10 recordInfo per second
    records_period_s: float = 1.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_download_bytes: int = 50 * 1024 * 1024  # the Bot API's upload limit


class KieClient:
    def __init__(
        self,
        api_key: str,
        base_url: str,
        upload_base_url: str,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.upload_base_url = upload_base_url.rstrip("/")
        self.limits = limits or Limits()
        self._creates = RateLimiter(self.limits.creates, self.limits.creates_period_s)
        self._records = RateLimiter(self.limits.records, self.limits.records_period_s)
        configured = [urlsplit(self.base_url), urlsplit(self.upload_base_url)]
        self.allowed_hosts = KIE_RESULT_HOSTS | {u.hostname or "" for u in configured}
        # Plain http only where KIE itself is configured over http (the sandbox, a local
        # stand-in); KIE's real hosts serve https.
        self._http_hosts = {u.hostname or "" for u in configured if u.scheme == "http"}
        self._session: ClientSession | None = None
        self.calls: dict[str, int] = {}  # path → count, for metrics and benchmarks

    async def start(self) -> None:
        if self._session is None:
            timeout = ClientTimeout(
                total=None,
                connect=self.limits.connect_timeout_s,
                sock_read=self.limits.read_timeout_s,
            )
            self._session = ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> ClientSession:
        assert self._session is not None, "KieClient.start() first"
        return self._session

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    # -- the envelope -------------------------------------------------------------------
    async def _call(
        self,
        method: str,
        url: str,
        *,
        creates: bool = False,
        body: Any = None,
        params: dict[str, str] | None = None,
        data: FormData | None = None,
    ) -> Any:
        path = urlsplit(url).path
        self.calls[path] = self.calls.get(path, 0) + 1
        try:
            async with self.session.request(
                method,
                url,
                json=body,
                params=params,
                data=data,
                headers=self._headers(),
                allow_redirects=False,
            ) as response:
                return await _envelope(response, creates=creates)
        except KieError:
            raise
        except ClientConnectorError as exc:
            raise KieError("network", f"cannot connect: {exc}") from None  # nothing was sent
        except TimeoutError:
            raise KieError("timeout", "no answer in time", outcome_unknown=creates) from None
        except (ClientConnectionError, ClientError, OSError) as exc:
            raise KieError(
                "network", f"{exc.__class__.__name__}: {exc}", outcome_unknown=creates
            ) from None

    # -- tasks ---------------------------------------------------------------------------
    async def create(self, family: Family, body: dict[str, Any]) -> str:
        """Create a task; its id. A `KieError` with `outcome_unknown` may have made one."""
        async with self._creates.slot():
            data = await self._call(
                "POST", self.base_url + CREATE_PATHS[family], creates=True, body=body
            )
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise KieError("malformed", "no taskId in the answer", outcome_unknown=True)
        return task_id

    async def status(self, family: Family, task_id: str) -> TaskStatus:
        async with self._records.slot():
            data = await self._call(
                "GET", self.base_url + STATUS_PATHS[family], params={"taskId": task_id}
            )
        if not isinstance(data, dict):
            raise KieError("malformed", "no task data")
        return parse_status(family, data)

    async def credit(self) -> int:
        data = await self._call("GET", self.base_url + "/api/v1/chat/credit")
        if not isinstance(data, int):
            raise KieError("malformed", "credit is not a number")
        return data

    async def chat(self, model: str, messages: list[dict[str, str]], *, timeout_s: float) -> str:
        """One answer of a KIE chat model (`/{model}/v1/chat/completions`, OpenAI-shaped).

        Not a task: nothing is created, nothing to reconcile, so a failure is simply a
        `KieError` (the caller keeps what it had). The answer's text, stripped; an empty or
        missing one is `malformed`."""
        url = f"{self.base_url}/{model}/v1/chat/completions"
        path = urlsplit(url).path
        self.calls[path] = self.calls.get(path, 0) + 1
        body = {"messages": messages, "stream": False}
        try:
            async with asyncio.timeout(timeout_s):
                async with self.session.post(
                    url, json=body, headers=self._headers(), allow_redirects=False
                ) as response:
                    text = await response.text()
                    status = response.status
        except TimeoutError:
            raise KieError("timeout", "no answer in time") from None
        except (ClientError, OSError) as exc:
            raise KieError("network", exc.__class__.__name__) from None
        return _chat_answer(status, text)

    # -- files -----------------------------------------------------------------------------
    async def upload(self, data: bytes, filename: str, upload_path: str = "trt") -> str:
        """Upload user media (bytes from Telegram); the URL to pass into model inputs."""
        form = FormData()
        form.add_field("file", data, filename=filename)
        form.add_field("uploadPath", upload_path)
        form.add_field("fileName", filename)
        result = await self._call(
            "POST", self.upload_base_url + "/api/file-stream-upload", data=form
        )
        url = result.get("fileUrl") if isinstance(result, dict) else None
        if not isinstance(url, str):
            raise KieError("malformed", "no fileUrl in the upload answer")
        return url

    async def download(self, url: str) -> Download:
        """A result file, read to its end; only from KIE's hosts (`download_held`)."""
        async with self.download_held(url) as item:
            return item

    @asynccontextmanager
    async def download_held(
        self, url: str, budget: MemoryBudget | None = None
    ) -> AsyncIterator[Download]:
        """A result file, read to its end; only from KIE's hosts; with `budget`, its bytes
        held there until the caller's block ends (the caller stores the file meanwhile).

        The share is reserved once the answer's headers are in: the size the server
        announces, or the download cap when it announces none, then only the size received
        is kept. Reserving the cap for every file before asking let four downloads at a time
        through, whatever their size (docs/performance.md, item 32); the worst case is the
        same budget.

        A body over `max_download_bytes` is not kept: the result is sent as a link (the
        download stops there, nothing more is read). A body cut short (the connection closed
        early, fewer bytes than `Content-Length`) raises a `KieError("download")`: the caller
        retries, and never charges for a part of a file. The bytes go through a spooled
        temporary file, so a large body does not sit in the connection's buffers twice.
        """
        async with contextlib.AsyncExitStack() as held:
            yield await self._download(url, budget, held)

    async def _download(
        self, url: str, budget: MemoryBudget | None, held: contextlib.AsyncExitStack
    ) -> Download:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host not in self.allowed_hosts:
            raise KieError("download", f"refusing to download from {host!r}")
        if parts.scheme != "https" and not (parts.scheme == "http" and host in self._http_hosts):
            raise KieError("download", f"refusing {parts.scheme or 'no'} scheme for {host!r}")
        limit = self.limits.max_download_bytes
        try:
            async with self.session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise KieError("download", f"HTTP {response.status} for a result")
                mime_type = response.content_type or "application/octet-stream"
                declared = response.content_length
                if declared is not None and declared > limit:
                    return Download(url, mime_type, declared, None)
                share = None
                if budget is not None:
                    need = limit if declared is None else declared
                    share = await held.enter_async_context(budget.reserve(need))
                with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as spool:
                    size = 0
                    async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                        size += len(chunk)
                        if size > limit:
                            if share is not None:
                                share.keep(0)
                            return Download(url, mime_type, size, None)
                        spool.write(chunk)
                    if declared is not None and size != declared:
                        raise KieError("download", f"truncated: {size} of {declared} bytes")
                    if size == 0:
                        raise KieError("download", "an empty result file")
                    if share is not None:
                        share.keep(size)
                    spool.seek(0)
                    return Download(url, mime_type, size, spool.read())
        except KieError:
            raise
        except ClientPayloadError:
            raise KieError("download", "truncated: the connection closed mid-body") from None
        except (TimeoutError, ClientError, OSError) as exc:
            # The exception's text can hold the URL; its class says enough.
            raise KieError("download", exc.__class__.__name__) from None


async def _envelope(response: ClientResponse, *, creates: bool) -> Any:
    """`data` of a `{code, msg, data}` answer; a `KieError` for anything but code 200."""
    text = await response.text()
    try:
        body = json.loads(text)
    except ValueError:
        if response.status >= 400:
            raise KieError(
                response.status,
                text[:200] or response.reason or "error",
                outcome_unknown=creates and response.status >= 500,
            ) from None
        raise KieError("malformed", "not JSON", outcome_unknown=creates) from None
    if not isinstance(body, dict):
        raise KieError("malformed", "not an object", outcome_unknown=creates)
    code = body.get("code", response.status)
    message = str(body.get("msg") or body.get("message") or "")
    if code == 200 and response.status < 400:
        return body.get("data")
    retry_after = response.headers.get("Retry-After")
    raise KieError(
        code if isinstance(code, (int, str)) else response.status,
        message,
        retry_after_s=float(retry_after) if retry_after and retry_after.isdigit() else None,
        outcome_unknown=creates and str(code).startswith("5") and str(code) != "505",
    )


def _chat_answer(status: int, text: str) -> str:
    """`choices[0].message.content` of a chat answer; a `KieError` for KIE's envelope with
    an error code, an OpenAI-style `error`, or anything else."""
    try:
        body = json.loads(text)
    except ValueError:
        raise KieError(status if status >= 400 else "malformed", "not JSON") from None
    if not isinstance(body, dict):
        raise KieError("malformed", "not an object")
    choices = body.get("choices")
    if status < 400 and isinstance(choices, list) and choices:
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str) and content.strip():
            return content.strip()
        raise KieError("malformed", "an empty answer")
    error = body.get("error")
    if isinstance(error, dict):
        raise KieError(status, str(error.get("message") or "error")[:200])
    code = body.get("code", status)
    message = str(body.get("msg") or body.get("message") or "no answer")[:200]
    if not isinstance(code, (int, str)) or str(code) == "200":
        code = status if status >= 400 else "malformed"
    raise KieError(code, message)


def parse_status(family: Family, data: dict[str, Any]) -> TaskStatus:
    """recordInfo's `data` (per family) → TaskStatus."""
    if family.protocol is Family.VEO:
        flag = data.get("successFlag")
        if flag == 1:
            response = data.get("response") or {}
            return TaskStatus("succeeded", tuple(response.get("resultUrls") or ()), raw=data)
        if flag in (2, 3):
            return TaskStatus(
                "failed",
                error_code=str(data.get("errorCode") or "501"),
                error_message=str(data.get("errorMessage") or ""),
                raw=data,
            )
        return TaskStatus("running", raw=data)
    if family.protocol is Family.SUNO:
        status = str(data.get("status") or "PENDING")
        if status == "SUCCESS":
            items = ((data.get("response") or {}).get("sunoData")) or []
            urls = tuple(str(i.get("audioUrl")) for i in items if i.get("audioUrl"))
            return TaskStatus("succeeded", urls, raw=data)
        if status in _SUNO_RUNNING:
            return TaskStatus("running", raw=data)
        return TaskStatus(
            "failed",
            error_code=str(data.get("errorCode") or "501"),
            error_message=str(data.get("errorMessage") or status),
            raw=data,
        )
    state = str(data.get("state") or "")
    if state == "success":
        return TaskStatus("succeeded", _result_urls(data.get("resultJson")), raw=data)
    if state == "fail":
        return TaskStatus(
            "failed",
            error_code=str(data.get("failCode") or "501"),
            error_message=str(data.get("failMsg") or ""),
            raw=data,
        )
    # waiting, queuing, generating; an unknown state counts as running until the deadline.
    return TaskStatus(_RUNNING.get(state, "running"), raw=data)


def parse_callback(family: Family, body: dict[str, Any]) -> tuple[str | None, TaskStatus | None]:
    """(taskId, final status) of a callback; status None when it must be confirmed by polling.

    KIE's minimal callbacks carry only `data.taskId`; Suno's intermediate stages are not final.
    """
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    assert isinstance(data, dict)
    task_id = data.get("taskId") or data.get("task_id") or body.get("taskId")
    task = str(task_id) if task_id else None
    code = body.get("code")
    if family.protocol is Family.SUNO:
        stage = data.get("callbackType")
        if stage == "complete":
            items = data.get("data") or []
            urls = tuple(str(i.get("audio_url")) for i in items if i.get("audio_url"))
            return task, TaskStatus("succeeded", urls, raw=body)
        if stage == "error":
            return task, TaskStatus(
                "failed",
                error_code=str(code or "501"),
                error_message=str(body.get("msg") or ""),
                raw=body,
            )
        return task, None
    if family.protocol is Family.VEO:
        info = data.get("info")
        if code == 200 and isinstance(info, dict) and info.get("resultUrls"):
            return task, TaskStatus("succeeded", tuple(info["resultUrls"]), raw=body)
        if isinstance(code, int) and code != 200:
            return task, TaskStatus(
                "failed", error_code=str(code), error_message=str(body.get("msg") or ""), raw=body
            )
        return task, None
    if "state" not in data:
        return task, None
    status = parse_status(Family.MARKET, data)
    return task, status if status.finished else None


def echoed_callback_url(record: dict[str, Any]) -> str | None:
    """The `callBackUrl` of the createTask body a task record echoes (`param` / `paramJson`,
    a JSON string); None when the record does not echo one."""
    for key in ("param", "paramJson"):
        raw = record.get(key)
        try:
            body = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("callBackUrl"), str):
            return str(body["callBackUrl"])
    return None


def _result_urls(raw: Any) -> tuple[str, ...]:
    if not raw:
        return ()
    try:
        decoded = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return ()
    urls = decoded.get("resultUrls") if isinstance(decoded, dict) else None
    return tuple(str(u) for u in urls) if isinstance(urls, list) else ()
