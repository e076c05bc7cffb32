"""The call log: what each call did, written off the call's path.

A call session fills a :class:`CallRecord` in memory and hands it to :class:`CallLog` twice:
when the call arrives (an ``in_progress`` row) and when it ends (the final row, its timeline and
its desk-phone legs). A single writer task drains a queue, so a slow database never delays audio.
A write that fails goes to the durable spool (:mod:`ivr.records.spool`) and is written back, once, when
the database returns; writes are idempotent upserts keyed by the call id.

The writer waits up to half a second after a record for others (``flush()`` cuts that short),
then takes every record waiting in the queue and writes them in one transaction with a handful
of Core statements (one SELECT of the rows already there, one executemany per table), not an
ORM unit of work per record: that was the controller's largest CPU cost per call
(``make bench --profile``). The result is the same rows as writing the records
one by one in order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from ivr.models import Call, CallEvent, CallLeg, RegistrationEvent
from ivr.records.spool import Spool
from ivr.vocab import Disposition

log = logging.getLogger("tongdai.calllog")

# Declarative types __table__ as any FromClause; a mapped class's own is a Table.
CALLS, EVENTS, LEGS, PRESENCE = (cast(Table, m.__table__) for m in (Call, CallEvent, CallLeg, RegistrationEvent))
MAX_BATCH = 200  # records per transaction

# The writer's statements, built once: building them per batch (the IN lists above all) and
# computing their cache keys again was a tenth of the writer's CPU in the bench's profile.
_IDS: BindParameter[str] = bindparam("ids", expanding=True)
EXISTING = select(CALLS.c.id, CALLS.c.disposition).where(CALLS.c.id.in_(_IDS))
INSERT_CALLS, INSERT_EVENTS, INSERT_LEGS = insert(CALLS), insert(EVENTS), insert(LEGS)
UPDATE_CALLS = update(CALLS).where(CALLS.c.id == bindparam("_call"))
DELETE_EVENTS = delete(EVENTS).where(EVENTS.c.call_id.in_(_IDS))
DELETE_LEGS = delete(LEGS).where(LEGS.c.call_id.in_(_IDS))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def clean_number(raw: Any) -> str:
    """Caller numbers come from the outside world: keep digits, + * #, at most 32 characters."""
    return "".join(c for c in str(raw) if c.isdigit() or c in "+*#")[:32]


def clean_text(raw: Any) -> str:
    return "".join(c for c in str(raw) if c.isprintable())[:80]


@dataclass
class LegRecord:
    channel_id: str
    extension: str
    started_at: dt.datetime
    answered_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    result: str | None = None


@dataclass
class CallRecord:
    """Everything the log keeps about one call; names are copied as they are now."""

    id: str
    caller: str
    hotline: str
    started_at: dt.datetime
    answered_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    branch_digit: str | None = None
    branch_name: str | None = None
    agency_code: str | None = None
    agency_name: str | None = None
    answered_by: str | None = None
    talk_ended_at: dt.datetime | None = None  # when the bridge ended (the survey may follow)
    disposition: str = "in_progress"
    survey_score: int | None = None
    case_code: str | None = None
    recording: str | None = None  # the conversation's recording, relative to TONGDAI_HOME
    recording_s: float | None = None
    ended_in: str | None = None
    hangup_by: str | None = None
    held_s: float | None = None  # seconds the dialplan held the caller while no controller took calls
    callback_of: str | None = None  # an outbound callback: the call that asked for it
    events: list[tuple[dt.datetime, str, dict]] = field(default_factory=list)
    legs: list[LegRecord] = field(default_factory=list)

    def event(self, kind: str, **detail: Any) -> None:
        self.events.append((utcnow(), kind, detail))

    @property
    def wait_s(self) -> float | None:
        """Seconds from arrival until a desk phone answered (or the call ended unanswered)."""
        end = self.answered_at or self.ended_at
        return round((end - self.started_at).total_seconds(), 3) if end else None

    @property
    def talk_s(self) -> float | None:
        end = self.talk_ended_at or self.ended_at
        if self.answered_at and end:
            return round((end - self.answered_at).total_seconds(), 3)
        return None

    def row(self) -> dict:
        return {
            "id": self.id, "caller": self.caller, "hotline": self.hotline, "started_at": self.started_at,
            "answered_at": self.answered_at, "ended_at": self.ended_at, "branch_digit": self.branch_digit,
            "branch_name": self.branch_name, "agency_code": self.agency_code, "agency_name": self.agency_name,
            "answered_by": self.answered_by, "wait_s": self.wait_s if self.ended_at or self.answered_at else None,
            "talk_s": self.talk_s, "disposition": self.disposition, "ended_in": self.ended_in,
            "hangup_by": self.hangup_by, "survey_score": self.survey_score, "case_code": self.case_code,
            "recording": self.recording, "recording_s": self.recording_s,
            "held_s": self.held_s, "callback_of": self.callback_of,
        }


