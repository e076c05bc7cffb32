"""The branch queue: when every reachable desk phone of a branch is busy, the caller waits.

First come, first served: only the caller at the head of a branch's queue may take a phone that
becomes free, and a caller arriving while others wait joins the back even if a phone is free at
that moment. The waiting caller hears hold music; every ``announce_every`` seconds the music
stops for their position ("Quý vị đang ở vị trí số hai") and, once the branch has history, the
expected wait in minutes. Key 2 leaves the queue for the voice complaint. After ``max_wait``
seconds the caller gets the branch's ``no_answer`` path.

Key 1 (offered when callbacks are: :mod:`ivr.call.callback`) turns the caller's place into a
:class:`Pending` callback request: the same place in the line, served by the callback service
when it reaches the head and a phone is free. A request whose retry is not due yet holds no
place: callers behind it are served meanwhile (it is back at its place once due).

A phone becoming free is seen by polling the head's check every :data:`POLL` seconds (the
controller's own calls and AMI device state, both in memory): a freed phone rings for the head
within a quarter of a second, whichever of the two said it was busy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ivr.call import prompt, route
from ivr.call.errors import CallerHangup
from ivr.pbx.ari import AriError
from ivr.records.calllog import utcnow

if TYPE_CHECKING:
    from ivr.call.session import CallSession
    from ivr.config.routing import Branch
    from ivr.records.callbacks import Request

log = logging.getLogger("tongdai.queue")

POLL = 0.25  # seconds between two looks for a free phone by the caller at the head
HISTORY = 20  # served callers remembered per branch for the expected wait
ENOUGH_HISTORY = 3  # no expected wait is announced before this many callers were served


@dataclass(eq=False)
class Waiter:
    session: CallSession
    branch: str
    joined: float  # time.monotonic()
    position_at_join: int
    arrived: dt.datetime = field(default_factory=utcnow)  # a callback request keeps this place


@dataclass(eq=False)
class Pending:
    """A callback request in its caller's place (ivr/call/callback.py serves it)."""

    request: Request

    @property
    def arrived(self) -> dt.datetime:
        return self.request.queued_at


Entry = Waiter | Pending


def _active(entry: Entry, now: dt.datetime) -> bool:
    """A caller, or a callback whose (next) attempt is due: it holds its place."""
    return isinstance(entry, Waiter) or entry.request.due_at <= now


class Queues:
    """Every branch's queue (one per controller, shared by all calls through the call context)."""

    def __init__(self) -> None:
        self.lines: dict[str, list[Entry]] = {}
        self.served: dict[str, deque[tuple[float, int]]] = {}  # (seconds waited, position at join)

    def waiting(self, branch: str) -> int:
        """Callers and due callbacks in the branch's queue."""
        now = utcnow()
        return sum(1 for e in self.lines.get(branch, ()) if _active(e, now))

    def join(self, branch: str, session: CallSession) -> Waiter:
        line = self.lines.setdefault(branch, [])
        waiter = Waiter(session, branch, time.monotonic(), self.waiting(branch) + 1)
        line.append(waiter)
        return waiter

    def position(self, waiter: Waiter) -> int:
        """1 for the head of the queue (callbacks not due yet are not counted)."""
        now = utcnow()
        line = self.lines.get(waiter.branch, [])
        return sum(1 for e in line[:line.index(waiter)] if _active(e, now)) + 1

    def head(self, branch: str) -> Entry | None:
        """Who may take the next free phone of the branch: the first caller or due callback."""
        now = utcnow()
        return next((e for e in self.lines.get(branch, ()) if _active(e, now)), None)

    def to_callback(self, waiter: Waiter, request: Request) -> Pending:
        """The caller asked to be called back: their request takes their place in the line."""
        line = self.lines.get(waiter.branch, [])
        pending = Pending(request)
        line[line.index(waiter)] = pending
        return pending

    def add_pending(self, request: Request) -> Pending:
        """A request (reloaded at start, or put back for a retry) in its place: after everyone
        who arrived before it, ahead of everyone who arrived after."""
        line = self.lines.setdefault(request.branch, [])
        pending = Pending(request)
        i = next((i for i, e in enumerate(line) if e.arrived > request.queued_at), len(line))
        line.insert(i, pending)
        return pending

    def take(self, pending: Pending) -> None:
        line = self.lines.get(pending.request.branch, [])
        if pending in line:
            line.remove(pending)

    def pendings(self) -> list[Pending]:
        return [e for line in self.lines.values() for e in line if isinstance(e, Pending)]

    def leave(self, waiter: Waiter, *, served: bool) -> float:
        """Take ``waiter`` out of its queue; the seconds it waited. ``served``: it left for a
        desk phone (its wait counts for the expected wait)."""
        line = self.lines.get(waiter.branch, [])
        if waiter in line:
            line.remove(waiter)
        waited = time.monotonic() - waiter.joined
        if served:
            self.served.setdefault(waiter.branch, deque(maxlen=HISTORY)).append((waited, waiter.position_at_join))
        return waited

    def expected_wait(self, branch: str, position: int) -> float | None:
        """Seconds a caller at ``position`` may expect to wait, from the callers served lately:
        their waits per place in the queue, times this position. None without enough history."""
        served = self.served.get(branch)
        if not served or len(served) < ENOUGH_HISTORY:
            return None
        per_place = sum(w for w, _ in served) / sum(p for _, p in served)
        return per_place * position

    def status(self) -> dict[str, int]:
        """Callers waiting per branch (for `tongdai status`)."""
        counts = {b: sum(1 for e in line if isinstance(e, Waiter)) for b, line in sorted(self.lines.items())}
        return {b: n for b, n in counts.items() if n}

    def callbacks_status(self) -> dict[str, int]:
        """Callback requests pending per branch, in their places (for `tongdai status`)."""
        counts = {b: sum(1 for e in line if isinstance(e, Pending)) for b, line in sorted(self.lines.items())}
        return {b: n for b, n in counts.items() if n}


