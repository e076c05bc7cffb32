"""Asterisk's own record of every hotline call, and the calls the controller never saw.

The hotline's dialplan marks each call with a channel event (``CELGenUserEvent``): its arrival
(``TONGDAI_ARRIVED``), the start of a hold while no controller took calls (``TONGDAI_HELD``),
and its end (``TONGDAI_ENDED``, from a hangup handler, with how far the dialplan got:
``arrived``, ``held`` or ``apology``). ``cel_custom`` writes one JSON line per mark to a file in
the instance's log directory (``Layout.cel_file``). A call that reaches Asterisk while the
controller is away (a crash, a restart) is in that file even though no controller ever saw it.

:class:`CelSync` reads the file from where it stopped (a cursor in ``$TONGDAI_HOME/spool``),
on every ARI (re)connection and every few seconds, and hands each call that has ended to the
call log's :meth:`~ivr.records.calllog.CallLog.unseen`: a row with disposition
``controller_unavailable`` when the call has none, the end of a row that a controller which went
away left in progress, nothing when the controller logged it. Reading a line twice (after a
restart, the cursor lags behind calls still in progress) writes nothing twice: the call's id
(Asterisk's uniqueid, the channel id the controller logs calls by) is the key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from ivr.records.calllog import CallRecord, clean_number, utcnow
from ivr.vocab import Disposition

if TYPE_CHECKING:
    from ivr.records.calllog import CallLog

log = logging.getLogger("tongdai.cel")

ARRIVED, HELD, ENDED = "TONGDAI_ARRIVED", "TONGDAI_HELD", "TONGDAI_ENDED"
STALE_AFTER = 60.0  # seconds: an unfinished call this old whose channel is gone ended with its Asterisk


@dataclass
class AsteriskCall:
    """What Asterisk's marks say about one hotline call."""

    id: str
    offset: int  # where its first mark starts in the file
    caller: str = "anonymous"
    arrived_at: dt.datetime | None = None
    held_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    stage: str | None = None  # the dialplan's last stage at the end: arrived, held, apology
    last_at: dt.datetime | None = None
    marks: list[tuple[str, dt.datetime, str]] = field(default_factory=list)

    def record(self, hotline: str, *, lost: bool = False) -> CallRecord:
        """The call row for a call no controller logged. ``lost``: no end mark ever came (the
        Asterisk that had it was killed); it ended, as far as anyone can tell, at its last mark."""
        start = self.arrived_at or self.last_at or utcnow()
        end = self.ended_at or self.last_at or start
        rec = CallRecord(id=self.id, caller=self.caller, hotline=hotline, started_at=start, ended_at=end)
        rec.disposition = Disposition.CONTROLLER_UNAVAILABLE
        stage = "lost" if lost else (self.stage or "arrived")
        # Where the call was when it ended: held (the caller gave up), fallback (the apology after
        # the hold), hotline (handed to a controller that never logged it), or lost with Asterisk.
        rec.ended_in = {"held": "held", "apology": "fallback", "arrived": "hotline"}.get(stage, stage)
        rec.hangup_by = "caller" if stage == "held" else None if lost else "system"
        if self.held_at:
            rec.held_s = round(max(0.0, (end - self.held_at).total_seconds()), 3)
        for kind, at, extra in self.marks:
            name = {ARRIVED: "arrived", HELD: "held", ENDED: "ended"}[kind]
            detail = {"source": "asterisk"}
            if kind == ARRIVED:
                detail["caller"] = self.caller
            elif kind == ENDED:
                detail["stage"] = extra
            rec.events.append((at, name, detail))
        if lost:
            rec.events.append((end, "lost", {"source": "asterisk", "why": "no end mark: Asterisk stopped with the call"}))
        return rec


def _mark(line: bytes) -> tuple[str, str, dt.datetime, str, str] | None:
    """(kind, call id, time, caller, extra) of one line, or None for a line that is not a mark."""
    try:
        m = orjson.loads(line)
        kind, cid = m["eventtype"], m["uniqueid"]
        at = dt.datetime.fromtimestamp(float(m["eventtime"]), dt.timezone.utc)
        extra = m.get("eventextra") or ""
        if extra.startswith("{"):  # cel_custom's JSON wraps CELGenUserEvent's text
            extra = str(json.loads(extra).get("extra", ""))
    except (ValueError, KeyError, TypeError):
        return None
    if kind not in (ARRIVED, HELD, ENDED) or not cid:
        return None
    return kind, str(cid), at, clean_number(m.get("num", "")) or "anonymous", extra


