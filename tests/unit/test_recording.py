"""Conversation recording on ivr.testing's fakes: the bridge recorded from the answer until a
hang-up, the file stored privately under TONGDAI_HOME, every failure an event and never the
call's end; the notice after the greeting; the look-up a player (the console) uses."""

from __future__ import annotations

import asyncio
import datetime as dt
import grp
import os
import stat
import wave
from pathlib import Path

import pytest

from ivr.call import bridge, recording
from ivr.call.prompt import PromptResult
from ivr.call.session import State
from ivr.config import routing as rt
from ivr.pbx.ari import AriError
from ivr.records import recordings as files
from ivr.records.calllog import LegRecord
from ivr.testing import FakeAri, make_call, wait_until
from tests.paths import REPO_ROOT

TEXT = (REPO_ROOT / "routing.yaml").read_text(encoding="utf-8")
ROUTING = rt.loads(TEXT.replace("  enabled: false               # true", "  enabled: true # true", 1))


def write_wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x00" * int(8000 * seconds))


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def other_gid() -> int:
    """A group this process is not running as (root may give files to any group)."""
    mine = os.getegid()
    for g in grp.getgrall():
        if g.gr_gid != mine:
            return g.gr_gid
    pytest.skip("no second group on this machine")


# ------------------------------------------------------------------------------ the file


def test_store_copies_into_a_private_file_and_empties_the_spool(tmp_path):
    home, spool = tmp_path / "home", tmp_path / "spool"
    write_wav(spool / "tongdai-x.wav", 2.5)
    os.chmod(spool / "tongdai-x.wav", 0o644)  # as Asterisk leaves it: readable by all
    (home / "recordings").mkdir(parents=True, mode=0o755)  # made wide by an older version
    os.chmod(home / "recordings", 0o755)
    rel = files.conversation_path("1765432100.42", dt.datetime(2026, 12, 31, 20, tzinfo=dt.timezone.utc))
    assert rel == "recordings/calls/2026/12/1765432100.42.wav"
    seconds = files.store(spool / "tongdai-x.wav", home, rel, None)
    assert seconds == 2.5
    dest = home / rel
    assert mode(dest) == 0o600 and dest.stat().st_uid == os.geteuid()
    for d in (home / "recordings", home / "recordings/calls", home / "recordings/calls/2026", dest.parent):
        assert mode(d) == 0o700, d
    assert not (spool / "tongdai-x.wav").exists()
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary file left


def test_store_for_a_group_and_a_failed_copy_keeps_the_spool_file(tmp_path):
    home, spool = tmp_path / "home", tmp_path / "spool"
    gid = other_gid()
    write_wav(spool / "a.wav", 1)
    rel = "recordings/calls/2026/12/a.wav"
    files.store(spool / "a.wav", home, rel, gid)
    assert mode(home / rel) == 0o640 and (home / rel).stat().st_gid == gid
    assert mode(home / "recordings/calls/2026/12") == 0o750 and (home / "recordings/calls").stat().st_gid == gid
    # The month's folder cannot be made (a file in the way): OSError, and the spool keeps it.
    write_wav(spool / "b.wav", 1)
    (home / "recordings/calls/2027").write_text("in the way")
    with pytest.raises(OSError):
        files.store(spool / "b.wav", home, "recordings/calls/2027/01/b.wav", None)
    assert (spool / "b.wav").exists()


def test_conversation_path_is_one_file_name_whatever_the_id():
    when = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    assert files.conversation_path("../../etc/passwd", when) == "recordings/calls/2026/01/_.._etc_passwd.wav"


# ------------------------------------------------------------------------------ the call


def call_in_bridge(tmp_path: Path, **kw):
    c = make_call(ROUTING, home=tmp_path / "home", recording_spool=tmp_path / "spool", state=State.BRIDGED, **kw)
    c.session.legs["leg1"] = LegRecord("leg1", "2401", c.session.rec.started_at)
    c.session.live_legs.add("leg1")
    return c


