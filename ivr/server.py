"""`tongdai serve`: wire settings, database, ARI and the controller together, and run.

Signals: SIGTERM/SIGINT stop taking new calls (the dialplan's fallback apologises), let calls in
progress finish within the grace period, flush the call log and exit 0. SIGHUP reloads
routing.yaml (an invalid file is rejected and the running routing stays).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.call.callback import Callbacks
from ivr.call.dispatcher import Controller
from ivr.cluster.watch import NodeWatch
from ivr.config import credentials as secrets_mod
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.control import ControlServer, duration
from ivr.pbx.ari import Ari
from ivr.pbx.asterisk import Layout
from ivr.pbx.cel import CelSync
from ivr.pbx.guard import Guard
from ivr.pbx.presence import Presence
from ivr.records import cases as cases_mod
from ivr.records import db
from ivr.records.callbacks import CallbackStore
from ivr.records.calllog import CallLog, last_presence, utcnow

log = logging.getLogger("tongdai.server")


class LogLines(logging.Handler):
    """Each record formatted once and written to stderr and to the log file.

    Two handlers (a StreamHandler and a FileHandler) format and lock every record twice; the
    bench's profile had logging at a tenth of the controller's CPU per call, the state
    transitions of every call being the bulk of it.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.streams = [sys.stderr, open(path, "a", encoding="utf-8")]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            for stream in self.streams:
                stream.write(line)
                stream.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.streams[1].close()
        super().close()