class CelSync:
    """Reads Asterisk's marks from where it stopped and logs the calls that need it.

    ``busy(id)``: the running controller has that call now (it logs it itself).
    ``live()``: the channel ids Asterisk has now (ARI), asked only about unfinished calls older
    than ``stale_after``. ``hotline()``: the hotline number for the rows.
    """

    def __init__(self, path: Path, cursor_path: Path, calllog: CallLog, *, hotline: Callable[[], str],
                 busy: Callable[[str], bool], live: Callable[[], Awaitable[set[str]]] | None = None,
                 every: float = 5.0, stale_after: float = STALE_AFTER):
        self.path = path
        self.cursor_path = cursor_path
        self.calllog = calllog
        self.hotline = hotline
        self.busy = busy
        self.live = live
        self.every = every
        self.stale_after = stale_after
        self.pending: dict[str, AsteriskCall] = {}  # arrived, not ended (or ended while busy)
        self._ino: int | None = None
        self._offset = 0  # how far the file has been read
        self._loaded = False
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self.logged = 0  # calls handed to the call log (for tests and the log line)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cel-sync")

    def trigger(self) -> None:
        """Read now (the controller has just (re)connected)."""
        self._kick.set()

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception:  # never let the reader die; the next pass tries again
                log.exception("cel: sync failed")
            try:
                await asyncio.wait_for(self._kick.wait(), self.every)
            except TimeoutError:
                pass
            self._kick.clear()

    # ------------------------------------------------------------------ reading

    def _load_cursor(self) -> None:
        self._loaded = True
        try:
            c = json.loads(self.cursor_path.read_text())
            self._ino, self._offset = c.get("ino"), int(c.get("offset", 0))
        except (OSError, ValueError, TypeError):
            self._ino, self._offset = None, 0

    def _save_cursor(self) -> None:
        # Back to the first mark of the oldest call not logged yet: after a restart it is read
        # again (whatever was logged is not written twice).
        offset = min([c.offset for c in self.pending.values()] + [self._offset])
        tmp = self.cursor_path.with_suffix(".tmp")
        self.cursor_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"ino": self._ino, "offset": offset}))
        os.replace(tmp, self.cursor_path)

    def read(self) -> list[AsteriskCall]:
        """New marks since the last read; return the calls that ended."""
        if not self._loaded:
            self._load_cursor()
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        if st.st_ino != self._ino or st.st_size < self._offset:
            # A new file (rotated, or a new instance): from its start.
            self._ino, self._offset, self.pending = st.st_ino, 0, {}
        if st.st_size == self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(st.st_size - self._offset)
        ended: list[AsteriskCall] = []
        pos = self._offset
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # Asterisk is writing it: next time
            start, pos = pos, pos + len(line)
            mark = _mark(line)
            if mark is None:
                continue
            kind, cid, at, caller, extra = mark
            call = self.pending.get(cid)
            if call is None:
                call = self.pending[cid] = AsteriskCall(cid, offset=start)
            call.marks.append((kind, at, extra))
            call.last_at = at
            if kind == ARRIVED:
                call.arrived_at, call.caller = at, caller
            elif kind == HELD:
                call.held_at = call.held_at or at
            else:
                call.ended_at, call.stage = at, extra or None
                ended.append(self.pending.pop(cid))
        self._offset = pos
        return ended

    async def sync(self) -> int:
        """Read, and hand the ended calls no running session owns to the call log; return how many."""
        async with self._lock:
            ended = self.read()
            todo: list[tuple[AsteriskCall, bool]] = []
            for call in ended:
                if self.busy(call.id):
                    self.pending[call.id] = call  # the session logs it; looked at again next time
                else:
                    todo.append((call, False))
            for call in [c for c in self.pending.values() if c.ended_at and not self.busy(c.id)]:
                del self.pending[call.id]
                todo.append((call, False))
            todo += await self._lost()
            for call, lost in todo:
                self.calllog.unseen(call.record(self.hotline(), lost=lost))
            if todo:
                await self.calllog.flush()  # in the database or its spool before the cursor moves
                self.logged += len(todo)
                log.info("cel: %d ended calls from Asterisk's record checked against the call log", len(todo))
            self._save_cursor()
            return len(todo)

    async def _lost(self) -> list[tuple[AsteriskCall, bool]]:
        """Calls that arrived long ago, never ended, and whose channel Asterisk no longer has."""
        cutoff = utcnow() - dt.timedelta(seconds=self.stale_after)
        old = [c for c in self.pending.values() if not c.ended_at and (c.last_at or cutoff) < cutoff and not self.busy(c.id)]
        if not old or self.live is None:
            return []
        try:
            alive = await self.live()
        except Exception as e:  # Asterisk unreachable: next time
            log.info("cel: cannot list channels (%s)", e.__class__.__name__)
            return []
        lost = [c for c in old if c.id not in alive]
        for c in lost:
            del self.pending[c.id]
        return [(c, True) for c in lost]
