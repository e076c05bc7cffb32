"""One hotline call: explicit states, its own event queue, and a guaranteed clean end.

The flow reads top to bottom in :meth:`CallSession.flow`: answer → (closed?) → greeting → menu →
route → bridge → survey → end, with the complaint path when nobody can take the call. Each
step lives in a module named after it (``prompt``, ``menu``, ``route``, ``bridge``,
``survey``, ``complaint``). Every state change is logged on one line with the call id,
e.g. ``call=1700.12 menu -> dtmf 4 -> dialing``; a transition not in :data:`TRANSITIONS` raises.

Whatever goes wrong, the caller never hears dead air: an unhandled error sends the call to the
fallback (the apology prompt, then a clean hangup), and :meth:`cleanup` always hangs up every
leg and destroys every bridge the call created.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
from typing import TYPE_CHECKING, Any

from ivr.call import bridge
from ivr.call import complaint
from ivr.call import menu
from ivr.call import prompt
from ivr.call import route
from ivr.call import survey
from ivr.pbx.ari import AriError
from ivr.records.calllog import CallRecord, LegRecord, utcnow
from ivr.call.errors import CallerHangup, IllegalEvent, IllegalTransition

if TYPE_CHECKING:
    from ivr.call.dispatcher import Controller
    from ivr.config.routing import Routing

log = logging.getLogger("tongdai.call")


class State(str, enum.Enum):
    ANSWERING = "answering"
    CLOSED = "closed"
    GREETING = "greeting"
    MENU = "menu"
    DIALING = "dialing"
    BRIDGED = "bridged"
    SURVEY = "survey"
    COMPLAINT = "complaint"
    FALLBACK = "fallback"
    ENDED = "ended"


S = State
TRANSITIONS: dict[State, set[State]] = {
    S.ANSWERING: {S.GREETING, S.CLOSED, S.FALLBACK, S.ENDED},
    S.CLOSED: {S.COMPLAINT, S.FALLBACK, S.ENDED},
    S.GREETING: {S.MENU, S.FALLBACK, S.ENDED},
    S.MENU: {S.DIALING, S.COMPLAINT, S.FALLBACK, S.ENDED},
    S.DIALING: {S.BRIDGED, S.DIALING, S.COMPLAINT, S.FALLBACK, S.ENDED},
    S.BRIDGED: {S.SURVEY, S.FALLBACK, S.ENDED},
    S.SURVEY: {S.FALLBACK, S.ENDED},
    S.COMPLAINT: {S.FALLBACK, S.ENDED},
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

    def __init__(self, ctl: "Controller", channel: dict, app: str = "tongdai"):
        self.ctl = ctl
        self.ari = ctl.ari
        self.id: str = channel["id"]
        # The channel's name, for the parameters Asterisk resolves with ast_channel_get_by_name()
        # (/dial's caller, an originator): a name is a hashed lookup, while a uniqueid is found by
        # locking every channel in turn (Debian's Asterisk has only the ao2_legacy channel storage).
        self.name: str = channel.get("name") or self.id
        self.app = app  # the ARI application (lane) the call entered; its desk legs join the same
        self.routing: "Routing" = ctl.routing  # a snapshot: a reload affects new calls only
        self.queue: asyncio.Queue[dict] = asyncio.Queue()
        self.state = State.ANSWERING
        self.caller_gone = False
        self.legs: dict[str, LegRecord] = {}
        self.live_legs: set[str] = set()
        self.spare: dict[str, bool] = {}  # legs created by route.prepare, not rung yet -> entered the app
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
        number = _clean_number(caller.get("number", ""))
        self.rec = CallRecord(id=self.id, caller=number or "anonymous", hotline=self.routing.hotline.number, started_at=utcnow())
        self.rec.event("arrived", caller=self.rec.caller, name=_clean_text(caller.get("name", "")))

    # ---------------------------------------------------------------- plumbing

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

    async def next_event(self, timeout: float | None) -> dict | None:
        """The next event for this call, or None on timeout. Raises CallerHangup when the caller goes."""
        try:
            ev = await asyncio.wait_for(self.queue.get(), timeout) if timeout is not None else await self.queue.get()
        except asyncio.TimeoutError:
            return None
        t = ev.get("type")
        ch = (ev.get("channel") or {}).get("id")
        if ch == self.id and t in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
            self._caller_gone()
            raise CallerHangup()
        return ev

    def unexpected(self, ev: dict) -> None:
        """An event the current step does not handle: ignore the harmless, fail loudly on the rest."""
        t = ev.get("type", "?")
        ch = (ev.get("channel") or ev.get("peer") or {}).get("id")
        if t in IGNORED:
            return
        if t == "PlaybackFinished" and (ev.get("playback") or {}).get("id") != self.playback_id:
            return  # a playback we already stopped
        if t in ("RecordingStarted", "RecordingFinished", "RecordingFailed") and (ev.get("recording") or {}).get("name") != self.recording_name:
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
        if self.ctl.strict:
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
        except asyncio.TimeoutError:
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

    # ---------------------------------------------------------------- the flow

    async def run(self) -> None:
        self.ctl.calllog.opened(self.rec)
        try:
            await self.flow()
        except CallerHangup:
            self._caller_left()
        except asyncio.CancelledError:
            # The channel vanished while we were away from Asterisk (Controller.reconcile), or
            # the controller is shutting down past its grace period (then we still hang up).
            self.interrupt("channel gone while disconnected" if self.vanished else "shutdown", gone=self.vanished)
            raise
        except AriError as e:
            if e.status == 0:  # Asterisk went away mid-request: nothing left to talk to
                self.interrupt(str(e), gone=True)
            elif e.status == 404 and e.path.startswith(f"/channels/{self.id}/"):
                # The caller hung up between an event and our next request on the channel
                # (its StasisEnd is still on the way): a hangup, not an error.
                self._caller_gone()
                self._caller_left()
            else:
                await self._unhandled(e)
        except Exception as e:
            await self._unhandled(e)
        finally:
            self.rec.ended_in = self.rec.ended_in or self.state.value
            await self.cleanup()
            if self.state is not State.ENDED:
                self.transition(State.ENDED, "cleanup")
            self.rec.ended_at = self.rec.ended_at or utcnow()
            self.ctl.calllog.closed(self.rec)
            self.ctl.finished(self)

    async def flow(self) -> None:
        r = self.routing
        await self.ari.request("POST", f"/channels/{self.id}/answer")
        if self.throttled:
            # Too many calls from this number in the last minute: keep the branches free.
            self.rec.event("rate_limited", limit=r.limits.caller_calls_per_minute)
            self.transition(State.FALLBACK, "rate limited")
            self.rec.disposition = "rejected"
            await self.say(["try_later"])
            return await self.end("system")
        is_open = self.ctl.is_open()
        if not is_open.open:
            self.rec.event("closed", reason=is_open.reason)
            self.transition(State.CLOSED, is_open.reason)
            self.rec.disposition = "closed"
            await self.say(["closed"])
            return await self.complaint("closed")
        self.transition(State.GREETING, "answered")
        first = await prompt.play(self, ["greeting"], max_digits=1)
        if first.status == "hangup":
            raise CallerHangup()
        self.transition(State.MENU, f"dtmf {first.digits}" if first.digits else "greeting played")
        action = await menu.run(self, first.digits or None)
        if action == "misconduct":
            self.rec.disposition = "complaint"
            return await self.complaint(f"dtmf {r.complaints.misconduct_digit}", misconduct=True)
        if not action.startswith("branch:"):
            self.rec.disposition = "invalid_input"
            if action == "complaint":
                return await self.complaint("menu fallback")
            self.transition(State.FALLBACK, f"menu fallback {action}")
            await self.say(["goodbye"])
            return await self.end("system")
        while True:
            branch = r.branch(action.split(":", 1)[1])
            assert branch is not None
            self.rec.branch_digit, self.rec.branch_name = branch.digit, branch.name
            agency = r.agencies[branch.agency]
            self.rec.agency_code, self.rec.agency_name = agency.code, agency.name
            why = f"dtmf {branch.digit}" if self.state is State.MENU else f"no answer -> branch {branch.digit}"
            self.transition(State.DIALING, why)
            plan = None
            if await route.any_reachable(self, branch):
                plan = route.prepare(self, branch)  # the first phones' channels, while the caller listens
                await self.say([f"branch_{branch.digit}", "connecting"])
            # else: no desk phone of the branch is registered; straight to the no-answer path
            # (dial() records each phone as unreachable without ringing anything).
            outcome = await route.dial(self, branch, plan)
            if outcome.answered:
                self.transition(State.BRIDGED, f"answered by {outcome.extension}")
                who = await bridge.run(self, outcome.leg_id, outcome.extension, plan)
                if who == "caller":
                    return await self.end("caller")
                if r.survey.enabled:
                    self.transition(State.SURVEY, "agent hung up")
                    await survey.run(self)
                else:
                    await self.say(["thanks"])
                return await self.end("system")
            self.rec.disposition = outcome.disposition
            self.rec.event("no_answer", branch=branch.digit, results=outcome.results)
            action = branch.no_answer
            if action.startswith("branch:"):
                continue
            await self.say(["all_busy"])
            if action == "complaint":
                return await self.complaint(f"{outcome.disposition}")
            await self.say(["goodbye"])
            return await self.end("system")

    async def say(self, sounds: list[str]) -> None:
        """Play prompts that take no input; raise CallerHangup if the caller goes meanwhile."""
        if (await prompt.play(self, sounds)).status == "hangup":
            raise CallerHangup()

    async def complaint(self, why: str, *, misconduct: bool = False) -> None:
        self.transition(State.COMPLAINT, why)
        await complaint.run(self, misconduct=misconduct)
        await self.end("system")

    def _caller_gone(self) -> None:
        self.caller_gone = True
        self.rec.event("hangup", by="caller", state=self.state.value)

    def _caller_left(self) -> None:
        if self.rec.disposition == "in_progress":
            self.rec.disposition = "abandoned"
        self.rec.hangup_by = self.rec.hangup_by or "caller"

    async def _unhandled(self, e: Exception) -> None:
        log.exception("call=%s unhandled error in %s: %s", self.id, self.state.value, e)
        self.rec.event("error", state=self.state.value, error=f"{e.__class__.__name__}: {e}")
        await self.fallback()

    def interrupt(self, why: str, *, gone: bool) -> None:
        """The call was cut short. ``gone``: its channels died with Asterisk, so there is
        nothing to hang up and the end time is when we lost Asterisk."""
        self.rec.disposition = "interrupted"
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

    async def fallback(self) -> None:
        """Apology prompt, then hang up. Never raises."""
        self.rec.disposition = "failed"
        try:
            if self.state not in (State.FALLBACK, State.ENDED):
                self.state = State.FALLBACK  # forced: any state may fail
                log.info("call=%s -> error -> fallback", self.id)
            if not self.caller_gone:
                await asyncio.wait_for(prompt.play(self, ["sorry"]), 20)
        except Exception as e:  # the apology itself failed: just hang up
            log.warning("call=%s apology failed: %s", self.id, e)
        self.rec.hangup_by = self.rec.hangup_by or "system"

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


def _clean_number(raw: Any) -> str:
    """Caller numbers come from the outside world: keep digits, + * #, at most 32 characters."""
    return "".join(c for c in str(raw) if c.isdigit() or c in "+*#")[:32]


def _clean_text(raw: Any) -> str:
    return "".join(c for c in str(raw) if c.isprintable())[:80]
