"""Issue 24: no call lost or unlogged across restarts of Asterisk or of the controller.

These tests kill Asterisk and the controller, so they run on an Asterisk of their own (own data
directory, own free ports), never on the session's: other tests and other developers' runs are
not disturbed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import sys
import time

import pytest

from ivr.config import hours as cal
from ivr.config import routing as rt
from ivr.pbx import preflight, sipp
from ivr.pbx.asterisk import Layout
from ivr.records import db
from ivr.server import Service
from ivr.testing import wait_until
from tests.paths import REPO_ROOT

from .conftest import (
    TEST_PROMPTS,
    Ivr,
    Records,
    build_sounds,
    new_caller,
    pbx_settings,
    phones,
    place,
    routing_text_for_tests,
    start_pbx,
    wait_row,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def lone(tmp_path_factory):
    """A private Asterisk with the test prompts, a migrated database and the test routing."""
    home = tmp_path_factory.mktemp("tongdai-no-call-lost")
    s = pbx_settings(home, sip=26160, ari=29188, ami=26138, rtp=(32000, 32999))
    routing = rt.loads(routing_text_for_tests())
    pbx = start_pbx(s, routing)
    layout = pbx.layout
    await asyncio.to_thread(build_sounds, pbx)
    await asyncio.to_thread(db.upgrade, s)
    cal.write_override(s.hours_override_path, "open", None, dt.datetime.now(dt.timezone.utc))
    yield pbx
    layout.stop()


async def controller(pbx) -> Ivr:
    """The controller, in process, on the private Asterisk."""
    service = Service(pbx.settings, strict=True, routing=pbx.routing)
    await service.start()
    return Ivr(pbx, service, pbx.routing, Records(), {})


async def restart(ivr: Ivr) -> None:
    """A new controller in place of the stopped one (``place`` follows ``ivr.service``)."""
    ivr.service = Service(ivr.pbx.settings, strict=True, routing=ivr.routing)
    await ivr.service.start()


def restart_asterisk(pbx) -> float:
    """SIGKILL Asterisk (a crash), start it again; return when it was fully booted (time.monotonic())."""
    os.kill(pbx.layout.pid(), signal.SIGKILL)
    pbx.layout.stop()  # reaps it and clears the PID file
    pbx.layout.start()  # returns once `core waitfullybooted` has
    return time.monotonic()


async def test_a_call_two_seconds_after_asterisk_restarted_reaches_the_desk_phone(lone):
    ivr = await controller(lone)
    try:
        ari = ivr.service._ari
        booted = await asyncio.to_thread(restart_asterisk, lone)
        await wait_until(ari.connected.is_set, 20, "the controller to be ready again")
        assert ari.connected_at > ari.lost_at
        async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 1000})}):
            await wait_until(lambda: time.monotonic() >= booted + 2, 10, "two seconds after the boot")
            res, (row, events, legs) = await place(ivr, "4", hold_ms=20000, wait_for_bye_ms=20000)
        assert res.answered
        assert row.disposition == "answered" and row.answered_by == "2401", [e.kind for e in events]
    finally:
        await ivr.service.stop(5)


async def rows_of(ivr, caller: str) -> list:
    from sqlalchemy import select

    from ivr.models import Call

    await ivr.service.calllog.flush()
    async with ivr.service.engine.connect() as conn:
        return (await conn.execute(select(Call).where(Call.caller == caller))).all()


async def test_callers_arriving_while_the_controller_is_away_are_held_then_served(lone):
    ivr = await controller(lone)
    await ivr.service.stop(5)
    stopped = time.monotonic()
    back = stopped + 10  # the controller is away for ten seconds
    async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 1000})}):
        # One caller gives up after three seconds on hold: no controller ever sees that call.
        quitter = new_caller()
        gave_up = asyncio.create_task(sipp.call(**lone.peer(), to=ivr.routing.hotline.number, from_user=quitter,
                                                hold_ms=3000, timeout=30))
        callers = [new_caller() for _ in range(3)]
        calls = []
        for i, caller in enumerate(callers):
            await wait_until(lambda i=i: time.monotonic() >= stopped + 2 + i, 10, f"call {i + 1}'s turn")
            # Held calls are answered by the dialplan at once; the menu digit comes once the
            # controller is back and greets them (digits sent meanwhile are not heard by anyone).
            digit_at = int((back + 2.5 - time.monotonic()) * 1000)
            calls.append(asyncio.create_task(place(ivr, "4", caller=caller, digits_at_ms=digit_at,
                                                   hold_ms=40000, wait_for_bye_ms=40000, timeout=80)))
        await wait_until(lambda: time.monotonic() >= back, 15, "ten seconds without a controller")
        assert (await gave_up).answered  # by the hold
        await restart(ivr)
        try:
            results = await asyncio.gather(*calls)
            quit_rows = await wait_until(lambda: rows_of(ivr, quitter), 15, "the call that gave up to be logged")
        finally:
            await ivr.service.stop(5)
    for res, (row, events, _legs) in results:
        assert res.answered
        assert row.disposition == "answered" and row.answered_by == "2401", [(e.kind, e.detail) for e in events]
        assert 5 < row.held_s < 20, row.held_s
        assert row.wait_s >= row.held_s  # the call began when it reached Asterisk, before the hold
        assert [e.kind for e in events][:2] == ["arrived", "held"]
    (quit_row,) = quit_rows
    assert quit_row.disposition == "controller_unavailable" and quit_row.ended_in == "held"
    assert quit_row.hangup_by == "caller" and 2 < quit_row.held_s < 6
    assert quit_row.started_at <= quit_row.ended_at
    # Another restart reads Asterisk's record again: still one row per call.
    await restart(ivr)
    try:
        await ivr.service.cel.sync()
        for caller in callers + [quitter]:
            assert len(await rows_of(ivr, caller)) == 1
    finally:
        await ivr.service.stop(5)


# ----------------------------------------------------------------------------------------------
# `tongdai run` (what `make run` runs), as its own process on its own data directory and ports.

class Run:
    """A `tongdai run` process and its output, line by line."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Run:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr", "run", "--grace", "5", cwd=REPO_ROOT, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def saw(self, text: str) -> list[str]:
        return [ln for ln in self.lines if text in ln]

    def controller_pid(self) -> int:
        line = self.saw("supervise: controller started")[-1]
        return int(line.split("(PID ")[1].split(")")[0])

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        await self._reader
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self._reader


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


