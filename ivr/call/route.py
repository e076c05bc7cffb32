"""Route a call to a branch's desk phones with the branch's ring strategy.

- ``ringall``: every phone at once; the first to answer wins and the others get CANCEL.
- ``hunt``: one after another in the configured order.
- ``roundrobin``: one after another, starting one further on at each call.
- ``leastrecent``: one after another, the phone that answered least recently first.

Sequential strategies give each phone the branch's ring timeout; a 486 Busy moves on at once.
Each leg has a client-chosen id and is registered with the call before the request, so no event
of it can be missed. The caller hears ringback meanwhile.

The phones rung first are *prepared* (:func:`prepare`) while the caller hears the branch
announcement: their channels are created (``/channels/create``, no INVITE yet) and enter the app
at once (a phone rung alone also joins the call's bridge, see :func:`_join`), and ringing them
after the announcement is one light ``/dial``. Creating a channel was
the heaviest request of a call under load (the bench at 300 calls: p50 10 ms, p95 60-330 ms, the
largest part of the post-dial delay the controller added); now it happens while the caller
listens anyway. Later phones (hunt order) are originated when their turn comes
(``POST /channels``: one request, the leg enters the app when its phone answers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ivr.call import bridge
from ivr.pbx.ari import AriError
from ivr.records.calllog import LegRecord, utcnow

if TYPE_CHECKING:
    from ivr.call.session import CallSession
    from ivr.config.routing import Branch

log = logging.getLogger("tongdai.route")

# A dial's final status other than ANSWER. An originated leg's answer is its StasisStart (it
# enters the app only then); a created leg (route.prepare) is in the app from the start, so its
# Dial ANSWER is its answer.
DIAL_RESULTS = {
    "BUSY": "busy", "NOANSWER": "no_answer", "CANCEL": "cancelled",
    "CHANUNAVAIL": "unreachable", "CONGESTION": "failed",
}


def cause_result(cause) -> str:
    """A leg's Q.850 hangup cause -> what the desk phone did."""
    if cause in (17, 21):  # user busy; call rejected (486 / 603)
        return "busy"
    if cause in (16, 18, 19):  # normal clearing before answer; no user responding; no answer
        return "no_answer"
    if cause in (1, 3, 20, 27, 38):  # unallocated; no route; subscriber absent; out of order
        return "unreachable"
    return "failed"


@dataclass
class RouteState:
    """Shared by all calls: round-robin positions and when each phone last answered."""

    rr: dict[str, int] = field(default_factory=dict)
    last_answered: dict[str, float] = field(default_factory=dict)

    def order(self, branch: Branch) -> list[list[str]]:
        targets = list(branch.targets)
        if branch.strategy == "ringall":
            return [targets]
        if branch.strategy == "roundrobin":
            start = self.rr.get(branch.digit, 0) % len(targets)
            self.rr[branch.digit] = start + 1
            targets = targets[start:] + targets[:start]
        elif branch.strategy == "leastrecent":
            targets.sort(key=lambda t: self.last_answered.get(t, 0.0))  # stable: config order on ties
        return [[t] for t in targets]

    def answered(self, extension: str) -> None:
        self.last_answered[extension] = time.time()


@dataclass
class Plan:
    """A branch's ring order, its first phones' channels being created meanwhile (:func:`prepare`),
    and the call's bridge, which those channels join before they ring."""

    groups: list[list[str]]
    bridge: str
    made: asyncio.Task  # -> True once the bridge exists
    created: asyncio.Task | None = None  # -> {extension: leg id} of the channels created, not ringing yet
    joined: dict[str, asyncio.Task] = field(default_factory=dict)  # leg id -> True once it is in the bridge


@dataclass
class DialOutcome:
    answered: bool
    leg_id: str | None = None
    extension: str | None = None
    results: dict[str, str] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)  # phones not rung at all (unreachable, busy)

    @property
    def all_busy_unrung(self) -> bool:
        """Busy, and every busy phone was known busy before ringing (none refused with 486)."""
        return self.disposition == "busy" and all(e in self.skipped for e, r in self.results.items() if r == "busy")

    @property
    def disposition(self) -> str:
        # Phones that are not there say nothing about the branch: busy when every phone that
        # is there was busy.
        vals = set(self.results.values()) - {"unreachable"}
        return "busy" if vals and vals <= {"busy"} else "no_answer"


