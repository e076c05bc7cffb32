"""The controller: ARI events in, one call session per caller channel.

This adapter only turns events into calls on sessions; it keeps no business rules. Each
session has its own queue and coroutine, so one call's failure never touches another.
Channels, bridges and playbacks are owned by the session that created them; an event is
routed by the channel (or dialled peer) it concerns.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.call import adopt, flow
from ivr.call.context import CallContext
from ivr.call.route import RouteState
from ivr.call.session import NEVER_USED, CallSession, State
from ivr.config import hours as cal
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.pbx.ari import Ari, AriError
from ivr.pbx.asterisk import Layout
from ivr.pbx.speech import Speech
from ivr.records.calllog import CallLog

if TYPE_CHECKING:
    from ivr.pbx.presence import Presence

log = logging.getLogger("tongdai.controller")


def held_since(args: list) -> float | None:
    """When the dialplan started holding the caller (StasisStart's ``held,<epoch>``), if it did."""
    if len(args) >= 2 and args[0] == "held":
        try:
            return float(args[1])
        except ValueError:
            return None
    return None


class RateLimit:
    """Counts each caller's calls over a sliding window."""

    def __init__(self, window: float):
        self.window = window
        self._hits: dict[str, collections.deque[float]] = {}

    def hit(self, key: str, limit: int, now: float | None = None) -> bool:
        """Count one call; True when it is over ``limit`` (0: no limit). Anonymous callers are
        not limited: they would all share one key."""
        if limit <= 0 or not key or key == "anonymous":
            return False
        now = time.monotonic() if now is None else now
        q = self._hits.setdefault(key, collections.deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        q.append(now)
        if len(self._hits) > 10000:  # forget idle callers
            for k in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                del self._hits[k]
        return len(q) > limit


class Controller:
    def __init__(self, settings: Settings, routing: rt.Routing, ari: Ari, calllog: CallLog, *, strict: bool = False):
        self.settings = settings
        self.routing = routing
        self.ari = ari
        self.calllog = calllog
        self.strict = strict
        self.route_state = RouteState()
        self.layout = Layout.for_settings(settings)
        self.sessions: dict[str, CallSession] = {}
        self.owners: dict[str, CallSession] = {}
        self.tasks: set[asyncio.Task] = set()
        self.accepting = True
        self.presence: Presence | None = None  # when AMI is configured
        self.calls_per_minute = RateLimit(60.0)
        self.idle = asyncio.Event()
        self.idle.set()
        self.speech = Speech(self.layout.host(self.layout.ast("data/sounds/vi")))
        self.context = CallContext(
            ari=ari, calllog=calllog, route_state=self.route_state, home=settings.home,
            recording_spool=self.layout.host(self.layout.ast("spool")) / "recording",
            own=self.own, finished=self.finished, is_open=self.is_open, reachable=self._reachable,
            busy=self._busy, strict=strict, speech=self.speech, recordings_gid=settings.recordings_gid,
        )
        self._warming: asyncio.Future | None = None

    def _reachable(self, ext: str) -> bool | None:
        return self.presence.reachable(ext) if self.presence is not None else None

    def _busy(self, ext: str, asking: CallSession | None) -> bool:
        """A desk phone rung or bridged by another call or a callback, or in use says AMI (a
        private call)."""
        if self.settings.call_waiting:
            return False
        if any(s is not asking and s.holds(ext) for s in self.sessions.values()):
            return True
        if self.context.callbacks is not None and self.context.callbacks.holds(ext):
            return True
        return self.presence is not None and self.presence.in_use(ext)

    # ------------------------------------------------------------------ routing of events

    def own(self, channel_id: str, session: CallSession) -> None:
        self.owners[channel_id] = session

    def disown(self, channel_id: str) -> None:
        """A callback's channel or bridge is done (a call's are forgotten when it finishes)."""
        self.owners.pop(channel_id, None)

    def on_event(self, ev: dict) -> None:
        t = ev.get("type")
        ch = ev.get("channel") or {}
        cid = ch.get("id")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("event %s channel=%s peer=%s dialstatus=%s cause=%s", t, cid,
                      (ev.get("peer") or {}).get("id"), ev.get("dialstatus"), ev.get("cause"))
        if t == "StasisStart" and cid not in self.owners:
            args = ev.get("args") or []
            if args and args[0] == "leg" and cid:
                # A desk-phone leg whose call is already over: nobody wants it.
                log.info("orphan leg %s hung up", cid)
                asyncio.create_task(self._hangup_quietly(cid))
                return
            self._new_call(ch, ev.get("application") or self.settings.ari_app, held_since(args))
            return
        owner = self.owners.get(cid) if cid else None
        if owner is None and t == "Dial":
            owner = self.owners.get((ev.get("peer") or {}).get("id", ""))
        if owner is None and t and (t.startswith("Playback") or t.startswith("Recording")):
            target = (ev.get("playback") or ev.get("recording") or {}).get("target_uri", "")
            owner = self.owners.get(target.partition(":")[2])
        if owner is None:
            log.debug("event %s for unknown channel %s dropped", t, cid)
            return
        owner.queue.put_nowait(ev)

    def _new_call(self, channel: dict, app: str, held_at: float | None = None) -> None:
        cid = channel.get("id")
        if not cid:
            log.warning("StasisStart without a channel id dropped")
            return
        if not self.accepting:
            # Shutting down: the dialplan holds the caller for the next controller.
            asyncio.create_task(self._to_hold(cid))
            return
        session = CallSession(self.context, channel, self.routing, app, held_at=held_at)
        session.throttled = self.calls_per_minute.hit(session.rec.caller, self.routing.limits.caller_calls_per_minute)
        self.sessions[cid] = session
        self.own(cid, session)
        self.idle.clear()
        task = asyncio.create_task(flow.run(session), name=f"call-{cid}")
        session.task = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        log.info("call=%s arrived from %s", cid, session.rec.caller)

    def finished(self, session: CallSession) -> None:
        self.sessions.pop(session.id, None)
        for k in [k for k, v in self.owners.items() if v is session]:
            del self.owners[k]
        if not self.sessions:
            self.idle.set()

    async def _hangup_quietly(self, cid: str) -> None:
        try:
            await self.ari.request("DELETE", f"/channels/{cid}", ok_missing=True)
        except AriError as e:
            log.warning("hangup of %s failed: %s", cid, e)

    async def _to_hold(self, cid: str) -> None:
        log.info("call=%s arrived while stopping: held for the next controller", cid)
        try:
            await self.ari.request("POST", f"/channels/{cid}/continue",
                                   params={"context": "hotline-hold", "extension": "s", "priority": 1})
        except AriError as e:
            log.warning("call=%s could not be sent to the hold: %s", cid, e)

    async def on_connect(self) -> None:
        """After every (re)connection: the event filter (it lives with the app's registration,
        which a reconnection renews), then reconcile, then take over what a controller that
        went away left (ivr/call/adopt.py)."""
        await self.filter_events()
        await self.reconcile()
        await self.adopt_orphans()

    async def adopt_orphans(self) -> int:
        """Take over the calls in our applications that no session owns; return how many."""
        if not self.accepting:
            return 0
        try:
            found = await adopt.find(self.ari, self.settings.ari_apps, set(self.owners))
        except AriError as e:
            log.warning("adopt: cannot list channels: %s", e)
            return 0
        for stray in found.stray_legs:
            log.info("adopt: desk-phone leg %s has no caller any more: hung up", stray)
            asyncio.create_task(self._hangup_quietly(stray))
        adopted: list[CallSession] = []
        for orphan in found.calls:
            cid = orphan.channel["id"]
            session = CallSession(self.context, orphan.channel, self.routing, orphan.app)
            # Owned before anything is awaited: its events (a hangup) reach it from now on.
            self.sessions[cid] = session
            self.own(cid, session)
            for leg in orphan.legs:
                self.own(leg["id"], session)
            self.idle.clear()
            leg_id = await adopt.take_over(session, orphan)
            session.state = State.BRIDGED if leg_id else State.FALLBACK
            task = asyncio.create_task(flow.adopted(session, leg_id), name=f"call-{cid}")
            session.task = task
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            adopted.append(session)
        if adopted:
            # A channel that ended between the list and the ownership sent its last events to
            # nobody: ask again, and end those sessions as interrupted.
            try:
                live = {c["id"] for c in await self.ari.request("GET", "/channels")}
            except AriError:
                live = None
            for session in adopted:
                running = session.task
                if live is not None and session.id not in live and running is not None and not running.done():
                    session.vanished = True
                    running.cancel()
        return len(adopted)

    async def filter_events(self) -> None:
        """Ask Asterisk not to send the events no call step uses. Best effort: an Asterisk
        without application event filters sends everything, and those events are ignored."""
        for app in self.settings.ari_apps:
            try:
                await self.ari.request("PUT", f"/applications/{app}/eventFilter",
                                       body={"disallowed": [{"type": t} for t in sorted(NEVER_USED)]})
            except AriError as e:
                log.warning("ari event filter of %s not set (all its events will come): %s", app, e)

    async def reconcile(self) -> None:
        """After a (re)connection: calls whose channel died while we were away are finalised.

        Asterisk drops events for an app whose websocket is down, so ask what still lives.
        """
        # Only the calls we had before asking: events (and new calls) keep flowing meanwhile.
        known = list(self.sessions.values())
        if not known:
            return
        try:
            live = {c["id"] for c in await self.ari.request("GET", "/channels")}
        except AriError as e:
            log.warning("reconcile: cannot list channels: %s", e)
            return
        for session in known:
            if session.id not in live and session.task is not None and not session.task.done():
                log.warning("call=%s channel gone while disconnected; finalising as interrupted", session.id)
                session.vanished = True
                session.task.cancel()

    # ------------------------------------------------------------------ state

    def is_open(self) -> cal.OpenState:
        return cal.state(self.routing, self.settings.hours_override_path)

    def reload(self, path: Path) -> list[str]:
        """Swap in a new routing atomically; keep the old one if the file is invalid or
        unreadable. Returns the errors (none: the new routing is in use)."""
        try:
            new = rt.load(path)
        except rt.RoutingError as e:
            errors = [str(p) for p in e.errors]
        except OSError as e:
            errors = [f"{path}: {e.strerror}"]
        else:
            self.swap_routing(new)
            return []
        log.error("routing reload rejected, keeping the running config: %s", "; ".join(errors[:5]))
        return errors

    def swap_routing(self, new: rt.Routing) -> None:
        """New calls use ``new``; calls in progress keep the routing they started with."""
        self.routing = new
        log.info("routing reloaded: %d branches, %d extensions; %d calls in progress keep the old one",
                 len(new.branches), len(new.extensions), len(self.sessions))
        self.warm_speech()

    def warm_speech(self) -> None:
        """Synthesise the branches' agencies' names in the background, so that a look-up can
        say who handles a case (an assigned agency's name is made when the case is assigned)."""
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
        names = [self.routing.agencies[b.agency].name for b in self.routing.branches]
        self._warming = asyncio.ensure_future(self.speech.warm(names))

    def stop_warming(self) -> None:
        if self._warming is not None:
            self._warming.cancel()

    async def drain(self, grace: float) -> None:
        """Stop taking calls; wait up to ``grace`` seconds for calls in progress to finish."""
        self.accepting = False
        try:
            await asyncio.wait_for(self.idle.wait(), grace)
        except TimeoutError:
            log.warning("%d calls still up after %.0fs grace; ending them", len(self.tasks), grace)
            for t in list(self.tasks):
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