def bridge_id(c) -> str:
    return next(p.split("/")[2] for p in c.ari.requests("POST", "/bridges/") if p.endswith("/record"))


def agent_hangs_up(c) -> None:
    c.event("StasisEnd", channel={"id": "leg1"})


async def run_bridge(c, record=True):
    return asyncio.create_task(bridge.run(c.session, "leg1", "2401", record=record))


async def test_the_bridge_is_recorded_from_the_answer_until_the_agent_hangs_up(tmp_path):
    c = call_in_bridge(tmp_path)
    task = await run_bridge(c)
    await wait_until(lambda: c.ari.requests("POST", "/bridges/"), what="the bridge")
    path = await wait_until(lambda: [p for p in c.ari.requests("POST") if p.endswith("/record")], what="the record request")
    b = bridge_id(c)
    params = c.ari.params[path[0]]
    name = params["name"]
    assert params["format"] == "wav" and params["ifExists"] == "overwrite" and params["beep"] is False
    assert c.owners[b] is c.session  # its events (target_uri bridge:<id>) reach the call
    # The recording was asked for after both were in the bridge, not before.
    assert c.ari.sent.index(("POST", f"/bridges/{b}/addChannel")) < c.ari.sent.index(("POST", path[0]))
    c.event("RecordingStarted", recording={"name": name, "target_uri": f"bridge:{b}"})
    write_wav(tmp_path / "spool" / f"{name}.wav", 42.0)
    agent_hangs_up(c)
    await wait_until(lambda: ("POST", f"/recordings/live/{name}/stop") in c.ari.sent, what="the stop")
    assert not task.done()  # waits for Asterisk to close the file
    c.dtmf("3")  # an early survey key: it waits for the survey, in order
    c.event("RecordingFinished", recording={"name": name, "target_uri": f"bridge:{b}"})
    assert await asyncio.wait_for(task, 2) == "agent"
    assert c.session.queue.get_nowait()["digit"] == "3"
    await asyncio.gather(*c.session.in_flight)
    rec = c.session.rec
    assert rec.recording == files.conversation_path("c1", rec.started_at) and rec.recording_s == 42.0
    assert mode(c.session.ctx.home / rec.recording) == 0o600
    assert [k for _, k, _ in rec.events if k.startswith("recording")] == ["recording_started", "recording_stored"]
    assert rec.row()["recording"] == rec.recording and rec.row()["recording_s"] == 42.0


async def test_the_caller_hanging_up_stops_the_recording_too(tmp_path):
    c = call_in_bridge(tmp_path)
    task = await run_bridge(c)
    await wait_until(lambda: [p for p in c.ari.requests("POST") if p.endswith("/record")], what="the record request")
    name = c.ari.params[[p for p in c.ari.requests("POST") if p.endswith("/record")][0]]["name"]
    write_wav(tmp_path / "spool" / f"{name}.wav", 3.0)
    c.hangup()
    await wait_until(lambda: ("POST", f"/recordings/live/{name}/stop") in c.ari.sent, what="the stop")
    c.event("RecordingFinished", recording={"name": name})
    assert await asyncio.wait_for(task, 2) == "caller"
    await asyncio.gather(*c.session.in_flight)
    assert c.session.rec.recording_s == 3.0


async def test_no_recording_when_the_branch_or_the_routing_says_no(tmp_path):
    c = call_in_bridge(tmp_path)
    task = await run_bridge(c, record=False)
    await wait_until(lambda: c.ari.requests("POST", "/bridges/"), what="the bridge")
    agent_hangs_up(c)
    assert await asyncio.wait_for(task, 2) == "agent"
    assert not [p for p in c.ari.requests() if "record" in p]
    assert c.session.rec.recording is None and not c.session.in_flight
    off = rt.loads(TEXT.replace("  enabled: false               # true", "  enabled: true # true", 1)
                   .replace("    strategy: leastrecent\n", "    strategy: leastrecent\n    recording: false\n", 1))
    assert [off.records(b) for b in off.branches] == [True] * 6 + [False, True]
    assert not any(rt.loads(TEXT).records(b) for b in ROUTING.branches)