def release(session: CallSession, plan: Plan) -> None:
    """The plan's branch did not answer (:func:`dial` calls this): destroy its bridge now, once
    it exists, rather than at the end of the call; a failover to another branch prepares its own."""

    async def destroy() -> None:
        try:
            if await plan.made:
                await session.ari.request("DELETE", f"/bridges/{plan.bridge}", ok_missing=True)
        except AriError as e:
            log.warning("call=%s bridge %s not destroyed: %s", session.id, plan.bridge, e)

    session.bridges.discard(plan.bridge)
    session.in_background(destroy())


def prepare(session: CallSession, branch: Branch) -> Plan:
    """Fix the ring order and start creating the channels of the phones rung first (no INVITE).

    Call it as the announcement starts and pass the plan to :func:`dial`. Channels created but
    never rung (the caller left meanwhile) are hung up by the call's cleanup.
    """
    groups = session.ctx.route_state.order(branch)
    bridge_id = session.new_id("br")
    plan = Plan(groups, bridge_id, session.in_background(_make_bridge(session, bridge_id)))
    # In the background: the cleanup waits for it, then hangs up what it created.
    plan.created = session.in_background(_create_legs(session, groups[0], plan), name=f"prepare-{session.id}")
    return plan


async def dial(session: CallSession, branch: Branch, plan: Plan | None = None) -> DialOutcome:
    """Ring the branch's phones until one answers; the caller hears ringback meanwhile."""
    outcome = DialOutcome(False)
    groups = plan.groups if plan else session.ctx.route_state.order(branch)
    # shield: a call cancelled here (shutdown, its channel vanished) must not cancel creates
    # already sent; cleanup waits for the task and hangs up whatever it created.
    created = await asyncio.shield(plan.created) if plan and plan.created else {}  # prepare() set it
    session.rec.event("route", branch=branch.digit, strategy=branch.strategy, order=[e for g in groups for e in g])
    try:
        for i, group in enumerate(groups):
            if await _ring(session, group, branch.ring_timeout, outcome, ringback=i == 0,
                           created=created if i == 0 else {}):
                return outcome
        if plan:
            release(session, plan)
        return outcome
    finally:
        if not session.caller_gone:
            await session.ari.request("DELETE", f"/channels/{session.id}/ring", ok_missing=True)


async def _ring(session: CallSession, extensions: list[str], ring_timeout: int, outcome: DialOutcome,
                *, ringback: bool, created: dict[str, str]) -> bool:
    """Ring ``extensions`` at once; True when one answered (``outcome`` says which).

    ``created``: legs of these extensions already created by :func:`prepare` (dialled here);
    the others are originated."""
    loop = asyncio.get_running_loop()
    if ringback and _outside(session, created.values()):
        # Rare: a created leg has not entered the app yet (a slow Asterisk). The caller hears
        # ringback while we wait, not silence.
        await session.ari.request("POST", f"/channels/{session.id}/ring")
        ringback = False
    await _entered(session, set(created.values()), loop.time() + 5)
    # A phone in (or ringing for) another call is not rung: no call waiting on focal points. The
    # check and the claim are one synchronous step, so two calls cannot both take a free phone;
    # the claim holds until the legs exist (live_legs) and is dropped when this returns.
    busy = [ext for ext in extensions if session.ctx.busy(ext, session)]
    for ext in busy:
        _skipped(session, ext, "busy", outcome)
        if ext in created:
            # Its channel (created during the announcement) will not ring: hang it up now rather
            # than leave it in the call's bridge. It stays in ``spare``, whose events are ignored.
            session.request_soon("DELETE", f"/channels/{created[ext]}", ok_missing=True)
    extensions = [ext for ext in extensions if ext not in busy]
    session.claimed.update(extensions)
    try:
        return await _ring_free(session, extensions, ring_timeout, outcome, ringback=ringback, created=created)
    finally:
        session.claimed.difference_update(extensions)


