"""Cron scripts: recordings retention (never an open case's recording) and the nightly export."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import zoneinfo

import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.orm import Session

from ivr.cli import main
from ivr.models import Call, Case, CaseEvent
from ivr.records import db
from tests.paths import REPO_ROOT

VN = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")


def _case(s, code, status, rel):
    c = Case(code=code, channel="phone", caller="0909", anonymous=False, category="other",
             received_at=dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc),
             deadline_at=dt.datetime(2025, 1, 20, tzinfo=dt.timezone.utc), status=status, recording=rel,
             closed_reason="resolved" if status == "closed" else None)
    s.add(c)


def test_prune_keeps_open_cases_and_recent_files(settings_factory, monkeypatch):
    st = settings_factory()
    db.upgrade(st)
    rec = st.home / "recordings" / "2025" / "01"
    rec.mkdir(parents=True)
    old = time.time() - 400 * 86400
    files = {}
    for name in ("closed", "open", "orphan", "recent"):
        p = rec / f"{name}.wav"
        p.write_bytes(b"RIFF" + b"\0" * 2044)
        if name != "recent":
            os.utime(p, (old, old))
        files[name] = p
    eng = sa.create_engine(st.database_url.replace("+aiosqlite", ""))
    with Session(eng) as s, s.begin():
        _case(s, "111111", "closed", "recordings/2025/01/closed.wav")
        _case(s, "222222", "in_progress", "recordings/2025/01/open.wav")
    for k, v in st.env.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()
    dry = runner.invoke(main, ["recordings", "prune", "--days", "365", "--dry-run"])
    assert dry.exit_code == 0 and all(p.exists() for p in files.values())
    assert "Sẽ xoá 2 bản ghi âm" in dry.output
    res = runner.invoke(main, ["recordings", "prune", "--days", "365"])
    assert res.exit_code == 0, res.output
    assert "Đã xoá 2 bản ghi âm cũ hơn 365 ngày" in res.output and "giữ lại 1" in res.output
    assert not files["closed"].exists() and not files["orphan"].exists()
    assert files["open"].exists() and files["recent"].exists()
    with Session(eng) as s:
        closed = s.scalars(sa.select(Case).where(Case.code == "111111")).one()
        assert closed.recording is None
        ev = s.scalars(sa.select(CaseEvent).where(CaseEvent.case_id == closed.id)).one()
        assert ev.action == "recording_pruned" and "recordings/2025/01/closed.wav" in ev.note
        assert s.scalars(sa.select(Case.recording).where(Case.code == "222222")).one() == "recordings/2025/01/open.wav"
    eng.dispose()
    for bad in (["--days", "0"],):
        r = runner.invoke(main, ["recordings", "prune", *bad])
        assert r.exit_code == 2 and "lớn hơn 0" in r.output
    monkeypatch.setenv("TONGDAI_RECORDINGS_KEEP_DAYS", "một năm")
    r = runner.invoke(main, ["recordings", "prune"])
    assert r.exit_code == 2 and "TONGDAI_RECORDINGS_KEEP_DAYS" in r.output


def test_nightly_export_script_writes_yesterdays_files(settings_factory, tmp_path):
    st = settings_factory()
    db.upgrade(st)
    yesterday = dt.datetime.now(VN).date() - dt.timedelta(days=1)
    eng = sa.create_engine(st.database_url.replace("+aiosqlite", ""))
    with Session(eng) as s, s.begin():
        for cid, day in (("y1", yesterday), ("t1", yesterday + dt.timedelta(days=1))):
            s.add(Call(id=cid, caller="0909", hotline="1022", disposition="answered", survey_score=4,
                       started_at=dt.datetime.combine(day, dt.time(9), VN)))
    eng.dispose()
    env = dict(os.environ, **st.env, TONGDAI=f"{sys.executable} -m ivr", PYTHONPATH=str(REPO_ROOT))
    out = tmp_path / "exports"
    p = subprocess.run([str(REPO_ROOT / "scripts" / "nightly-export.sh"), str(out)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    d = out / f"{yesterday:%Y}" / f"{yesterday:%m}"
    assert sorted(x.name for x in d.iterdir()) == [f"{t}-{yesterday}.csv" for t in ("calls", "cases", "surveys")]
    calls = (d / f"calls-{yesterday}.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(calls) == 2 and calls[1].startswith("y1,")
