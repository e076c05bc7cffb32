"""Conversation recording: the notice after the greeting, and the call's bridge recorded from the
desk phone's answer until one side hangs up (docs/recording.md).

Asterisk records the *bridge* (``POST /bridges/{id}/record``): it puts an internal "Recorder"
channel into the mixing bridge, so the file holds both parties mixed. Recording a channel is no
way to do it: a channel in a bridge cannot be recorded ("Cannot record channel while in bridge").
The Recorder is no channel of our application (no StasisStart); the recording's events carry
``target_uri: bridge:<id>``, which is why the call owns its bridge id here (``ctx.own``). The
file is in Asterisk's spool (``recording/<name>.wav``) until :func:`finish` copies it under
``$TONGDAI_HOME`` (:func:`ivr.records.recordings.store`, private modes).

A recording never fails the call: a start that fails, a recording that fails or is deleted
mid-call (``DELETE /recordings/live/{name}`` removes the file), a file that cannot be stored,
are each an event on the call's timeline and a log line, and the conversation goes on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ivr.call import prompt
from ivr.call.errors import CallerHangup
from ivr.call.prompt import PromptResult
from ivr.records import recordings as files

if TYPE_CHECKING:
    from ivr.call.session import CallSession

log = logging.getLogger("tongdai.recording")

FORMAT = "wav"  # 8 kHz 16-bit mono: 16,000 bytes a second, 55 MB (2^20 bytes) an hour (docs/recording.md)
MAX_SECONDS = 4 * 3600  # a call stuck for hours must not fill the disk
STOP_WAIT = 3.0  # seconds to wait for RecordingFinished after the stop


async def announce(session: CallSession, first: PromptResult) -> PromptResult:
    """Play the notice that the call may be recorded, after the greeting, always in full. A key
    pressed during it is kept as the menu's first choice (one pressed during the greeting
    already is); returns the choice so far."""
    res = await prompt.play(session, ["recording_notice"], max_digits=0 if first.digits else 1, interrupt=False)
    if res.status == "hangup":
        raise CallerHangup()
    session.rec.event("recording_notice")
    if first.digits or not res.digits:
        return first
    return PromptResult("digits", res.digits[:1])


@dataclass
class Live:
    """A conversation recording in progress."""

    name: str  # Asterisk's (live and stored recording name, file name in the spool)
    bridge: str
    over: str | None = None  # set when Asterisk ended it before we stopped it: finished, failed


async def start(session: CallSession, bridge_id: str) -> Live | None:
    """Start recording the bridge; None (and an event saying why) when it cannot start."""
    name = f"tongdai-{session.new_id('conv')}"
    session.ctx.own(bridge_id, session)  # the recording's events name the bridge, not a channel
    try:
        await session.ari.request("POST", f"/bridges/{bridge_id}/record", params={
            "name": name, "format": FORMAT, "maxDurationSeconds": MAX_SECONDS, "ifExists": "overwrite",
            "beep": False, "terminateOn": "none",
        })
    except asyncio.CancelledError:
        raise
    except Exception as e:  # AriError, or Asterisk gone: the conversation goes on unrecorded
        log.error("call=%s conversation recording did not start: %s", session.id, e)
        session.rec.event("recording_failed", stage="start", error=str(e))
        return None
    session.rec.event("recording_started", name=name)
    return Live(name, bridge_id)


def _is(live: Live, ev: dict, *types: str) -> bool:
    return ev.get("type") in types and (ev.get("recording") or {}).get("name") == live.name


def handle(session: CallSession, live: Live | None, ev: dict) -> bool:
    """An event of the recording during the conversation: noted, True; anything else False."""
    if live is None or not _is(live, ev, "RecordingStarted", "RecordingFinished", "RecordingFailed"):
        return False
    t = ev["type"]
    if t == "RecordingFailed":
        live.over = "failed"
        cause = ev["recording"].get("cause") or "unknown"
        log.error("call=%s conversation recording failed: %s", session.id, cause)
        session.rec.event("recording_failed", stage="recording", cause=cause)
    elif t == "RecordingFinished":
        # Not stopped by us: deleted over ARI, stopped by someone else, or the maximum length.
        live.over = "finished"
        log.warning("call=%s conversation recording ended before the call", session.id)
        session.rec.event("recording_ended", early=True)
    return True


async def finish(session: CallSession, live: Live | None) -> None:
    """Stop the recording (the conversation is over), wait for Asterisk to close the file, then
    store it under TONGDAI_HOME beside the call, in the background (the survey need not wait;
    the call's cleanup does, so the call record has it). Never raises but CancelledError."""
    if live is None:
        return
    if live.over is None:
        try:
            await session.ari.request("POST", f"/recordings/live/{live.name}/stop")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # Already over: it may have ended a moment ago (its event still on the way), or be
            # gone (Asterisk lost): the file, or its absence, says the rest.
            if await session.wait_aside(lambda ev: _is(live, ev, "RecordingFinished", "RecordingFailed"), 0.5) is None:
                log.warning("call=%s conversation recording not stopped: %s", session.id, e)
                session.rec.event("recording_stop_failed", error=str(e))
        else:
            ev = await session.wait_aside(lambda ev: _is(live, ev, "RecordingFinished", "RecordingFailed"), STOP_WAIT)
            if ev is not None and ev["type"] == "RecordingFailed":
                session.rec.event("recording_failed", stage="stop", cause=ev["recording"].get("cause") or "unknown")
    session.in_background(_collect(session, live), name=f"recording-{session.id}")


async def _collect(session: CallSession, live: Live) -> None:
    ctx, rec = session.ctx, session.rec
    src = ctx.recording_spool / f"{live.name}.{FORMAT}"
    rel = files.conversation_path(session.id, rec.started_at)
    try:
        if not await asyncio.to_thread(src.exists):
            # Deleted over ARI, or never written: the timeline says so; the call was fine.
            log.warning("call=%s conversation recording lost: no file in Asterisk's spool", session.id)
            rec.event("recording_lost", reason="no file in the spool")
            return
        seconds = await asyncio.to_thread(files.store, src, ctx.home, rel, ctx.recordings_gid)
    except OSError as e:  # the spool's file stays for an operator to rescue
        log.error("call=%s conversation recording not stored: %s", session.id, e.strerror or e)
        rec.event("recording_failed", stage="store", error=e.strerror or str(e))
        return
    rec.recording, rec.recording_s = rel, round(seconds, 2)
    rec.event("recording_stored", seconds=rec.recording_s)
