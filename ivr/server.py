"""`tongdai serve`: wire settings, database, ARI and the controller together, and run.

Signals: SIGTERM/SIGINT stop taking new calls (the dialplan's fallback apologises), let calls in
progress finish within the grace period, flush the call log and exit 0. SIGHUP reloads
routing.yaml (an invalid file is rejected and the running routing stays).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from . import db
from . import routing as rt
from . import secrets as secrets_mod
from .ari import Ari
from .calllog import CallLog
from .controller import Controller
from .settings import Settings

log = logging.getLogger("tongdai.server")


def setup_logging(settings: Settings, level: int = logging.INFO) -> Path:
    """One line per record, to stderr and to $TONGDAI_HOME/log/tongdai.log."""
    path = settings.home / "log" / "tongdai.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    root = logging.getLogger("tongdai")
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in (logging.StreamHandler(sys.stderr), logging.FileHandler(path, encoding="utf-8")):
        h.setFormatter(fmt)
        root.addHandler(h)
    return path


class Service:
    """The running controller. ``await start()``, then ``await stop()``."""

    def __init__(self, settings: Settings, *, strict: bool = False, routing: rt.Routing | None = None):
        self.settings = settings
        self.strict = strict
        self._routing = routing
        self.controller: Controller | None = None
        self._ari: Ari | None = None
        self._runner: asyncio.Task | None = None
        self.calllog: CallLog | None = None
        self.engine = None
        self.zalo = None  # ZaloService when TONGDAI_ZALO_APP_ID is set

    async def start(self, timeout: float = 15) -> None:
        s = self.settings
        routing = self._routing or rt.load(s.routing_path)
        sec = secrets_mod.load(s.secrets_path, list(routing.extensions))
        self.engine = db.engine(s)
        self.calllog = CallLog(self.engine, s.home / "spool" / "calllog.jsonl")
        self.calllog.start()
        self._ari = Ari(s.bind, s.ari_port, sec.ari_user, sec.ari_password, s.ari_app)
        await self._ari.__aenter__()
        self.controller = Controller(s, routing, self._ari, self.calllog, strict=self.strict)
        self._runner = asyncio.create_task(self._ari.run(self.controller.on_event, self.controller.reconcile), name="ari-events")
        try:
            await asyncio.wait_for(self._ari.connected.wait(), timeout)
        except asyncio.TimeoutError:
            await self.stop(0)
            raise RuntimeError(f"ARI at {s.bind}:{s.ari_port} did not accept the websocket within {timeout:g}s") from None
        from .zalo.service import maybe_start

        try:
            self.zalo = await maybe_start(s, self.engine, lambda: self.controller.routing)
        except OSError as e:
            await self.stop(0)
            raise RuntimeError(f"Zalo webhook cannot listen on {s.web_addr[0]}:{s.web_addr[1]}: {e.strerror}") from None
        log.info("controller ready: app=%s hotline=%s", s.ari_app, routing.hotline.number)

    async def stop(self, grace: float = 30) -> None:
        if self.controller:
            await self.controller.drain(grace)
        if self._runner:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._ari:
            await self._ari.__aexit__(None, None, None)
        if self.calllog:
            await self.calllog.close()
        if self.zalo:
            await self.zalo.stop()
        if self.engine:
            await self.engine.dispose()
        log.info("controller stopped")


async def serve(settings: Settings, *, grace: float = 30, on_ready=None) -> int:
    """Run until SIGTERM/SIGINT; return the exit code."""
    service = Service(settings)
    await service.start()
    if on_ready:
        on_ready(service)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: service.controller.reload(settings.routing_path))
    await stop.wait()
    log.info("stopping: no new calls, %d in progress, grace %.0fs", len(service.controller.sessions), grace)
    await service.stop(grace)
    return 0
