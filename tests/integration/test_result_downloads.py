"""Result downloads under the engine's byte budget (docs/performance.md, item 32): a file holds
the size its server announces while it downloads, the cap only when none is announced, and
its own size until the caller's block ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from trt.concurrency import MemoryBudget, Reservation
from trt.kie.client import KieClient, Limits

CAP = 1000
SMALL = b"x" * 100


async def announced(_request: web.Request) -> web.Response:
    return web.Response(body=SMALL, content_type="image/png")  # with Content-Length


async def unannounced(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "image/png"})
    response.enable_chunked_encoding()  # no Content-Length
    await response.prepare(request)
    await response.write(SMALL)
    await response.write_eof()
    return response


@pytest.fixture
async def files() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/announced.png", announced)
    app.router.add_get("/unannounced.png", unannounced)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


@pytest.fixture
async def kie(files: str) -> AsyncIterator[KieClient]:
    client = KieClient("key", files, files, limits=Limits(max_download_bytes=CAP))
    await client.start()
    try:
        yield client
    finally:
        await client.close()


class Watched(MemoryBudget):
    """A budget that tells when a reservation finds too little free."""

    def __init__(self, total_bytes: int) -> None:
        super().__init__(total_bytes)
        self.short = asyncio.Event()

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[Reservation]:
        if nbytes > self.free:
            self.short.set()
        async with super().reserve(nbytes) as reservation:
            yield reservation


async def hold(
    kie: KieClient, url: str, budget: MemoryBudget, inside: asyncio.Queue[int], go: asyncio.Event
) -> None:
    async with kie.download_held(url, budget) as item:
        assert item.data == SMALL
        await inside.put(len(item.data))
        await go.wait()  # the caller's database write


async def test_small_announced_files_download_together_beyond_the_caps_count(
    kie: KieClient, files: str
) -> None:
    budget = MemoryBudget(2 * CAP)  # room for two files at the cap
    inside: asyncio.Queue[int] = asyncio.Queue()
    go = asyncio.Event()
    holders = [
        asyncio.create_task(hold(kie, f"{files}/announced.png", budget, inside, go))
        for _ in range(6)
    ]
    for _ in range(6):  # all six are in at once: each reserved its 100 bytes, not the cap
        assert await asyncio.wait_for(inside.get(), timeout=10) == len(SMALL)
    assert budget.free == 2 * CAP - 6 * len(SMALL)
    go.set()
    await asyncio.gather(*holders)
    assert budget.free == 2 * CAP


async def test_a_file_of_unknown_size_reserves_the_cap_until_it_is_read(
    kie: KieClient, files: str
) -> None:
    budget = Watched(CAP)

    async def held() -> bytes | None:
        async with kie.download_held(f"{files}/unannounced.png", budget) as item:
            assert budget.free == CAP - len(SMALL)  # read: only its own size is kept
            return item.data

    async with budget.reserve(1) as other:  # the whole cap is no longer free
        download = asyncio.create_task(held())
        # It waits for the whole cap: its size is unknown.
        await asyncio.wait_for(budget.short.wait(), timeout=10)
        assert not download.done()
        other.keep(0)
        assert await asyncio.wait_for(download, timeout=10) == SMALL
    assert budget.free == CAP