def announcement(position: int, expected: float | None, *, first: bool, callback: bool = False) -> list[str]:
    """What a waiting caller hears: (welcome,) position, expected wait in whole minutes, keys
    (key 1 too when a callback is offered)."""
    sounds = ["queue_wait"] if first else []
    sounds += ["queue_position", f"number:{position}"]
    if expected is not None:
        sounds += ["queue_expected", f"number:{max(1, round(expected / 60))}", "queue_minutes"]
    sounds.append("queue_keys_callback" if callback else "queue_keys")
    return sounds


async def wait(session: CallSession, branch: Branch) -> str:
    """Wait in ``branch``'s queue: ``turn`` (at the head and a phone is free: dial it now, with no
    await in between), ``complaint`` (key 2), ``callback`` (key 1, confirmed: the request holds
    the place, the caller was thanked) or ``timeout`` (``max_wait``). Raises CallerHangup."""
    from ivr.call.session import State

    queues = session.ctx.queues
    callbacks = session.ctx.callbacks
    q = branch.queue
    number = callbacks.offered(session, branch) if callbacks is not None else None
    me = queues.join(branch.digit, session)
    session.transition(State.QUEUE, "every desk phone busy")
    session.rec.event("queued", branch=branch.digit, position=me.position_at_join)
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline, announce_at = start + q.max_wait, start
    playing: str | None = None
    moh = False
    first = True
    why = "hangup"
    try:
        while True:
            # Position 1: no caller and no due callback ahead (a retry not due yet holds no place).
            if queues.position(me) == 1 and await route.any_free(session, branch):
                why = "turn"
                return why
            now = loop.time()
            if now >= deadline:
                why = "timeout"
                return why
            if playing is None and now >= announce_at:
                if moh:
                    moh = False
                    await session.ari.request("DELETE", f"/channels/{session.id}/moh", ok_missing=True)
                pos = queues.position(me)
                expected = queues.expected_wait(branch.digit, pos)
                sounds = announcement(pos, expected, first=first, callback=number is not None)
                first = False
                playing = session.playback_id = session.new_id("pb")
                session.rec.event("queue_position", position=pos,
                                  expected_s=round(expected) if expected is not None else None)
                session.rec.event("playback", sounds=sounds)
                media = ",".join(s if ":" in s else f"sound:tongdai/{s}" for s in sounds)
                await session.ari.request("POST", f"/channels/{session.id}/play/{playing}",
                                          params={"media": media, "lang": session.routing.hotline.language})
                announce_at = now + q.announce_every
            elif playing is None and not moh:
                await session.ari.request("POST", f"/channels/{session.id}/moh", params={"mohClass": "default"})
                moh = True
            ev = await session.next_event(max(0.0, min(POLL, deadline - loop.time())))
            if ev is None:
                continue
            t = ev.get("type")
            if t == "PlaybackFinished" and (ev.get("playback") or {}).get("id") == playing:
                playing = session.playback_id = None
            elif t == "ChannelDtmfReceived" and (ev.get("channel") or {}).get("id") == session.id:
                digit = str(ev.get("digit", ""))
                session.rec.event("dtmf", digit=digit, during="queue")
                if digit == "2":
                    why = "complaint"
                    return why
                if digit == "1" and number is not None and callbacks is not None:
                    if playing is not None:
                        session.request_soon("DELETE", f"/playbacks/{playing}", ok_missing=True)
                        playing = session.playback_id = None
                    if moh:
                        moh = False
                        await session.ari.request("DELETE", f"/channels/{session.id}/moh", ok_missing=True)
                    if await _confirm(session, number):
                        if await callbacks.request(session, me, number):
                            why = "callback"
                            return why
                        session.rec.event("callback_not_stored")
                    announce_at = loop.time()  # back to waiting: position, then the music
            else:
                session.unexpected(ev)
    finally:
        if not session.caller_gone:
            # Awaited, not sent in the background: stopping the music after the ringback of the
            # turn has started would silence the ringback too (one generator per channel).
            try:
                if playing is not None:
                    session.playback_id = None
                    await session.ari.request("DELETE", f"/playbacks/{playing}", ok_missing=True)
                if moh:
                    await session.ari.request("DELETE", f"/channels/{session.id}/moh", ok_missing=True)
            except AriError as e:
                log.warning("call=%s hold music or announcement not stopped: %s", session.id, e)
        # Last, with nothing awaited after it: the head keeps its place until it dials. (A
        # callback's request has already taken the caller's place: leave() finds nothing.)
        waited = queues.leave(me, served=why == "turn")
        session.rec.event("dequeued", branch=branch.digit, why=why, waited_s=round(waited, 1))


async def _confirm(session: CallSession, number: str) -> bool:
    """Key 1: read the number back (digit by digit); 1 confirms, 2 (or nothing) back to waiting."""
    for _ in range(2):
        got = await prompt.play(session, ["callback_confirm", f"digits:{number}", "callback_confirm_keys"],
                                max_digits=1, first_timeout=6)
        if got.status == "hangup":
            raise CallerHangup()
        if got.digits == "1":
            return True
        if got.digits == "2":
            return False
    return False