class CallLog:
    """Queue + single writer task. ``start()`` it, ``await close()`` to flush on shutdown.

    With a spool (``spool_path``), a record the database refuses (down, locked, read-only) goes
    to the durable spool at once, and so does every later record while older ones wait there,
    keeping the order; a replayer writes them back when the database returns. Without one,
    the writer retries in memory.
    """

    def __init__(self, engine: AsyncEngine, spool_path: Path | None = None, *, write_timeout: float = 5,
                 replay_every: float = 2.0, linger: float = 0.5, node: str | None = None):
        self.engine = engine
        self.node = node  # the cluster node every row is written from (docs/cluster.md)
        self._queue: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self.spool = Spool(spool_path) if spool_path else None
        self.write_timeout = write_timeout
        self.replay_every = replay_every
        self.failures = 0
        self._followers: list[Callable[[], Awaitable[int]]] = []
        # The writer waits up to ``linger`` seconds after a record for more to come, so that a
        # busy hotline writes many calls per transaction; flush() and close() cut it short.
        self.linger = linger
        self._flushers = 0
        self._hurry = asyncio.Event()

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._writer(), name="calllog-writer"))
        if self.spool:
            self._tasks.append(asyncio.create_task(self._replayer(), name="calllog-replayer"))

    def opened(self, rec: CallRecord) -> None:
        """The call's row as it is now (at its arrival, and again, still in progress, once a
        desk phone answers: a controller that takes the call over after a crash reads it)."""
        self._queue.put_nowait(("open", {**rec.row(), "node": self.node}))

    def closed(self, rec: CallRecord) -> None:
        payload = {**rec.row(), "node": self.node}
        payload["events"] = [{"seq": i, "at": at, "kind": k, "detail": d} for i, (at, k, d) in enumerate(rec.events)]
        payload["legs"] = [vars(l).copy() for l in rec.legs]
        self._queue.put_nowait(("close", payload))

    def unseen(self, rec: CallRecord) -> None:
        """A call Asterisk recorded (ivr/pbx/cel.py) that may have no row: written only when it has
        none, or when its row was left in progress by a controller that went away. Replayed or
        repeated, it changes nothing: a row that exists and is finished is never touched."""
        payload = {**rec.row(), "node": self.node}
        payload["events"] = [{"seq": i, "at": at, "kind": k, "detail": d} for i, (at, k, d) in enumerate(rec.events)]
        self._queue.put_nowait(("unseen", payload))

    def presence(self, extension: str, agency_code: str | None, status: str, at: dt.datetime,
                 address: str | None = None) -> None:
        """A desk phone's registration changed (see :mod:`ivr.presence`)."""
        self._queue.put_nowait(("presence", {"id": f"presence:{extension}", "extension": extension,
                                             "agency_code": agency_code, "status": status, "at": at,
                                             "address": address}))

    async def flush(self) -> None:
        """Wait until every queued record is in the database or in the spool (at once, not
        after the writer's linger)."""
        self._flushers += 1
        self._hurry.set()
        try:
            await self._queue.join()
        finally:
            self._flushers -= 1
            if not self._flushers:
                self._hurry.clear()

    def also_replay(self, replay: Callable[[], Awaitable[int]]) -> None:
        """Another spool to write back whenever this one is empty (e.g. complaint cases, which
        point at their call's row and so must come after it)."""
        self._followers.append(replay)

    async def replay_followers(self) -> int:
        n = 0
        for replay in self._followers:
            n += await replay()
        return n

    async def replay(self) -> int:
        """Write spooled records back now (the replayer does this on its own, periodically)."""
        if not self.spool:
            return 0
        return await self.spool.drain(lambda r: self._write_with_timeout(r["op"], r["payload"]))

    async def close(self, timeout: float = 10) -> None:
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            log.error("calllog: %d records not written at shutdown", self._queue.qsize())
        if self.spool and self.spool.pending():
            try:
                await asyncio.wait_for(self.replay(), timeout)
            except TimeoutError:
                pass
            if self.spool.pending():
                log.warning("calllog: %d records stay in the spool for the next start", self.spool.pending())
        if self.spool and not self.spool.pending() and self._followers:
            try:
                await asyncio.wait_for(self.replay_followers(), timeout)
            except Exception as e:  # they stay spooled for the next start
                log.warning("calllog: spooled cases not written at shutdown (%s)", e.__class__.__name__)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _write_with_timeout(self, op: str, payload: dict) -> None:
        await asyncio.wait_for(self._write_batch([(op, payload)]), self.write_timeout)

    def _spool_all(self, batch: list[tuple[str, dict]]) -> None:
        assert self.spool is not None  # callers check
        self.spool.extend([{"op": op, "payload": payload} for op, payload in batch])

    async def _writer(self) -> None:
        backoff = 0.2
        while True:
            batch = [await self._queue.get()]
            if self.linger and not self._hurry.is_set():
                try:
                    await asyncio.wait_for(self._hurry.wait(), self.linger)
                except TimeoutError:
                    pass
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                while True:
                    if self.spool and self.spool.pending():
                        self._spool_all(batch)  # older records wait there
                        break
                    try:
                        await asyncio.wait_for(self._write_batch(batch), self.write_timeout)
                        backoff = 0.2
                        break
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:  # database down, locked, read-only
                        self.failures += 1
                        ids = ", ".join(dict.fromkeys(p["id"] for _, p in batch))
                        if self.spool:
                            self._spool_all(batch)
                            log.error("calllog: write failed for call=%s (%s); spooled", ids, e.__class__.__name__)
                            break
                        log.error("calllog: write failed for call=%s (%s); retrying in %.1fs", ids, e.__class__.__name__, backoff)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 10)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _replayer(self) -> None:
        assert self.spool is not None  # started only with one
        while True:
            await asyncio.sleep(self.replay_every)
            try:
                if self.spool.pending():
                    await self.replay()
                if not self.spool.pending():
                    await self.replay_followers()
            except Exception as e:  # never let the replayer die
                log.error("calllog: replay failed: %s", e)

    async def _write(self, op: str, payload: dict) -> None:
        await self._write_batch([(op, payload)])

    async def _write_batch(self, batch: list[tuple[str, dict]]) -> None:
        """Write records in order, in one transaction, as upserts keyed by the call id.

        ``open`` never turns a finished call back into one in progress; ``close`` replaces the
        row and whatever timeline and legs a failed earlier attempt may have left.
        """
        presence = [p for op, p in batch if op == "presence"]
        unseen = [p for op, p in batch if op == "unseen"]
        batch = [(op, p) for op, p in batch if op in ("open", "close")]
        async with self.engine.begin() as conn:
            for p in presence:
                await self._presence_row(conn, p)
            if batch:
                await self._calls(conn, batch)
            # After the batch's own records: a call's close queued before its Asterisk record
            # (the usual order) is in the table when the record is looked at.
            for p in unseen:
                await self._unseen_row(conn, p)

    @staticmethod
    async def _calls(conn, batch: list[tuple[str, dict]]) -> None:
        ids = list(dict.fromkeys(p["id"] for _, p in batch))
        existing: dict[str, str] = dict((await conn.execute(EXISTING, {"ids": ids})).all())
        rows: dict[str, dict] = {}    # call id -> the row as the last record leaves it
        closes: dict[str, dict] = {}  # call id -> the last close record
        for op, payload in batch:
            cid = payload["id"]
            now = rows[cid]["disposition"] if cid in rows else existing.get(cid)
            if op == "open" and now is not None and now != "in_progress":
                continue
            # "node" and "callback_of" may be missing from records spooled before they existed:
            # one executemany needs the same keys in every row.
            rows[cid] = {"node": None, "callback_of": None, **{k: v for k, v in payload.items() if k not in ("events", "legs")}}
            if op == "close":
                closes[cid] = payload
        new = [r for cid, r in rows.items() if cid not in existing]
        old = [{**r, "_call": r["id"]} for cid, r in rows.items() if cid in existing]
        if new:
            await conn.execute(INSERT_CALLS, new)
        if old:
            await conn.execute(UPDATE_CALLS, old)
        if closes:
            done = {"ids": list(closes)}
            await conn.execute(DELETE_EVENTS, done)
            await conn.execute(DELETE_LEGS, done)
            events = [{"call_id": cid, **e} for cid, p in closes.items() for e in p["events"]]
            legs = [{"call_id": cid, **leg} for cid, p in closes.items() for leg in p["legs"]]
            if events:
                await conn.execute(INSERT_EVENTS, events)
            if legs:
                await conn.execute(INSERT_LEGS, legs)

    @staticmethod
    async def _unseen_row(conn, payload: dict) -> None:
        row = {k: v for k, v in payload.items() if k != "events"}
        events = [{"call_id": row["id"], **e} for e in payload["events"]]
        found = (await conn.execute(select(CALLS).where(CALLS.c.id == row["id"]))).mappings().first()
        if found is None:
            await conn.execute(INSERT_CALLS, [row])
            if events:
                await conn.execute(INSERT_EVENTS, events)
            return
        if found["disposition"] != Disposition.IN_PROGRESS:
            return  # logged already (by the controller, or by an earlier pass): exactly once
        # The controller that had this call went away before its end (killed): Asterisk says
        # when it ended; what the controller wrote at the start (and at the answer) stays. An
        # answered call went on in Asterisk until then: it counts as answered, with its talk time.
        end = row["ended_at"]
        answered = found["answered_at"]
        start = found["started_at"]
        await conn.execute(UPDATE_CALLS, [{
            "_call": row["id"], "ended_at": end,
            "disposition": Disposition.ANSWERED if answered else Disposition.INTERRUPTED,
            "ended_in": found["ended_in"] or row["ended_in"], "hangup_by": found["hangup_by"] or row["hangup_by"],
            "wait_s": round(((answered or end) - start).total_seconds(), 3) if end else None,
            "talk_s": round((end - answered).total_seconds(), 3) if end and answered else None,
        }])
        seq = (await conn.execute(select(func.max(EVENTS.c.seq)).where(EVENTS.c.call_id == row["id"]))).scalar()
        base = -1 if seq is None else seq
        if events:
            await conn.execute(INSERT_EVENTS, [{**e, "seq": base + 1 + i} for i, e in enumerate(events)])

    @staticmethod
    async def _presence_row(conn, payload: dict) -> None:
        row = {k: v for k, v in payload.items() if k != "id"}
        # Idempotent on (extension, at, status): a replayed record is written once.
        dup = await conn.execute(select(PRESENCE.c.id).where(
            PRESENCE.c.extension == row["extension"], PRESENCE.c.at == row["at"], PRESENCE.c.status == row["status"]))
        if dup.first() is None:
            await conn.execute(insert(PRESENCE), [row])


