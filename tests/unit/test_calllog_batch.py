"""The call log writes whatever is queued in one transaction: the rows must be exactly those
that writing the records one by one, in order, would give."""

from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy.ext.asyncio import create_async_engine

from ivr.records import db
from ivr.records.calllog import CallLog

from .test_calllog_spool import record


async def test_a_batch_gives_the_rows_of_records_written_in_order(settings_factory):
    s = settings_factory()
    await asyncio.to_thread(db.upgrade, s)
    engine = create_async_engine(s.database_url)
    log = CallLog(engine, s.home / "spool" / "calllog.jsonl")
    recs = [record(i) for i in range(30)]
    for rec in recs:  # queued before the writer starts: one batch
        rec.disposition = "in_progress"
        log.opened(rec)
    for rec in recs[:20]:
        rec.disposition = "answered"
        log.closed(rec)
    recs[0].disposition = "in_progress"
    log.opened(recs[0])  # a late "open" never turns a finished call back into one in progress
    recs[1].disposition = "abandoned"
    recs[1].event("hangup", by="caller")
    log.closed(recs[1])  # a second close replaces the first, timeline included
    log.start()
    await asyncio.wait_for(log.flush(), 10)
    con = sqlite3.connect(s.home / "tongdai.db")
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    assert q("select count(*) from calls") == [(30,)]
    assert q("select count(*) from calls where disposition = 'in_progress'") == [(10,)]
    assert q("select disposition from calls where id = 'c0'") == [("answered",)]
    assert q("select disposition from calls where id = 'c1'") == [("abandoned",)]
    assert q("select count(*) from call_events where call_id = 'c1'") == [(3,)]
    assert q("select disposition from calls where id = 'c25'") == [("in_progress",)]
    assert q("select count(*) from call_events") == [(20 * 2 + 1,)]
    assert q("select count(*) from call_legs") == [(20,)]
    # The rows that exist already are updated, in a later batch, the same way.
    for rec in recs[20:]:
        rec.disposition = "no_answer"
        log.closed(rec)
    await asyncio.wait_for(log.flush(), 10)
    assert q("select count(*) from calls where disposition = 'no_answer'") == [(10,)]
    assert q("select count(*) from call_legs") == [(30,)]
    assert log.failures == 0 and log.spool.pending() == 0
    con.close()
    await log.close()
    await engine.dispose()
