"""Test fakes that ship with the package, as panoramisk ships its own: a fake ARI, a fake call
log, a real :class:`~ivr.call.session.CallSession` on a narrow context built from them, and
the one polling helper tests wait with.

A test drives a call as Asterisk would, by delivering ARI events (:class:`Call`), and looks at
what the call asked of Asterisk (:class:`FakeAri`) and at its record::

    call = make_call(routing)
    task = asyncio.create_task(menu.run(call.session))
    assert (await call.hear()).sounds == ["menu"]   # the menu played to its end
    call.dtmf("4")
    assert (await task).digit == "4"

Nothing here talks to Asterisk; the end-to-end tests use the real one.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.call.context import CallContext, CallLogSink
from ivr.call.route import RouteState
from ivr.call.session import CallSession, State
from ivr.config.hours import OpenState
from ivr.config.routing import Routing


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0,
                     what: str | Callable[[], str] = "condition", interval: float = 0.005) -> Any:
    """Poll ``predicate`` (a function, or a coroutine function) until it returns a true value,
    and return that value; fail the test with ``what`` when ``timeout`` seconds pass first.

    ``what`` may be a function, called on timeout, to say what was seen instead. ``interval``:
    the pause between two polls (longer for a predicate that runs a command)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g}s waiting for {said}")
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


class ScriptedCaller(FakeAri):
    """A fake ARI with a caller on the other end: every prompt plays to its end at once, except
    those the script names, where the caller presses keys as the prompt starts (barge-in); a
    recording captures ``record_seconds`` of audio into ``spool`` (a real wav file).

    ``script``: (a prompt or media name the playback contains, keys) pairs, used in order; keys
    ``""`` let the prompt play out, ``"hangup"`` hangs up.
    ``plays`` lists the media of every playback, in order.
    """

    def __init__(self, script: list[tuple[str, str]] | None = None, *, spool: Path | None = None,
                 record_seconds: float = 2.0) -> None:
        super().__init__()
        self.script = list(script or [])
        self.spool = spool
        self.record_seconds = record_seconds
        self.plays: list[list[str]] = []
        self.call: CallSession | None = None

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        result = await super().request(method, path, **kw)
        call = self.call
        if call is None or method != "POST":
            return result
        if "/play/" in path:
            media = str((kw.get("params") or {}).get("media", "")).split(",")
            self.plays.append([m.removeprefix("sound:tongdai/") for m in media])
            keys = ""
            if self.script and any(self.script[0][0] == m.removeprefix("sound:tongdai/") for m in media):
                keys = self.script.pop(0)[1]
            if keys == "hangup":
                call.queue.put_nowait({"type": "StasisEnd", "channel": {"id": call.id}})
            elif keys:
                for key in keys:
                    call.queue.put_nowait({"type": "ChannelDtmfReceived", "channel": {"id": call.id}, "digit": key})
            else:
                call.queue.put_nowait({"type": "PlaybackFinished", "playback": {"id": path.rsplit("/", 1)[1]}})
        elif path.endswith("/record"):
            name = kw["params"]["name"]
            if self.spool is not None and self.record_seconds > 0:
                write_wav(self.spool / f"{name}.wav", self.record_seconds)
            call.queue.put_nowait({"type": "RecordingFinished", "recording": {"name": name}})
        return result

    def played(self, name: str) -> bool:
        return any(name in media for media in self.plays)


class FakeSpeech:
    """The speech cache (ivr.pbx.speech.Speech) without espeak: ``made`` texts are ready;
    ``prepare_soon`` records the text and, with ``instant``, makes it at once."""

    def __init__(self, made: tuple[str, ...] = (), *, instant: bool = False) -> None:
        self.made = set(made)
        self.asked: list[str] = []
        self.instant = instant

    def ready(self, text: str) -> str | None:
        return f"sound:tongdai/speech/{abs(hash(text)) % 10**8}" if text in self.made else None

    def prepare_soon(self, text: str) -> None:
        self.asked.append(text)
        if self.instant:
            self.made.add(text)


class FakeCallLog:
    """Keeps the records a call opened and closed; ``engine`` is None (no database: a
    complaint's case goes to the spool). A test that wants the database gives
    :func:`make_call` the real :class:`~ivr.records.calllog.CallLog` instead."""

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


