"""Calls the controller never saw are logged from Asterisk's own record (cel_custom's JSON lines),
exactly once, on both databases; a call the controller logged is left as it is; a row a killed
controller left in progress gets its end from Asterisk."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from sqlalchemy import select

from ivr.models import Call, CallEvent
from ivr.pbx.cel import CelSync
from ivr.records import db
from ivr.records.calllog import CallLog, CallRecord

T0 = 1_780_000_000.0  # an epoch second, in the past


def line(kind: str, cid: str, at: float, num: str = "0901234567", extra: str = "") -> str:
    """A line as cel_custom writes it (format = json)."""
    return json.dumps({"eventtype": kind, "eventtime": f"{T0 + at:.6f}", "uniqueid": cid, "linkedid": cid,
                       "num": num, "name": "", "eventextra": json.dumps({"extra": extra})}) + "\n"


def when(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 + at, dt.timezone.utc)


class Setup:
    def __init__(self, s):
        self.s = s
        self.path = s.home / "cel.jsonl"
        self.cursor = s.home / "spool" / "cel-cursor.json"
        self.busy: set[str] = set()
        self.live: set[str] = set()

    async def start(self):
        await asyncio.to_thread(db.upgrade, self.s)
        self.engine = db.engine(self.s)
        self.log = CallLog(self.engine, self.s.home / "spool" / "calllog.jsonl", linger=0)
        self.log.start()

    def sync(self, **kw) -> CelSync:
        async def live():
            return set(self.live)

        kw.setdefault("stale_after", 1e9)  # T0 is long ago: nothing is stale unless a test says so
        return CelSync(self.path, self.cursor, self.log, hotline=lambda: "1022", busy=lambda cid: cid in self.busy,
                       live=live, **kw)

    def write(self, *lines: str) -> None:
        with open(self.path, "a") as f:
            f.write("".join(lines))

    async def rows(self) -> dict[str, Call]:
        async with self.engine.connect() as conn:
            return {r.id: r for r in (await conn.execute(select(Call))).all()}

    async def kinds(self, cid: str) -> list[str]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(CallEvent.kind).where(CallEvent.call_id == cid)
                                            .order_by(CallEvent.seq))).scalars())

    async def stop(self):
        await self.log.close()
        await self.engine.dispose()


async def test_calls_nobody_logged_get_a_row_once(db_settings):
    t = Setup(db_settings)
    await t.start()
    try:
        # Served by the controller, which logged it (answered).
        served = CallRecord(id="c-served", caller="0907000001", hotline="1022", started_at=when(0), ended_at=when(30))
        served.disposition = "answered"
        t.log.closed(served)
        await t.log.flush()
        t.write(
            line("TONGDAI_ARRIVED", "c-gave-up", 1, "0907000002"),
            line("TONGDAI_ARRIVED", "c-served", 0.5, "0907000001"),
            line("TONGDAI_HELD", "c-gave-up", 1.01, "0907000002", f"{T0 + 1.01:.3f}"),
            line("TONGDAI_ARRIVED", "c-apology", 2, "0907000003"),
            line("TONGDAI_HELD", "c-apology", 2.01, "0907000003"),
            line("TONGDAI_ENDED", "c-gave-up", 7, "0907000002", "held"),
            line("TONGDAI_ENDED", "c-served", 30, "0907000001", "arrived"),
            line("TONGDAI_ENDED", "c-apology", 25, "0907000003", "apology"),
            line("TONGDAI_ARRIVED", "c-later", 40, "+84 (90) 7000004"),  # still up
        )
        sync = t.sync()
        assert await sync.sync() == 3  # every ended call is handed over; only those without a row are written
        rows = await t.rows()
        assert set(rows) == {"c-served", "c-gave-up", "c-apology"}
        assert rows["c-served"].disposition == "answered"  # the controller's row is left alone
        gave_up, apology = rows["c-gave-up"], rows["c-apology"]
        assert gave_up.disposition == apology.disposition == "controller_unavailable"
        assert gave_up.caller == "0907000002" and gave_up.hotline == "1022"
        assert gave_up.started_at == when(1) and gave_up.ended_at == when(7)
        assert gave_up.held_s == 5.99 and gave_up.ended_in == "held" and gave_up.hangup_by == "caller"
        assert apology.ended_in == "fallback" and apology.hangup_by == "system" and apology.held_s == 22.99
        assert await t.kinds("c-gave-up") == ["arrived", "held", "ended"]
        assert set(sync.pending) == {"c-later"}

        # The rest of the unfinished call, and then a restart that reads the whole file again
        # (no cursor): nothing is written twice.
        t.write(line("TONGDAI_ENDED", "c-later", 45, "+84 (90) 7000004", "held"))
        assert await sync.sync() == 1
        assert (await t.rows())["c-later"].caller == "+84907000004"
        t.cursor.unlink()
        again = t.sync()
        await again.sync()
        rows = await t.rows()
        assert len(rows) == 4
        assert await t.kinds("c-gave-up") == ["arrived", "held", "ended"]
        assert sum(1 for r in rows.values() if r.disposition == "controller_unavailable") == 3
    finally:
        await t.stop()


async def test_the_cursor_skips_what_was_read_and_a_half_written_line_waits(db_settings):
    t = Setup(db_settings)
    await t.start()
    try:
        t.write(line("TONGDAI_ARRIVED", "c1", 0), line("TONGDAI_ENDED", "c1", 3, extra="held"))
        assert await t.sync().sync() == 1
        full = line("TONGDAI_ARRIVED", "c2", 5)
        t.write(full[:30])  # Asterisk is writing this line
        restarted = t.sync()
        assert await restarted.sync() == 0 and restarted.pending == {}
        t.write(full[30:], line("TONGDAI_ENDED", "c2", 9, extra="apology"))
        assert await restarted.sync() == 1
        assert set(await t.rows()) == {"c1", "c2"}
    finally:
        await t.stop()


async def test_a_call_the_running_controller_has_waits_for_it(db_settings):
    t = Setup(db_settings)
    await t.start()
    try:
        t.busy.add("c1")
        t.write(line("TONGDAI_ARRIVED", "c1", 0), line("TONGDAI_ENDED", "c1", 3, extra="arrived"))
        sync = t.sync()
        assert await sync.sync() == 0  # its session logs it
        assert await t.rows() == {}
        mine = CallRecord(id="c1", caller="0901234567", hotline="1022", started_at=when(0), ended_at=when(3))
        mine.disposition = "abandoned"
        t.log.closed(mine)
        t.busy.clear()
        await sync.sync()  # looked at again: the session's row stays
        assert (await t.rows())["c1"].disposition == "abandoned"
    finally:
        await t.stop()


async def test_a_row_left_in_progress_by_a_killed_controller_gets_its_end(db_settings):
    t = Setup(db_settings)
    await t.start()
    try:
        talking = CallRecord(id="c-talk", caller="0901", hotline="1022", started_at=when(0))
        talking.answered_at, talking.answered_by, talking.branch_digit = when(10), "2401", "4"
        menu = CallRecord(id="c-menu", caller="0902", hotline="1022", started_at=when(1))
        t.log.opened(talking)
        t.log.opened(menu)
        await t.log.flush()
        t.write(line("TONGDAI_ARRIVED", "c-talk", 0), line("TONGDAI_ARRIVED", "c-menu", 1),
                line("TONGDAI_ENDED", "c-menu", 8, extra="arrived"), line("TONGDAI_ENDED", "c-talk", 70, extra="arrived"))
        assert await t.sync().sync() == 2
        rows = await t.rows()
        assert rows["c-talk"].disposition == "answered" and rows["c-talk"].talk_s == 60.0
        assert rows["c-talk"].ended_at == when(70) and rows["c-talk"].answered_by == "2401"
        assert rows["c-menu"].disposition == "interrupted" and rows["c-menu"].ended_at == when(8)
        assert await t.kinds("c-talk") == ["arrived", "ended"]
    finally:
        await t.stop()


async def test_a_call_that_died_with_its_asterisk_is_logged_when_its_channel_is_gone(db_settings):
    t = Setup(db_settings)
    await t.start()
    try:
        t.write(line("TONGDAI_ARRIVED", "c-old", -600), line("TONGDAI_HELD", "c-old", -599),
                line("TONGDAI_ARRIVED", "c-up", -600))
        t.live.add("c-up")  # still talking: not touched
        sync = t.sync(stale_after=60)
        # T0 is in the past: both are older than a minute.
        assert await sync.sync() == 1
        row = (await t.rows())["c-old"]
        assert row.disposition == "controller_unavailable" and row.ended_in == "lost"
        assert row.hangup_by is None and row.ended_at == when(-599)
        assert set(sync.pending) == {"c-up"}
    finally:
        await t.stop()
