"""Issue 26: conversation recording. Real Asterisk records the call's bridge while a SIPp desk
phone and a SIPp caller both send speech; the file lands under TONGDAI_HOME, private, as long as
the talk and not silence; the notice is played; retention deletes old ones but those of open or
flagged cases; a recording deleted mid-call leaves the call up and logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import subprocess
import sys

import aiohttp
import pytest

from ivr.call.session import State
from ivr.config import routing as rt
from ivr.records import cases as cm
from ivr.records import recordings as files
from ivr.testing import wait_until

from .conftest import REPO_ROOT, basic_auth, kinds, phones, place, routing_text_for_tests, talking

pytestmark = pytest.mark.e2e

ON = "  enabled: false               # true"


@contextlib.contextmanager
def recording(ivr, *, enabled: bool = True, announce: bool = True):
    """The controller's routing with recording on (or off) for the block; new calls take it."""
    text = routing_text_for_tests()
    assert ON in text
    if enabled:
        text = text.replace(ON, ON.replace("false", "true "), 1)
    if not announce:
        text = text.replace("  announce: true  ", "  announce: false ", 1)
    ctl = ivr.service.controller
    before = ctl.routing
    ctl.routing = rt.loads(text)
    assert ctl.routing.recording.enabled is enabled and ctl.routing.recording.announce is announce
    try:
        yield ctl.routing
    finally:
        ctl.routing = before


def rms(path) -> float:
    """sox's RMS amplitude of a sound file (0 is silence, 1 full scale)."""
    out = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True, check=True).stderr
    return float(re.search(r"RMS\s+amplitude:\s+([0-9.]+)", out).group(1))


def cli_env(ivr) -> dict:
    env = dict(os.environ)
    env.update({k: v for k, v in ivr.settings.env.items() if k.startswith("TONGDAI_")})
    return env


async def tongdai(ivr, *args, timeout=60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr", *args, cwd=REPO_ROOT, env=cli_env(ivr),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def exported(ivr, *call_ids: str) -> dict[str, dict]:
    code, out, err = await tongdai(ivr, "export", "calls", "--format", "jsonl")
    assert code == 0, err
    rows = {r["call_id"]: r for r in map(json.loads, out.splitlines())}
    return {cid: rows[cid] for cid in call_ids}


def spool_of(ivr):
    return ivr.service.controller.context.recording_spool


async def test_an_answered_call_is_recorded_under_home_private_as_long_as_the_talk_and_not_silent(ivr):
    home = ivr.settings.home
    with recording(ivr):
        # The desk phone talks (SIPp's speech) for 6 s and hangs up; the caller talks after its key.
        async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 6000})}):
            res, (call, events, legs) = await place(ivr, "4", hold_ms=40000, wait_for_bye_ms=40000)
    assert res.answered and call.disposition == "answered" and call.answered_by == "2401", kinds(events)
    # The notice after the greeting (the key pressed during the greeting is still the choice).
    assert "recording_notice" in kinds(events)
    assert ["recording_notice"] in [e.detail["sounds"] for e in events if e.kind == "playback"]
    ks = kinds(events)
    assert ks.index("playback") < ks.index("recording_notice") < ks.index("menu_choice") < ks.index("recording_started")
    assert "recording_failed" not in ks and "recording_lost" not in ks
    # The call log and the export name the file, relative to TONGDAI_HOME.
    assert call.recording == files.conversation_path(call.id, call.started_at)
    row = (await exported(ivr, call.id))[call.id]
    assert row["recording"] == call.recording and row["recording_s"] == call.recording_s
    assert row["recording_deleted_at"] is None
    path = home / row["recording"]
    assert path.is_file() and path.resolve().is_relative_to(home.resolve())
    assert stat.S_IMODE(path.stat().st_mode) in (0o600, 0o640)
    assert stat.S_IMODE(path.parent.stat().st_mode) in (0o700, 0o750)
    # As long as the talk, within a second, and both parties' speech in it: not silence.
    seconds = files.wav_seconds(path)
    assert abs(seconds - call.talk_s) < 1.0, (seconds, call.talk_s)
    assert call.talk_s > 5 and abs(call.recording_s - seconds) < 0.01
    level = rms(path)
    assert level > 0.01, level
    # Nothing is left in Asterisk's spool, which nobody but Asterisk and its group may enter.
    name = next(e.detail["name"] for e in events if e.kind == "recording_started")
    assert not (spool_of(ivr) / f"{name}.wav").exists()
    assert stat.S_IMODE(spool_of(ivr).stat().st_mode) & 0o007 == 0
    print(f"recorded {seconds:.2f} s of {call.talk_s:.2f} s talk: {path.stat().st_size} bytes, "
          f"{path.stat().st_size / seconds * 3600 / 2**20:.1f} MB/hour, RMS {level:.3f}")
    # `tongdai status` (the controller answers) looks at the disk the recordings are on.
    code, out, err = await tongdai(ivr, "status", "--json")
    disk = json.loads(out)["recordings_disk"]
    assert code == 0 and disk["path"] == str(home / "recordings") and disk["free_mb"] > 0, (out, err)
    assert json.loads(out)["source"] == "controller"