async def test_a_recording_that_cannot_start_never_fails_the_call(tmp_path):
    ari = FakeAri()
    c = call_in_bridge(tmp_path, ari=ari)
    ari.gate = lambda m, p: p.endswith("/record")  # learn the bridge id first
    task = await run_bridge(c)
    path = await wait_until(lambda: [p for p in ari.requests("POST") if p.endswith("/record")], what="the record request")
    ari.fail[("POST", path[0])] = AriError(422, "POST", path[0], "specified format is unknown on this system")
    ari.open()
    await wait_until(lambda: [e for e in c.events("recording_failed")], what="the failure noted")
    assert c.events("recording_failed") == [{"stage": "start", "error": str(ari.fail[("POST", path[0])])}]
    assert not task.done()  # the conversation goes on
    agent_hangs_up(c)
    assert await asyncio.wait_for(task, 2) == "agent"
    assert not [p for p in ari.requests() if p.startswith("/recordings/")]  # nothing to stop
    assert c.session.rec.recording is None


async def test_a_recording_deleted_mid_call_leaves_the_call_up_and_says_so(tmp_path):
    c = call_in_bridge(tmp_path)
    task = await run_bridge(c)
    path = await wait_until(lambda: [p for p in c.ari.requests("POST") if p.endswith("/record")], what="the record request")
    name = c.ari.params[path[0]]["name"]
    # DELETE /recordings/live/<name> by someone else: Asterisk removes the file, then reports it finished.
    c.event("RecordingFinished", recording={"name": name, "state": "done"})
    await wait_until(lambda: c.events("recording_ended"), what="the early end noted")
    assert not task.done() and c.session.state is State.BRIDGED
    agent_hangs_up(c)
    assert await asyncio.wait_for(task, 2) == "agent"
    await asyncio.gather(*c.session.in_flight)
    assert ("POST", f"/recordings/live/{name}/stop") not in c.ari.sent  # nothing left to stop
    assert c.session.rec.recording is None
    assert c.events("recording_lost") == [{"reason": "no file in the spool"}]


async def test_a_failed_stop_and_a_failed_recording_are_events(tmp_path):
    c = call_in_bridge(tmp_path)
    task = await run_bridge(c)
    path = await wait_until(lambda: [p for p in c.ari.requests("POST") if p.endswith("/record")], what="the record request")
    name = c.ari.params[path[0]]["name"]
    stop = f"/recordings/live/{name}/stop"
    c.ari.fail[("POST", stop)] = AriError(404, "POST", stop, "Recording not found")
    agent_hangs_up(c)
    assert await asyncio.wait_for(task, 3) == "agent"
    await asyncio.gather(*c.session.in_flight)
    assert [e["error"] for e in c.events("recording_stop_failed")] == [str(c.ari.fail[("POST", stop)])]
    assert c.events("recording_lost")

    c = call_in_bridge(tmp_path / "2")
    task = await run_bridge(c)
    path = await wait_until(lambda: [p for p in c.ari.requests("POST") if p.endswith("/record")], what="the record request")
    name = c.ari.params[path[0]]["name"]
    c.event("RecordingFailed", recording={"name": name, "cause": "disk full"})
    c.event("RecordingFailed", recording={"name": "someone-else"})  # another recording: not ours, ignored
    agent_hangs_up(c)
    assert await asyncio.wait_for(task, 2) == "agent"
    await asyncio.gather(*c.session.in_flight)
    assert c.events("recording_failed") == [{"stage": "recording", "cause": "disk full"}]


async def test_wait_aside_keeps_every_other_event_in_order(tmp_path):
    c = make_call(ROUTING)
    for d in "12":
        c.dtmf(d)
    waiting = asyncio.create_task(c.session.wait_aside(lambda ev: ev.get("type") == "X", 2))
    await asyncio.sleep(0)  # let wait_aside start before more events arrive
    c.dtmf("3")
    c.event("X")
    c.dtmf("4")
    assert (await waiting)["type"] == "X"
    assert [c.session.queue.get_nowait()["digit"] for _ in range(4)] == ["1", "2", "3", "4"]
    assert c.session.queue.empty()
    c2 = make_call(ROUTING)
    c2.dtmf("5")
    assert await c2.session.wait_aside(lambda ev: False, 0.05) is None
    assert c2.session.queue.get_nowait()["digit"] == "5"


