"""The sandbox KIE server: lifecycle, callbacks with HMAC, scripted failures, uploads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientError, ClientSession, FormData, web

from trt.media import image_size
from trt.sandbox.kie import KieServer
from trt.sandbox.runner import RunningApp, start_app

KEY = "kie-sandbox-key"
HMAC_KEY = "hmac-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}


def kie_signature_ok(body: dict[str, Any], headers: Any, key: str, max_skew_s: int = 300) -> bool:
    """KIE's documented verification (kie/README.md §4.2), independent of the server's code."""
    ts, sig = headers.get("X-Webhook-Timestamp", ""), headers.get("X-Webhook-Signature", "")
    data = body.get("data") or {}
    task_id = data.get("taskId") or data.get("task_id") or body.get("taskId") or ""
    if not (ts.isdigit() and sig and task_id) or abs(time.time() - int(ts)) > max_skew_s:
        return False
    mac = hmac.new(key.encode(), f"{task_id}.{ts}".encode(), hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(mac).decode(), sig)


@dataclass
class Receiver:
    """A callback endpoint that records each call and whether its signature verifies."""

    calls: list[tuple[dict[str, Any], bool]] = field(default_factory=list)
    fail_first: int = 0
    running: RunningApp | None = None

    @property
    def url(self) -> str:
        assert self.running is not None
        return f"{self.running.url}/kie/callback?job=42"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append((body, kie_signature_ok(body, request.headers, HMAC_KEY)))
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        return web.json_response({"code": 200, "msg": "success"})


@dataclass
class Kie:
    server: KieServer
    running: RunningApp
    receiver: Receiver
    http: ClientSession

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.http.post(
            self.running.url + path, json=body, headers=AUTH if headers is None else headers
        ) as response:
            return response.status, await response.json(content_type=None)

    async def get(self, path: str, **query: str) -> tuple[int, Any]:
        async with self.http.get(self.running.url + path, params=query, headers=AUTH) as response:
            return response.status, await response.json(content_type=None)

    async def create(self, prompt: str = "a cat", **extra: Any) -> tuple[int, Any]:
        body = {
            "model": "z-image",
            "callBackUrl": self.receiver.url,
            "input": {"prompt": prompt, "aspect_ratio": "16:9", **extra},
        }
        return await self.post("/api/v1/jobs/createTask", body)

    async def finished(self, task_id: str) -> None:
        await self.server.wait_for(
            lambda: (
                self.server.tasks[task_id].state in ("success", "fail")
                and (
                    not self.server.tasks[task_id].callback_url
                    or self.server.tasks[task_id].script.callback == "none"
                    or self.server.tasks[task_id].callbacks_sent > 0
                )
            )
        )


@pytest.fixture
async def kie() -> AsyncIterator[Kie]:
    server = KieServer(KEY, hmac_key=HMAC_KEY, step_s=0.01, generate_s=0.02, callback_retry_s=0.01)
    running = await start_app(server.app)
    server.base_url = running.url
    receiver = Receiver()
    receiver_app = web.Application()
    receiver_app.router.add_post("/kie/callback", receiver.handle)
    receiver.running = await start_app(receiver_app)
    async with ClientSession() as http:
        yield Kie(server, running, receiver, http)
    await receiver.running.stop()
    await running.stop()


async def test_market_lifecycle_with_signed_callback(kie: Kie) -> None:
    status, created = await kie.create()
    assert status == 200
    assert created["code"] == 200
    task_id = created["data"]["taskId"]
    await kie.finished(task_id)
    status, record = await kie.get("/api/v1/jobs/recordInfo", taskId=task_id)
    assert status == 200
    assert record["message"] == "success"  # recordInfo says `message`, not `msg`
    data = record["data"]
    assert data["state"] == "success"
    assert json.loads(data["param"])["input"]["prompt"] == "a cat"
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert data["completeTime"] >= data["createTime"] > 1_600_000_000_000  # unix ms
    async with kie.http.get(urls[0]) as response:
        picture = await response.read()
    assert image_size(picture) == (512, 288)  # 16:9, rendered from the prompt
    body, signed = kie.receiver.calls[0]
    assert signed
    assert body["msg"] == "Playground task completed successfully."
    assert json.loads(body["data"]["resultJson"]) == {"resultUrls": urls}
    assert kie.server.credits == 1_000_000 - 1


async def test_states_pass_through_queuing_and_generating(kie: Kie) -> None:
    _status, created = await kie.create("[slow:5]")
    task_id = created["data"]["taskId"]
    await kie.server.wait_for(lambda: kie.server.tasks[task_id].state == "generating")
    _status, record = await kie.get("/api/v1/jobs/recordInfo", taskId=task_id)
    assert record["data"]["state"] == "generating"
    assert record["data"]["resultJson"] == ""


async def test_scripted_failure(kie: Kie) -> None:
    _status, created = await kie.create("[fail:400:Content policy violation]")
    task_id = created["data"]["taskId"]
    await kie.finished(task_id)
    _status, record = await kie.get("/api/v1/jobs/recordInfo", taskId=task_id)
    assert (record["data"]["state"], record["data"]["failCode"], record["data"]["failMsg"]) == (
        "fail",
        "400",
        "Content policy violation",
    )
    body, _signed = kie.receiver.calls[0]
    assert body["code"] == 501
    assert "resultJson" not in body["data"]


@pytest.mark.parametrize("code", [429, 455, 500, 402, 433])
async def test_scripted_create_codes(kie: Kie, code: int) -> None:
    status, body = await kie.create(f"[http:{code}]")
    assert (status, body["code"]) == (code, code)
    assert kie.server.tasks == {}


async def test_lost_create_answers_500_but_the_task_exists(kie: Kie) -> None:
    status, body = await kie.create("[lost]")
    assert (status, body["code"]) == (500, 500)
    [task] = kie.server.tasks.values()
    await kie.finished(task.task_id)
    callback, _signed = kie.receiver.calls[0]
    # The callback echoes the create body, so the caller can adopt the unknown task.
    assert json.loads(callback["data"]["param"])["callBackUrl"].endswith("job=42")


async def test_malformed_json_and_connection_reset(kie: Kie) -> None:
    async with kie.http.post(
        kie.running.url + "/api/v1/jobs/createTask",
        headers=AUTH,
        json={"model": "z-image", "input": {"prompt": "[malformed]", "aspect_ratio": "1:1"}},
    ) as r:
        text = await r.text()
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(ClientError):
        await kie.create("[reset]")


async def test_never_finishing_task_and_forced_finish(kie: Kie) -> None:
    _status, created = await kie.create("[never]")
    task_id = created["data"]["taskId"]
    await kie.server.wait_for(lambda: kie.server.tasks[task_id].state == "generating")
    assert kie.receiver.calls == []
    status, _body = await kie.post(f"/sandbox/kie/tasks/{task_id}/finish", {"success": False})
    assert status == 200
    assert kie.server.tasks[task_id].state == "fail"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("[nocallback]", 0), ("[dupcallback]", 2), ("[mincallback]", 1)],
)
async def test_callback_variants(kie: Kie, prompt: str, expected: int) -> None:
    _status, created = await kie.create(prompt)
    task_id = created["data"]["taskId"]
    await kie.finished(task_id)
    if expected == 2:
        await kie.server.wait_for(lambda: kie.server.tasks[task_id].callbacks_sent == 2)
    assert len(kie.receiver.calls) == expected
    if prompt == "[mincallback]":
        assert kie.receiver.calls[0][0] == {"code": 200, "msg": "done", "data": {"taskId": task_id}}


async def test_failed_callback_is_retried(kie: Kie) -> None:
    kie.receiver.fail_first = 2
    _status, created = await kie.create()
    task_id = created["data"]["taskId"]
    await kie.server.wait_for(lambda: kie.server.tasks[task_id].callbacks_sent == 3)
    assert [c["status"] for c in kie.server.callbacks] == [503, 503, 200]


async def test_record_info_scripted_error_and_unknown_task(kie: Kie) -> None:
    _status, created = await kie.create("[record:500]")
    status, body = await kie.get("/api/v1/jobs/recordInfo", taskId=created["data"]["taskId"])
    assert (status, body["code"]) == (500, 500)
    status, body = await kie.get("/api/v1/jobs/recordInfo", taskId="task_nope")
    assert (status, body["code"]) == (404, 404)


async def test_script_by_api(kie: Kie) -> None:
    await kie.post(
        "/sandbox/kie/scripts", {"match": "dog", "fail_code": "501", "fail_msg": "boom", "times": 1}
    )
    _status, created = await kie.create("a dog")
    await kie.finished(created["data"]["taskId"])
    assert kie.server.tasks[created["data"]["taskId"]].state == "fail"
    _status, again = await kie.create("a dog")
    await kie.finished(again["data"]["taskId"])
    assert kie.server.tasks[again["data"]["taskId"]].state == "success"


async def test_auth_credits_and_validation(kie: Kie) -> None:
    status, body = await kie.post("/api/v1/jobs/createTask", {}, headers={})
    assert (status, body) == (401, {"code": 401, "msg": "You do not have access permissions"})
    status, body = await kie.get("/api/v1/chat/credit")
    assert body == {"code": 200, "msg": "success", "data": 1_000_000}
    status, body = await kie.post(
        "/api/v1/jobs/createTask",
        {"model": "z-image", "input": {"prompt": "x", "aspect_ratio": "7:5"}},
    )
    assert (status, body["code"]) == (422, 422)
    assert "aspect_ratio" in body["msg"]
    status, body = await kie.post(
        "/api/v1/jobs/createTask", {"model": "z-image", "input": {"aspect_ratio": "1:1"}}
    )
    assert "prompt: required" in body["msg"]
    await kie.post("/sandbox/kie/credits", {"credits": 0})
    status, body = await kie.create()
    assert (status, body["code"]) == (402, 402)


async def test_veo_lifecycle(kie: Kie) -> None:
    status, created = await kie.post(
        "/api/v1/veo/generate",
        {
            "prompt": "a dog running",
            "model": "veo3_fast",
            "aspectRatio": "9:16",
            "callBackUrl": kie.receiver.url,
        },
    )
    assert status == 200
    task_id = created["data"]["taskId"]
    await kie.finished(task_id)
    _status, record = await kie.get("/api/v1/veo/record-info", taskId=task_id)
    assert record["data"]["successFlag"] == 1
    [url] = record["data"]["response"]["resultUrls"]
    assert url.endswith(".mp4")
    body, signed = kie.receiver.calls[0]
    assert signed
    assert body["data"]["info"]["resultUrls"] == [url]
    status, bad = await kie.post("/api/v1/veo/generate", {"prompt": "x", "aspect_ratio": "16:9"})
    assert (status, bad["code"]) == (422, 422)


async def test_suno_lifecycle_with_staged_snake_case_callbacks(kie: Kie) -> None:
    status, missing = await kie.post(
        "/api/v1/generate",
        {"prompt": "x", "customMode": False, "instrumental": False, "model": "V5"},
    )
    assert (status, missing["code"]) == (422, 422)  # callBackUrl is required for Suno
    _status, created = await kie.post(
        "/api/v1/generate",
        {
            "prompt": "a song about the sea",
            "customMode": False,
            "instrumental": False,
            "model": "V5",
            "callBackUrl": kie.receiver.url,
        },
    )
    task_id = created["data"]["taskId"]
    await kie.server.wait_for(lambda: kie.server.tasks[task_id].callbacks_sent == 3)
    stages = [body["data"]["callbackType"] for body, _signed in kie.receiver.calls]
    assert stages == ["text", "first", "complete"]
    complete = kie.receiver.calls[-1][0]["data"]
    assert complete["task_id"] == task_id
    assert complete["data"][0]["audio_url"].endswith(".mp3")
    _status, record = await kie.get("/api/v1/generate/record-info", taskId=task_id)
    assert record["data"]["status"] == "SUCCESS"
    assert record["data"]["response"]["sunoData"][0]["audioUrl"].endswith(".mp3")


async def test_three_upload_endpoints_and_download_url(kie: Kie) -> None:
    form = FormData()
    form.add_field("file", b"\x89PNG-bytes", filename="in.png", content_type="image/png")
    form.add_field("uploadPath", "trt/inputs")
    async with kie.http.post(
        kie.running.url + "/api/file-stream-upload", data=form, headers=AUTH
    ) as response:
        stream = await response.json()
    assert stream["success"] is True
    file_url = stream["data"]["fileUrl"]
    async with kie.http.get(file_url) as response:
        assert await response.read() == b"\x89PNG-bytes"
    _status, by_base64 = await kie.post(
        "/api/file-base64-upload",
        {
            "base64Data": "data:image/png;base64," + base64.b64encode(b"abc").decode(),
            "uploadPath": "trt",
            "fileName": "b.png",
        },
    )
    assert by_base64["data"]["mimeType"] == "image/png"
    _status, by_url = await kie.post(
        "/api/file-url-upload", {"fileUrl": file_url, "uploadPath": "trt"}
    )
    assert by_url["data"]["fileSize"] == len(b"\x89PNG-bytes")
    _status, created = await kie.create()
    await kie.finished(created["data"]["taskId"])
    result_url = kie.server.tasks[created["data"]["taskId"]].result_urls[0]
    _status, link = await kie.post("/api/v1/common/download-url", {"url": result_url})
    assert link["data"].startswith(result_url + "?expires=")
    status, refused = await kie.post(
        "/api/v1/common/download-url", {"url": "https://example.com/x.png"}
    )
    assert (status, refused["code"]) == (422, 422)


async def test_several_results(kie: Kie) -> None:
    _status, created = await kie.create("[results:3]")
    await kie.finished(created["data"]["taskId"])
    assert len(kie.server.tasks[created["data"]["taskId"]].result_urls) == 3


# -- chat models (the prompt assistant's) -------------------------------------------------
CHAT = "/gemini-3-flash/v1/chat/completions"


def chat_body(system: str, user: str, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "stream": False,
        **extra,
    }


async def test_chat_answers_openai_shaped_translations_and_improvements(kie: Kie) -> None:
    status, body = await kie.post(
        CHAT, chat_body("Translate the user's prompt …", "Кот «Мурзик» [slow:1]")
    )
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Kot «Мурзик» [slow:1]",  # quoted text and keywords survive
    }
    assert body["usage"]["total_tokens"] > 0
    _s, improved = await kie.post(CHAT, chat_body("Improve … Answer in English.", "кот"))
    assert improved["choices"][0]["message"]["content"].startswith("kot, highly detailed")
    _s, quoted = await kie.post(CHAT, chat_body("Improve … Answer in English.", "кот «Привет»"))
    # Asked for English, it answers in English, the quoted text to render left as it is.
    assert quoted["choices"][0]["message"]["content"] == (
        "kot «Привет», highly detailed, expressive composition, soft natural light"
    )
    _s, russian = await kie.post(CHAT, chat_body("Improve … Answer in the language", "кот"))
    assert russian["choices"][0]["message"]["content"].startswith("кот, высокая детализация")
    assert [c["model"] for c in kie.server.chats] == ["gemini-3-flash"] * 4


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/no-such-model/v1/chat/completions", chat_body("s", "u"), 404, "Not found"),
        (CHAT, {"messages": []}, 422, "messages is required"),
        (CHAT, {"messages": [{"role": "bot", "content": "x"}]}, 422, "each message needs a role"),
        (CHAT, {"messages": [{"role": "system", "content": "x"}]}, 422, "no user message"),
        (CHAT, chat_body("s", "u", stream=True), 422, "stream"),
    ],
)
async def test_chat_refuses_what_kie_refuses(
    kie: Kie, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    got, answer = await kie.post(path, body)
    assert got == status
    assert answer["msg"].startswith(message)
    assert kie.server.chats == []


async def test_chat_scripts_by_keyword_and_by_queue(kie: Kie) -> None:
    got, answer = await kie.post(CHAT, chat_body("Translate", "кот [assist-fail:429]"))
    assert (got, answer["code"]) == (429, 429)
    status, _ = await kie.post("/sandbox/kie/chat", {"status": 500, "times": 2})
    assert status == 200
    for _ in range(2):
        got, _answer = await kie.post(CHAT, chat_body("Translate", "кот"))
        assert got == 500
    got, answer = await kie.post(CHAT, chat_body("Translate", "кот"))
    assert (got, answer["choices"][0]["message"]["content"]) == (200, "kot")
    got, _answer = await kie.post(CHAT, chat_body("s", "u"), headers={})
    assert got == 401