async def _ring_free(session: CallSession, extensions: list[str], ring_timeout: int, outcome: DialOutcome,
                     *, ringback: bool, created: dict[str, str]) -> bool:
    loop = asyncio.get_running_loop()
    # The phones' INVITEs and the caller's ringback go out together: the post-dial delay is one
    # round trip to Asterisk, not one per step.
    starts = [_dial_created(session, ext, created[ext], ring_timeout, outcome) if ext in created
              else _originate(session, ext, ring_timeout, outcome) for ext in extensions]
    if ringback:
        starts.append(session.ari.request("POST", f"/channels/{session.id}/ring"))
    # return_exceptions: every originate has finished (its leg started or given up) before an
    # error (the caller gone) propagates, and the finally below then cancels the started legs.
    results = await asyncio.gather(*starts, return_exceptions=True)
    pending = {leg_id: ext for leg_id, ext in zip(results, extensions) if isinstance(leg_id, str)}
    was_created = set(created.values())
    deadline = loop.time() + ring_timeout + 5  # Asterisk's own dial timeout fires first

    def answered(leg_id: str) -> bool:
        ext = pending.pop(leg_id)
        _finish(session, leg_id, "answered", outcome)
        session.rec.event("dial_result", extension=ext, result="answered")
        outcome.answered, outcome.leg_id, outcome.extension = True, leg_id, ext
        session.legs[leg_id].answered_at = utcnow()
        session.ctx.route_state.answered(ext)
        return True

    try:
        for r in results:
            if isinstance(r, BaseException):
                raise r
        while pending:
            ev = await session.next_event(max(0.0, deadline - loop.time()))
            if ev is None:
                break
            t = ev.get("type")
            cid = (ev.get("channel") or {}).get("id")
            if t == "StasisStart" and cid in pending and cid not in was_created:
                # An originated leg enters our app once the desk phone has answered, and only
                # then can it join a bridge: this, not the Dial event's ANSWER, is the answer.
                return answered(cid)
            if t == "Dial" and (ev.get("peer") or {}).get("id") in pending:
                leg_id = ev["peer"]["id"]
                status = ev.get("dialstatus", "")
                if status == "ANSWER" and leg_id in was_created:
                    # A created leg has been in the app all along: its Dial ANSWER is the answer.
                    return answered(leg_id)
                if status in ("", "RINGING", "PROGRESS", "PROCEEDING", "ANSWER"):
                    continue
                result = DIAL_RESULTS.get(status, "failed")
                _finish(session, leg_id, result, outcome)
                ext = pending.pop(leg_id)
                session.rec.event("dial_result", extension=ext, result=result)
                await session.hangup_channel(leg_id)
                session.live_legs.discard(leg_id)
            elif t == "ChannelDestroyed" and cid in pending:
                # A refused or timed-out dial may end with the channel destroyed and no final
                # Dial event (seen with Asterisk 22): the hangup cause says what happened.
                ext = pending.pop(cid)
                result = cause_result(ev.get("cause"))
                _finish(session, cid, result, outcome)
                session.live_legs.discard(cid)
                session.rec.event("dial_result", extension=ext, result=result, cause=ev.get("cause_txt") or ev.get("cause"))
            elif t in ("StasisStart", "StasisEnd", "ChannelHangupRequest") and cid in session.legs:
                # A leg entering or leaving our app; its ChannelDestroyed follows. One we have
                # given up on that enters late is hung up by unexpected().
                if cid not in session.live_legs:
                    session.unexpected(ev)
            else:
                session.unexpected(ev)
        return False
    finally:
        # Whoever is still ringing gets CANCEL.
        for leg_id in pending:
            _finish(session, leg_id, "cancelled" if outcome.answered else "no_answer", outcome)
            await session.hangup_channel(leg_id)
            session.live_legs.discard(leg_id)


def _unreachable(session: CallSession, ext: str, outcome: DialOutcome) -> None:
    """Nobody registered: do not ring into nothing (and do not make Asterisk log an error)."""
    _skipped(session, ext, "unreachable", outcome)


