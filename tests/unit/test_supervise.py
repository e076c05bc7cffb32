"""The supervisor `tongdai run` keeps the controller with: a child that dies is started again,
with a backoff that grows while it keeps dying, says so in the log, and dies with its supervisor."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import subprocess
import sys
import textwrap

from ivr.supervise import Child, Supervisor
from ivr.testing import wait_until


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


async def test_a_child_that_dies_is_restarted_with_a_growing_backoff(caplog):
    caplog.set_level(logging.INFO, logger="tongdai.supervise")
    child = Child("crasher", py("import sys; print('up', flush=True); sys.exit(3)"))
    sup = Supervisor([child], min_backoff=0.05, max_backoff=0.2, stable=30, out=io.StringIO())
    task = asyncio.create_task(sup.run())
    try:
        await wait_until(lambda: child.starts >= 5, 20, "five starts")
    finally:
        await sup.stop()
        await task
    assert child.exits[:4] == [3, 3, 3, 3]
    delays = [r.getMessage().rsplit(" ", 1)[-1] for r in caplog.records if "restarting in" in r.getMessage()]
    assert delays[:4] == ["0.05s", "0.10s", "0.20s", "0.20s"]  # doubling, capped
    assert all("crasher" in r.getMessage() and "exit code 3" in r.getMessage()
               for r in caplog.records if "restarting in" in r.getMessage())


async def test_a_killed_child_comes_back_ready_and_stop_ends_it(caplog):
    caplog.set_level(logging.INFO, logger="tongdai.supervise")
    readies: list[int] = []
    child = Child("server", py("""
        import signal, sys, time
        print('server ready', flush=True)
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        time.sleep(60)
    """), ready="server ready", on_ready=lambda c, n: readies.append(n))
    out = io.StringIO()
    sup = Supervisor([child], min_backoff=0.05, out=out)
    task = asyncio.create_task(sup.run())
    try:
        await wait_until(lambda: readies == [1], 10, "the first start")
        first = child.pid
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: readies == [1, 2], 10, "the restart")
        assert child.pid != first and alive(child.pid)
        assert any("killed by SIGKILL" in r.getMessage() for r in caplog.records)
        assert out.getvalue().count("server ready") == 2  # its output is passed through
    finally:
        await sup.stop()
        await task
    assert not alive(child.pid) and child.exits[-1] == 0  # SIGTERM: a clean stop, not restarted
    assert child.starts == 2


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace():
    child = Child("stubborn", py("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('ready', flush=True)
        time.sleep(60)
    """), ready="ready", on_ready=lambda c, n: readies.append(n))
    readies: list[int] = []
    sup = Supervisor([child], grace=0.5, out=io.StringIO())
    task = asyncio.create_task(sup.run())
    await wait_until(lambda: readies == [1], 10, "the start (its SIGTERM handler in place)")
    await sup.stop()
    await task
    assert child.exits == [-signal.SIGKILL]


async def test_children_die_with_a_killed_supervisor(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = f"""
        import asyncio, sys
        from ivr.supervise import Child, Supervisor
        code = "import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
        child = Child("sleeper", [sys.executable, "-c", code])
        asyncio.run(Supervisor([child]).run())
    """
    sup = subprocess.Popen(py(script), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = int(await wait_until(lambda: pidfile.exists() and pidfile.read_text(), 20, "the child to start"))
        assert alive(pid)
        sup.kill()  # SIGKILL: the supervisor cannot stop anything itself
        sup.wait()
        await wait_until(lambda: not alive(pid), 10, "the child to follow its supervisor")
    finally:
        if sup.poll() is None:
            sup.kill()


YIELD = """
    import os
    from ivr.supervise import yield_cpu
    print(yield_cpu(7))
    print(os.getpriority(os.PRIO_PROCESS, 0))
    print(open("/proc/self/autogroup").read().strip())
"""


def test_yield_cpu_renices_its_own_session_so_it_counts_against_asterisks():
    # With autogroups (this machine's kernel, the default) nice alone leaves the console's
    # session an equal of Asterisk's; the session itself must be reniced.
    assert os.path.exists("/proc/self/autogroup"), "the test machine's kernel has autogroups"
    out = subprocess.run(py(YIELD), capture_output=True, text=True, check=True, start_new_session=True).stdout
    how, level, group = out.splitlines()
    assert how == "nice 7, autogroup nice 7"
    assert level == "7"
    assert group.endswith("nice 7")


def test_yield_cpu_leaves_a_shared_session_alone():
    # `tongdai web` typed in an operator's shell must not renice the shell's session.
    before = open("/proc/self/autogroup").read().strip()
    out = subprocess.run(py(YIELD), capture_output=True, text=True, check=True).stdout
    how, level, group = out.splitlines()
    assert how.startswith("nice 7 (not a session leader")
    assert level == "7"
    assert group == before
    assert open("/proc/self/autogroup").read().strip() == before