def setup_logging(settings: Settings, level: int = logging.INFO, name: str = "tongdai") -> Path:
    """One line per record, to stderr and to $TONGDAI_HOME/log/<name>.log (the console: web.log)."""
    path = settings.home / "log" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("tongdai")
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
        if isinstance(h, LogLines):  # a second setup (tests): release the file
            h.close()
    handler = LogLines(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
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
        self.presence: Presence | None = None
        self.control: ControlServer | None = None
        self.guard: Guard | None = None
        self.started_at: datetime | None = None
        self.engine: AsyncEngine | None = None
        self.cel: CelSync | None = None
        self.watch: NodeWatch | None = None  # a cluster node's heartbeat (docs/cluster.md)

    async def start(self, timeout: float = 15) -> None:
        s = self.settings
        routing = self._routing or rt.load(s.routing_path)
        sec = secrets_mod.load(s.secrets_path, list(routing.extensions))
        self.engine = engine = db.engine(s)
        self.calllog = CallLog(engine, s.home / "spool" / "calllog.jsonl", node=s.node)
        self.calllog.start()
        self._ari = Ari(s.bind, s.ari_port, sec.ari_user, sec.ari_password, s.ari_apps)
        self._ari.use_ws_rest = s.ari_rest == "auto"
        await self._ari.__aenter__()
        self.controller = ctl = Controller(s, routing, self._ari, self.calllog, strict=self.strict)
        ctl.warm_speech()
        # Complaints spooled while the database was down (in this run or an earlier one).
        self.calllog.also_replay(lambda: cases_mod.replay_spooled(engine, ctl.routing, s.home))
        # Calls that reached Asterisk while no controller took them: from Asterisk's own record.
        self.cel = CelSync(Layout.for_settings(s).cel_file, s.home / "spool" / "cel-cursor.json", self.calllog,
                           hotline=lambda: ctl.routing.hotline.number, busy=lambda cid: cid in ctl.sessions,
                           live=self._live_channels)
        self.cel.start()
        self._runner = asyncio.create_task(self._ari.run(ctl.on_event, self._on_connect), name="ari-events")
        try:
            await asyncio.wait_for(self._ari.connected.wait(), timeout)
        except TimeoutError:
            await self.stop(0)
            raise RuntimeError(f"ARI at {s.bind}:{s.ari_port} did not accept the websocket within {timeout:g}s") from None
        await self._start_presence(sec)
        if s.trunk_out is not None:
            await self._start_callbacks()
        self.control = ControlServer(s.home, s.routing_path, self.status, self._reload)
        await self.control.start()
        if s.node:
            ari = self._ari
            self.watch = NodeWatch(engine, s.node, lambda: ari.connected.is_set(), dead_after=s.cluster_dead_after)
            self.watch.start()
        self.started_at = utcnow()
        if s.zalo is not None:
            # The webhook and the Zalo worker are the console's (`tongdai web`): HTTP from the
            # internet and calls to Zalo's API stay off the loop that carries the calls.
            log.info("zalo: configured; its webhook and worker run in `tongdai web`")
        log.info("controller ready: app=%s hotline=%s", ",".join(s.ari_apps), routing.hotline.number)

    async def _start_callbacks(self) -> None:
        """Callbacks through TONGDAI_TRUNK_OUT: the pending requests of an earlier run back in
        their places, then the service that serves them."""
        s, ctl = self.settings, self.controller
        assert self.engine is not None and ctl is not None, "start() sets them first"
        store = CallbackStore(self.engine, f"{socket.gethostname()}:{os.getpid()}")
        callbacks = Callbacks(ctl.context, store, lambda: ctl.routing, s.ari_apps[0], ctl.disown)
        try:
            n = await asyncio.wait_for(callbacks.load(), 10)
        except Exception as e:  # database down: those requests wait for the next start
            log.error("callbacks: pending requests not reloaded: %s", e)
            n = 0
        ctl.context.callbacks = callbacks
        callbacks.start()
        log.info("callbacks: trunk %s:%d, %d pending requests", *s.trunk_out, n)  # type: ignore[misc]

    async def _on_connect(self) -> None:
        assert self.controller is not None and self.cel is not None
        await self.controller.on_connect()
        self.cel.trigger()  # what happened while we were away

    async def _live_channels(self) -> set[str]:
        assert self._ari is not None
        return {c["id"] for c in await self._ari.request("GET", "/channels")}

    async def _start_presence(self, sec) -> None:
        s = self.settings
        assert self.engine is not None and self.controller is not None, "start() sets them first"
        try:
            known = await asyncio.wait_for(last_presence(self.engine), 5)
        except Exception as e:  # database down: history restarts from what AMI says now
            log.warning("presence: no registration history (%s)", e.__class__.__name__)
            known = {}
        ctl = self.controller
        ari = self._ari
        self.presence = Presence(s.bind, s.ami_port, sec.ami_user, sec.ami_password, lambda: ctl.routing, self.calllog,
                                 on_booted=ari.wake if ari is not None else None)
        ctl.presence = self.presence
        await self.presence.start(known)
        never = tuple(a.split("/")[0] for a in s.trunk_match)
        self.guard = Guard(self.presence, lambda: ctl.routing, Layout.for_settings(s).etc, never_block=never)
        if not await self.presence.wait_ready(5):
            log.warning("AMI at %s:%d not ready; routing asks ARI for endpoint state meanwhile", s.bind, s.ami_port)
        else:
            await self.guard.start()

    def _reload(self, path: Path) -> tuple[list[str], dict]:
        """For the control socket: the errors (none: the new routing is in use) and its size."""
        ctl = self.controller
        assert ctl is not None, "the control socket is started after the controller"
        errors = ctl.reload(path)
        return errors, {"branches": len(ctl.routing.branches), "extensions": len(ctl.routing.extensions)}

    def status(self) -> dict:
        """What `tongdai status` shows (JSON-able)."""
        ctl, ari, pres = self.controller, self._ari, self.presence
        calls = []
        for sess in list(ctl.sessions.values()) if ctl else []:
            r = sess.rec
            calls.append({"id": sess.id, "caller": r.caller, "branch": r.branch_digit, "branch_name": r.branch_name,
                          "state": sess.state.value, "started_at": r.started_at.isoformat(),
                          "duration_s": duration(r.started_at), "answered_by": r.answered_by})
        return {
            "controller": {"pid": os.getpid(), "started_at": self.started_at.isoformat() if self.started_at else None,
                           "accepting": bool(ctl and ctl.accepting), "hotline": ctl.routing.hotline.number if ctl else None},
            "ari": {"connected": bool(ari and ari.connected.is_set())},
            "ami": {"connected": bool(pres and pres.connected)},
            "asterisk": {"version": pres.asterisk_version if pres else None},
            "calls": calls,
            "queues": ctl.context.queues.status() if ctl else {},  # callers waiting per branch
            "callbacks": ctl.context.queues.callbacks_status() if ctl else {},  # requests pending per branch
            "phones": pres.status() if pres else {},
            "spool": {"calllog": self.calllog.spool.pending() if self.calllog and self.calllog.spool else 0},
        }

    async def stop(self, grace: float = 30) -> None:
        if self.controller:
            self.controller.stop_warming()
            if self.controller.context.callbacks is not None:
                # First: no callback starts while the calls drain (requests not served stay pending).
                await self.controller.context.callbacks.stop(grace)
            await self.controller.drain(grace)
        if self.watch:
            await self.watch.stop()
        if self.control:
            await self.control.stop()
        if self.guard:
            self.guard.close()
        if self.presence:
            self.presence.close()
        if self._runner:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._ari:
            await self._ari.__aexit__(None, None, None)
        if self.cel:
            await self.cel.close()
        if self.calllog:
            await self.calllog.close()
        if self.engine:
            await self.engine.dispose()
        log.info("controller stopped")


def run(main) -> int:
    """Run the controller's coroutine on uvloop when it is installed (a dependency; measured
    with `make bench`: the same work for noticeably less CPU than asyncio's own loop), else on
    asyncio's loop. Behaviour is the same on both."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def serve(settings: Settings, *, grace: float = 30, on_ready=None) -> int:
    """Run until SIGTERM/SIGINT; return the exit code."""
    service = Service(settings)
    loop = asyncio.get_running_loop()
    # Before start: SIGHUP's default action ends the process, and an operator (or a test) may
    # send it as soon as "controller ready" is logged. Until then there is nothing to reload.
    loop.add_signal_handler(signal.SIGHUP, lambda: service.controller and service.controller.reload(settings.routing_path))
    await service.start()
    # What is alive now (modules, SQLAlchemy's metadata, the routing, holidays…) lives as long as
    # the process: keep it out of the cyclic collector. Without this, a full collection under
    # load walked all of it and stopped the loop for 170-310 ms (the bench at 300 calls, once per
    # 40 s: enough to show in the post-dial delay's p95); 36-46 ms with it.
    gc.collect()
    gc.freeze()
    if on_ready:
        on_ready(service)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    assert service.controller is not None  # start() returned
    log.info("stopping: no new calls, %d in progress, grace %.0fs", len(service.controller.sessions), grace)
    await service.stop(grace)
    return 0