# ------------------------------------------------------------------------------ the notice


async def test_the_notice_plays_in_full_and_keeps_a_key_pressed_during_it():
    c = make_call(ROUTING, state=State.GREETING)
    task = asyncio.create_task(recording.announce(c.session, PromptResult("timeout")))
    play = await wait_until(lambda: c.ari.requests("POST", "/channels/c1/play/"), what="the notice")
    assert c.ari.params[play[0]]["media"] == "sound:tongdai/recording_notice"
    c.dtmf("4")
    c.dtmf("7")
    await asyncio.sleep(0.01)  # not synchronisation: time for a wrong DELETE to be sent
    assert not c.ari.requests("DELETE", "/playbacks/")  # not cut short
    c.playback_finished(play[0].rsplit("/", 1)[1])
    assert await asyncio.wait_for(task, 2) == PromptResult("digits", "4")
    assert c.events("recording_notice") == [{}]
    # A choice made during the greeting stands; the notice still plays.
    c = make_call(ROUTING, state=State.GREETING)
    task = asyncio.create_task(recording.announce(c.session, PromptResult("digits", "2")))
    play = await wait_until(lambda: c.ari.requests("POST", "/channels/c1/play/"), what="the notice")
    c.playback_finished(play[0].rsplit("/", 1)[1])
    assert await asyncio.wait_for(task, 2) == PromptResult("digits", "2")


async def test_hanging_up_during_the_notice_is_a_hangup():
    from ivr.call.errors import CallerHangup

    c = make_call(ROUTING, state=State.GREETING)
    task = asyncio.create_task(recording.announce(c.session, PromptResult("timeout")))
    await wait_until(lambda: c.ari.requests("POST", "/channels/c1/play/"), what="the notice")
    c.hangup()
    with pytest.raises(CallerHangup):
        await asyncio.wait_for(task, 2)
    assert not c.events("recording_notice")


# ------------------------------------------------------------------------------ the look-up


