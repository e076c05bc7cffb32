"""One hotline call: explicit states, its own event queue, and a guaranteed clean end.

This module is the plumbing only and imports no step: the flow that drives the steps is
:mod:`ivr.call.flow`. Every state change is logged on one line with the call id, e.g.
``call=1700.12 menu -> dtmf 4 -> dialing``; a transition not in :data:`TRANSITIONS` raises.
:meth:`CallSession.cleanup` always hangs up every leg and destroys every bridge the call made.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from ivr.call.errors import CallerHangup, IllegalEvent, IllegalTransition
from ivr.pbx.ari import AriError
from ivr.records.calllog import CallRecord, LegRecord, clean_number, clean_text, utcnow
from ivr.vocab import Disposition

if TYPE_CHECKING:
    from ivr.call.context import CallContext
    from ivr.config.routing import Routing

log = logging.getLogger("tongdai.call")


class State(enum.StrEnum):
    ANSWERING = "answering"
    CLOSED = "closed"
    GREETING = "greeting"
    MENU = "menu"
    DIALING = "dialing"
    QUEUE = "queue"  # every reachable phone of the branch busy: waiting in its queue
    BRIDGED = "bridged"
    SURVEY = "survey"
    COMPLAINT = "complaint"
    LOOKUP = "lookup"
    FALLBACK = "fallback"
    ENDED = "ended"


S = State
TRANSITIONS: dict[State, set[State]] = {
    S.ANSWERING: {S.GREETING, S.CLOSED, S.FALLBACK, S.ENDED},
    S.CLOSED: {S.COMPLAINT, S.FALLBACK, S.ENDED},
    S.GREETING: {S.MENU, S.FALLBACK, S.ENDED},
    S.MENU: {S.DIALING, S.COMPLAINT, S.LOOKUP, S.FALLBACK, S.ENDED},
    S.DIALING: {S.BRIDGED, S.DIALING, S.QUEUE, S.COMPLAINT, S.FALLBACK, S.ENDED},
    S.QUEUE: {S.DIALING, S.COMPLAINT, S.FALLBACK, S.ENDED},
    S.BRIDGED: {S.SURVEY, S.FALLBACK, S.ENDED},
    S.SURVEY: {S.FALLBACK, S.ENDED},
    S.COMPLAINT: {S.FALLBACK, S.ENDED},
    S.LOOKUP: {S.MENU, S.FALLBACK, S.ENDED},  # back to the menu after three tries
    S.FALLBACK: {S.ENDED},
    S.ENDED: set(),
}

# Events a state may see without caring: progress notifications and echoes of our own requests.
IGNORED = frozenset({
    "ChannelVarset", "ChannelStateChange", "ChannelDialplan", "ChannelCallerId", "ChannelConnectedLine",
    "PlaybackStarted", "PlaybackContinuing", "ChannelHold", "ChannelUnhold", "ChannelTalkingStarted",
    "ChannelTalkingFinished", "ChannelToneDetected", "BridgeCreated", "BridgeDestroyed", "BridgeMerged",
    "ChannelEnteredBridge", "ChannelLeftBridge", "BridgeVideoSourceChanged", "BridgeAttendedTransfer",
    "BridgeBlindTransfer", "RecordingStarted", "ChannelUserevent", "Dial",
})
# Of those, the ones no step ever acts on: the controller asks Asterisk not to send them at all
# (ARI application event filter). ChannelVarset alone was half of a call's ~70 events; each is
# serialised by Asterisk and decoded by us for nothing. Dial and RecordingStarted stay: routing
# and the complaint recording use them in their own steps. ChannelHangupRequest must stay
# although StasisEnd follows every hangup: a caller who hangs up during a prompt gets the
# prompt's PlaybackFinished after the hangup request but before StasisEnd (tested).
NEVER_USED = IGNORED - {"Dial", "RecordingStarted"}

class CallSession:
    """Drives one caller channel from StasisStart to hangup, one event at a time."""

    def __init__(self, ctx: CallContext, channel: dict, routing: Routing, app: str = "tongdai", *,
                 held_at: float | None = None):
        self.ctx = ctx
        self.ari = ctx.ari
        self.id: str = channel["id"]
        # The channel's name, for the parameters Asterisk resolves with ast_channel_get_by_name()
        # (/dial's caller, an originator): a name is a hashed lookup, while a uniqueid is found by
        # locking every channel in turn (Debian's Asterisk has only the ao2_legacy channel storage).
        self.name: str = channel.get("name") or self.id
        self.app = app  # the ARI application (lane) the call entered; its desk legs join the same
        self.routing = routing  # a snapshot: a reload affects new calls only
        self.queue: asyncio.Queue[dict] = asyncio.Queue()
        self.state = State.ANSWERING
        self.caller_gone = False
        self.legs: dict[str, LegRecord] = {}
        self.live_legs: set[str] = set()
        self.spare: dict[str, bool] = {}  # legs created by route.prepare, not rung yet -> entered the app
        self.claimed: set[str] = set()  # extensions route is about to ring (before their legs exist)
        self._entering: dict[str, asyncio.Future] | None = {}  # leg_entered() waiters; None once cleaning up
        self.bridges: set[str] = set()
        self.playback_id: str | None = None
        self.recording_name: str | None = None
        self.task: asyncio.Task | None = None
        self.in_flight: set[asyncio.Task] = set()  # in_background: request_soon, route.prepare's creates
        self.vanished = False  # set by Controller.reconcile: the channel died while we were away
        self.throttled = False  # set by the controller: this number calls too often
        self._seq = 0
        caller = channel.get("caller", {}) or {}
        number = clean_number(caller.get("number", ""))
        self.rec = CallRecord(id=self.id, caller=number or "anonymous", hotline=self.routing.hotline.number, started_at=utcnow())
        if held_at is not None:
            # The dialplan held the caller while no controller took calls (``held_at``): the call
            # began when the channel was created, before the hold.
            since = dt.datetime.fromtimestamp(held_at, dt.timezone.utc)
            self.rec.started_at = min(_created(channel) or since, since)
            self.rec.held_s = round(max(0.0, (utcnow() - since).total_seconds()), 3)
        self.rec.event("arrived", caller=self.rec.caller, name=clean_text(caller.get("name", "")))
        if held_at is not None:
            self.rec.event("held", seconds=self.rec.held_s)

    # ---------------------------------------------------------------- plumbing

    def holds(self, extension: str) -> bool:
        """Whether this call rings or talks to the desk phone ``extension`` (or is about to)."""
        if extension in self.claimed:
            return True
        return any(leg.extension == extension for lid in self.live_legs if (leg := self.legs.get(lid)))

    def new_id(self, kind: str) -> str:
        """A client-chosen resource id (channel, bridge, playback), unique per call."""
        self._seq += 1
        return f"{self.id}-{kind}{self._seq}"

    def transition(self, new: State, why: str) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"call={self.id} {self.state.value} -> {why} -> {new.value} is not allowed")
        log.info("call=%s %s -> %s -> %s", self.id, self.state.value, why, new.value)
        self.rec.event("state", frm=self.state.value, to=new.value, why=why)
        self.state = new

    @overload
    async def next_event(self, timeout: None) -> dict: ...
    @overload
    async def next_event(self, timeout: float) -> dict | None: ...
    async def next_event(self, timeout: float | None) -> dict | None:
        """The next event for this call, or None on timeout. Raises CallerHangup when the caller goes."""
        try:
            ev = await asyncio.wait_for(self.queue.get(), timeout) if timeout is not None else await self.queue.get()
        except TimeoutError:
            return None
        t = ev.get("type")
        ch = (ev.get("channel") or {}).get("id")
        if ch == self.id and t in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
            self._caller_gone()
            raise CallerHangup()
        return ev

    async def wait_aside(self, match: Callable[[dict], bool], timeout: float) -> dict | None:
        """The first event ``match`` accepts within ``timeout`` (None if none came). Every other
        event that arrives meanwhile stays queued, in order, for the step that reads next (a
        hangup included): this waits beside the flow, not in its place."""
        held: list[dict] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while (left := deadline - loop.time()) > 0:
                try:
                    ev = await asyncio.wait_for(self.queue.get(), left)
                except TimeoutError:
                    return None
                if match(ev):
                    return ev
                held.append(ev)
            return None
        finally:
            while not self.queue.empty():
                held.append(self.queue.get_nowait())
            for ev in held:
                self.queue.put_nowait(ev)

    def unexpected(self, ev: dict) -> None:
        """An event the current step does not handle: ignore the harmless, fail loudly on the rest."""
        t = ev.get("type", "?")
        ch = (ev.get("channel") or ev.get("peer") or {}).get("id")
        if t in IGNORED:
            return
        if t == "PlaybackFinished" and (ev.get("playback") or {}).get("id") != self.playback_id:
            return  # a playback we already stopped
        recording = (ev.get("recording") or {}).get("name")
        if t in ("RecordingStarted", "RecordingFinished", "RecordingFailed") and recording != self.recording_name:
            return  # a recording that is already over
        if t in ("ChannelDestroyed", "StasisEnd", "ChannelHangupRequest", "StasisStart") and ch in self.legs and ch not in self.live_legs:
            if t == "StasisStart":
                # A leg we gave up on entered the app after all (it answered as we hung it up,
                # or our hangup reached Asterisk before its originate): nobody wants it.
                self.request_soon("DELETE", f"/channels/{ch}", ok_missing=True)
            return  # a desk-phone leg that is already finished
        if ch in self.spare:
            # A leg created for the next ring (route.prepare): it enters the app whatever step
            # the call is in; nothing else of it matters until it is dialled.
            if t == "StasisStart":
                self.spare[ch] = True
                waiter = self._entering.pop(ch, None) if self._entering is not None else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(True)
            return
        if t == "ChannelDtmfReceived":
            log.info("call=%s digit %r ignored in %s", self.id, ev.get("digit"), self.state.value)
            return
        msg = f"call={self.id} illegal event {t} (channel {ch}) in state {self.state.value}"
        if self.ctx.strict:
            raise IllegalEvent(msg)
        log.warning(msg)

    async def leg_entered(self, leg_id: str, timeout: float) -> bool:
        """Whether a leg created by route.prepare has entered the app (its StasisStart, which
        the step in progress hands to :meth:`unexpected`), waiting up to ``timeout``; False at
        once when the call ends meanwhile."""
        if self.spare.get(leg_id):
            return True
        if self._entering is None:  # the cleanup has begun
            return False
        waiter = self._entering.setdefault(leg_id, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            if self._entering is not None and self._entering.get(leg_id) is waiter:
                del self._entering[leg_id]
            return False

    def request_soon(self, method: str, path: str, **kw: Any) -> None:
        """Send a request whose answer no step waits for (stopping a prompt the caller
        interrupted): the next step's request leaves at once instead of one round trip later,
        and Asterisk may serve the two on different websockets. A failure is logged; cleanup
        waits for whatever is still in flight."""
        self.in_background(self._request_logged(method, path, kw))

    def in_background(self, coro, name: str | None = None) -> asyncio.Task:
        """Run ``coro`` beside the call's steps; the cleanup waits for it before hanging up."""
        task = asyncio.create_task(coro, name=name)
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        return task

    async def _request_logged(self, method: str, path: str, kw: dict) -> None:
        try:
            await self.ari.request(method, path, **kw)
        except AriError as e:
            log.warning("call=%s %s %s failed: %s", self.id, method, path, e)

    async def hangup_channel(self, channel_id: str, reason: str = "normal") -> None:
        await self._request_logged("DELETE", f"/channels/{channel_id}", {"params": {"reason": reason}, "ok_missing": True})

    def _caller_gone(self) -> None:
        self.caller_gone = True
        self.rec.event("hangup", by="caller", state=self.state.value)

    def _caller_left(self) -> None:
        if self.rec.disposition == Disposition.IN_PROGRESS:
            self.rec.disposition = Disposition.ABANDONED
        self.rec.hangup_by = self.rec.hangup_by or "caller"

    def interrupt(self, why: str, *, gone: bool) -> None:
        """The call was cut short. ``gone``: its channels died with Asterisk, so there is
        nothing to hang up and the end time is when we lost Asterisk."""
        self.rec.disposition = Disposition.INTERRUPTED
        self.rec.ended_in = self.rec.ended_in or self.state.value
        self.rec.event("interrupted", state=self.state.value, why=why)
        if gone:
            lost = self.ari.lost_at
            self.rec.ended_at = dt.datetime.fromtimestamp(lost, dt.timezone.utc) if lost else utcnow()
            self.caller_gone = True
            self.live_legs.clear()
            self.bridges.clear()
        log.warning("call=%s interrupted in %s (%s)", self.id, self.state.value, why)

    async def end(self, by: str) -> None:
        if not self.caller_gone:
            self.rec.hangup_by = self.rec.hangup_by or by
            self.rec.event("hangup", by=by, state=self.state.value)
            self.rec.ended_in = self.state.value
            await self.hangup_channel(self.id)
            self.caller_gone = True
        self.transition(State.ENDED, f"hangup by {by}")

    async def cleanup(self) -> None:
        """Hang up every leg, destroy every bridge, hang up the caller. Never raises."""
        entering, self._entering = self._entering or {}, None
        for waiter in entering.values():  # nothing waits for a leg any more
            if not waiter.done():
                waiter.set_result(False)
        while self.in_flight:  # what it waits for may start more (a created leg's join)
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        for leg in list(self.live_legs) + list(self.spare):
            await self.hangup_channel(leg)
            self.live_legs.discard(leg)
        self.spare.clear()
        for b in list(self.bridges):
            try:
                await self.ari.request("DELETE", f"/bridges/{b}", ok_missing=True)
            except AriError as e:
                log.warning("call=%s bridge %s not destroyed: %s", self.id, b, e)
            self.bridges.discard(b)
        if not self.caller_gone:
            await self.hangup_channel(self.id)
            self.caller_gone = True


def _created(channel: dict) -> dt.datetime | None:
    """The channel's creation time (ARI: ``2026-12-07T23:41:10.431+0000``)."""
    try:
        return dt.datetime.strptime(channel.get("creationtime") or "", "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return None


