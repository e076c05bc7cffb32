"""Connect the caller with the desk phone that answered, until one of them hangs up."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ivr.call import recording
from ivr.call.errors import CallerHangup
from ivr.records.calllog import utcnow
from ivr.vocab import Disposition

if TYPE_CHECKING:
    from ivr.call.route import Plan
    from ivr.call.session import CallSession


async def create(session: CallSession, bridge_id: str) -> None:
    """Create the call's mixing bridge; the call's cleanup destroys it."""
    session.bridges.add(bridge_id)
    await session.ari.request("POST", f"/bridges/{bridge_id}", params={"type": "mixing", "name": f"call-{session.id}"})


async def run(session: CallSession, leg_id: str, extension: str, plan: Plan | None = None, *,
              record: bool = False) -> str:
    """Bridge caller and leg; return who hung up: ``caller`` or ``agent``.

    ``plan``: route.prepare's, whose bridge the call uses when it was made; a leg that already
    joined it (a prepared phone) stays there and only the caller is added. ``record``: the
    conversation is recorded from now until one of them hangs up (:mod:`ivr.call.recording`)."""
    # shield: a call cancelled here must not cancel the background tasks the cleanup waits for.
    if plan is not None and await asyncio.shield(plan.made):
        bridge_id = plan.bridge
        joined = plan.joined.get(leg_id)
        in_bridge = joined is not None and await asyncio.shield(joined)
    else:
        bridge_id, in_bridge = session.new_id("br"), False
        await create(session, bridge_id)
    # Ringback was already stopped when route.dial returned (its finally), so no DELETE /ring here.
    channels = session.id if in_bridge else f"{session.id},{leg_id}"
    await session.ari.request("POST", f"/bridges/{bridge_id}/addChannel", params={"channel": channels})
    rec = session.rec
    rec.answered_at = utcnow()
    rec.answered_by = extension
    rec.event("bridged", extension=extension, bridge=bridge_id)
    live = await recording.start(session, bridge_id) if record else None
    # The row says now who answered and when, still in progress (the record is copied at once):
    # a controller that takes over this call after a crash (ivr/call/adopt.py) logs it with its
    # full talk time from there.
    rec.disposition = Disposition.IN_PROGRESS
    session.ctx.calllog.opened(rec)
    rec.disposition = Disposition.ANSWERED
    return await wait(session, leg_id, live)


async def wait(session: CallSession, leg_id: str, live: recording.Live | None = None) -> str:
    """Until the caller or the desk phone hangs up; return who did: ``caller`` or ``agent``.
    ``live``: the conversation's recording in progress, stopped and kept when the talk ends."""
    rec = session.rec
    extension = rec.answered_by
    try:
        while True:
            ev = await session.next_event(None)
            t = ev.get("type")
            if t in ("ChannelDestroyed", "StasisEnd", "ChannelHangupRequest") and (ev.get("channel") or {}).get("id") == leg_id:
                rec.talk_ended_at = utcnow()
                session.legs[leg_id].ended_at = rec.talk_ended_at
                session.live_legs.discard(leg_id)
                rec.hangup_by = "agent"
                rec.event("hangup", by="agent", extension=extension)
                # No DELETE: each of these events means the leg is already hanging up (it was
                # one request per call answered by 404, measured in the bench).
                await recording.finish(session, live)
                return "agent"
            if recording.handle(session, live, ev):
                continue
            session.unexpected(ev)
    except CallerHangup:
        rec.talk_ended_at = utcnow()
        session.legs[leg_id].ended_at = rec.talk_ended_at
        rec.hangup_by = "caller"
        await recording.finish(session, live)
        return "caller"
    except Exception:
        await recording.finish(session, live)  # the conversation is over either way: keep what was said
        raise
