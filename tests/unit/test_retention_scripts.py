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
    assert "Sẽ xoá 2 bản ghi âm phản ánh" in dry.output
    res = runner.invoke(main, ["recordings", "prune", "--days", "365"])
    assert res.exit_code == 0, res.output
    assert "Đã xoá 2 bản ghi âm phản ánh cũ hơn 365 ngày" in res.output and "giữ lại 1 bản ghi phản ánh" in res.output
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


def test_prune_conversations_by_routing_retention_keeping_open_and_flagged_cases(db_settings, monkeypatch, tmp_path):
    """Conversation recordings go after recording.retention_days (by the call's start), the
    call's row stays and says when; a case not closed, or flagged for inspection, keeps its
    call's recording; complaint retention (--days, file age) never touches recordings/calls."""
    import asyncio

    from sqlalchemy.ext.asyncio import async_sessionmaker

    from ivr.config import routing as rt
    from ivr.records import recordings as rf

    st = db_settings
    db.upgrade(st)
    routing = REPO_ROOT / "routing.yaml"
    text = routing.read_text(encoding="utf-8").replace("  retention_days: 365 ", "  retention_days: 30 ", 1)
    (tmp_path / "routing.yaml").write_text(text, encoding="utf-8")
    r = rt.loads(text)
    assert r.recording.retention_days == 30
    t0 = dt.datetime(2026, 1, 2, 3, tzinfo=dt.timezone.utc)
    calls = {  # call id -> (started, case status, inspection)
        "old-nocase": (t0, None, False),
        "old-closed": (t0, "closed", False),
        "old-open": (t0, "assigned", False),
        "old-flagged": (t0, "closed", True),
        "old-missing": (t0, None, False),
        "recent": (t0 + dt.timedelta(days=60), None, False),
    }
    paths = {}
    for cid, (start, _, _) in calls.items():
        paths[cid] = st.home / rf.conversation_path(cid, start)
        if cid != "old-missing":
            paths[cid].parent.mkdir(parents=True, exist_ok=True)
            paths[cid].write_bytes(b"RIFF" + b"\0" * 4092)
            old = time.time() - 400 * 86400  # very old files: complaint retention must still leave them
            os.utime(paths[cid], (old, old))

    async def setup():
        from ivr.records import cases as cm

        engine = db.engine(st)
        async with async_sessionmaker(engine).begin() as s:
            for cid, (start, _, _) in calls.items():
                s.add(Call(id=cid, caller="0909", hotline="1022", started_at=start, disposition="answered",
                           recording=rf.conversation_path(cid, start), recording_s=60.0))
        svc = cm.Cases(engine, r)
        for cid, (_, status, flagged) in calls.items():
            if status is None:
                continue
            case = await svc.create(cm.NewCase(channel="phone", caller="0909", call_id=cid))
            await svc.act(case.code, "classify", actor="t", category="other")
            await svc.act(case.code, "assign", actor="t", agencies=["SNV"])
            if flagged:
                await svc.flag_inspection(case.code, actor="t", reason="kiểm tra")
            if status == "closed":
                await svc.act(case.code, "close", actor="t", reason="duplicate")
        await engine.dispose()

    asyncio.run(setup())
    for k, v in st.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TONGDAI_ROUTING", str(tmp_path / "routing.yaml"))
    runner = CliRunner()
    # As of 20/3/2026 the calls of 2/1 are over 30 days old, the one of 3/3 is not.
    res = runner.invoke(main, ["recordings", "prune", "--as-of", "20/03/2026"])
    assert res.exit_code == 0, res.output
    assert "0 bản ghi âm phản ánh cũ hơn 365 ngày và 3 bản ghi âm cuộc gọi cũ hơn 30 ngày" in res.output, res.output
    assert "giữ lại 0 bản ghi phản ánh và 2 bản ghi cuộc gọi" in res.output
    gone = {"old-nocase", "old-closed", "old-missing"}
    for cid, p in paths.items():
        assert p.exists() == (cid not in gone), cid

    async def rows():
        engine = db.engine(st)
        async with engine.connect() as conn:
            out = dict((await conn.execute(sa.select(Call.id, Call.recording_deleted_at))).all())
            recs = dict((await conn.execute(sa.select(Call.id, Call.recording))).all())
        await engine.dispose()
        return out, recs

    deleted, recs = asyncio.run(rows())
    assert {cid for cid, at in deleted.items() if at is not None} == gone
    assert all(recs[cid] for cid in calls)  # every row still knows what it had
    # A date in the future: "recent" goes too; open and flagged cases still keep theirs.
    res = runner.invoke(main, ["recordings", "prune", "--as-of", "2099-01-01", "--dry-run"])
    assert res.exit_code == 0 and "Sẽ xoá 0 bản ghi âm phản ánh" in res.output and "và 1 bản ghi âm cuộc gọi" in res.output
    assert paths["recent"].exists()
    res = runner.invoke(main, ["recordings", "prune", "--as-of", "2099-01-01"])
    assert res.exit_code == 0 and not paths["recent"].exists()
    assert paths["old-open"].exists() and paths["old-flagged"].exists()
    bad = runner.invoke(main, ["recordings", "prune", "--as-of", "31/02/2026"])
    assert bad.exit_code == 2 and "--as-of" in bad.output


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
    assert "Đã xoá 0 bản ghi âm phản ánh" in p.stderr and "bản ghi âm cuộc gọi" in p.stderr  # then the retention ran
