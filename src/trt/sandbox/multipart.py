"""Reading multipart/form-data bodies: text fields and uploaded files, for every sandbox server."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    filename: str | None
    content_type: str | None


@functools.lru_cache(maxsize=1024)
def part_names(disposition: str | None) -> tuple[str | None, str | None]:
    """(name, filename) of a part's Content-Disposition, as aiohttp's `BodyPartReader.name` and
    `.filename` read them. aiohttp parses the header anew for each (and rebuilds a 128-character
    escape table on every parse): a sixth of the engine benchmark's own process, which serves
    the sandbox (docs/performance.md, item 37). A client sends the same few headers again and
    again, so each is parsed once."""
    _kind, params = parse_content_disposition(disposition)
    return content_disposition_filename(params, "name"), content_disposition_filename(
        params, "filename"
    )


async def read_multipart(request: web.Request) -> tuple[dict[str, str], dict[str, Upload]]:
    """(text fields, files by part name) of a multipart request."""
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue
        name, filename = part_names(part.headers.get(hdrs.CONTENT_DISPOSITION))
        if name is None:
            continue
        data = bytes(await part.read())
        if filename is not None:
            files[name] = Upload(data, filename, part.headers.get(hdrs.CONTENT_TYPE))
        else:
            fields[name] = data.decode("utf-8")
    return fields, files
