"""Reading multipart/form-data bodies: text fields and uploaded files, for every sandbox server."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import BodyPartReader, web


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    filename: str | None
    content_type: str | None


async def read_multipart(request: web.Request) -> tuple[dict[str, str], dict[str, Upload]]:
    """(text fields, files by part name) of a multipart request."""
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        data = bytes(await part.read())
        if part.filename is not None:
            files[part.name] = Upload(data, part.filename, part.headers.get("Content-Type"))
        else:
            fields[part.name] = data.decode("utf-8")
    return fields, files
