"""Asterisk booted → controller ready: how long the hotline is without its controller after Asterisk restarts.

``python -m bench.reconnect [--quick] [--rounds 5]`` (``make bench`` runs it after the capacity bench)

A private Asterisk (the sandbox or a native one, free ports, its own data directory) with the
rendered product configuration, and the controller as its own process (``python -m ivr serve``),
as in production. Each round kills Asterisk with SIGKILL (a crash), starts it again, and notes
two times on this machine's clock:

- **booted**: ``asterisk -rx 'core waitfullybooted'`` returns (the command blocks until Asterisk
  is fully booted; the time includes that command's exit, a few ms);
- **ready**: ARI's ``GET /applications`` (polled every 10 ms) lists every Stasis application of
  the controller again: from then on the dialplan hands calls to it instead of holding them.

The gap is ready − booted (negative: the controller was back before Asterisk called itself
fully booted). Before issue 24 the controller's websocket backoff had grown to 10–15 s by the
time Asterisk was back. Results: printed, and ``bench/results/reconnect-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.capacity import REPO_ROOT, RESULTS, Ports, percentiles
from ivr.config import credentials as sec_mod
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.dialplan import render as rd
from ivr.pbx.asterisk import Layout
from ivr.records import db

TARGET_GAP_MS = 1000  # the goal (printed, never asserted)
POLL = 0.01


class ReconnectBench:
    def __init__(self, rounds: int, out_dir: Path, log=print):
        self.rounds = rounds
        self.out_dir = out_dir
        self.log = log
        self.home = Path(tempfile.mkdtemp(prefix="tongdai-bench-reconnect-"))
        self.ports = Ports(37000)
        self.controller: subprocess.Popen | None = None
        self.layout: Layout | None = None

    def settings(self) -> Settings:
        env = {
            "TONGDAI_HOME": str(self.home),
            "TONGDAI_ROUTING": str(REPO_ROOT / "routing.yaml"),
            "TONGDAI_SIP_PORT": str(self.ports.one()),
            "TONGDAI_ARI_PORT": str(self.ports.one()),
            "TONGDAI_AMI_PORT": str(self.ports.one()),
            "TONGDAI_RTP_START": "33000",
            "TONGDAI_RTP_END": "33999",
        }
        for k in ("TONGDAI_ASTERISK", "TONGDAI_SANDBOX_DIR", "TONGDAI_ASTERISK_BIN", "TONGDAI_ASTERISK_MODDIR",
                  "PATH", "HOME", "TONGDAI_ASTERISK_RUNUSER", "TONGDAI_ASTERISK_DATADIR", "TONGDAI_DEBIAN_MIRROR",
                  "TONGDAI_ARI_REST", "TONGDAI_ARI_LANES"):
            if k in os.environ:
                env[k] = os.environ[k]
        return Settings.from_env(env)

    def setup(self) -> None:
        self.s = s = self.settings()
        routing = rt.load(s.routing_path)
        self.sec = sec_mod.load(s.secrets_path, list(routing.extensions))
        self.layout = layout = Layout.for_settings(s)
        layout.install(log=self.log)
        layout.prepare()
        rd.write(rd.render(routing, s, self.sec, layout), layout.etc)
        layout.chown()
        db.upgrade(s)
        layout.start()

    def start_controller(self) -> None:
        path = self.home / "controller.stderr.log"
        with open(path, "wb") as out:
            self.controller = subprocess.Popen([sys.executable, "-m", "ivr", "serve", "--grace", "1"], cwd=REPO_ROOT,
                                               env={**self.s.env, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL,
                                               stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.controller.poll() is None:
            if "controller ready" in path.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError("the controller did not start:\n" + path.read_text(errors="replace")[-3000:])

    async def registered(self, http: aiohttp.ClientSession) -> bool:
        try:
            async with http.get(f"http://{self.s.bind}:{self.s.ari_port}/ari/applications",
                                timeout=aiohttp.ClientTimeout(total=1)) as r:
                if r.status != 200:
                    return False
                names = {a["name"] for a in await r.json()}
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return False
        return set(self.s.ari_apps) <= names

    async def one_round(self, http: aiohttp.ClientSession) -> dict:
        layout = self.layout
        pid = layout.pid()
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(layout.stop)  # reaps it and clears the PID file
        while await self.registered(http):
            await asyncio.sleep(POLL)
        ready: list[float] = []

        async def watch() -> None:
            while not await self.registered(http):
                await asyncio.sleep(POLL)
            ready.append(time.time())

        watcher = asyncio.create_task(watch())
        started = time.time()
        await asyncio.to_thread(layout.start)  # returns once `core waitfullybooted` has
        booted = time.time()
        await asyncio.wait_for(watcher, 30)
        return {"boot_s": round(booted - started, 3), "gap_ms": round((ready[0] - booted) * 1000, 1)}

    async def run(self) -> dict:
        auth = base64.b64encode(f"{self.sec.ari_user}:{self.sec.ari_password}".encode()).decode()
        rounds = []
        async with aiohttp.ClientSession(headers={"Authorization": f"Basic {auth}"}) as http:
            while not await self.registered(http):
                await asyncio.sleep(POLL)
            for i in range(self.rounds):
                r = await self.one_round(http)
                rounds.append(r)
                self.log(f"round {i + 1}: Asterisk booted in {r['boot_s']:.2f} s; controller ready {r['gap_ms']:+.0f} ms after")
        gaps = [r["gap_ms"] / 1000 for r in rounds]
        return {"rounds": rounds, "gap_ms": percentiles(gaps), "target_gap_ms": TARGET_GAP_MS}

    def teardown(self) -> None:
        if self.controller and self.controller.poll() is None:
            self.controller.send_signal(signal.SIGTERM)
            try:
                self.controller.wait(15)
            except subprocess.TimeoutExpired:
                self.controller.kill()
                self.controller.wait()
        if self.layout:
            self.layout.stop()
            if self.layout.chroot is not None:
                shutil.rmtree(self.layout.host(self.layout.root), ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.reconnect", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="two rounds: a smoke check")
    ap.add_argument("--rounds", type=int, help="Asterisk restarts to measure (default 5, quick 2)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    bench = ReconnectBench(rounds, args.out)
    print(f"bench: Asterisk booted → controller ready, {rounds} restarts (SIGKILL)", flush=True)
    try:
        bench.setup()
        bench.start_controller()
        result = asyncio.run(bench.run())
    finally:
        bench.teardown()
    gap = result["gap_ms"]
    print(f"Asterisk booted → controller ready: p50 {gap['p50']:+.0f} ms, max {gap['max']:+.0f} ms over {gap['n']} restarts "
          f"(goal, not an assertion: under {TARGET_GAP_MS} ms)")
    result.update({"quick": args.quick, "date": dt.datetime.now().isoformat(timespec="seconds"),
                   "machine": os.uname().nodename, "cpus": os.cpu_count()})
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"reconnect-{dt.datetime.now():%Y-%m-%d-%H%M%S}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
