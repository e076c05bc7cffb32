"""The voice complaint step on the shipped fakes: the recording asked of Asterisk, the file it
leaves (a real WAV), the case stored in a real database (both backends) or spooled when there is
none, and the code read back to the caller."""

from __future__ import annotations

import asyncio
import json
import wave

import pytest

from ivr.call import flow
from ivr.config.hours import OpenState
from ivr.records import cases as cm
from ivr.records import db
from ivr.records.calllog import CallLog, load_call
from ivr.testing import make_call, wait_until

CLOSED = OpenState(False, "ngoài giờ làm việc")


@pytest.fixture
async def database(db_settings):
    """A migrated database and the real call log on it (a case points at its call's row)."""
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    log = CallLog(engine, s.home / "spool" / "calllog.jsonl")
    log.start()
    yield s, log
    await log.close()
    await engine.dispose()


def seconds(path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


async def up_to_the_recording(call) -> tuple[asyncio.Task, dict]:
    """A call outside working hours: the 'closed' notice, the offer, then the recording."""
    task = asyncio.create_task(flow.run(call.session))
    assert (await call.hear()).sounds == ["closed"]
    assert (await call.hear()).sounds == ["record_offer"]
    return task, await call.recording()


@pytest.mark.parametrize("end", ["#", "silence"])
async def test_a_recorded_complaint_becomes_a_case_whose_code_is_read_back(routing, database, end):
    s, log = database
    call = make_call(routing, home=s.home, is_open=CLOSED, calllog=log)
    task, rec = await up_to_the_recording(call)
    name = rec["name"]
    # What Asterisk is asked for: routing.yaml's limits, '#' ends it, a beep first.
    assert rec == {"name": name, "format": "wav", "maxDurationSeconds": 180, "maxSilenceSeconds": 6,
                   "beep": True, "terminateOn": "#", "ifExists": "overwrite"}
    assert call.session.recording_name == name
    call.recorded(name, 2.0)
    if end == "#":
        # Asterisk ends the recording on '#' and says so; the key alone changes nothing here.
        call.dtmf("#")
        await wait_until(call.idle, 2, "the call to take the '#'")
        assert not task.done() and len(call.ari.requests("POST", "/channels/c1/play/")) == 2
    call.recording_finished(name)
    readback = await call.hear(5)
    code = call.session.rec.case_code
    assert readback.sounds == ["case_code_is", f"digits:{code}", "repeat_offer"]
    call.dtmf("2")  # anything but 1: no repeat
    assert (await call.hear()).sounds == ["thanks"]
    await asyncio.wait_for(task, 5)
    assert ("DELETE", "/channels/c1") in call.ari.sent  # the system hangs up

    r = call.session.rec
    assert (r.disposition, r.hangup_by, r.ended_in) == ("closed", "system", "complaint")
    assert call.events("case") == [{"code": code, "misconduct": False, "anonymous": False}]
    # The recording moved out of Asterisk's spool into the data directory, whole.
    when = r.started_at
    stored = s.home / "recordings" / f"{when:%Y}" / f"{when:%m}" / "c1.wav"
    assert not (call.session.ctx.recording_spool / f"{name}.wav").exists()
    assert seconds(stored) == pytest.approx(2.0)
    case = await cm.Cases(log.engine, routing).get(code)
    assert (case.channel, case.caller, case.call_id, case.category) == ("phone", "0909123456", "c1", "other")
    assert case.recording == str(stored.relative_to(s.home)) and case.recording_seconds == pytest.approx(2.0)
    assert case.status == "received" and not case.inspection and not case.anonymous
    await log.flush()
    row, _, _ = await load_call(log.engine, "c1")
    assert (row.disposition, row.case_code) == ("closed", code)
    assert not cm.spool_dir(s.home).exists() or not any(cm.spool_dir(s.home).iterdir())


async def test_the_code_is_repeated_once_on_request(routing, database):
    s, log = database
    call = make_call(routing, home=s.home, is_open=CLOSED, calllog=log)
    task, rec = await up_to_the_recording(call)
    call.recorded(rec["name"], 1.0)
    call.recording_finished(rec["name"])
    await call.hear(5)
    call.dtmf("1")
    code = call.session.rec.case_code
    assert (await call.hear()).sounds == ["case_code_is", f"digits:{code}"]
    assert (await call.hear()).sounds == ["thanks"]
    await asyncio.wait_for(task, 5)
    assert call.events("code_repeated") == [{}]


async def test_a_misconduct_report_may_stay_anonymous_and_is_flagged_for_inspection(routing, database):
    s, log = database
    call = make_call(routing, home=s.home, calllog=log)
    task = asyncio.create_task(flow.run(call.session))
    await call.playback()  # the greeting
    call.dtmf("9")
    assert (await call.hear()).sounds == ["anonymous_offer"]
    call.dtmf("1")
    assert (await call.hear()).sounds == ["record_misconduct"]
    rec = await call.recording()
    call.recorded(rec["name"], 1.5)
    call.recording_finished(rec["name"])
    await call.hear(5)
    call.dtmf("2")
    await call.hear()
    await asyncio.wait_for(task, 5)
    case = await cm.Cases(log.engine, routing).get(call.session.rec.case_code)
    assert case.category == "misconduct" and case.anonymous and case.inspection
    assert case.caller == "0909123456"  # kept for the Home Affairs office, hidden from agencies
    assert [e.action for e in case.history] == ["receive", "flag_inspection"]
    assert call.session.rec.disposition == "complaint"


async def test_without_a_database_the_case_is_spooled_and_its_code_still_read_back(routing, tmp_path):
    home = tmp_path / "home"
    call = make_call(routing, home=home, is_open=CLOSED)  # the fake call log has no database
    task, rec = await up_to_the_recording(call)
    call.recorded(rec["name"], 1.0)
    call.recording_finished(rec["name"])
    readback = await call.hear(5)
    code = call.session.rec.case_code
    assert readback.sounds == ["case_code_is", f"digits:{code}", "repeat_offer"]
    call.dtmf("2")
    await call.hear()
    await asyncio.wait_for(task, 5)
    (spooled,) = cm.spool_dir(home).glob("*.json")
    data = json.loads(spooled.read_text(encoding="utf-8"))
    assert spooled.stem == data["code"] == code and len(code) == 6
    assert data["call_id"] == "c1" and data["category"] == "other" and (home / data["recording"]).is_file()


async def test_a_caller_hanging_up_mid_recording_keeps_what_was_said(routing, database):
    s, log = database
    call = make_call(routing, home=s.home, is_open=CLOSED, calllog=log)
    task, rec = await up_to_the_recording(call)
    played = len(call.ari.requests("POST", "/channels/c1/play/"))
    call.recorded(rec["name"], 1.5)
    call.hangup()
    call.recording_finished(rec["name"])  # Asterisk closes the file when the channel goes
    await asyncio.wait_for(task, 5)
    r = call.session.rec
    assert (r.disposition, r.hangup_by, r.ended_in) == ("closed", "caller", "complaint")
    case = await cm.Cases(log.engine, routing).get(r.case_code)
    assert case.recording_seconds == pytest.approx(1.5) and (s.home / case.recording).is_file()
    # Nobody is left to hear the code: nothing more played, nothing to hang up.
    assert len(call.ari.requests("POST", "/channels/c1/play/")) == played
    assert ("DELETE", "/channels/c1") not in call.ari.sent


async def test_a_failed_recording_opens_no_case_and_says_so(routing, tmp_path):
    call = make_call(routing, home=tmp_path / "home", is_open=CLOSED)
    task, rec = await up_to_the_recording(call)
    call.recording_failed(rec["name"], cause="disk full")
    assert (await call.hear()).sounds == ["no_recording", "goodbye"]
    await asyncio.wait_for(task, 5)
    assert call.events("recording_failed") == [{"cause": "disk full"}]
    assert call.events("recording_empty") == [{}] and call.session.rec.case_code is None
    assert not cm.spool_dir(tmp_path / "home").exists()
