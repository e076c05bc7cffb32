"""The branch queue: when every reachable desk phone of a branch is busy, the caller waits.

First come, first served: only the caller at the head of a branch's queue may take a phone that
becomes free, and a caller arriving while others wait joins the back even if a phone is free at
that moment. The waiting caller hears hold music; every ``announce_every`` seconds the music
stops for their position ("Quý vị đang ở vị trí số hai") and, once the branch has history, the
expected wait in minutes. Key 2 leaves the queue for the voice complaint. After ``max_wait``
seconds the caller gets the branch's ``no_answer`` path.

A phone becoming free is seen by polling the head's check every :data:`POLL` seconds (the
controller's own calls and AMI device state, both in memory): a freed phone rings for the head
within a quarter of a second, whichever of the two said it was busy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ivr.call import route
from ivr.pbx.ari import AriError

if TYPE_CHECKING:
    from ivr.call.session import CallSession
    from ivr.config.routing import Branch

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


class Queues:
    """Every branch's queue (one per controller, shared by all calls through the call context)."""

    def __init__(self) -> None:
        self.lines: dict[str, list[Waiter]] = {}
        self.served: dict[str, deque[tuple[float, int]]] = {}  # (seconds waited, position at join)

    def waiting(self, branch: str) -> int:
        return len(self.lines.get(branch, ()))

    def join(self, branch: str, session: CallSession) -> Waiter:
        line = self.lines.setdefault(branch, [])
        waiter = Waiter(session, branch, time.monotonic(), len(line) + 1)
        line.append(waiter)
        return waiter

    def position(self, waiter: Waiter) -> int:
        """1 for the head of the queue."""
        return self.lines.get(waiter.branch, []).index(waiter) + 1

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
        return {b: len(line) for b, line in sorted(self.lines.items()) if line}


def announcement(position: int, expected: float | None, *, first: bool) -> list[str]:
    """What a waiting caller hears: (welcome,) position, expected wait in whole minutes, keys."""
    sounds = ["queue_wait"] if first else []
    sounds += ["queue_position", f"number:{position}"]
    if expected is not None:
        sounds += ["queue_expected", f"number:{max(1, round(expected / 60))}", "queue_minutes"]
    sounds.append("queue_keys")
    return sounds


async def wait(session: CallSession, branch: Branch) -> str:
    """Wait in ``branch``'s queue: ``turn`` (at the head and a phone is free: dial it now, with no
    await in between), ``complaint`` (key 2) or ``timeout`` (``max_wait``). Raises CallerHangup."""
    from ivr.call.session import State

    queues = session.ctx.queues
    q = branch.queue
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
                sounds = announcement(pos, expected, first=first)
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
        # Last, with nothing awaited after it: the head keeps its place until it dials.
        waited = queues.leave(me, served=why == "turn")
        session.rec.event("dequeued", branch=branch.digit, why=why, waited_s=round(waited, 1))
