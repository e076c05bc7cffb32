"""One hotline call, top to bottom: answer → (closed?) → greeting → menu → route → bridge →
survey → end, with the complaint path when nobody can take the call, and the look-up of a case
(menu key 0) that ends the call or leads back to the menu.

Each step lives in a module named after it (``prompt``, ``menu``, ``route``, ``bridge``,
``survey``, ``complaint``, ``lookup``) and sees the call through its
:class:`~ivr.call.session.CallSession` and the session's narrow
:class:`~ivr.call.context.CallContext`. Whatever goes wrong, the caller never hears dead air: an
unhandled error sends the call to :func:`fallback` (the apology, then a clean hangup), and the
session's cleanup always runs.
"""

from __future__ import annotations

import asyncio
import logging

from ivr.call import bridge, complaint, lookup, menu, prompt, queue, recording, route, survey
from ivr.call.errors import CallerHangup
from ivr.call.session import CallSession, State
from ivr.pbx.ari import AriError
from ivr.records.calllog import utcnow
from ivr.vocab import Disposition, MenuAction

log = logging.getLogger("tongdai.call")

async def run(session: CallSession) -> None:
    await _run(session, steps)


async def adopted(session: CallSession, leg_id: str | None) -> None:
    """A call taken over from a controller that went away (ivr/call/adopt.py): bridged with the
    desk phone ``leg_id``, it goes on until one side hangs up and ends like any call; anything
    else (the menu, ringing) gets the apology and a clean end, never dead air."""
    async def body(session: CallSession) -> None:
        if leg_id is not None:
            who = await bridge.wait(session, leg_id)
            if who == "caller":
                return await session.end("caller")
            if session.routing.survey.enabled:
                session.transition(State.SURVEY, "agent hung up")
                await survey.run(session)
            else:
                await say(session, ["thanks"])
            return await session.end("system")
        session.rec.disposition = Disposition.INTERRUPTED
        session.request_soon("DELETE", f"/channels/{session.id}/ring", ok_missing=True)
        # Its desk phones and bridge go first: the caller hears the apology alone.
        for leg in list(session.live_legs):
            await session.hangup_channel(leg)
            session.live_legs.discard(leg)
        for b in list(session.bridges):
            await session.ari.request("DELETE", f"/bridges/{b}", ok_missing=True)
            session.bridges.discard(b)
        await say(session, ["sorry"])
        return await session.end("system")

    await _run(session, body)


async def _run(session: CallSession, body) -> None:
    session.ctx.calllog.opened(session.rec)
    try:
        await body(session)
    except CallerHangup:
        session._caller_left()
    except asyncio.CancelledError:
        # The channel vanished while we were away from Asterisk (Controller.reconcile), or
        # the controller is shutting down past its grace period (then we still hang up).
        session.interrupt("channel gone while disconnected" if session.vanished else "shutdown", gone=session.vanished)
        raise
    except AriError as e:
        if e.status == 0:  # Asterisk went away mid-request: nothing left to talk to
            session.interrupt(str(e), gone=True)
        elif e.status == 404 and e.path.startswith(f"/channels/{session.id}/"):
            # The caller hung up between an event and our next request on the channel
            # (its StasisEnd is still on the way): a hangup, not an error.
            session._caller_gone()
            session._caller_left()
        else:
            await _unhandled(session, e)
    except Exception as e:
        await _unhandled(session, e)
    finally:
        session.rec.ended_in = session.rec.ended_in or session.state.value
        await session.cleanup()
        if session.state is not State.ENDED:
            session.transition(State.ENDED, "cleanup")
        session.rec.ended_at = session.rec.ended_at or utcnow()
        session.ctx.calllog.closed(session.rec)
        session.ctx.finished(session)


