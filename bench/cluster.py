"""The cluster's failover, measured (docs/cluster.md): ``python -m bench.cluster [--quick] [--rounds N]``.

`tongdai cluster up` with two nodes behind Kamailio (private PostgreSQL, free ports, a temporary
data directory); each round, on this machine's clock:

- **detect**: node1's Asterisk killed (SIGKILL) → Kamailio's dispatcher shows node1 inactive
  (``dispatcher.list`` polled every 50 ms);
- **first call**: two calls placed at the kill (round robin picks node1 for one of them) are
  answered by the hotline's IVR on node2 anyway (Kamailio's failure route tries node2 after its
  1.5 s INVITE timeout): the slower one's SIPp run time minus the median of the calls placed
  before the kill, in the same round;
- **back**: `tongdai cluster restart node1` returns → node1 active again in Kamailio.

For the record, not an assertion. The capacity of two nodes against one on the same machine is
not measured yet (on 2 cores no gain is expected). Results: printed, and
``bench/results/cluster-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.capacity import REPO_ROOT, RESULTS, Ports, percentiles
from ivr.cluster.kamailio import Kamailio
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.pbx import sipp


class ClusterBench:
    def __init__(self, rounds: int):
        self.rounds = rounds
        self.home = Path(tempfile.mkdtemp(prefix="tongdai-bench-cluster-"))
        os.chmod(self.home, 0o711)  # the private PostgreSQL runs as the postgres user and must get in
        self.ports = Ports(47100)
        sip = self.ports.one()
        while not all(sipp.port_is_free(p) for p in (sip + 1, sip + 2)):
            sip = self.ports.one()
        self.env = {**os.environ, "TONGDAI_HOME": str(self.home), "TONGDAI_ROUTING": str(REPO_ROOT / "routing.yaml"),
                    "TONGDAI_SIP_PORT": str(sip), "TONGDAI_ARI_PORT": str(self.ports.one()),
                    "TONGDAI_AMI_PORT": str(self.ports.one()), "TONGDAI_RTP_START": "47400",
                    "TONGDAI_RTP_END": "47999", "PYTHONUNBUFFERED": "1"}
        self.env.pop("TONGDAI_DATABASE_URL", None)  # the cluster's private PostgreSQL
        self.sip_port = sip
        self.settings = Settings.from_env(self.env)
        self.kam = Kamailio(self.settings)
        self.proc: subprocess.Popen | None = None
        self.routing = rt.load(REPO_ROOT / "routing.yaml")

    def tongdai(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ivr", *args], env=self.env, capture_output=True, text=True,
                              timeout=180)

    def up(self) -> None:
        log = open(self.home / "cluster-up.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "ivr", "cluster", "up", "--grace", "2"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 240
        while "ready:" not in (self.home / "cluster-up.log").read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("cluster up failed:\n" + (self.home / "cluster-up.log").read_text()[-3000:])
            time.sleep(0.2)

    def down(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.tongdai("cluster", "down")
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)

    def healthy(self, name: str) -> bool:
        return any(t.name == name and t.healthy for t in self.kam.targets())

    async def call(self) -> float:
        """One call to the hotline, hung up 1 s after the IVR answers; SIPp's run time."""
        p = self.ports.sipp()
        start = time.monotonic()
        res = await sipp.call(server_host="127.0.0.1", server_port=self.sip_port, to=self.routing.hotline.number,
                              from_user="0909" + str(int(start * 1000))[-6:], hold_ms=1000, timeout=30, **p)
        if not res.answered:
            raise RuntimeError(f"a bench call was not answered: {res.final_status} {res.error[:300]}")
        return time.monotonic() - start

    async def round(self) -> dict:
        before = [await self.call() for _ in range(4)]  # round robin: both nodes
        pid = json.loads(self.tongdai("cluster", "status", "--json").stdout)["nodes"][0]["asterisk_pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        # Two calls at once: round robin sends one of them to node1, which is dead.
        first = asyncio.gather(self.call(), self.call())
        while self.healthy("node1"):
            await asyncio.sleep(0.05)
        detect = time.monotonic() - killed
        extra = max(await first) - statistics.median(before)
        t = time.monotonic()
        p = await asyncio.to_thread(self.tongdai, "cluster", "restart", "node1")
        if p.returncode != 0:
            raise RuntimeError("cluster restart failed: " + p.stdout + p.stderr)
        while not self.healthy("node1"):
            await asyncio.sleep(0.05)
        # Seconds here; percentiles() reports them in ms, under these names.
        return {"detect_ms": detect, "first_call_extra_ms": extra, "back_ms": time.monotonic() - t}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one round: a smoke check")
    ap.add_argument("--rounds", type=int, help="node failures to measure (default 3, quick 1)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    bench = ClusterBench(rounds)
    print(f"bench: cluster failover, {rounds} kills of node1's Asterisk (two nodes behind Kamailio)", flush=True)
    try:
        bench.up()
        samples = [asyncio.run(bench.round()) for _ in range(rounds)]
    finally:
        bench.down()
    result = {k: percentiles([s[k] for s in samples]) for k in ("detect_ms", "first_call_extra_ms", "back_ms")}
    print(f"node killed → out of Kamailio's rotation: p50 {result['detect_ms']['p50']:.0f} ms, "
          f"max {result['detect_ms']['max']:.0f} ms")
    print(f"calls placed at the kill: {result['first_call_extra_ms']['p50']:+.0f} ms over the calls before it (p50)")
    print(f"`cluster restart node1` → back in rotation: p50 {result['back_ms']['p50']:.0f} ms")
    result.update({"rounds": rounds, "quick": args.quick, "date": dt.datetime.now().isoformat(timespec="seconds"),
                   "machine": os.uname().nodename, "cpus": os.cpu_count()})
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"cluster-{dt.datetime.now():%Y-%m-%d-%H%M%S}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