def _skipped(session: CallSession, ext: str, result: str, outcome: DialOutcome) -> None:
    """A phone not rung at all (unreachable, busy): logged as a leg that never started."""
    outcome.results[ext] = result
    outcome.skipped.add(ext)
    session.rec.legs.append(LegRecord(channel_id=session.new_id("skip"), extension=ext, started_at=utcnow(),
                                      ended_at=utcnow(), result=result))
    session.rec.event("dial_result", extension=ext, result=result, skipped=True)


def _new_leg(session: CallSession, ext: str, leg_id: str) -> None:
    leg = LegRecord(channel_id=leg_id, extension=ext, started_at=utcnow())
    session.legs[leg_id] = leg
    session.rec.legs.append(leg)
    session.live_legs.add(leg_id)


async def _make_bridge(session: CallSession, bridge_id: str) -> bool:
    try:
        await bridge.create(session, bridge_id)
        return True
    except AriError as e:
        log.info("call=%s bridge not created ahead: %s", session.id, e)
        return False


async def _join(session: CallSession, leg_id: str, plan: Plan) -> bool:
    """Put a created leg into the call's bridge before it rings; True once it is in.

    Why: Asterisk dials an ARI channel that is in no bridge from its one *dial bridge*, shared
    by every ringing ARI channel: each /dial first joins it (a thread and that bridge's lock),
    and the answered leg leaves it again for the call's bridge. Under load that join delayed the
    INVITE (bench, 300 calls: the ``invite`` step's p95 was 150-890 ms; 33-66 ms with the leg
    joined ahead). A leg already in the call's bridge is dialled at once, and when it answers
    only the caller still has to join. Done while the caller hears the announcement; if it is
    not done by the time the leg rings, Asterisk runs the two commands in the order they reach
    the channel, and both orders work (a leg in the dial bridge is moved, as it always was).
    """
    try:
        if not await plan.made or leg_id in session.legs:
            return False  # no bridge, or the bridge came too late: the leg rings already
        if not await session.leg_entered(leg_id, 5.0):
            return False
        await session.ari.request("POST", f"/bridges/{plan.bridge}/addChannel", params={"channel": leg_id})
        return True
    except AriError as e:
        log.info("call=%s leg %s not bridged ahead: %s", session.id, leg_id, e)
        return False


async def _create_legs(session: CallSession, extensions: list[str], plan: Plan) -> dict[str, str]:
    """Create (not ring) a channel per reachable extension (a lone one also joins the call's
    bridge, in the background); ``{extension: leg id}`` once they are created."""
    legs: dict[str, str] = {}

    async def create(ext: str) -> None:
        try:
            if not await _reachable(session, ext) or session.ctx.busy(ext, session):
                return  # dial() records it unreachable or busy (or rings it, if free by then)
            leg_id = session.new_id("leg")
            session.spare[leg_id] = False
            session.ctx.own(leg_id, session)  # before the channel exists: no event can be missed
            params = {"endpoint": f"PJSIP/{ext}", "app": session.app, "appArgs": f"leg,{session.id}",
                      "channelId": leg_id, "originator": session.name}
            await session.ari.request("POST", "/channels/create", params=params)
        except Exception as e:
            # Left to dial(): its originate records why the phone cannot ring. A leg id stays in
            # ``spare``: after a timeout or a dropped websocket Asterisk may have created the
            # channel all the same, and a created channel never rung would stay in the app for
            # good; the call's cleanup hangs it up (a 404 if it does not exist).
            log.info("call=%s leg for %s not created: %s", session.id, ext, e)
            return
        legs[ext] = leg_id
        if len(extensions) == 1:
            # Only a phone rung alone: phones rung together would share the bridge before one of
            # them answers (a mixing thread while they ring, two desks joined if two answer at
            # once); they ring from the dial bridge.
            plan.joined[leg_id] = session.in_background(_join(session, leg_id, plan), name=f"join-{leg_id}")

    await asyncio.gather(*(create(ext) for ext in extensions))
    return legs


def _outside(session: CallSession, legs) -> bool:
    """Whether any of these created legs has not entered the app yet."""
    return any(not session.spare.get(leg, True) for leg in legs)