async def test_call_recording_look_up_for_a_player(db_settings):
    """What the console needs before it lets someone listen: the state of the file, the call's
    agency, the cases citing the call (their agencies, status, inspection flag)."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from ivr.models import Call
    from ivr.records import cases as cm
    from ivr.records import db

    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    try:
        t0 = dt.datetime(2026, 11, 3, 2, tzinfo=dt.timezone.utc)
        rel = files.conversation_path("c-ok", t0)
        write_wav(s.home / rel, 5)
        async with async_sessionmaker(engine).begin() as ses:
            ses.add_all([
                Call(id="c-ok", caller="0909", hotline="1022", started_at=t0, agency_code="VPUBND", answered_by="2401",
                     disposition="answered", recording=rel, recording_s=5.0),
                Call(id="c-gone", caller="0909", hotline="1022", started_at=t0, disposition="answered",
                     recording=files.conversation_path("c-gone", t0), recording_s=9.0, recording_deleted_at=t0),
                Call(id="c-lost", caller="0909", hotline="1022", started_at=t0, disposition="answered",
                     recording=files.conversation_path("c-lost", t0)),
                Call(id="c-evil", caller="0909", hotline="1022", started_at=t0, disposition="answered",
                     recording="recordings/../secrets.json"),
                Call(id="c-none", caller="0909", hotline="1022", started_at=t0, disposition="abandoned"),
            ])
        (s.home / "secrets.json").write_text("{}")
        svc = cm.Cases(engine, ROUTING)
        case = await svc.create(cm.NewCase(channel="phone", caller="0909", call_id="c-ok", agency_code="VPUBND",
                                           agency_name="Văn phòng"))
        await svc.act(case.code, "classify", actor="t", category="procedure")
        await svc.act(case.code, "assign", actor="t", agencies=["STP", "SNV"])
        await svc.flag_inspection(case.code, actor="t", reason="kiểm tra")

        got = await files.call_recording(engine, s.home, "c-ok")
        assert got is not None and got.state == "available" and got.path == (s.home / rel).resolve()
        assert (got.relative, got.seconds, got.agency_code, got.answered_by) == (rel, 5.0, "VPUBND", "2401")
        assert got.cases == (files.LinkedCase(case.code, "assigned", True, "VPUBND", ("STP", "SNV")),)
        gone = await files.call_recording(engine, s.home, "c-gone")
        assert gone is not None and gone.state == "deleted" and gone.path is None and gone.seconds == 9.0
        assert (await files.call_recording(engine, s.home, "c-lost")).state == "missing"
        assert (await files.call_recording(engine, s.home, "c-evil")).path is None  # never outside recordings/
        assert await files.call_recording(engine, s.home, "c-none") is None
        assert await files.call_recording(engine, s.home, "no-such-call") is None
    finally:
        await engine.dispose()


def test_a_voice_complaint_is_stored_privately_too(tmp_path):
    from ivr.call import complaint

    c = make_call(ROUTING, home=tmp_path / "home", recording_spool=tmp_path / "spool", state=State.COMPLAINT)
    write_wav(tmp_path / "spool" / "tongdai-c1-rec1.wav", 4)
    os.chmod(tmp_path / "spool" / "tongdai-c1-rec1.wav", 0o644)
    path, seconds = complaint._collect(c.session, "tongdai-c1-rec1")
    when = c.session.rec.started_at
    assert path == tmp_path / "home" / "recordings" / f"{when:%Y}" / f"{when:%m}" / "c1.wav"
    assert seconds == 4.0 and mode(path) == 0o600 and mode(path.parent) == 0o700
    assert not (tmp_path / "spool" / "tongdai-c1-rec1.wav").exists()
    assert c.events("recorded") == [{"file": str(path.relative_to(tmp_path / "home")), "seconds": 4.0}]


# ------------------------------------------------------------------------------ the disk


def test_status_warns_when_the_recordings_disk_is_low(settings_factory, monkeypatch):
    from click.testing import CliRunner

    from ivr import status
    from ivr.cli import main

    roomy = settings_factory(TONGDAI_RECORDINGS_MIN_FREE_MB="0")
    disk = status.recordings_disk(roomy)
    assert disk["low"] is False and disk["free_mb"] > 0 and disk["min_free_mb"] == 0
    assert round(status.MB_PER_HOUR, 2) == 54.93  # 8 kHz 16-bit mono WAV: 16 000 bytes a second
    assert disk["hours_left"] == round(disk["free_mb"] / status.MB_PER_HOUR, 1)
    tight = settings_factory(TONGDAI_RECORDINGS_MIN_FREE_MB=str(10 ** 12))  # more than any disk
    assert status.recordings_disk(tight)["low"] is True
    # The command, with no controller running: the warning comes first, the free space last.
    for k, v in tight.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TONGDAI_AMI_PORT", "1")  # nothing listens: the AMI part gives up at once
    res = CliRunner().invoke(main, ["status"])
    lines = res.output.splitlines()
    assert lines[0].startswith("CẢNH BÁO: ổ lưu bản ghi âm") and "TONGDAI_RECORDINGS_MIN_FREE_MB" in lines[0], res.output
    assert lines[-1].startswith("Ổ lưu bản ghi âm: còn ")
    res = CliRunner().invoke(main, ["status", "--json"])
    assert '"low": true' in res.output
    with pytest.raises(SystemExit):
        settings_factory(TONGDAI_RECORDINGS_MIN_FREE_MB="-1")
    with pytest.raises(SystemExit):
        settings_factory(TONGDAI_RECORDINGS_GROUP="no-such-group-here")
    assert settings_factory(TONGDAI_RECORDINGS_GROUP=grp.getgrgid(os.getegid()).gr_name).recordings_gid == os.getegid()
