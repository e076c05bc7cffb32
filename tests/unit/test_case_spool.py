"""Complaints recorded while the database is down: the case is spooled under the code the
caller heard and stored exactly once, with that code, when the database returns (after its
call's row: on PostgreSQL the foreign key is enforced). On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

from ivr.config import routing as rt
from ivr.records import cases as cm
from ivr.records import db
from ivr.records.calllog import CallLog
from ivr.testing import wait_until
from tests.paths import REPO_ROOT

from .test_calllog_spool import WITH_OUTAGE, engine_for, outage, record, replay_refused, scalar

ROUTING = rt.load(REPO_ROOT / "routing.yaml")


def complaint(call_id: str, **kw) -> cm.NewCase:
    return cm.NewCase(channel="phone", caller="0909000001", call_id=call_id, branch_digit="2",
                      agency_code="VPUBND", agency_name="Văn phòng UBND tỉnh", recording=f"recordings/{call_id}.wav",
                      recording_seconds=4.2, **kw)


@WITH_OUTAGE
async def test_spooled_cases_are_stored_once_with_their_code_after_their_call(db_settings, request, caplog):
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = engine_for(s)
    log = CallLog(engine, s.home / "spool" / "calllog.jsonl", replay_every=0.2, write_timeout=2)
    log.also_replay(lambda: cm.replay_spooled(engine, ROUTING, s.home))
    log.start()
    recs = [record(i) for i in range(3)]
    async with outage(request, s):
        codes = []
        for i, rec in enumerate(recs):
            log.opened(rec)
            await log.flush()
            # What complaint._open_case does when the database refuses the case.
            code = cm.new_code()
            cm.spool_case(s.home, code, complaint(rec.id, category="misconduct" if i == 0 else "other",
                                                  inspection_reason="phím 9" if i == 0 else None), rec.started_at)
            codes.append(code)
            rec.case_code = code
            log.closed(rec)
        await log.flush()
        assert log.spool.pending() == 6
        assert sorted(p.stem for p in cm.spool_dir(s.home).glob("*.json")) == sorted(codes)
        # Nothing gets in while it is down (and the case files wait behind the call log).
        assert await cm.replay_spooled(engine, ROUTING, s.home) == 0
        await wait_until(lambda: replay_refused(caplog, log.spool.path), 5, "the replayer to try, and fail")
    await wait_until(lambda: log.spool.pending() == 0 and not list(cm.spool_dir(s.home).glob("*.json")), 15,
                     "both spools to be written back")
    url = s.database_url
    assert await scalar(url, "select count(*), count(distinct code) from cases") == (3, 3)
    for rec, code in zip(recs, codes):
        assert await scalar(url, f"select call_id, status from cases where code = '{code}'") == (rec.id, "received")
        assert await scalar(url, f"select case_code from calls where id = '{rec.id}'") == (code,)
    case = await cm.Cases(engine, ROUTING).get(codes[0])
    assert case.inspection and case.category == "misconduct" and case.received_at == recs[0].started_at
    assert [e.action for e in case.history] == ["receive", "flag_inspection"]
    assert "hàng đợi" in case.history[0].note
    assert case.deadline_at == cm.deadline(ROUTING, recs[0].started_at, "misconduct")

    # A replay that died after the insert but before removing the file: stored once all the same.
    cm.spool_case(s.home, codes[1], complaint(recs[1].id), recs[1].started_at)
    assert await cm.replay_spooled(engine, ROUTING, s.home) == 1
    assert await scalar(url, "select count(*) from cases") == (3,)
    assert await scalar(url, "select count(*) from case_events") == (4,)
    await log.close()
    await engine.dispose()


async def test_a_spooled_code_taken_meanwhile_gets_a_new_code_and_a_note(db_settings):
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    svc = cm.Cases(engine, ROUTING)
    other = await svc.create(cm.NewCase(channel="web", caller=None, summary="một phản ánh khác"))
    received = dt.datetime.now(dt.timezone.utc)
    cm.spool_case(s.home, other.code, cm.NewCase(channel="phone", caller="0909000002"), received)
    (cm.spool_dir(s.home) / "123456.json").write_text("{torn", encoding="utf-8")
    assert await cm.replay_spooled(engine, ROUTING, s.home) == 1
    rows = await svc.list()
    assert len(rows) == 2
    new = next(c for c in rows if c.code != other.code)
    assert new.caller == "0909000002" and new.received_at == received
    assert f"mã {other.code} đã đọc cho người gọi" in (await svc.get(new.code)).history[0].note
    assert (cm.spool_dir(s.home) / "123456.bad").exists()  # set aside, not deleted
    assert list(cm.spool_dir(s.home).glob("*.json")) == []
    await engine.dispose()
