"""The call log survives a failing database: records go to the durable spool and are written
back exactly once when the database returns. On SQLite the database is really locked; on
PostgreSQL the server is really stopped (and, separately, a table is locked so writes hang)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

import pytest
from sqlalchemy import pool, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from ivr.models import Call
from ivr.records import db, export
from ivr.records.calllog import CallLog, CallRecord, LegRecord, utcnow
from ivr.testing import wait_until


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


async def scalar(url: str, sql: str):
    """One value, on a connection of its own (never one from the call log's pool)."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).one()
    finally:
        await engine.dispose()


def engine_for(s):
    """The service's engine; on SQLite with a short lock wait, so a locked database fails fast."""
    if s.database_url.startswith("sqlite"):
        return create_async_engine(s.database_url, connect_args={"timeout": 0.2})
    return db.engine(s)


@contextlib.asynccontextmanager
async def outage(request, s):
    """The database refuses every write for the duration of the block."""
    if s.database_url.startswith("sqlite"):
        lock = sqlite3.connect(s.home / "tongdai.db", timeout=0)
        lock.execute("BEGIN EXCLUSIVE")  # every other writer now gets "database is locked"
        try:
            yield
        finally:
            lock.rollback()
            lock.close()
    else:
        pg = request.getfixturevalue("postgres")
        await asyncio.to_thread(pg.stop, "fast")  # the pool's connections die with it
        try:
            yield
        finally:
            await asyncio.to_thread(pg.start)


def replay_refused(caplog, spool) -> bool:
    """Whether the replayer has tried to write the spool back and was refused."""
    return any(r.name == "tongdai.spool" and "still cannot write" in r.getMessage() and spool.name in r.getMessage()
               for r in caplog.records)


# On PostgreSQL the outage stops the server; on SQLite a lock refuses the writes.
WITH_OUTAGE = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg_outage)], indirect=True)


@WITH_OUTAGE
async def test_database_outage_spools_then_replays_exactly_once(db_settings, request, caplog):
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = engine_for(s)
    spool = s.home / "spool" / "calllog.jsonl"
    log = CallLog(engine, spool, replay_every=0.2, write_timeout=2)
    log.start()
    # A first call goes straight in, so the pool holds a live connection when the outage starts.
    log.opened(record(99))
    await log.flush()
    assert log.spool.pending() == 0
    async with outage(request, s):
        t0 = time.monotonic()
        for i in range(10):
            rec = record(i)
            log.opened(rec)
            log.closed(rec)
        await asyncio.wait_for(log.flush(), 30)
        # The first refusal may take up to the write timeout; every later record goes straight to the spool.
        assert time.monotonic() - t0 < 2 + 1
        assert log.failures >= 1
        assert len(spool.read_text().splitlines()) == 20  # all there, durable, in order
        await wait_until(lambda: replay_refused(caplog, spool), 5, "the replayer to try, and fail")
        assert log.spool.pending() == 20
    await wait_until(lambda: log.spool.pending() == 0, 10, "the spool to be written back")
    url = s.database_url
    assert await scalar(url, "select count(*), count(distinct id) from calls where id != 'c99'") == (10, 10)
    assert (await scalar(url, "select count(*) from calls where disposition = 'answered' and answered_by = '2401'"))[0] == 11
    assert (await scalar(url, "select count(*) from call_events where call_id != 'c99'"))[0] == 20
    assert (await scalar(url, "select count(*) from call_legs where call_id != 'c99'"))[0] == 10
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
    assert (await scalar(url, "select count(*) from calls"))[0] == 11
    assert (await scalar(url, "select count(*) from call_events"))[0] == 20  # c99 was only opened
    assert (await scalar(url, "select count(*) from call_legs"))[0] == 10
    assert (await scalar(url, "select count(*) from calls where disposition != 'answered'"))[0] == 0
    # And new calls go straight in again.
    log.opened(record(50))
    await log.flush()
    assert log.spool.pending() == 0 and (await scalar(url, "select count(*) from calls"))[0] == 12
    await log.close()
    await engine.dispose()


