"""The branch queue with more callers than desk phones (issue 25).

``python -m bench.queue [--quick] [--callers N] [--keep]`` (``make bench`` runs it)

bench.capacity's set-up (a private Asterisk, the controller as its own process, branch 2's two
SIPp desk phones) but without call waiting: a desk phone takes one call at a time. A SIPp telco
answers on ``TONGDAI_TRUNK_OUT``. ``N`` callers (default 3 per desk phone, ``--quick`` 2) call
0.3 s apart and choose branch 2; every other one presses 1 and confirms once it waits (a
callback), the others hold until a desk phone answers. The desks talk ``TALK_S`` seconds.

Reported: every caller answered or called back, none lost (from the call log: an ``answered``
row, or a ``callback_answered`` row linked to the caller's call); the waits in the queue; the
controller's and Asterisk's CPU seconds per caller over the run (utime+stime, /proc). Exit
status 1 when a caller was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import sys
import time

from bench.capacity import Bench, cpu_seconds, percentiles, raise_nofile
from ivr.config.settings import Settings
from ivr.pbx import sipp

TALK_S = 12.0  # long enough that the later callers are queued when they press 1
SPACING_S = 0.3  # between two callers' arrivals
CALLBACK_KEYS_AT_MS = 6000  # after the branch digit: 1 (the caller waits by then), then 1 again
TELCO_TALK_MS = 2000


class QueueBench(Bench):
    def __init__(self, *, callers: int, per_desk: int, keep: bool, log=print):
        super().__init__(levels=[callers], talk_s=TALK_S, quick=True, out_dir=None, keep=keep,  # type: ignore[arg-type]
                         profile=False, log=log)
        self.callers = callers  # 0: per_desk callers per desk phone
        self.per_desk = per_desk
        self.telco_ports = self.ports.sipp()

    def settings(self) -> Settings:
        env = dict(super().settings().env)
        env.pop("TONGDAI_CALL_WAITING", None)  # one call per desk phone: the queue's whole point
        env["TONGDAI_TRUNK_OUT"] = f"127.0.0.1:{self.telco_ports['local_port']}"
        return Settings.from_env(env)

    def outcomes(self, numbers: list[str]) -> dict[str, str]:
        """Each caller's outcome from the call log: answered, called_back, or what it was."""
        con = sqlite3.connect(self.home / "tongdai.db")
        try:
            out = {}
            for n in numbers:
                row = con.execute("SELECT id, disposition FROM calls WHERE caller = ? AND callback_of IS NULL "
                                  "ORDER BY started_at DESC LIMIT 1", (n,)).fetchone()
                if row is None:
                    out[n] = "no row"
                    continue
                cid, disp = row
                back = [d for (d,) in con.execute("SELECT disposition FROM calls WHERE callback_of = ?", (cid,))]
                out[n] = "answered" if disp == "answered" else "called_back" if "callback_answered" in back else \
                    f"{disp}, callbacks {back}"
            return out
        finally:
            con.close()

    def waits(self) -> list[float]:
        con = sqlite3.connect(self.home / "tongdai.db")
        try:
            return [float(w) for (w,) in con.execute(
                "SELECT json_extract(detail, '$.waited_s') FROM call_events WHERE kind = 'dequeued'") if w is not None]
        finally:
            con.close()

    async def run_queue(self) -> dict:
        raise_nofile()
        await asyncio.to_thread(self.setup)
        self.start_controller()
        await self.start_desks()
        assert self.controller is not None
        self.callers = self.callers or self.per_desk * len(self.desks)
        hotline = self.routing.hotline.number
        async with sipp.Telco(**self.telco_ports, hangup_after_ms=TELCO_TALK_MS, trace_dir=self.work) as telco:
            ctl0, ast0 = cpu_seconds(self.controller.pid), cpu_seconds(self.asterisk_pid)
            t0 = time.monotonic()
            numbers = [f"0931{i:06d}" for i in range(self.callers)]
            asks = {n for i, n in enumerate(numbers) if i % 2}
            calls = []
            for n in numbers:
                ask = n in asks
                calls.append(asyncio.create_task(sipp.call(
                    server_host="127.0.0.1", server_port=self.s.sip_port, to=hotline, from_user=n,
                    digits="211" if ask else "2", digits_at_ms=600,
                    dtmf_gap_ms=[CALLBACK_KEYS_AT_MS, 2500, 240] if ask else None,
                    hold_ms=1000, wait_for_bye_ms=300_000, timeout=320, trace_dir=self.work, **self.ports.sipp())))
                await asyncio.sleep(SPACING_S)
            await asyncio.gather(*calls)
            # The callbacks finish after the last caller hung up: wait for their rows.
            deadline = time.monotonic() + 180
            while True:
                got = self.outcomes(numbers)
                if all(v in ("answered", "called_back") for v in got.values()) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            wall = time.monotonic() - t0
            ctl, ast = cpu_seconds(self.controller.pid) - ctl0, cpu_seconds(self.asterisk_pid) - ast0
            telco_invites = len(telco.invites())
        lost = {n: v for n, v in got.items() if v not in ("answered", "called_back")}
        waits = self.waits()
        return {
            "callers": self.callers, "desk_phones": len(self.desks), "asked_callback": len(asks),
            "answered": sum(1 for v in got.values() if v == "answered"),
            "called_back": sum(1 for v in got.values() if v == "called_back"),
            "lost": lost, "telco_invites": telco_invites,
            "queue_wait_ms": percentiles(waits), "queued": len(waits),  # percentiles() gives ms
            "controller_cpu_s_per_caller": round(ctl / self.callers, 4),
            "asterisk_cpu_s_per_caller": round(ast / self.callers, 4), "wall_s": round(wall, 1),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.queue", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 callers per desk phone")
    ap.add_argument("--callers", type=int, help="number of callers (default 3 per desk phone)")
    ap.add_argument("--keep", action="store_true", help="keep the data directory and SIPp traces")
    a = ap.parse_args(argv)
    if not shutil.which("sipp"):
        print("bench: SIPp is missing (Debian package sip-tester; `make deps` installs it)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    bench = QueueBench(callers=a.callers or 0, per_desk=2 if a.quick else 3, keep=a.keep,
                       log=lambda m: print(f"[{time.monotonic() - t0:6.1f}s] {m}", flush=True))

    async def go() -> dict:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)  # type: ignore[union-attr]
        try:
            return await bench.run_queue()
        finally:
            await bench.teardown()

    result = asyncio.run(go())
    print(json.dumps(result, ensure_ascii=False, indent=2))
    ok = not result["lost"]
    print(f"bench queue: {result['callers']} callers, {result['desk_phones']} desk phones: "
          f"{result['answered']} answered, {result['called_back']} called back, {len(result['lost'])} lost; "
          f"controller {result['controller_cpu_s_per_caller'] * 1000:.1f} ms CPU per caller, "
          f"Asterisk {result['asterisk_cpu_s_per_caller'] * 1000:.1f} ms", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
