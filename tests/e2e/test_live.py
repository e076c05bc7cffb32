"""Live operation: desk-phone presence over AMI, `tongdai status`, `tongdai apply` while calls
are up, the per-caller rate limit, and SIGTERM with a call in progress."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.config import credentials as sec_mod
from ivr.models import RegistrationEvent
from ivr.testing import wait_until

from .conftest import (
    REPO_ROOT,
    kinds,
    leaks,
    log_files,
    new_caller,
    passwords,
    phones,
    place,
    restart,
    routing_text_for_tests,
    talking,
    wait_row,
)

pytestmark = pytest.mark.e2e


def cli_env(ivr, **extra) -> dict:
    env = dict(os.environ)
    env.update({k: v for k, v in ivr.settings.env.items() if k.startswith("TONGDAI_")})
    env.update(extra)
    return env


async def tongdai(ivr, *args, env=None, timeout=60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr", *args, cwd=REPO_ROOT, env=env or cli_env(ivr),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def history(ivr, ext: str) -> list[tuple[str, object]]:
    await ivr.service.calllog.flush()
    async with ivr.service.engine.connect() as conn:
        rows = await conn.execute(select(RegistrationEvent.status, RegistrationEvent.at)
                                  .where(RegistrationEvent.extension == ext).order_by(RegistrationEvent.id))
        return [tuple(r) for r in rows]


async def test_registration_is_tracked_with_history_and_shown_by_status(ivr):
    presence = ivr.service.presence
    assert presence.connected
    before = await history(ivr, "2802")
    assert presence.reachable("2802") is False
    async with phones(ivr, {"2802": "answer"}):
        await wait_until(lambda: presence.reachable("2802") is True, 5, "2802 registered over AMI")
        code, out, err = await tongdai(ivr, "status", "--json")
        assert code == 0, err
        st = json.loads(out)
        assert st["ari"]["connected"] and st["ami"]["connected"] and st["asterisk"]["version"].startswith("22")
        assert st["phones"]["2802"]["status"] == "registered"
        assert st["phones"]["2801"]["status"] == "unregistered"
        code, out, err = await tongdai(ivr, "status")
        assert "Sở Khoa học và Công nghệ" in out and "2802 ✓" in out, out
    await wait_until(lambda: presence.reachable("2802") is False, 5, "2802 unregistered over AMI")
    after = await history(ivr, "2802")
    new = after[len(before):]
    assert [s for s, _ in new] == ["registered", "unregistered"]
    assert new[0][1] < new[1][1]
    code, out, _ = await tongdai(ivr, "status")
    assert "2802 ✗ (lần cuối" in out


async def test_status_lists_active_calls(ivr):
    async with phones(ivr, {"2601": ("answer", {"hangup_after_ms": 6000})}):
        call = asyncio.create_task(place(ivr, "6", hold_ms=15000, wait_for_bye_ms=15000))
        ctl = ivr.service.controller
        await wait_until(lambda: talking(ctl), 15, "a bridged call")
        code, out, err = await tongdai(ivr, "status", "--json")
        st = json.loads(out)
        assert [(c["branch"], c["state"], c["answered_by"]) for c in st["calls"]] == [("6", "bridged", "2601")]
        assert st["calls"][0]["duration_s"] > 0
        await call


async def test_one_phone_unregistered_the_other_answers_without_ring_timeout(ivr):
    # Branch 2 hunts 2201 then 2202; only 2202 is registered.
    async with phones(ivr, {"2202": ("answer", {"hangup_after_ms": 1000})}):
        await wait_until(lambda: ivr.service.presence.reachable("2202"), 5, "2202 registered")
        res, (call, events, legs) = await place(ivr, "2", hold_ms=20000, wait_for_bye_ms=20000)
    assert call.disposition == "answered" and call.answered_by == "2202"
    assert [(l.extension, l.result) for l in legs] == [("2201", "unreachable"), ("2202", "answered")]
    route_at = next(e.at for e in events if e.kind == "route")
    assert (legs[1].answered_at - route_at).total_seconds() < 2, "waited for a phone that is not registered"


async def test_no_phone_registered_goes_to_no_answer_path_within_two_seconds(ivr):
    # Branch 2 offers a voice complaint when nobody can take the call.
    res, (call, events, legs) = await place(ivr, "2", hold_ms=8000, wait_for_bye_ms=20000)
    chosen = next(e.at for e in events if e.kind == "menu_choice")
    no_answer = next(e.at for e in events if e.kind == "no_answer")
    assert (no_answer - chosen).total_seconds() < 2
    assert {l.result for l in legs} == {"unreachable"}
    assert "complaint" in [e.detail.get("to") for e in events if e.kind == "state"]


async def test_caller_calling_too_often_hears_try_later(ivr):
    limit = ivr.routing.limits.caller_calls_per_minute
    caller = new_caller()
    for _ in range(limit):
        res, (call, events, legs) = await place(ivr, None, hold_ms=300, caller=caller)
        assert "rate_limited" not in kinds(events)
    res, (call, events, legs) = await place(ivr, "4", hold_ms=8000, wait_for_bye_ms=8000, caller=caller)
    assert call.disposition == "rejected" and call.branch_digit is None
    assert "rate_limited" in kinds(events) and res.hung_up_by == "callee"
    # Another number is not affected.
    res, (call, events, legs) = await place(ivr, None, hold_ms=300)
    assert "rate_limited" not in kinds(events)


def write_routing(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def test_apply_new_target_while_a_call_is_bridged(ivr, tmp_path):
    base = routing_text_for_tests()
    routing_file = write_routing(tmp_path / "routing.yaml", base)
    env = cli_env(ivr, TONGDAI_ROUTING=str(routing_file))
    changed = base.replace('targets: ["2401", "2402", "2403"]', 'targets: ["2404"]', 1).replace(
        '  - {number: "2403", agency: TTPVHCC,',
        '  - {number: "2404", agency: VPUBND, name: "Đầu mối mới nhánh 4"}\n  - {number: "2403", agency: TTPVHCC,', 1)
    assert changed.count("2404") == 2
    ctl = ivr.service.controller
    try:
        async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 7000})}):
            first = asyncio.create_task(place(ivr, "4", hold_ms=20000, wait_for_bye_ms=20000))
            await wait_until(lambda: talking(ctl), 15, "a bridged call")
            write_routing(routing_file, changed)
            code, out, err = await tongdai(ivr, "apply", "--yes", env=env)
            assert code == 0, out + err
            assert "+exten => 2404," in out and "pjsip.conf" in out and "********" in out
            assert ivr.pbx.secrets.sip_password("2401") not in out
            assert "Bộ điều khiển đã nạp routing mới" in out
            res1, (call1, _, _) = await first
        # The bridged call went on to its natural end.
        assert call1.disposition == "answered" and call1.answered_by == "2401" and call1.talk_s > 6
        assert res1.hung_up_by == "callee"
        new_secrets = sec_mod.load(ivr.settings.secrets_path)
        from ivr.pbx import sipp
        async with sipp.DeskPhone(**ivr.pbx.peer(), user="2404", password=new_secrets.sip_password("2404"),
                                  mode="answer", hangup_after_ms=1000):
            await wait_until(lambda: ivr.service.presence.reachable("2404"), 5, "the new phone registered")
            res2, (call2, _, legs2) = await place(ivr, "4", hold_ms=15000, wait_for_bye_ms=15000)
            assert call2.disposition == "answered" and call2.answered_by == "2404"
            # A broken file is refused; the hotline keeps routing as before.
            write_routing(routing_file, changed.replace('targets: ["2404"]', 'targets: ["2999"]', 1))
            code, out, err = await tongdai(ivr, "apply", "--yes", env=env)
            assert code == 1 and "unknown extension '2999'" in err
            res3, (call3, _, _) = await place(ivr, "4", hold_ms=15000, wait_for_bye_ms=15000)
            assert call3.disposition == "answered" and call3.answered_by == "2404"
    finally:
        write_routing(routing_file, base)
        code, out, err = await tongdai(ivr, "apply", "--yes", env=env)
        assert code == 0, out + err
    assert ivr.service.controller.routing.branch("4").targets == ("2401", "2402", "2403")


async def test_sigterm_lets_the_call_finish_and_exits_zero(ivr, tmp_path):
    """The controller as its own process: SIGTERM mid-call, a new call meanwhile gets the
    dialplan's apology, the call in progress completes, exit 0, the log is complete."""
    await ivr.service.stop(5)
    routing_file = write_routing(tmp_path / "routing.yaml", routing_text_for_tests())
    env = cli_env(ivr, TONGDAI_ROUTING=str(routing_file))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr", "serve", "--grace", "30", cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    lines: list[str] = []

    async def pump():
        async for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip())

    reader = asyncio.create_task(pump())
    try:
        await wait_until(lambda: any("controller ready" in ln for ln in lines), 20, "the controller to start")
        # SIGHUP with a broken routing.yaml: refused, the running routing stays.
        good = routing_file.read_text(encoding="utf-8")
        write_routing(routing_file, good.replace('targets: ["2601", "2602"]', 'targets: ["2601", "9999"]', 1))
        proc.send_signal(signal.SIGHUP)
        await wait_until(lambda: any("routing reload rejected" in ln and "9999" in ln for ln in lines), 5, "the refusal")
        write_routing(routing_file, good)
        proc.send_signal(signal.SIGHUP)
        await wait_until(lambda: any("routing reloaded" in ln for ln in lines), 5, "the reload")
        from ivr.pbx import sipp
        caller = new_caller()
        async with phones(ivr, {"2601": ("answer", {"hangup_after_ms": 6000})}):
            first = asyncio.create_task(sipp.call(**ivr.pbx.peer(), to=ivr.routing.hotline.number, from_user=caller,
                                                  digits="6", digits_at_ms=500, hold_ms=20000,
                                                  wait_for_bye_ms=20000, timeout=40))
            await wait_until(lambda: any("-> bridged" in ln for ln in lines), 20, "a bridged call")
            proc.send_signal(signal.SIGTERM)
            await wait_until(lambda: any("stopping: no new calls" in ln for ln in lines), 5, "the drain to begin")
            late = await sipp.call(**ivr.pbx.peer(), to=ivr.routing.hotline.number, from_user=new_caller(),
                                   digits="6", hold_ms=10000, wait_for_bye_ms=10000, timeout=30)
            assert late.answered and late.hung_up_by == "callee"  # the apology, then Asterisk hangs up
            assert proc.returncode is None, "exited before the call in progress ended"
            res = await first
        code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0, "\n".join(lines[-30:])
        assert res.answered and res.hung_up_by == "callee"
        assert any("controller stopped" in ln for ln in lines)
        errors = [ln for ln in lines if " ERROR " in ln]
        assert len(errors) == 1 and "routing reload rejected" in errors[0], errors
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
        await restart(ivr)
    # What the stopped process wrote is all there.
    call, events, legs = await wait_row(ivr, caller)
    assert call.disposition == "answered" and call.answered_by == "2601" and call.talk_s > 5
    assert call.ended_at is not None and call.hangup_by == "agent"
    assert kinds(events)[-1] in ("state", "hangup")