async def call_check(env: dict[str, str]) -> str:
    """The operator's check (`tongdai call --digits 4`): a real call to a simulated desk phone."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr", "call", "--digits", "4", "--talk", "1", cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "answered" in text and "2401" in text, text
    return text


async def test_tongdai_run_restarts_its_controller_and_replaces_its_own_leftover_asterisk(tmp_path):
    home = tmp_path / "home"
    routing_file = tmp_path / "routing.yaml"
    routing_file.write_text(routing_text_for_tests(), encoding="utf-8")
    s = pbx_settings(home, sip=26560, ari=29588, ami=26538, rtp=(33000, 33999),
                     TONGDAI_ROUTING=str(routing_file), TONGDAI_PROMPTS=str(TEST_PROMPTS))
    env = {**os.environ, **s.env, "PYTHONUNBUFFERED": "1"}
    home.mkdir(parents=True, exist_ok=True)
    # The check call must reach a desk phone whatever the time of day (lunch break, night).
    cal.write_override(s.hours_override_path, "open", None, dt.datetime.now(dt.timezone.utc))
    layout = Layout.for_settings(s)
    first = await Run(env).start()
    second = None
    try:
        await wait_until(lambda: first.saw("ready: tổng đài") or first.proc.returncode is not None, 120, "the first run")
        assert first.saw("ready: tổng đài"), "\n".join(first.lines[-30:])
        # The controller dies (SIGKILL): the supervisor starts another, Asterisk stays.
        asterisk = layout.pid()
        controller = first.controller_pid()
        os.kill(controller, signal.SIGKILL)
        await wait_until(lambda: first.saw("khởi động lại (lần 1)"), 60, "the controller to be back")
        assert first.saw(f"controller (PID {controller}) ended") and first.saw("killed by SIGKILL")
        assert layout.pid() == asterisk
        await call_check(env)
        # `tongdai run` itself killed: nothing can stop its Asterisk, which keeps the ports.
        controller = first.controller_pid()
        await first.kill()
        await wait_until(lambda: not alive(controller), 10, "the controller to die with its supervisor")
        assert alive(asterisk)
        second = await Run(env).start()
        await wait_until(lambda: second.saw("ready: tổng đài") or second.proc.returncode is not None, 120, "the second run")
        assert second.saw("ready: tổng đài"), "\n".join(second.lines[-30:])
        assert second.saw(f"còn chạy từ trước (PID {asterisk}")  # said, and stopped
        assert not alive(asterisk) and layout.pid() not in (None, asterisk)
        await call_check(env)
        assert await second.stop() == 0
        assert preflight.leftovers(layout) == []
    finally:
        for r in (first, second):
            if r is not None:
                await r.kill()
        for pid in preflight.leftovers(layout):  # only this test's own Asterisk
            preflight.stop(pid)


async def test_a_port_taken_by_another_process_is_refused_with_its_name(tmp_path):
    s = pbx_settings(tmp_path / "home", sip=26660, ari=29688, ami=26638)
    env = {**os.environ, **s.env}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", s.sip_port))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr", "sandbox", "start", cwd=REPO_ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode(errors="replace")
    assert proc.returncode == 1, text
    assert f"{s.sip_port}" in text and f"PID {os.getpid()}" in text and f"kill {os.getpid()}" in text
    assert preflight.leftovers(Layout.for_settings(s)) == []  # nothing started


async def test_controller_killed_during_calls_its_successor_takes_them_over(lone, tmp_path):
    """SIGKILL of the controller: the bridged conversation goes on in Asterisk; the next
    controller finds it, logs it once when it ends with its full talk time; the caller who was
    in the menu gets the apology instead of silence."""
    routing_file = tmp_path / "routing.yaml"
    routing_file.write_text(routing_text_for_tests(), encoding="utf-8")
    env = {**os.environ, **lone.settings.env, "TONGDAI_ROUTING": str(routing_file), "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr", "serve", "--grace", "5", cwd=REPO_ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    lines: list[str] = []

    async def pump():
        async for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip())

    reader = asyncio.create_task(pump())
    ivr = Ivr(lone, None, lone.routing, Records(), {})
    talker, waiter = new_caller(), new_caller()
    try:
        await wait_until(lambda: any("controller ready" in ln for ln in lines), 30, "the controller")
        async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 12000})}):
            talk = asyncio.create_task(sipp.call(**lone.peer(), to=lone.routing.hotline.number, from_user=talker,
                                                 digits="4", digits_at_ms=500, hold_ms=60000,
                                                 wait_for_bye_ms=60000, timeout=90))
            await wait_until(lambda: any("-> bridged" in ln for ln in lines), 30, "the bridged call")
            menu = asyncio.create_task(sipp.call(**lone.peer(), to=lone.routing.hotline.number, from_user=waiter,
                                                 hold_ms=60000, wait_for_bye_ms=60000, timeout=90))
            await wait_until(lambda: any(f"arrived from {waiter}" in ln for ln in lines), 20, "the second call")
            cid = next(ln for ln in lines if f"arrived from {waiter}" in ln).split("call=")[1].split()[0]
            await wait_until(lambda: any(f"call={cid} " in ln and ln.endswith("-> menu") for ln in lines), 20,
                             "the second call in the menu")
            proc.kill()  # SIGKILL: no drain, no goodbye
            await proc.wait()
            killed = time.monotonic()
            # Without a controller the conversation goes on: both channels are still up a while later.
            await wait_until(lambda: time.monotonic() > killed + 2, 5, "two seconds without a controller")
            up = await asyncio.to_thread(lone.rx, "core show channels concise")
            assert up.count("\n") >= 3 and not talk.done(), up
            ivr.service = Service(lone.settings, strict=True, routing=lone.routing)
            await ivr.service.start()
            res_menu = await menu
            res_talk = await talk
        assert res_menu.answered and res_menu.hung_up_by == "callee"  # the apology, then a clean end
        assert res_talk.answered and res_talk.hung_up_by == "callee"  # the agent, after twelve seconds
        await wait_until(lambda: rows_of(ivr, waiter), 10, "the interrupted call's row")
        (row, events, legs) = await wait_row(ivr, talker)
        assert row.disposition == "answered" and row.answered_by == "2401", [e.kind for e in events]
        assert 11 < row.talk_s < 15, row.talk_s  # from the answer before the kill to the agent's hang-up
        assert "adopted" in [e.kind for e in events]
        (mrow, mevents, _) = await wait_row(ivr, waiter)
        assert mrow.disposition == "interrupted" and "adopted" in [e.kind for e in mevents]
        await ivr.service.cel.sync()  # Asterisk's record of both calls changes nothing
        assert len(await rows_of(ivr, talker)) == 1 and len(await rows_of(ivr, waiter)) == 1
        assert (await rows_of(ivr, talker))[0].disposition == "answered"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
        if ivr.service is not None:
            await ivr.service.stop(5)


def test_the_private_asterisk_logged_no_error(lone):
    """Kills, restarts, holds and take-overs: nothing of it made Asterisk log an ERROR."""
    assert lone.error_lines() == []