async def _entered(session: CallSession, legs: set[str], deadline: float) -> None:
    """Wait until the created ``legs`` have entered the app (a channel outside it cannot be
    dialled); they nearly always have, during the announcement."""
    loop = asyncio.get_running_loop()
    while _outside(session, legs):
        ev = await session.next_event(max(0.0, deadline - loop.time()))
        if ev is None:
            return  # the /dial that follows fails and says why
        session.unexpected(ev)  # marks spare legs entering the app


async def _dial_created(session: CallSession, ext: str, leg_id: str, ring_timeout: int,
                        outcome: DialOutcome) -> str | None:
    """Ring a leg created by :func:`prepare`; its id, or None when it cannot ring (recorded)."""
    session.spare.pop(leg_id, None)
    _new_leg(session, ext, leg_id)
    try:
        await session.ari.request("POST", f"/channels/{leg_id}/dial",
                                  params={"caller": session.name, "timeout": ring_timeout})
    except AriError as e:
        _finish(session, leg_id, "unreachable", outcome)
        session.rec.event("dial_result", extension=ext, result="unreachable", error=str(e))
        await session.hangup_channel(leg_id)
        session.live_legs.discard(leg_id)
        return None
    session.rec.event("dial", extension=ext, leg=leg_id)
    return leg_id


async def _originate(session: CallSession, ext: str, ring_timeout: int, outcome: DialOutcome) -> str | None:
    """Start ringing one desk phone; its leg id, or None when it cannot ring (recorded as such)."""
    if not await _reachable(session, ext):
        _unreachable(session, ext, outcome)
        return None
    leg_id = session.new_id("leg")
    _new_leg(session, ext, leg_id)
    session.ctx.own(leg_id, session)  # before the channel exists: no event can be missed
    params = {
        "endpoint": f"PJSIP/{ext}", "app": session.app, "appArgs": f"leg,{session.id}",
        "channelId": leg_id, "timeout": ring_timeout,
        # The originator's caller id becomes the leg's connected line: the desk phone shows
        # who is calling (tested), and the leg shares the call's linkedid.
        "originator": session.name,
    }
    try:
        # One request: Asterisk subscribes our app to the new channel, then dials it (the INVITE
        # goes out as the answer comes back); the channel enters the app when the phone answers.
        # Here (a later phone of a hunt, nothing to overlap with) /channels/create + /dial would
        # cost two round trips and a StasisStart wait; prepare() does that only for the first
        # phones, during the announcement.
        await session.ari.request("POST", "/channels", params=params)
    except AriError as e:
        # A phone Asterisk cannot even start a call to (no contact, unknown endpoint).
        _finish(session, leg_id, "unreachable", outcome)
        session.rec.event("dial_result", extension=ext, result="unreachable", error=str(e))
        if e.status == 0:
            # No answer (timeout, websocket dropped): the originate may have gone through all
            # the same. Hang it up; if it appears later, unexpected() hangs it up then.
            await session.hangup_channel(leg_id)
        session.live_legs.discard(leg_id)
        return None
    session.rec.event("dial", extension=ext, leg=leg_id)
    return leg_id


async def any_reachable(session: CallSession, branch: Branch) -> bool:
    """Whether at least one of the branch's desk phones can take a call now."""
    for ext in branch.targets:
        if await _reachable(session, ext):
            return True
    return False


async def any_free(session: CallSession, branch: Branch) -> bool:
    """Whether a desk phone of the branch could be rung now: reachable and not busy."""
    for ext in branch.targets:
        if not session.ctx.busy(ext, session) and await _reachable(session, ext):
            return True
    return False


async def _reachable(session: CallSession, ext: str) -> bool:
    """Whether the desk phone has a registered contact: AMI presence, or ARI when AMI is down."""
    known = session.ctx.reachable(ext)
    if known is not None:
        return known
    try:
        ep = await session.ari.request("GET", f"/endpoints/PJSIP/{ext}")
    except AriError:
        return True  # unknown: let the dial attempt decide
    return (ep or {}).get("state") != "offline"


def _finish(session: CallSession, leg_id: str, result: str, outcome: DialOutcome) -> None:
    leg = session.legs[leg_id]
    if leg.result is None:
        leg.result = result
        if result != "answered":
            leg.ended_at = utcnow()
        outcome.results[leg.extension] = result