async def test_new_records_wait_behind_spooled_ones(db_settings):
    """Order is kept: while older records are spooled, a new one joins them, even if the
    database is already back."""
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    log = CallLog(engine, s.home / "spool" / "calllog.jsonl", replay_every=3600)
    rec = record(1)
    log.spool.append({"op": "open", "payload": rec.row()})
    log.start()
    rec.disposition = "abandoned"
    log.closed(rec)
    await log.flush()
    assert log.spool.pending() == 2
    assert await log.replay() == 2
    assert await scalar(s.database_url, "select disposition from calls") == ("abandoned",)
    await log.close()
    await engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_hung_postgresql_never_blocks_the_writer(db_settings, postgres):
    """A table lock makes every write hang (no error, no answer): the write timeout turns that
    into a spooled record, and the records are written once the lock is gone."""
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    log = CallLog(engine, s.home / "spool" / "calllog.jsonl", replay_every=0.3, write_timeout=1)
    log.start()
    import asyncpg

    dbname = s.database_url.rsplit("/", 1)[1]
    locker = await asyncpg.connect(postgres.dsn(dbname))
    tr = locker.transaction()
    await tr.start()
    await locker.execute("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
    try:
        t0 = time.monotonic()
        for i in range(5):
            rec = record(i)
            log.opened(rec)
            log.closed(rec)
        await asyncio.wait_for(log.flush(), 10)
        assert time.monotonic() - t0 < 1 + 1  # one timeout, then straight to the spool
        assert log.spool.pending() == 10
    finally:
        await tr.rollback()
        await locker.close()
    await wait_until(lambda: log.spool.pending() == 0, 15, "the spool to be written back")
    assert await scalar(s.database_url, "select count(*), count(distinct id) from calls") == (5, 5)
    assert (await scalar(s.database_url, "select count(*) from call_events"))[0] == 10
    await log.close()
    await engine.dispose()


@pytest.mark.pg_outage
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_first_write_after_a_postgresql_restart_goes_straight_in(db_settings, postgres):
    """The pool's connections die with the server; the next write must not fail on one of them
    (and land in the spool for nothing): the engine checks a pooled connection before using it."""
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    log = CallLog(engine, s.home / "spool" / "calllog.jsonl", replay_every=3600)
    log.start()
    log.opened(record(1))
    await log.flush()
    await asyncio.to_thread(postgres.stop, "fast")
    await asyncio.to_thread(postgres.start)
    log.opened(record(2))
    await log.flush()
    assert (log.failures, log.spool.pending()) == (0, 0)
    assert (await scalar(s.database_url, "select count(*) from calls"))[0] == 2
    await log.close()
    await engine.dispose()


async def test_concurrent_drains_never_cut_a_record_appended_meanwhile(tmp_path):
    from ivr.records.spool import Spool

    spool = Spool(tmp_path / "x.jsonl")
    for i in range(2):
        spool.append({"n": i})
    written: list[int] = []
    writing, appended = asyncio.Event(), asyncio.Event()

    async def write(r):
        writing.set()
        await appended.wait()  # record 2 arrives while a drain is half-way
        written.append(r["n"])

    async def append_meanwhile():
        await writing.wait()
        spool.append({"n": 2})
        appended.set()

    await asyncio.wait_for(asyncio.gather(spool.drain(write), spool.drain(write), append_meanwhile()), 5)
    # Whatever the interleaving, record 2 is either written or still waiting; never dropped.
    assert 2 in written or spool.pending() == 1
    assert {0, 1} <= set(written)


async def test_a_streaming_export_does_not_hold_up_the_call_log(db_settings):
    """An export (or report) reading while calls come in: on SQLite its read used to hold off
    every write until its last row, so call log writes waited out the lock and were spooled."""
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    log = CallLog(engine, s.home / "spool" / "calllog.jsonl", write_timeout=2, linger=0)
    log.start()
    try:
        for i in range(300):
            log.closed(record(i))
        await log.flush()
        reading = export.iter_batches(s, select(Call.id).order_by(Call.id), batch=20)
        assert len(next(reading)) == 20  # the export is mid-way through the table
        log.closed(record(300))
        await log.flush()
        assert log.failures == 0 and log.spool.pending() == 0
        assert sum(len(b) for b in reading) == 280  # the export goes on to its end
        assert await scalar(s.database_url, "select count(*) from calls where id = 'c300'") == (1,)
    finally:
        await log.close()
        await engine.dispose()
