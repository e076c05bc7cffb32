"""Record a voice complaint, open a case, read its code back.

Reached when a branch cannot be reached (everybody busy, not answering or not registered),
outside working hours, from the menu's fallback, or straight from the misconduct digit. The
recording (max length and silence end from routing.yaml, ``#`` finishes) ends up under
``$TONGDAI_HOME/recordings``; a caller who hangs up while speaking keeps what was said.

The code is read back digit by digit in Vietnamese (``digits:`` media, Asterisk's SayDigits
with language ``vi``) and repeated once on request. If the database cannot take the case, the
case is written to the spool with the same code (nothing is lost) and still read back.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.call import prompt
from ivr.call.errors import CallerHangup
from ivr.pbx.ari import AriError
from ivr.records import cases as cases_mod
from ivr.records import recordings as files

if TYPE_CHECKING:
    from ivr.call.session import CallSession

log = logging.getLogger("tongdai.complaint")


async def run(session: CallSession, *, misconduct: bool = False) -> None:
    """Offer the recording, store it as a case, read the code back. Raises CallerHangup only
    after the case is safely stored."""
    r = session.routing
    anonymous = False
    if misconduct:
        res = await prompt.play(session, ["anonymous_offer"], max_digits=1, first_timeout=4)
        if res.status == "hangup":
            raise CallerHangup()
        anonymous = res.digits == "1"
        session.rec.event("anonymous", chosen=anonymous)
    res = await prompt.play(session, ["record_misconduct" if misconduct else "record_offer"], max_digits=0)
    if res.status == "hangup":
        raise CallerHangup()
    path, seconds, hung_up = await record(session, r.complaints.max_seconds, r.complaints.silence_seconds)
    case_code = None
    if path is not None and seconds > 0.3:
        case_code = await _open_case(session, path, seconds, anonymous=anonymous, misconduct=misconduct)
    else:
        session.rec.event("recording_empty")
    if hung_up:
        raise CallerHangup()
    if case_code is None:
        await _say(session, ["no_recording", "goodbye"])
        return
    media = ["case_code_is", f"digits:{case_code}"]
    res = await prompt.play(session, media + ["repeat_offer"], max_digits=1, first_timeout=4)
    if res.status == "hangup":
        raise CallerHangup()
    if res.digits == "1":
        session.rec.event("code_repeated")
        await _say(session, media)
    await _say(session, ["thanks"])


async def _say(session: CallSession, sounds: list[str]) -> None:
    if (await prompt.play(session, sounds)).status == "hangup":
        raise CallerHangup()


async def record(session: CallSession, max_seconds: int, silence: int) -> tuple[Path | None, float, bool]:
    """Record the caller after the beep (``#`` or silence ends it); return (file under the data
    dir, seconds, caller hung up). Also the look-up's further complaint."""
    name = f"tongdai-{session.new_id('rec')}"
    session.recording_name = name
    session.rec.event("recording", name=name, max_seconds=max_seconds)
    hung_up = False
    try:
        await session.ari.request("POST", f"/channels/{session.id}/record", params={
            "name": name, "format": "wav", "maxDurationSeconds": max_seconds, "maxSilenceSeconds": silence,
            "beep": True, "terminateOn": "#", "ifExists": "overwrite",
        })
    except AriError as e:
        log.error("call=%s recording did not start: %s", session.id, e)
        session.rec.event("recording_failed", error=str(e))
        return None, 0.0, False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds + 10
    while loop.time() < deadline:
        try:
            ev = await session.next_event(max(0.1, deadline - loop.time()))
        except CallerHangup:
            # Asterisk closes the file when the channel goes; keep what was said.
            hung_up = True
            deadline = min(deadline, loop.time() + 3)
            continue
        if ev is None:
            break
        t = ev.get("type")
        if t in ("RecordingFinished", "RecordingFailed") and (ev.get("recording") or {}).get("name") == name:
            if t == "RecordingFailed":
                session.rec.event("recording_failed", cause=ev["recording"].get("cause"))
            break
        if t == "RecordingStarted":
            continue
        if t == "ChannelDtmfReceived":
            continue  # '#' ends the recording on Asterisk's side
        session.unexpected(ev)
    session.recording_name = None
    path, seconds = await asyncio.to_thread(_collect, session, name)
    return path, seconds, hung_up


def _collect(session: CallSession, name: str) -> tuple[Path | None, float]:
    src = session.ctx.recording_spool / f"{name}.wav"
    if not src.exists():
        return None, 0.0
    # Copied into a private file of ours (0600, or 0640 for the recordings group), not renamed
    # with the mode Asterisk gave it: see ivr.records.recordings.
    rel = files.complaint_path(session.id, session.rec.started_at)
    seconds = files.store(src, session.ctx.home, rel, session.ctx.recordings_gid)
    session.rec.event("recorded", file=rel, seconds=round(seconds, 2))
    return session.ctx.home / rel, seconds


async def _open_case(session: CallSession, path: Path, seconds: float, *, anonymous: bool, misconduct: bool) -> str:
    r = session.routing
    rec = session.rec
    new = cases_mod.NewCase(
        channel="phone", caller=rec.caller, anonymous=anonymous, call_id=rec.id,
        branch_digit=rec.branch_digit, branch_name=rec.branch_name,
        agency_code=rec.agency_code, agency_name=rec.agency_name,
        category="misconduct" if misconduct else "other",
        recording=str(path.relative_to(session.ctx.home)), recording_seconds=round(seconds, 2),
        inspection_reason="Báo hành vi sách nhiễu, vòi vĩnh qua tổng đài" if misconduct else None,
    )
    service = cases_mod.Cases(session.ctx.calllog.engine, r)
    try:
        # The call log must have the call row before a case can point at it.
        await asyncio.wait_for(session.ctx.calllog.flush(), 5)
        case = await asyncio.wait_for(service.create(new, received_at=rec.started_at), 5)
        code = case.code
    except Exception as e:  # database down: spool the case, never lose it
        code = cases_mod.new_code()
        _spool(session, new, code, e)
    rec.case_code = code
    rec.event("case", code=code, misconduct=misconduct, anonymous=anonymous)
    log.info("call=%s case %s opened (%.1fs recorded%s)", session.id, code, seconds, ", misconduct" if misconduct else "")
    return code


def _spool(session: CallSession, new: cases_mod.NewCase, code: str, error: Exception) -> None:
    cases_mod.spool_case(session.ctx.home, code, new, session.rec.started_at)
    log.error("call=%s case %s spooled, database unavailable: %s", session.id, code, error.__class__.__name__)