class EventQueue(asyncio.Queue[dict]):
    """A call's event queue that also tells whether someone waits for the next event."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0  # get() calls blocked for an event

    async def get(self) -> dict:
        self.waiting += 1
        try:
            return await super().get()
        finally:
            self.waiting -= 1


def idle(session: CallSession) -> bool:
    """Whether the call (made by :func:`make_call`) has taken every event delivered so far and
    waits for the next one: what a test waits for before saying that an event changed nothing."""
    q = session.queue
    return q.empty() and isinstance(q, EventQueue) and q.waiting > 0


@dataclass(frozen=True)
class Playback:
    """A playback the call asked Asterisk for: its id and what it plays."""

    id: str
    media: list[str]  # the ARI media URIs, e.g. ["sound:tongdai/menu", "digits:482913"]

    @property
    def sounds(self) -> list[str]:
        """The media as the steps name them: prompt names, other URIs as they are."""
        return [m.removeprefix("sound:tongdai/") for m in self.media]


@dataclass
class Call:
    """A real CallSession on fakes, and what the test needs to drive it as Asterisk would."""

    session: CallSession
    ari: FakeAri
    calllog: CallLogSink
    owners: dict[str, CallSession] = field(default_factory=dict)
    finished: list[CallSession] = field(default_factory=list)
    _taken: set[str] = field(default_factory=set, init=False, repr=False)  # playbacks, recordings handed out

    def event(self, type_: str, **kw: Any) -> None:
        """Deliver an ARI event to the call, as the dispatcher would."""
        self.session.queue.put_nowait({"type": type_, **kw})

    def dtmf(self, digit: str) -> None:
        self.event("ChannelDtmfReceived", channel={"id": self.session.id}, digit=digit)

    def playback_finished(self, playback_id: str | None = None) -> None:
        self.event("PlaybackFinished", playback={"id": playback_id or self.session.playback_id})

    def recording_finished(self, name: str) -> None:
        self.event("RecordingFinished", recording={"name": name, "state": "done"})

    def recording_failed(self, name: str, cause: str = "failed") -> None:
        self.event("RecordingFailed", recording={"name": name, "state": "failed", "cause": cause})

    def hangup(self) -> None:
        self.event("StasisEnd", channel={"id": self.session.id})

    def events(self, name: str) -> list[dict]:
        """The call record's events of one kind, as (fields) dicts."""
        return [e[2] for e in self.session.rec.events if e[1] == name]

    def idle(self) -> bool:
        """See :func:`idle`."""
        return idle(self.session)

    async def playback(self, timeout: float = 2.0) -> Playback:
        """The next playback the call asks for, waiting for it; each is handed out once."""
        prefix = f"/channels/{self.session.id}/play/"

        def new() -> str | None:
            return next((p for p in self.ari.requests("POST", prefix) if p not in self._taken), None)

        path = await wait_until(new, timeout, "the call to start a playback")
        self._taken.add(path)
        return Playback(path.removeprefix(prefix), str(self.ari.params[path]["media"]).split(","))

    async def hear(self, timeout: float = 2.0) -> Playback:
        """Let the next playback play to its end (its PlaybackFinished); return it."""
        pb = await self.playback(timeout)
        self.playback_finished(pb.id)
        return pb

    async def recording(self, timeout: float = 2.0) -> dict:
        """The parameters of the next recording the call asks for, waiting for it."""
        path = f"/channels/{self.session.id}/record"

        def asked() -> str | None:
            name = self.ari.params[path].get("name") if path in self.ari.requests("POST", path) else None
            return None if name is None or name in self._taken else str(name)

        self._taken.add(await wait_until(asked, timeout, "the call to start a recording"))
        return dict(self.ari.params[path])

    def recorded(self, name: str, seconds: float) -> Path:
        """What Asterisk leaves in its recording spool for the recording ``name``: a WAV file
        of ``seconds`` of sound."""
        return write_wav(self.session.ctx.recording_spool / f"{name}.wav", seconds)


def write_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A real WAV file (16-bit mono, a 440 Hz tone) of ``seconds``, as Asterisk records one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                      for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def make_call(routing: Routing, *, ari: FakeAri | None = None, caller: str = "0909123456",
              channel_id: str = "c1", app: str = "tongdai", state: State = State.ANSWERING,
              home: Path | None = None, recording_spool: Path | None = None, strict: bool = True,
              is_open: OpenState | None = None, reachable: Callable[[str], bool | None] | None = None,
              calllog: CallLogSink | None = None, speech: Any = None, engine: Any = None,
              busy: Callable[[str, CallSession | None], bool] | None = None) -> Call:
    """A CallSession on a FakeAri and a FakeCallLog (or ``calllog``), in ``state``.

    ``home``: where recordings and spooled cases go (a test's temporary folder); the recording
    spool, where Asterisk would leave its files, is under it unless ``recording_spool`` says.
    ``engine``: a real database behind the FakeCallLog, for the steps that read one (the
    look-up); ``speech``: the speech cache (:class:`FakeSpeech`)."""
    ari = ari or FakeAri()
    log = calllog if calllog is not None else FakeCallLog()
    if engine is not None:
        log.engine = engine
    owners: dict[str, CallSession] = {}
    finished: list[CallSession] = []
    home = home or Path("/nonexistent-tongdai-home")
    ctx = CallContext(
        ari=ari, calllog=log, route_state=RouteState(), home=home,
        recording_spool=recording_spool or home / "asterisk-spool" / "recording",
        own=owners.__setitem__, finished=finished.append,
        is_open=(lambda: is_open) if is_open is not None else (lambda: OpenState(True, "test")),
        reachable=reachable or (lambda ext: None), busy=busy or (lambda ext, session: False), strict=strict,
        speech=speech,
    )
    session = CallSession(ctx, {"id": channel_id, "name": f"PJSIP/caller-{channel_id}",
                                "caller": {"number": caller, "name": ""}}, routing, app)
    session.queue = EventQueue()
    session.state = state
    if isinstance(ari, ScriptedCaller):
        ari.call = session
    return Call(session, ari, log, owners, finished)
