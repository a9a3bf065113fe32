"""The users' side of the sandbox Telegram: HTTP endpoints under `/sandbox/api/`.

The web chat and the Python driver act as Telegram users through these endpoints: send text and
files, tap buttons, pay invoices, read the chat and follow its changes by long polling. Test
helpers read the recorded requests, violations and callback answer times here too.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import Any

from aiohttp import web

from trt.sandbox.multipart import read_multipart
from trt.sandbox.telegram import ApiError, TelegramServer

EVENTS_MAX_WAIT_S = 25.0


def add_client_api(server: TelegramServer) -> None:
    """Register the `/sandbox/api/…` routes on the server's app."""
    routes = ClientApi(server)
    router = server.app.router
    router.add_get("/sandbox/api/info", routes.info)
    router.add_get("/sandbox/api/users", routes.list_users)
    router.add_post("/sandbox/api/users", routes.create_user)
    router.add_post("/sandbox/api/users/{user_id}/send", routes.send)
    router.add_post("/sandbox/api/users/{user_id}/upload", routes.upload)
    router.add_post("/sandbox/api/users/{user_id}/click", routes.click)
    router.add_post("/sandbox/api/users/{user_id}/pay", routes.pay)
    router.add_post("/sandbox/api/users/{user_id}/block", routes.block)
    router.add_get("/sandbox/api/users/{user_id}/messages", routes.messages)
    router.add_get("/sandbox/api/events", routes.events)
    router.add_get("/sandbox/api/files/{file_id}", routes.file)
    router.add_get("/sandbox/api/callbacks/{query_id}", routes.callback)
    router.add_get("/sandbox/api/records", routes.records)
    router.add_post("/sandbox/api/records/clear", routes.clear_records)


def _user_id(request: web.Request) -> int:
    try:
        return int(request.match_info["user_id"])
    except ValueError:
        raise web.HTTPBadRequest(text="user id must be an integer") from None


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="JSON body expected") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="JSON object expected")
    return body


def _api_error(error: ApiError) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": error.code, "description": error.description}, status=400
    )


class ClientApi:
    def __init__(self, server: TelegramServer) -> None:
        self.server = server

    async def info(self, _request: web.Request) -> web.Response:
        server = self.server
        return web.json_response(
            {
                "bot": server.bot_user,
                "commands": [c for scoped in server.commands.values() for c in scoped],
                "last_event": server.events[-1].seq if server.events else 0,
            }
        )

    async def list_users(self, _request: web.Request) -> web.Response:
        return web.json_response(list(self.server.users.values()))

    async def create_user(self, request: web.Request) -> web.Response:
        body = await _json(request)
        user = self.server.ensure_user(
            int(body["id"]),
            str(body.get("first_name", "")),
            body.get("username"),
            str(body.get("language_code", "ru")),
        )
        return web.json_response(user)

    async def send(self, request: web.Request) -> web.Response:
        body = await _json(request)
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise web.HTTPBadRequest(text="text expected")
        message, seq = await self.server.user_sends(_user_id(request), text=text)
        return web.json_response({"message": message, "seq": seq})

    async def upload(self, request: web.Request) -> web.Response:
        user_id = _user_id(request)
        fields, files = await read_multipart(request)
        upload = files.get("file")
        if upload is None or not upload.data:
            raise web.HTTPBadRequest(text="a non-empty `file` part is expected")
        data = upload.data
        filename = upload.filename or "file.bin"
        mime = upload.content_type or "application/octet-stream"
        duration = fields.get("duration")
        try:
            message, seq = await self.server.user_sends_file(
                user_id,
                data,
                filename=filename,
                mime_type=mime,
                kind=fields.get("as", "photo"),
                duration_s=int(duration) if duration and duration.isdigit() else None,
                caption=fields.get("caption"),
            )
        except ApiError as error:
            return _api_error(error)
        return web.json_response({"message": message, "seq": seq})

    async def click(self, request: web.Request) -> web.Response:
        body = await _json(request)
        record = await self.server.user_clicks(
            _user_id(request), int(body["message_id"]), str(body["data"])
        )
        return web.json_response({"query_id": record.query_id})

    async def pay(self, request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            ok, error = await self.server.user_pays(_user_id(request), int(body["message_id"]))
        except ApiError as failure:
            return _api_error(failure)
        return web.json_response({"ok": ok, "error": error})

    async def block(self, request: web.Request) -> web.Response:
        body = await _json(request)
        user_id = _user_id(request)
        self.server.ensure_user(user_id)
        if body.get("blocked", True):
            self.server.blocked_by.add(user_id)
        else:
            self.server.blocked_by.discard(user_id)
        return web.json_response({"blocked": user_id in self.server.blocked_by})

    async def messages(self, request: web.Request) -> web.Response:
        return web.json_response(self.server.chat_view(_user_id(request)))

    async def events(self, request: web.Request) -> web.Response:
        """Events after `after` (for `chat_id` if given); waits up to `timeout` s for one."""
        after = int(request.query.get("after", "0"))
        chat = request.query.get("chat_id")
        chat_id = int(chat) if chat else None
        timeout_s = min(float(request.query.get("timeout", "0")), EVENTS_MAX_WAIT_S)

        def pending() -> list[dict[str, Any]]:
            return [
                asdict(e)
                for e in self.server.events
                if e.seq > after and (chat_id is None or e.chat_id == chat_id)
            ]

        if not pending() and timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                await self.server.wait_for(lambda: bool(pending()), timeout_s)
        found = pending()
        last = self.server.events[-1].seq if self.server.events else 0
        return web.json_response({"events": found, "last": last})

    async def file(self, request: web.Request) -> web.Response:
        stored = self.server.files.get(request.match_info["file_id"])
        if stored is None:
            raise web.HTTPNotFound()
        return web.Response(body=stored.data, content_type=stored.mime_type)

    async def callback(self, request: web.Request) -> web.Response:
        """A callback query's answer; `wait` seconds to wait for it."""
        record = self.server.callbacks.get(request.match_info["query_id"])
        if record is None:
            raise web.HTTPNotFound()
        wait_s = min(float(request.query.get("wait", "0")), EVENTS_MAX_WAIT_S)
        if record.answered_at is None and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await self.server.wait_for(lambda: record.answered_at is not None, wait_s)
        return web.json_response(
            {
                "answered": record.answered_at is not None,
                "wait_s": record.wait_s,
                "text": record.answer_text,
                "show_alert": record.show_alert,
            }
        )

    async def records(self, _request: web.Request) -> web.Response:
        server = self.server
        return web.json_response(
            {
                "violations": [
                    {
                        "method": v.method,
                        "params": v.params,
                        "problems": [asdict(p) for p in v.problems],
                    }
                    for v in server.violations
                ],
                "requests": [asdict(r) for r in server.requests],
                "callback_waits_s": server.callback_waits_s(),
                "unanswered_callbacks": [
                    r.query_id for r in server.callbacks.values() if r.answered_at is None
                ],
            }
        )

    async def clear_records(self, _request: web.Request) -> web.Response:
        self.server.violations.clear()
        self.server.requests.clear()
        return web.json_response({"ok": True})
