"""Calls a controller that went away left in Asterisk, found by the next one and taken over.

A controller killed with SIGKILL (a crash, an OOM kill) leaves its calls in Asterisk: a caller
bridged with a desk phone goes on talking (the bridge mixes without anyone's help); a caller in
the menu, or whose desk phones ring, waits for requests that never come. The next controller
asks ARI, on every connection, what its Stasis applications still have (``GET /channels`` and
``/bridges``) and takes over every call it does not know (the dispatcher builds the sessions,
:func:`ivr.call.flow.adopted` runs them):

- **bridged**: the caller and an answered desk-phone leg in the call's bridge. The session starts
  in ``bridged`` and waits for one side to hang up; the call then ends like any other (the
  survey, or thanks) and is logged once, with its full talk time: the answer time and the
  branch are in the row the first controller wrote when the desk phone answered.
- **anything else** (the menu, ringing, a recording): the call's desk phones are hung up, its
  bridge destroyed, the caller hears the apology and is hung up; logged as ``interrupted``.
- a desk-phone leg whose caller is gone is hung up, and so is a callback's channel (appArgs
  ``callback,<request>``: the desk phone or the citizen of ivr/call/callback.py). Its request
  stays ``serving``: it is never called again, since its call may have been made.

Channels are ours when they are in one of our applications; desk-phone legs carry the id of
their call (``<caller id>-leg<n>``, appArgs ``leg,<caller id>``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ivr.records.calllog import LegRecord, load_call, utcnow

if TYPE_CHECKING:
    from ivr.call.session import CallSession

log = logging.getLogger("tongdai.adopt")


@dataclass
class Orphan:
    """One call of a controller that went away, as Asterisk has it now."""

    channel: dict
    app: str
    legs: list[dict] = field(default_factory=list)  # its desk-phone legs still up
    bridges: list[dict] = field(default_factory=list)  # its bridges
    talking: dict | None = None  # the answered leg in the caller's bridge, if any


@dataclass
class Found:
    calls: list[Orphan]
    stray_legs: list[str]  # legs whose caller is gone


def _app(channel: dict) -> tuple[str, list[str]]:
    """The Stasis application a channel is in, and its arguments ("" when it is in none)."""
    dp = channel.get("dialplan") or {}
    if str(dp.get("app_name", "")).lower() != "stasis":
        return "", []
    app, *args = str(dp.get("app_data", "")).split(",")
    return app, args


def _caller_of(channel_id: str) -> str | None:
    head, sep, n = channel_id.rpartition("-leg")
    return head if sep and n.isdigit() else None


def created(obj: dict) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(obj.get("creationtime") or "", "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return None


async def find(ari: Any, apps: list[str], known: set[str]) -> Found:
    """``ari``: the ARI client (anything with its ``request``)."""
    # The calls in our applications that no session owns (``known``: the channels we own).
    channels = await ari.request("GET", "/channels") or []
    unknown = [c for c in channels if c.get("id") not in known]
    if not unknown:
        return Found([], [])
    bridges = await ari.request("GET", "/bridges") or []
    callers: dict[str, Orphan] = {}
    legs: list[dict] = []
    stray = []
    for ch in unknown:
        cid = ch["id"]
        if _caller_of(cid) is not None:
            legs.append(ch)
            continue
        app, args = _app(ch)
        if app in apps and args and args[0] == "callback":
            stray.append(cid)
        elif app in apps and not (args and args[0] == "leg"):
            callers[cid] = Orphan(ch, app)
    for leg in legs:
        call = callers.get(_caller_of(leg["id"]) or "")
        if call is None:
            stray.append(leg["id"])
        else:
            call.legs.append(leg)
    for b in bridges:
        members = set(b.get("channels") or [])
        for cid, call in callers.items():
            if cid in members or str(b.get("id", "")).startswith(cid + "-") or b.get("name") == f"call-{cid}":
                call.bridges.append(b)
                if cid in members:
                    up = [leg for leg in call.legs if leg["id"] in members and leg.get("state") == "Up"]
                    call.talking = up[0] if up else None
    return Found(list(callers.values()), stray)


async def take_over(session: CallSession, orphan: Orphan) -> str | None:
    """Give ``session`` what the first controller knew of the call; return the talking leg's id."""
    rec = session.rec
    rec.events.clear()
    rec.started_at = created(orphan.channel) or rec.started_at
    row = None
    try:
        row, _, _ = await asyncio.wait_for(load_call(session.ctx.calllog.engine, session.id), 3)
    except Exception as e:  # the database is down: what Asterisk says is all there is
        log.warning("call=%s adopted without its row (%s)", session.id, e.__class__.__name__)
    if row is not None:
        rec.started_at = row.started_at
        for f in ("branch_digit", "branch_name", "agency_code", "agency_name", "answered_at", "answered_by", "held_s",
                  "case_code"):
            setattr(rec, f, getattr(row, f))
    for b in orphan.bridges:
        session.bridges.add(b["id"])
    for ch in orphan.legs:
        session.live_legs.add(ch["id"])
    talking = orphan.talking
    rec.event("adopted", state="bridged" if talking else "unknown", legs=[ch["id"] for ch in orphan.legs],
              bridges=sorted(session.bridges), why="the controller that had the call went away")
    if talking is not None:
        ext = str(talking.get("name", "")).partition("/")[2].rpartition("-")[0]  # PJSIP/2401-0000002a
        rec.answered_by = rec.answered_by or ext
        rec.disposition = "answered"
        if rec.answered_at is None:
            # Not in the row (written when the phone answered; the database was down then):
            # the leg's creation is the nearest time Asterisk keeps, a little before the answer.
            rec.answered_at = created(talking) or utcnow()
            rec.event("answer_time_estimated", source="leg created")
        answered = LegRecord(channel_id=talking["id"], extension=rec.answered_by, started_at=created(talking) or rec.answered_at,
                             answered_at=rec.answered_at, result="answered")
        session.legs[talking["id"]] = answered
        rec.legs.append(answered)
    log.warning("call=%s adopted from a controller that went away (%s)", session.id,
                f"bridged with {rec.answered_by}" if talking else f"{len(orphan.legs)} legs: it gets the apology")
    return talking["id"] if talking else None
