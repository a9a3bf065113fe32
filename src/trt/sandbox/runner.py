"""Starting sandbox apps on local ports (port 0 picks a free one, as tests do)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass
class RunningApp:
    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_app(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> RunningApp:
    """Serve `app` on host:port; returns its base URL (with the port actually bound)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes the bound sockets only here
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound_port = sockets[0].getsockname()[1] if sockets else port
    return RunningApp(runner=runner, url=f"http://{host}:{bound_port}")