async def last_presence(engine: AsyncEngine) -> dict[str, tuple[str, dt.datetime, bool]]:
    """Every extension's latest registration status in the history, its time, and whether the
    phone was ever registered."""
    from sqlalchemy import func

    sm = async_sessionmaker(engine, expire_on_commit=False)
    async with sm() as s:
        latest = (select(RegistrationEvent.extension, func.max(RegistrationEvent.id).label("id"))
                  .group_by(RegistrationEvent.extension).subquery())
        result = await s.execute(select(RegistrationEvent.extension, RegistrationEvent.status, RegistrationEvent.at)
                                 .join(latest, RegistrationEvent.id == latest.c.id))
        rows = result.all()
        ever_up = set((await s.execute(select(RegistrationEvent.extension).where(
            RegistrationEvent.status.in_(("registered", "reachable"))).distinct())).scalars())
        return {ext: (status, at, ext in ever_up) for ext, status, at in rows}


async def load_call(engine: AsyncEngine, call_id: str) -> tuple[Call | None, list[CallEvent], list[CallLeg]]:
    """A call with its timeline and legs (for tests and `tongdai call`)."""
    sm = async_sessionmaker(engine, expire_on_commit=False)
    async with sm() as s:
        call = await s.get(Call, call_id)
        events = (await s.execute(select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.seq))).scalars().all()
        legs = (await s.execute(select(CallLeg).where(CallLeg.call_id == call_id).order_by(CallLeg.id))).scalars().all()
    return call, list(events), list(legs)
