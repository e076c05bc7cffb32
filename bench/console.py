"""The staff console under a province's worth of data, and beside calls.

``python -m bench.console [--quick] [--cases 100000] [--calls 1000000] [--database-url URL]``
(``make bench`` runs it after the capacity bench).

1. Fills a fresh database with ``--cases`` cases (two years, the branches' agencies, about
   three in five assigned to one or two of the 122 agencies, a history per case) and ``--calls``
   calls, and runs `tongdai web` on it as its own process, as in production.
2. ``/cases`` p95: an officer of one agency asks for one status, again and again, one request at
   a time (the issue's target: p95 ≤ 200 ms at 100,000 cases), and the same for a supervisor's
   unfiltered inbox and a free-text search, for comparison.
3. Calls with the console loaded: the capacity bench's private Asterisk, controller and SIPp
   desk phones (:mod:`bench.capacity`) on the same database; a level of ``--level`` (40)
   concurrent calls runs alternately alone and with ``--clients`` (8) clients loading ``/cases``
   without pause (in a process of their own at the lowest priority: they stand for browsers
   elsewhere), ``--rounds`` (2) times, then alone once more. Every call must be answered; the
   post-dial delay p95 of the loaded runs must stay within the unloaded runs' (highest, plus
   their spread). ``--cpu-quota``, ``--web-nice`` and ``--load-path`` are for experiments.

Figures go to ``bench/results/console-<date>.json`` and are quoted in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.models import Call, Case, CaseAssignment, CaseEvent
from ivr.records import db
from ivr.supervise import yield_cpu
from ivr.web.accounts import Accounts

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
RESULTS = HERE / "results"
PASSWORD = "bench password 1"
BATCH = 5000

STATUS_WEIGHTS = {"received": 4, "classified": 3, "assigned": 6, "in_progress": 5, "answered": 10, "closed": 70,
                  "reopened": 2}
DISPOSITION_WEIGHTS = {"answered": 70, "no_answer": 8, "busy": 4, "abandoned": 10, "closed": 5, "complaint": 1,
                       "invalid_input": 2}


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


# ------------------------------------------------------------------------------------ data


async def populate(settings: Settings, routing: rt.Routing, n_cases: int, n_calls: int, *, seed: int = 21,
                   log=print) -> dict:
    """Fill the (migrated, empty) database; returns what was written."""
    rng = random.Random(seed)
    engine = db.engine(settings)
    now = dt.datetime.now(dt.timezone.utc)
    start = now - dt.timedelta(days=730)
    span = (now - start).total_seconds()
    agencies = list(routing.agencies)
    branches = list(routing.branches)
    t0 = time.monotonic()
    try:
        # Calls: the call log of two years, oldest first (ids as the controller makes them).
        rows = []
        async with engine.begin() as conn:
            for i in range(n_calls):
                t = start + dt.timedelta(seconds=span * i / max(1, n_calls))
                b = rng.choice(branches)
                disp = _pick(rng, DISPOSITION_WEIGHTS)
                rows.append({"id": f"bench-{i}", "caller": f"09{rng.randrange(10**8):08d}", "hotline": "1022",
                             "started_at": t, "ended_at": t + dt.timedelta(seconds=rng.randint(20, 400)),
                             "branch_digit": b.digit, "branch_name": b.name, "agency_code": b.agency,
                             "agency_name": routing.agencies[b.agency].name, "disposition": disp,
                             "answered_by": b.targets[0] if disp == "answered" else None,
                             "wait_s": rng.uniform(2, 30) if disp == "answered" else None})
                if len(rows) == BATCH:
                    await conn.execute(sa.insert(Call), rows)
                    rows = []
            if rows:
                await conn.execute(sa.insert(Call), rows)
        log(f"  {n_calls} calls in {time.monotonic() - t0:.0f} s")
        t1 = time.monotonic()
        codes = rng.sample(range(100000, 1000000), n_cases) if n_cases <= 900000 else None
        case_rows, assign_rows, event_rows = [], [], []
        next_id = 1
        async with engine.begin() as conn:
            for i in range(n_cases):
                received = start + dt.timedelta(seconds=span * i / max(1, n_cases))
                status = _pick(rng, STATUS_WEIGHTS) if received < now - dt.timedelta(days=30) else \
                    rng.choice(("received", "classified", "assigned", "in_progress", "answered"))
                channel = rng.choices(("phone", "zalo", "web"), weights=(80, 15, 5))[0]
                b = rng.choice(branches)
                misconduct = rng.random() < 0.05
                category = "misconduct" if misconduct else rng.choice(("procedure", "regulation", "question", "other"))
                deadline = received + dt.timedelta(days=14 if category != "misconduct" else 7)
                case_id = next_id
                next_id += 1
                answered = status in ("answered", "closed") and rng.random() < 0.9
                case_rows.append({
                    "id": case_id, "code": str(codes[i] if codes else 100000 + i), "channel": channel,
                    "caller": f"09{rng.randrange(10**8):08d}", "anonymous": misconduct and rng.random() < 0.6,
                    "branch_digit": None if misconduct else b.digit, "branch_name": None if misconduct else b.name,
                    "agency_code": None if misconduct else b.agency,
                    "agency_name": None if misconduct else routing.agencies[b.agency].name,
                    "category": category, "summary": f"Phản ánh thử số {i}: thủ tục {rng.randrange(500)} chậm",
                    "received_at": received, "deadline_at": deadline, "status": status,
                    "closed_reason": ("resolved" if answered else "no_further_action") if status == "closed" else None,
                    "answer": "Đã trả lời" if answered else None,
                    "answered_at": received + dt.timedelta(days=rng.randint(1, 12)) if answered else None,
                    "inspection": misconduct, "inspection_reason": "phím 9" if misconduct else None,
                })
                event_rows.append({"case_id": case_id, "at": received, "actor": "system", "action": "receive",
                                   "from_status": None, "to_status": "received", "note": f"kênh {channel}"})
                if status not in ("received", "classified"):
                    for code in rng.sample(agencies, 2 if rng.random() < 0.15 else 1):
                        assign_rows.append({"case_id": case_id, "agency_code": code,
                                            "agency_name": routing.agencies[code].name,
                                            "assigned_at": received + dt.timedelta(hours=4)})
                    event_rows.append({"case_id": case_id, "at": received + dt.timedelta(hours=4), "actor": "snv",
                                       "action": "assign", "from_status": "classified", "to_status": "assigned", "note": None})
                if status != "received":
                    event_rows.append({"case_id": case_id, "at": received + dt.timedelta(hours=2), "actor": "snv",
                                       "action": "classify", "from_status": "received", "to_status": "classified", "note": None})
                if len(case_rows) == BATCH:
                    await _flush(conn, case_rows, assign_rows, event_rows)
            await _flush(conn, case_rows, assign_rows, event_rows)
        log(f"  {n_cases} cases in {time.monotonic() - t1:.0f} s")
        async with engine.connect() as conn:
            counts = {t: (await conn.execute(sa.select(sa.func.count()).select_from(m))).scalar_one()
                      for t, m in (("calls", Call), ("cases", Case), ("case_assignments", CaseAssignment),
                                   ("case_events", CaseEvent))}
            await conn.execute(sa.text("ANALYZE"))  # planner statistics, as a live database has them
            await conn.commit()
    finally:
        await engine.dispose()
    return counts


async def _flush(conn, case_rows: list, assign_rows: list, event_rows: list) -> None:
    if case_rows:
        await conn.execute(sa.insert(Case), case_rows)
    if assign_rows:
        await conn.execute(sa.insert(CaseAssignment), assign_rows)
    if event_rows:
        await conn.execute(sa.insert(CaseEvent), event_rows)
    case_rows.clear()
    assign_rows.clear()
    event_rows.clear()


async def busiest_agency(settings: Settings) -> tuple[str, str, int]:
    """The agency with the most open cases in one status (the heaviest officer inbox)."""
    engine = db.engine(settings)
    try:
        async with engine.connect() as conn:
            owned = (await conn.execute(
                sa.select(Case.agency_code, Case.status, sa.func.count()).where(Case.agency_code.isnot(None))
                .group_by(Case.agency_code, Case.status).order_by(sa.func.count().desc()).limit(1))).first()
    finally:
        await engine.dispose()
    return owned[0], owned[1], owned[2]


# ------------------------------------------------------------------------------ the console


class CpuQuota:
    """``--cpu-quota PCT``: the console and the load's clients in a CPU cgroup (v1 ``cpu``
    controller) limited to PCT % of one core, as systemd's ``CPUQuota=`` would in production.
    Removed at the end; needs root."""

    ROOT = Path("/sys/fs/cgroup/cpu")

    def __init__(self, pct: int):
        self.path = self.ROOT / f"tongdai-bench-{os.getpid()}"
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text("100000")
        (self.path / "cpu.cfs_quota_us").write_text(str(pct * 1000))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        for pid in (self.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (self.ROOT / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            self.path.rmdir()


class WebProcess:
    """`tongdai web` on the bench's data directory, as its own process."""

    def __init__(self, settings: Settings, port: int, home: Path, nice: int | None = None):
        self.env = {**settings.env, "TONGDAI_WEB_ADDR": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
        if nice is not None:
            self.env["TONGDAI_WEB_NICE"] = str(nice)
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = home / "web.stdout.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "ivr", "web"], cwd=REPO_ROOT, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "ready:" in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("the console did not start:\n" + self.log_path.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


async def sign_in(http: aiohttp.ClientSession, base: str, login: str) -> None:
    async with http.get(f"{base}/login") as r:
        token = re.search(r'name="_csrf" value="([^"]+)"', await r.text()).group(1)
    async with http.post(f"{base}/login", data={"username": login, "password": PASSWORD, "_csrf": token},
                         allow_redirects=False) as r:
        if r.status != 303:
            raise RuntimeError(f"bench: cannot sign in as {login}: {r.status}")


async def timed_gets(base: str, login: str, path: str, n: int) -> dict:
    """``n`` GETs of ``path``, one at a time, after a warm-up; latency percentiles in ms."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await sign_in(http, base, login)
        for _ in range(3):
            async with http.get(base + path) as r:
                await r.read()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            async with http.get(base + path) as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"bench: GET {path} as {login}: {r.status}")
            times.append((time.perf_counter() - t) * 1000)
    return {"n": n, **pcts(times), "bytes": len(body)}


def pcts(values: list[float]) -> dict:
    if not values:
        return {}
    v = sorted(values)

    def rank(p: float) -> float:
        return round(v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))], 1)

    return {"p50": rank(50), "p95": rank(95), "max": round(v[-1], 1), "mean": round(statistics.fmean(v), 1)}


async def _load(base: str, login: str, path: str, clients: int, stop) -> dict:
    times: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await sign_in(http, base, login)
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    async with http.get(base + path) as r:
                        await r.read()
                        ok = r.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    times.append((time.perf_counter() - t) * 1000)
                else:
                    errors += 1

    await asyncio.gather(*(one() for _ in range(clients)))
    return {"clients": clients, "requests": len(times), "errors": errors, **pcts(times)}


def _loader_process(base: str, login: str, path: str, clients: int, stop, out) -> None:
    # The clients stand for browsers on other machines: they must not take the CPU from the
    # system under test, so they run at the lowest priority (the console itself runs at its
    # production priority, TONGDAI_WEB_NICE). A session of their own, reniced as a whole: with
    # autogroups nice alone would leave them an equal of Asterisk's session.
    os.setsid()
    yield_cpu(19)
    out.put(asyncio.run(_load(base, login, path, clients, stop)))


class Loader:
    """``clients`` signed-in clients loading ``path`` without pause until stopped, in a process
    of their own."""

    def __init__(self, base: str, login: str, path: str, clients: int):
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._out = ctx.Queue()
        self._proc = ctx.Process(target=_loader_process, args=(base, login, path, clients, self._stop, self._out),
                                 daemon=True)

    async def start(self) -> None:
        self._proc.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    async def stop(self) -> dict:
        self._stop.set()
        result = await asyncio.to_thread(self._out.get, True, 60)
        await asyncio.to_thread(self._proc.join, 30)
        return result


# ------------------------------------------------------------------------------------- run


async def add_staff(settings: Settings, routing: rt.Routing, agency: str) -> None:
    engine = db.engine(settings)
    try:
        accounts = Accounts(engine, lambda: routing)
        await accounts.add("officer1", "officer", PASSWORD, agency=agency)
        await accounts.add("snv1", "supervisor", PASSWORD)
    finally:
        await engine.dispose()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(args, log) -> dict:
    from bench import capacity

    bench = capacity.Bench(levels=[args.level], talk_s=args.talk, quick=False, out_dir=args.out, keep=args.keep,
                           profile=False, variants=("project",), log=log)
    result: dict = {"date": dt.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
                    "machine": {"cores": os.cpu_count(), "loadavg_at_start": list(os.getloadavg())}}
    web: WebProcess | None = None
    quota = CpuQuota(args.cpu_quota) if args.cpu_quota else None
    try:
        s = bench.settings()
        if args.database_url:
            s = Settings.from_env({**s.env, "TONGDAI_DATABASE_URL": args.database_url})
        routing = rt.load(s.routing_path)
        await asyncio.to_thread(db.upgrade, s)
        log(f"bench: filling the database ({args.cases} cases, {args.calls} calls) …")
        result["rows"] = await populate(s, routing, args.cases, args.calls, log=log)
        result["database"] = sa.engine.make_url(s.database_url).get_backend_name()
        agency, status, n = await busiest_agency(s)
        await add_staff(s, routing, agency)
        web = WebProcess(s, free_port(), bench.home, args.web_nice)
        web.start()
        if quota and web.pid:
            quota.add(web.pid)
        log(f"bench: console at {web.url} (PID {web.pid}); officer of {agency}, {n} cases '{status}'")
        reads = {
            "officer_agency_status": f"/cases?status={status}",
            "officer_all": "/cases",
            "supervisor_all": "/cases",
            "supervisor_status_agency": f"/cases?status={status}&agency={agency}",
            "supervisor_search": "/cases?q=ch%E1%BA%ADm+42",
        }
        result["cases_page_ms"] = {}
        for name, path in reads.items():
            who = "officer1" if name.startswith("officer") else "snv1"
            r = await timed_gets(web.url, who, path, args.requests)
            result["cases_page_ms"][name] = {"path": path, **r}
            log(f"   {name:26s} {path:45s} p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  max {r['max']:6.1f} ms")
        result["officer"] = {"agency": agency, "status": status, "cases": n}
        if args.no_calls:
            return result
        # Calls: the capacity bench's Asterisk, controller and desk phones on this data directory.
        bench.settings = lambda: s  # the capacity bench's setup, on the database filled above
        await asyncio.to_thread(bench.setup)
        bench.start_controller()
        await bench.start_desks()
        runs = []
        for i, loaded in enumerate([False, True] * args.rounds + [False]):
            loader = Loader(web.url, "officer1", args.load_path or f"/cases?status={status}", args.clients) \
                if loaded else None
            if loader:
                await loader.start()
                if quota and loader.pid:
                    quota.add(loader.pid)
            log(f"bench: {args.level} calls{' with ' + str(args.clients) + ' clients on /cases' if loaded else ''} …")
            lv = await bench.run_level("project", 7 + i, args.level)
            load = await loader.stop() if loader else None
            runs.append({"loaded": loaded, "post_dial_steps_ms": lv.post_dial_steps_ms,
                         "attempted": lv.attempted, "answered": lv.answered,
                         "desk_answered": lv.desk_answered, "succeeded": lv.succeeded, "failures": lv.failures,
                         "post_dial_delay_ms": lv.post_dial_delay_ms, "answer_latency_ms": lv.answer_latency_ms,
                         "console_load": load})
            log("   " + capacity.describe(lv) + (f"; console: {load['requests']} requests, p95 {load.get('p95')} ms, "
                                                  f"{load['errors']} errors" if load else ""))
        result["calls"] = runs
        result["setup"] = {"level": args.level, "clients": args.clients, "talk_s": args.talk,
                           "web_nice": args.web_nice, "cpu_quota_pct": args.cpu_quota,
                           "load_path": args.load_path or f"/cases?status={status}"}
        result["verdict"] = verdict(runs)
        return result
    finally:
        try:
            if web:
                web.stop()
            if quota:
                quota.remove()
        finally:
            await bench.teardown()


def verdict(runs: list[dict]) -> dict:
    """Every call answered in every run; the console-loaded runs' post-dial delay p95 no higher
    than the highest unloaded run's plus the unloaded runs' spread (max - min): the console
    moves it no more than the machine's own run-to-run variation does."""
    base = [r["post_dial_delay_ms"].get("p95") for r in runs if not r["loaded"]]
    loaded = [r["post_dial_delay_ms"].get("p95") for r in runs if r["loaded"]]
    if None in base or None in loaded or not base or not loaded:
        return {"ok": False, "why": "no post-dial delay measured"}
    spread = max(base) - min(base)
    all_answered = all(r["answered"] == r["attempted"] and r["desk_answered"] == r["attempted"] for r in runs)
    within = max(loaded) <= max(base) + max(spread, 1.0)
    return {"ok": all_answered and within, "all_answered": all_answered, "unloaded_pdd_p95_ms": base,
            "loaded_pdd_p95_ms": loaded, "spread_ms": round(spread, 1), "within_spread": within}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 cases, 100,000 calls, 100 requests, 10 calls")
    ap.add_argument("--cases", type=int)
    ap.add_argument("--calls", type=int)
    ap.add_argument("--requests", type=int, help="requests per measured page (default 300)")
    ap.add_argument("--level", type=int, help="concurrent calls (default 40)")
    ap.add_argument("--clients", type=int, default=8, help="clients loading /cases during the loaded run")
    ap.add_argument("--talk", type=float, default=8.0, help="seconds of talk per call")
    ap.add_argument("--database-url", help="a PostgreSQL database instead of the data directory's SQLite")
    ap.add_argument("--no-calls", action="store_true", help="only the /cases timings (no Asterisk)")
    ap.add_argument("--web-nice", type=int, help="the console's TONGDAI_WEB_NICE (default: its own, 10)")
    ap.add_argument("--cpu-quota", type=int, metavar="PCT",
                    help="confine the console and the clients to PCT %% of one core (cgroup v1 cpu; root)")
    ap.add_argument("--load-path", help="what the clients load during the loaded runs (default /cases?status=…)")
    ap.add_argument("--rounds", type=int, help="unloaded/loaded pairs of call runs, then one unloaded (default 2, quick 1)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    if a.database_url and not a.no_calls:
        ap.error("--database-url needs --no-calls (the capacity bench reads its call log from SQLite)")
    a.cases = a.cases or (10_000 if a.quick else 100_000)
    a.calls = a.calls if a.calls is not None else (100_000 if a.quick else 1_000_000)
    a.requests = a.requests or (100 if a.quick else 300)
    a.level = a.level or (10 if a.quick else 40)
    a.rounds = a.rounds or (1 if a.quick else 2)
    t0 = time.monotonic()

    def log(m: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {m}", flush=True)

    async def go() -> dict:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        return await run(a, log)

    try:
        result = asyncio.run(go())
    except asyncio.CancelledError:
        print("bench.console: stopped", file=sys.stderr)
        return 143
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"console-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    print(f"\nresults: {path}")
    v = result.get("verdict")
    if v:
        print(f"calls: all answered: {v['all_answered']}; post-dial delay p95 loaded {v['loaded_pdd_p95_ms']} "
              f"vs unloaded {v['unloaded_pdd_p95_ms']} (spread {v['spread_ms']} ms): "
              f"{'within' if v['within_spread'] else 'OUTSIDE'} the spread")
    target = result["cases_page_ms"]["officer_agency_status"]["p95"]
    print(f"/cases (one agency, one status) p95 at {result['rows']['cases']} cases: {target} ms "
          f"({'meets' if target <= 200 else 'MISSES'} the 200 ms target)")
    return 0 if (v is None or v["ok"]) and target <= 200 else 1


if __name__ == "__main__":
    sys.exit(main())
