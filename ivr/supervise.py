"""A small supervisor: run child processes, restart one that dies, stop them all on request.

``tongdai run`` (what ``make run`` runs) supervises the controller (``tongdai serve``) with it,
and any other long-running process of the project is one more :class:`Child` in the list (the
web console). In production systemd does the same job (``scripts/systemd/``).

- A child that exits is started again after a backoff that doubles from ``min_backoff`` to
  ``max_backoff`` while it keeps dying soon after its start, and goes back to ``min_backoff``
  once it has stayed up ``stable`` seconds. Every exit and restart is logged.
- Children die with the supervisor: each gets ``PR_SET_PDEATHSIG`` (SIGTERM), so a supervisor
  killed with SIGKILL leaves no controller behind holding the Stasis application.
- Each child's output lines are passed through (to this process's stderr); ``ready`` names the
  line that says the child is ready, and ``on_ready`` is called when it appears.
- :meth:`Supervisor.stop` sends SIGTERM to every child, waits up to ``grace`` seconds (the
  controller lets calls in progress finish), then SIGKILL.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("tongdai.supervise")

PR_SET_PDEATHSIG = 1


AUTOGROUP = Path("/proc/self/autogroup")


def yield_cpu(nice: int, autogroup: Path = AUTOGROUP) -> str:
    """Lower this process's CPU priority by ``nice`` (0-19) so that Asterisk and the controller
    come first; returns how it was applied, for the log.

    ``os.nice`` alone does nothing against other sessions on a Linux kernel with autogroups
    (``kernel.sched_autogroup_enabled=1``, the default): the scheduler first shares the CPU
    equally between sessions, and nice only orders the tasks inside one. Every child of the
    supervisor is a session of its own, so the console's session must be reniced as a whole
    (its autogroup). That is done only when this process leads its session: renicing an
    operator's login shell for them would be a surprise. Under systemd with the cpu controller
    autogroups do not apply; the unit's ``CPUWeight=`` does that job.
    """
    if nice <= 0:
        return "not lowered"
    level = os.nice(nice)
    if os.getsid(0) != os.getpid():
        return f"nice {level} (not a session leader: the session's autogroup is left alone)"
    try:
        autogroup.write_text(str(level))
    except OSError:  # a kernel without autogroups
        return f"nice {level}"
    return f"nice {level}, autogroup nice {level}"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the child may outlive a killed supervisor
        pass


@dataclass
class Child:
    """One supervised command."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    ready: str | None = None  # a substring of the output line that says it is ready
    on_ready: Callable[[Child, int], None] | None = None  # (child, how many times it has been started)
    pid: int | None = field(default=None, init=False)
    starts: int = field(default=0, init=False)
    exits: list[int] = field(default_factory=list, init=False)  # return codes (negative: signal)


class Supervisor:
    def __init__(self, children: list[Child], *, min_backoff: float = 0.5, max_backoff: float = 30.0,
                 stable: float = 30.0, grace: float = 40.0, out=None):
        self.children = children
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable = stable
        self.grace = grace
        self.out = out or sys.stderr
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Supervise until :meth:`stop` has stopped every child."""
        await asyncio.gather(*(self._keep(c) for c in self.children))

    async def stop(self) -> None:
        self._stopping.set()
        procs = [p for p in self._procs.values() if p.returncode is None]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), self.grace)
        except TimeoutError:
            for p in procs:
                if p.returncode is None:
                    log.warning("supervise: PID %d still up after %.0fs: killing it", p.pid, self.grace)
                    p.kill()
            await asyncio.gather(*(p.wait() for p in procs))

    async def _keep(self, child: Child) -> None:
        backoff = self.min_backoff
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *child.argv, env=child.env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT, preexec_fn=_die_with_parent,
                    start_new_session=True)  # Ctrl-C reaches the supervisor only; it stops the children
            except OSError as e:
                log.error("supervise: %s cannot start: %s", child.name, e)
                code = None
            else:
                self._procs[child.name] = proc
                child.pid = proc.pid
                child.starts += 1
                log.info("supervise: %s started (PID %d)%s", child.name, proc.pid,
                         f", start {child.starts}" if child.starts > 1 else "")
                await self._pump(child, proc)
                code = await proc.wait()
                child.exits.append(code)
            if self._stopping.is_set():
                break
            up = time.monotonic() - started
            if up >= self.stable:
                backoff = self.min_backoff
            how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            log.error("supervise: %s (PID %s) ended after %.1fs (%s); restarting in %.2fs",
                      child.name, child.pid, up, how, backoff)
            try:
                await asyncio.wait_for(self._stopping.wait(), backoff)
                break
            except TimeoutError:
                pass
            backoff = min(self.max_backoff, backoff * 2)

    async def _pump(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        """Pass the child's output through; call ``on_ready`` when its ready line shows."""
        told = False
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace")
            self.out.write(line)
            self.out.flush()
            if not told and child.ready and child.ready in line:
                told = True
                if child.on_ready:
                    child.on_ready(child, child.starts)


def python(*args: str) -> list[str]:
    """The command that runs ``tongdai <args>`` with this interpreter (no PATH lookup)."""
    return [sys.executable, "-m", "ivr", *args]


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