async def test_with_recording_off_no_file_and_no_notice(ivr):
    with recording(ivr, enabled=False):
        async with phones(ivr, {"2301": ("answer", {"hangup_after_ms": 2000})}):
            res, (call, events, legs) = await place(ivr, "3", hold_ms=30000, wait_for_bye_ms=30000)
    assert call.disposition == "answered" and call.talk_s > 1.5
    assert call.recording is None and call.recording_s is None
    assert not [k for k in kinds(events) if k.startswith("recording")]
    assert not (ivr.settings.home / files.conversation_path(call.id, call.started_at)).exists()
    assert (await exported(ivr, call.id))[call.id]["recording"] is None


async def test_notice_off_records_without_the_notice(ivr):
    with recording(ivr, announce=False):
        async with phones(ivr, {"2301": ("answer", {"hangup_after_ms": 2000})}):
            res, (call, events, legs) = await place(ivr, "3", hold_ms=30000, wait_for_bye_ms=30000)
    assert call.disposition == "answered" and call.recording, kinds(events)
    assert "recording_notice" not in kinds(events)
    assert ["recording_notice"] not in [e.detail["sounds"] for e in events if e.kind == "playback"]


async def test_deleting_the_live_recording_mid_call_leaves_the_call_up_and_logged(ivr):
    s, sec = ivr.settings, ivr.pbx.secrets
    ctl = ivr.service.controller
    with recording(ivr, announce=False):
        async with phones(ivr, {"2601": ("answer", {"hangup_after_ms": 7000})}):
            call = asyncio.create_task(place(ivr, "6", hold_ms=40000, wait_for_bye_ms=40000))
            await wait_until(lambda: talking(ctl) and any(
                e[1] == "recording_started" for x in ctl.sessions.values() for e in x.rec.events), 30, "the recording")
            session = next(x for x in ctl.sessions.values() if x.state is State.BRIDGED)
            name = next(e[2]["name"] for e in session.rec.events if e[1] == "recording_started")
            await asyncio.sleep(1)  # a second of conversation recorded, then it goes
            async with aiohttp.ClientSession(headers=basic_auth(sec.ari_user, sec.ari_password)) as http:
                async with http.delete(f"http://127.0.0.1:{s.ari_port}/ari/recordings/live/{name}") as r:
                    assert r.status == 204, await r.text()
            await wait_until(lambda: any(e[1] == "recording_ended" for e in session.rec.events), 10, "Asterisk's report")
            assert session.state is State.BRIDGED and not call.done()  # still talking
            res, (row, events, legs) = await call
    assert res.answered and row.disposition == "answered" and row.hangup_by == "agent"
    assert row.talk_s > 6, row.talk_s  # the conversation went on to the desk phone's hang-up
    ks = kinds(events)
    assert ks.index("recording_started") < ks.index("recording_ended") < ks.index("hangup")
    assert [e.detail for e in events if e.kind == "recording_lost"] == [{"reason": "no file in the spool"}]
    assert row.recording is None
    assert not (spool_of(ivr) / f"{name}.wav").exists()


async def test_prune_in_the_future_keeps_open_and_flagged_cases_and_exports_still_list_the_calls(ivr):
    home = ivr.settings.home
    with recording(ivr, announce=False):
        async with phones(ivr, {ext: ("answer", {"hangup_after_ms": 2000}) for ext in ("2101", "2301", "2801")}):
            got = await asyncio.gather(*(place(ivr, d, hold_ms=30000, wait_for_bye_ms=30000) for d in "138"))
    (open_call, _, _), (flagged_call, _, _), (plain_call, _, _) = (row for _, row in got)
    for c in (open_call, flagged_call, plain_call):
        assert c.recording and (home / c.recording).is_file(), c.id
    # Staff open cases about two of the conversations: one still being handled, one closed but
    # sent to the inspection team.
    svc = cm.Cases(ivr.service.engine, ivr.routing)
    opened = await svc.create(cm.NewCase(channel="phone", caller=open_call.caller, call_id=open_call.id))
    flagged = await svc.create(cm.NewCase(channel="phone", caller=flagged_call.caller, call_id=flagged_call.id))
    await svc.flag_inspection(flagged.code, actor="test", reason="lời tư vấn bị khiếu nại")
    await svc.act(flagged.code, "close", actor="test", reason="duplicate")
    assert (await svc.get(opened.code)).status == "received"

    code, out, err = await tongdai(ivr, "recordings", "prune", "--as-of", "2099-01-01")
    assert code == 0, err
    assert not (home / plain_call.recording).exists()
    assert (home / open_call.recording).is_file() and (home / flagged_call.recording).is_file()
    rows = await exported(ivr, open_call.id, flagged_call.id, plain_call.id)  # the calls are still there
    assert rows[plain_call.id]["recording"] is None and rows[plain_call.id]["recording_deleted_at"]
    assert rows[plain_call.id]["recording_s"] == plain_call.recording_s  # what it was stays known
    for c in (open_call, flagged_call):
        assert rows[c.id]["recording"] == c.recording and rows[c.id]["recording_deleted_at"] is None
    # The console's look-up says the same.
    gone = await files.call_recording(ivr.service.engine, home, plain_call.id)
    kept = await files.call_recording(ivr.service.engine, home, flagged_call.id)
    assert gone.state == "deleted" and kept.state == "available"
    assert kept.cases[0].code == flagged.code and kept.cases[0].inspection
