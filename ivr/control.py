"""The controller's control socket: `tongdai status` and `tongdai apply` talk to it.

A Unix socket at ``$TONGDAI_HOME/run/control.sock`` (mode 0600: only the operator's account),
serving JSON over HTTP:

- ``GET /status``: ARI/AMI connection, Asterisk version, active calls, desk-phone presence;
- ``POST /reload`` (optional JSON ``{"path": "routing.yaml"}``): load routing.yaml again; an
  invalid file is refused with its errors and the running routing stays.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from ivr.records.calllog import utcnow

log = logging.getLogger("tongdai.control")


def socket_path(home: Path) -> Path:
    return home / "run" / "control.sock"


class ControlServer:
    """The control socket. It knows nothing of the service: it is handed what to call.

    ``status()`` gives the status document; ``reload(path)`` swaps the routing and returns the
    errors (none: accepted) and the new routing's branch and extension counts.
    """

    def __init__(self, home: Path, routing_path: Path, status: Callable[[], dict],
                 reload: Callable[[Path], tuple[list[str], dict]]):
        self.path = socket_path(home)
        self.routing_path = routing_path
        self.status = status
        self.reload = reload
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/status", self._status)
        app.router.add_post("/reload", self._reload)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()  # left by a process that died; a live one would own the pidfile
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        old = os.umask(0o177)
        try:
            await web.UnixSite(self._runner, str(self.path)).start()
        finally:
            os.umask(old)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        self.path.unlink(missing_ok=True)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _reload(self, request: web.Request) -> web.Response:
        path = self.routing_path
        if request.can_read_body:
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                return web.json_response({"ok": False, "errors": ["body is not JSON"]}, status=400)
            if isinstance(body, dict) and body.get("path"):
                path = Path(str(body["path"]))
        errors, counts = self.reload(path)
        if errors:
            return web.json_response({"ok": False, "errors": errors}, status=422)
        return web.json_response({"ok": True, **counts})


async def request(home: Path, method: str, path: str, body: dict | None = None, timeout: float = 5) -> dict:
    """Call the running controller; raises ``ConnectionError`` when none is running."""
    sock = socket_path(home)
    if not sock.exists():
        raise ConnectionError("the controller is not running (no control socket)")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock)),
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.request(method, f"http://tongdai{path}", json=body) as r:
                return await r.json()
    except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as e:
        raise ConnectionError(f"the controller is not running ({e.__class__.__name__})") from None


def duration(since: dt.datetime) -> float:
    return round((utcnow() - since).total_seconds(), 1)