async def test_repeated_failed_registrations_block_the_address_for_a_while(ivr):
    import dataclasses

    from ivr.pbx import sipp

    ctl = ivr.service.controller
    lim = ctl.routing.limits
    ctl.swap_routing(dataclasses.replace(ctl.routing, limits=dataclasses.replace(lim, block_seconds=4)))
    password = ivr.pbx.secrets.sip_password("2801")

    async def register(ip: str, pw: str, expires: int = 60) -> int:
        sip, _, _ = ivr.pbx.ports.block()
        return await sipp.register(**ivr.pbx.sip(), user="2801", password=pw, local_port=sip,
                                   local_ip=ip, expires=expires)
    try:
        for _ in range(lim.registration_failures):
            assert await register("127.0.0.2", "wrong-password") == 401
        await wait_until(lambda: "127.0.0.2" in ivr.service.guard.blocked, 5, "the address to be blocked")

        async def refused() -> bool:  # no challenge any more: the reloaded ACL turns it away
            return await register("127.0.0.2", "wrong-password") in (0, 403)

        await wait_until(refused, 15, "res_pjsip to apply the block", interval=0.2)
        # Blocked: even the right password from that address is refused…
        assert await register("127.0.0.2", password) in (0, 403)
        # …while other addresses are not affected.
        assert await register("127.0.0.1", password) == 200
        assert await register("127.0.0.1", password, expires=0) == 200
        await wait_until(lambda: "127.0.0.2" not in ivr.service.guard.blocked, 10, "the block to end")

        async def accepted() -> bool:
            return await register("127.0.0.2", password) == 200

        await wait_until(accepted, 25, "res_pjsip to lift the block", interval=0.2)
        assert await register("127.0.0.2", password, expires=0) == 200
    finally:
        ctl.swap_routing(ivr.routing)


async def test_no_secret_in_any_log_line(ivr):
    """Where passwords are used (a desk phone's digest, a wrong one, a call, ARI and AMI, the
    status command), no log line holds one: the controller's records and every log file of the
    run. (Each e2e test is checked so for the lines it caused; this one makes sure those paths
    ran, whatever else was selected.)"""
    from ivr.pbx import sipp

    ext = "2101"
    sip, _, _ = ivr.pbx.ports.block()
    assert await sipp.register(**ivr.pbx.sip(), user=ext, password="not-the-password", local_port=sip) == 401
    async with phones(ivr, {ext: ("answer", {"hangup_after_ms": 1000})}):
        res, (call, _, _) = await place(ivr, "1", hold_ms=20000, wait_for_bye_ms=20000)
    assert call.answered_by == ext
    code, out, err = await tongdai(ivr, "status")
    assert code == 0, err
    sources = {"controller records": "\n".join(ivr.log.lines()), "tongdai status": out + err}
    files = log_files(ivr.pbx)
    assert ivr.pbx.layout.log_file in files and len(files) >= 2
    for p in files:
        sources[str(p)] = p.read_text(encoding="utf-8", errors="replace")
    assert leaks(sources, passwords(ivr.pbx)) == []
