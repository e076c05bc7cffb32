"""Test fakes that ship with the package, as panoramisk ships its own: a fake ARI, a fake call
log, a real :class:`~ivr.call.session.CallSession` on a narrow context built from them, and
the one polling helper tests wait with.

Nothing here talks to Asterisk; the end-to-end tests use the real one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.call.context import CallContext
from ivr.call.route import RouteState
from ivr.call.session import CallSession, State
from ivr.config.hours import OpenState
from ivr.config.routing import Routing


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition",
                     interval: float = 0.005) -> Any:
    """Poll ``predicate`` (a function, or a coroutine function) until it returns a true value,
    and return that value; fail the test with ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


class FakeAri:
    """Records every request; answers from ``responses`` (method, path) -> value, or None.

    ``gate``: when set to a predicate of (method, path), matching requests wait until
    :meth:`open` is called (a slow Asterisk). ``fail`` maps (method, path) to an exception to raise.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.params: dict[str, dict] = {}
        self.bodies: dict[str, Any] = {}
        self.responses: dict[tuple[str, str], Any] = {}
        self.fail: dict[tuple[str, str], Exception] = {}
        self.gate: Callable[[str, str], bool] | None = None
        self._opened = asyncio.Event()
        self.lost_at: float | None = None

    def open(self) -> None:
        self._opened.set()

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        self.sent.append((method, path))
        self.params[path] = kw.get("params") or {}
        self.bodies[path] = kw.get("body")
        if self.gate is not None and self.gate(method, path):
            await self._opened.wait()
        if (method, path) in self.fail:
            raise self.fail[(method, path)]
        return self.responses.get((method, path))

    def requests(self, method: str | None = None, prefix: str = "") -> list[str]:
        return [p for m, p in self.sent if (method is None or m == method) and p.startswith(prefix)]


class FakeCallLog:
    """Keeps the records a call opened and closed; ``engine`` is None (no database)."""

    engine: Any = None

    def __init__(self) -> None:
        self.opened_records: list[Any] = []
        self.closed_records: list[Any] = []

    def opened(self, rec: Any) -> None:
        self.opened_records.append(rec)

    def closed(self, rec: Any) -> None:
        self.closed_records.append(rec)

    async def flush(self) -> None:
        return None


@dataclass
class Call:
    """A real CallSession on fakes, and what the test needs to drive it."""

    session: CallSession
    ari: FakeAri
    calllog: FakeCallLog
    owners: dict[str, CallSession] = field(default_factory=dict)
    finished: list[CallSession] = field(default_factory=list)

    def event(self, type_: str, **kw: Any) -> None:
        """Deliver an ARI event to the call, as the dispatcher would."""
        self.session.queue.put_nowait({"type": type_, **kw})

    def dtmf(self, digit: str) -> None:
        self.event("ChannelDtmfReceived", channel={"id": self.session.id}, digit=digit)

    def playback_finished(self, playback_id: str | None = None) -> None:
        self.event("PlaybackFinished", playback={"id": playback_id or self.session.playback_id})

    def hangup(self) -> None:
        self.event("StasisEnd", channel={"id": self.session.id})

    def events(self, name: str) -> list[dict]:
        """The call record's events of one kind, as (fields) dicts."""
        return [e[2] for e in self.session.rec.events if e[1] == name]


def make_call(routing: Routing, *, ari: FakeAri | None = None, caller: str = "0909123456",
              channel_id: str = "c1", app: str = "tongdai", state: State = State.ANSWERING,
              home: Path | None = None, recording_spool: Path | None = None, strict: bool = True,
              is_open: OpenState | None = None, reachable: Callable[[str], bool | None] | None = None) -> Call:
    """A CallSession on a FakeAri and a FakeCallLog, in ``state``."""
    ari = ari or FakeAri()
    log = FakeCallLog()
    owners: dict[str, CallSession] = {}
    finished: list[CallSession] = []
    home = home or Path("/nonexistent-tongdai-home")
    ctx = CallContext(
        ari=ari, calllog=log, route_state=RouteState(), home=home,
        recording_spool=recording_spool or home / "asterisk-spool" / "recording",
        own=owners.__setitem__, finished=finished.append,
        is_open=(lambda: is_open) if is_open is not None else (lambda: OpenState(True, "test")),
        reachable=reachable or (lambda ext: None), strict=strict,
    )
    session = CallSession(ctx, {"id": channel_id, "name": f"PJSIP/caller-{channel_id}",
                                "caller": {"number": caller, "name": ""}}, routing, app)
    session.state = state
    return Call(session, ari, log, owners, finished)
