"""Export benchmark: ``tongdai export calls --format csv`` against ``sqlite3 -csv``.

    python -m bench.export [--rows N] [--quick] [--repeat R] [--cache DIR]

Builds (once, then reuses) an SQLite database of N call rows (default 1,000,000) through the
project's migrations, then times, in the same run and on the same file, the project's export
(a subprocess, as staff run it) and the sqlite3 shell selecting the same columns in the same
order. Prints both times (best of R), the speed ratio (sqlite3 time / export time: 1.0 means as
fast, the target is at least 0.5) and the export's peak RSS (target: under 150 MB), read from
the child's own resource usage (wait4). Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("id, started_at, caller, hotline, branch_digit, branch_name, agency_code, agency_name, answered_by, "
           "wait_s, talk_s, disposition, case_code, survey_score, ended_at, ended_in, hangup_by, "
           "CASE WHEN recording_deleted_at IS NULL THEN recording END, recording_s, recording_deleted_at")
TARGET_RATIO = 0.5
TARGET_RSS_MB = 150


def _env(db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TONGDAI_HOME=str(db.parent / "home"), TONGDAI_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
               TONGDAI_ASTERISK="sandbox", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def build(db: Path, rows: int, seed: int = 7) -> None:
    """The benchmark database: migrated schema, ``rows`` varied calls over about a year."""
    sys.path.insert(0, str(REPO))
    from ivr.config import routing as rt
    from ivr.config.settings import Settings
    from ivr.records import db as db_mod

    tmp = db.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    db_mod.upgrade(Settings.from_env({"TONGDAI_HOME": str(db.parent / "home"), "TONGDAI_ASTERISK": "sandbox",
                                      "TONGDAI_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}"}))
    routing = rt.load(REPO / "routing.yaml")
    branches = [(b.digit, b.name, b.agency, routing.agencies[b.agency].name, b.targets) for b in routing.branches]
    rng = random.Random(seed)
    fmt = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DateTime storage format (models.UTCDateTime)
    start = dt.datetime(2026, 1, 5, 0, 0)
    con = sqlite3.connect(tmp)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    sql = ("INSERT INTO calls (id, caller, hotline, started_at, answered_at, ended_at, branch_digit, branch_name, "
           "agency_code, agency_name, answered_by, wait_s, talk_s, disposition, ended_in, hangup_by, survey_score, "
           "case_code, recording, recording_s) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    step = 365 * 86400 / max(rows, 1)
    batch = []
    for i in range(rows):
        t0 = start + dt.timedelta(seconds=i * step + rng.random())
        d, bname, acode, aname, targets = rng.choice(branches)
        roll = rng.random()
        wait = round(rng.uniform(3, 40), 3)
        if roll < 0.7:
            disp, by, talk, ended_in = "answered", rng.choice(targets), round(rng.uniform(20, 600), 3), "survey"
            score = rng.choice((None, 1, 2, 3, 4, 5, 5, 4))
            case = None
        else:
            disp = rng.choice(("no_answer", "busy", "abandoned", "closed", "invalid_input"))
            by, talk, score, ended_in = None, None, None, rng.choice(("menu", "dialing", "complaint", "greeting"))
            case = str(100000 + i % 900000) if disp in ("no_answer", "busy") else None
        answered = t0 + dt.timedelta(seconds=wait) if by else None
        ended = t0 + dt.timedelta(seconds=wait + (talk or 0) + 10)
        caller = rng.choice(("09", "03", "07", "+849", "anonymous")) + f"{rng.randrange(10 ** 8):08d}"
        cid = f"{1767571200 + i}.{i % 997}"
        # Answered calls are recorded (docs/recording.md): the export carries the path and length.
        recording = f"recordings/calls/{t0:%Y}/{t0:%m}/{cid}.wav" if talk else None
        batch.append((cid, caller, "1022", t0.strftime(fmt),
                      answered.strftime(fmt) if answered else None, ended.strftime(fmt), d, bname, acode, aname, by,
                      wait, talk, disp, ended_in, "caller" if disp == "abandoned" else "system", score, case,
                      recording, talk))
        if len(batch) == 50_000:
            con.executemany(sql, batch)
            batch.clear()
    if batch:
        con.executemany(sql, batch)
    con.commit()
    con.execute("ANALYZE")
    con.close()
    os.replace(tmp, db)


def _schema_head() -> str:
    from alembic.script import ScriptDirectory

    sys.path.insert(0, str(REPO))
    from ivr.config.settings import Settings
    from ivr.records.db import alembic_config

    cfg = alembic_config(Settings.from_env({"TONGDAI_HOME": "/nonexistent", "TONGDAI_ASTERISK": "sandbox"}))
    return str(ScriptDirectory.from_config(cfg).get_current_head())


def run(cmd: list[str], env: dict[str, str], stdout) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}): {err.strip()}")
    return elapsed, usage.ru_maxrss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, help="rows in the database (default 1,000,000; --quick: 20,000)")
    ap.add_argument("--quick", action="store_true", help="small and once: a smoke run")
    ap.add_argument("--repeat", type=int, help="runs of each side, best kept (default 3; --quick: 1)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tongdai" / "bench",
                    help="where the database is kept between runs")
    a = ap.parse_args(argv)
    rows = a.rows or (20_000 if a.quick else 1_000_000)
    repeat = a.repeat or (1 if a.quick else 3)
    if not shutil.which("sqlite3"):
        raise SystemExit("sqlite3 is missing: scripts/install-system-deps.sh installs it")
    a.cache.mkdir(parents=True, exist_ok=True)
    # One file per schema revision: a database built by an older schema lacks columns the export reads.
    db = a.cache / f"calls-{rows}-{_schema_head()}.db"
    if not db.exists():
        t = time.perf_counter()
        print(f"building {db} ({rows:,} rows)…", flush=True)
        build(db, rows)
        print(f"  built in {time.perf_counter() - t:.1f} s", flush=True)
    env = _env(db)
    ours_cmd = [sys.executable, "-m", "ivr", "export", "calls", "--format", "csv"]
    ref_cmd = ["sqlite3", "-csv", "-header", str(db), f"SELECT {COLUMNS} FROM calls ORDER BY started_at, id"]
    ours, ref, rss = [], [], 0
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeat):
            for name, cmd, times in (("ours", ours_cmd, ours), ("sqlite3", ref_cmd, ref)):
                out = Path(d) / f"{name}.csv"
                with open(out, "wb") as f:
                    elapsed, peak = run(cmd, env, f)
                times.append(elapsed)
                if name == "ours":
                    rss = max(rss, peak)
                with open(out, "rb") as f:
                    lines = sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))
                if lines != rows + 1:
                    raise SystemExit(f"{name}: {lines} lines for {rows} rows")
    t_ours, t_ref = min(ours), min(ref)
    ratio = t_ref / t_ours
    rss_mb = rss / 1024
    print(f"rows:            {rows:,}")
    print(f"tongdai export:  {t_ours:.2f} s  ({rows / t_ours:,.0f} rows/s; runs: {', '.join(f'{x:.2f}' for x in ours)})")
    print(f"sqlite3 -csv:    {t_ref:.2f} s  ({rows / t_ref:,.0f} rows/s; runs: {', '.join(f'{x:.2f}' for x in ref)})")
    print(f"speed ratio:     {ratio:.2f} of sqlite3 (target >= {TARGET_RATIO}) {'OK' if ratio >= TARGET_RATIO else 'MISSED'}")
    print(f"export peak RSS: {rss_mb:.0f} MB (target < {TARGET_RSS_MB} MB) {'OK' if rss_mb < TARGET_RSS_MB else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
