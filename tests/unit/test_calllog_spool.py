"""The call log survives a failing database: records go to the durable spool and are written
back exactly once when the database returns (real SQLite, really locked)."""

from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy.ext.asyncio import create_async_engine

from ivr import db
from ivr.calllog import CallLog, CallRecord, LegRecord, utcnow


def record(i: int) -> CallRecord:
    rec = CallRecord(id=f"c{i}", caller=f"09000000{i:02d}", hotline="1022", started_at=utcnow())
    rec.event("arrived", caller=rec.caller)
    rec.branch_digit, rec.branch_name, rec.agency_code, rec.agency_name = "4", "Cải cách TTHC", "VPUBND", "Văn phòng UBND tỉnh"
    rec.legs.append(LegRecord(channel_id=f"c{i}-leg1", extension="2401", started_at=utcnow(), answered_at=utcnow(), result="answered"))
    rec.answered_at = utcnow()
    rec.answered_by = "2401"
    rec.event("bridged", extension="2401")
    rec.disposition = "answered"
    rec.ended_at = utcnow()
    return rec


async def wait_until(pred, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


async def test_locked_database_spools_then_replays_exactly_once(settings_factory):
    s = settings_factory()
    await asyncio.to_thread(db.upgrade, s)
    path = s.home / "tongdai.db"
    engine = create_async_engine(s.database_url, connect_args={"timeout": 0.2})
    spool = s.home / "spool" / "calllog.jsonl"
    log = CallLog(engine, spool, replay_every=0.2)
    log.start()
    lock = sqlite3.connect(path, timeout=0)
    lock.execute("BEGIN EXCLUSIVE")  # every other writer now gets "database is locked"
    try:
        for i in range(10):
            rec = record(i)
            log.opened(rec)
            log.closed(rec)
        await asyncio.wait_for(log.flush(), 30)
        assert log.failures >= 1
        assert len(spool.read_text().splitlines()) == 20  # all there, durable, in order
        assert lock.execute("select count(*) from calls").fetchone()[0] == 0
    finally:
        lock.rollback()
        lock.close()
    assert await wait_until(lambda: log.spool.pending() == 0)
    con = sqlite3.connect(path)
    assert con.execute("select count(*), count(distinct id) from calls").fetchone() == (10, 10)
    assert con.execute("select count(*) from calls where disposition = 'answered' and answered_by = '2401'").fetchone()[0] == 10
    assert con.execute("select count(*) from call_events").fetchone()[0] == 20
    assert con.execute("select count(*) from call_legs").fetchone()[0] == 10
    # A crash after writing but before trimming the spool replays the same records again:
    # still exactly one row each.
    for i in range(3):
        rec = record(i)
        payload = rec.row()
        payload["events"] = [{"seq": n, "at": at, "kind": k, "detail": d} for n, (at, k, d) in enumerate(rec.events)]
        payload["legs"] = [vars(l).copy() for l in rec.legs]
        log.spool.append({"op": "open", "payload": rec.row()})
        log.spool.append({"op": "close", "payload": payload})
    assert await log.replay() == 6
    assert con.execute("select count(*) from calls").fetchone()[0] == 10
    assert con.execute("select count(*) from call_events").fetchone()[0] == 20
    assert con.execute("select count(*) from calls where disposition != 'answered'").fetchone()[0] == 0
    con.close()
    await log.close()
    await engine.dispose()


async def test_new_records_wait_behind_spooled_ones(settings_factory):
    """Order is kept: while older records are spooled, a new one joins them, even if the
    database is already back."""
    s = settings_factory()
    await asyncio.to_thread(db.upgrade, s)
    engine = create_async_engine(s.database_url)
    log = CallLog(engine, s.home / "spool" / "calllog.jsonl", replay_every=3600)
    rec = record(1)
    log.spool.append({"op": "open", "payload": rec.row()})
    log.start()
    rec.disposition = "abandoned"
    log.closed(rec)
    await log.flush()
    assert log.spool.pending() == 2
    assert await log.replay() == 2
    con = sqlite3.connect(s.home / "tongdai.db")
    assert con.execute("select disposition from calls").fetchall() == [("abandoned",)]
    con.close()
    await log.close()
    await engine.dispose()