async def steps(session: CallSession) -> None:
    r = session.routing
    await session.ari.request("POST", f"/channels/{session.id}/answer")
    if session.throttled:
        # Too many calls from this number in the last minute: keep the branches free.
        session.rec.event("rate_limited", limit=r.limits.caller_calls_per_minute)
        session.transition(State.FALLBACK, "rate limited")
        session.rec.disposition = Disposition.REJECTED
        await say(session, ["try_later"])
        return await session.end("system")
    is_open = session.ctx.is_open()
    if not is_open.open:
        session.rec.event("closed", reason=is_open.reason)
        session.transition(State.CLOSED, is_open.reason)
        session.rec.disposition = Disposition.CLOSED
        await say(session, ["closed"])
        return await complaint_path(session, "closed")
    session.transition(State.GREETING, "answered")
    first = await prompt.play(session, ["greeting"], max_digits=1)
    if first.status == "hangup":
        raise CallerHangup()
    if r.recording.enabled and r.recording.announce:
        first = await recording.announce(session, first)
    session.transition(State.MENU, f"dtmf {first.digits}" if first.digits else "greeting played")
    action = await menu.run(session, first.digits or None)
    while action.kind == "lookup":
        session.rec.disposition = Disposition.CASE_LOOKUP
        session.transition(State.LOOKUP, f"dtmf {r.menu.lookup_digit}")
        if await lookup.run(session) == "done":
            return await session.end("system")
        # No case after three tries: the menu again (a branch chosen now sets the disposition).
        session.transition(State.MENU, "lookup: back to the menu")
        action = await menu.run(session)
    if action.kind == "misconduct":
        session.rec.disposition = Disposition.COMPLAINT
        return await complaint_path(session, f"dtmf {r.complaints.misconduct_digit}", misconduct=True)
    if action.kind != "branch":
        if session.rec.disposition != Disposition.CASE_LOOKUP:  # a look-up stays what the call was for
            session.rec.disposition = Disposition.INVALID_INPUT
        if action.kind == "complaint":
            return await complaint_path(session, "menu fallback")
        session.transition(State.FALLBACK, f"menu fallback {action}")
        await say(session, ["goodbye"])
        return await session.end("system")
    while True:
        branch = r.branch(action.digit or "")
        assert branch is not None
        session.rec.branch_digit, session.rec.branch_name = branch.digit, branch.name
        agency = r.agencies[branch.agency]
        session.rec.agency_code, session.rec.agency_name = agency.code, agency.name
        why = f"dtmf {branch.digit}" if session.state is State.MENU else f"no answer -> branch {branch.digit}"
        session.transition(State.DIALING, why)
        outcome, plan = await _route(session, branch)
        if isinstance(outcome, str):  # "callback": key 1 in the queue, confirmed: the request keeps the place
            session.rec.disposition = Disposition.BUSY
            await say(session, ["callback_thanks"])
            return await session.end("system")
        if outcome is None:  # key 2 while waiting in the queue
            session.rec.disposition = Disposition.BUSY
            return await complaint_path(session, "dtmf 2 in queue")
        if outcome.answered:
            assert outcome.leg_id is not None and outcome.extension is not None  # set with answered
            session.transition(State.BRIDGED, f"answered by {outcome.extension}")
            who = await bridge.run(session, outcome.leg_id, outcome.extension, plan, record=r.records(branch))
            if who == "caller":
                return await session.end("caller")
            if r.survey.enabled:
                session.transition(State.SURVEY, "agent hung up")
                await survey.run(session)
            else:
                await say(session, ["thanks"])
            return await session.end("system")
        session.rec.disposition = outcome.disposition
        session.rec.event("no_answer", branch=branch.digit, results=outcome.results)
        action = MenuAction.parse(branch.no_answer)
        if action.kind == "branch":
            continue
        await say(session, ["all_busy"])
        if action.kind == "complaint":
            return await complaint_path(session, f"{outcome.disposition}")
        await say(session, ["goodbye"])
        return await session.end("system")


async def _route(session: CallSession, branch) -> tuple[route.DialOutcome | str | None, route.Plan | None]:
    """Ring the branch, through its queue when every reachable phone is busy (or others already
    wait): the outcome (None: the caller left the queue for a complaint; ``callback``: they asked
    to be called back) and the plan, if any."""
    if not await route.any_reachable(session, branch):
        # No desk phone of the branch is registered; straight to the no-answer path
        # (dial() records each phone as unreachable without ringing anything).
        return await route.dial(session, branch, None), None
    queues = session.ctx.queues
    if branch.queue.max_wait and (queues.waiting(branch.digit) or not await route.any_free(session, branch)):
        await say(session, [f"branch_{branch.digit}"])
    else:
        plan = route.prepare(session, branch)  # the first phones' channels, while the caller listens
        await say(session, [f"branch_{branch.digit}", "connecting"])
        outcome = await route.dial(session, branch, plan)
        # Every present phone turned busy meanwhile (another caller took the last free one):
        # wait in the queue rather than give up. Phones that refused with 486 (do not disturb)
        # are not waited for.
        if outcome.answered or not outcome.all_busy_unrung or not branch.queue.max_wait:
            return outcome, plan
    result = await queue.wait(session, branch)
    if result == "complaint":
        return None, None
    if result == "callback":
        return result, None
    if result == "timeout":
        session.rec.event("queue_timeout", branch=branch.digit, max_wait=branch.queue.max_wait)
        return route.DialOutcome(False, results={ext: "busy" for ext in branch.targets}), None
    # At the head with a phone free: dial at once (nothing awaited before route claims it).
    session.transition(State.DIALING, "queue turn")
    return await route.dial(session, branch, None), None


async def say(session: CallSession, sounds: list[str]) -> None:
    """Play prompts that take no input; raise CallerHangup if the caller goes meanwhile."""
    if (await prompt.play(session, sounds)).status == "hangup":
        raise CallerHangup()


async def complaint_path(session: CallSession, why: str, *, misconduct: bool = False) -> None:
    session.transition(State.COMPLAINT, why)
    await complaint.run(session, misconduct=misconduct)
    await session.end("system")


async def _unhandled(session: CallSession, e: Exception) -> None:
    log.exception("call=%s unhandled error in %s: %s", session.id, session.state.value, e)
    session.rec.event("error", state=session.state.value, error=f"{e.__class__.__name__}: {e}")
    await fallback(session)


async def fallback(session: CallSession) -> None:
    """Apology prompt, then hang up. Never raises."""
    session.rec.disposition = Disposition.FAILED
    try:
        if session.state not in (State.FALLBACK, State.ENDED):
            session.state = State.FALLBACK  # forced: any state may fail
            log.info("call=%s -> error -> fallback", session.id)
        if not session.caller_gone:
            await asyncio.wait_for(prompt.play(session, ["sorry"]), 20)
    except Exception as e:  # the apology itself failed: just hang up
        log.warning("call=%s apology failed: %s", session.id, e)
    session.rec.hangup_by = session.rec.hangup_by or "system"

