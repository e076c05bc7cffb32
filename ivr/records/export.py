"""Exports of the call log, cases, survey answers and the youth volunteers' shifts and assists:
CSV, XLSX or JSON Lines, streamed.

Memory stays flat whatever the number of rows: rows are read in batches (``yield_per``; a
server-side cursor on PostgreSQL) and written batch by batch; XLSX uses xlsxwriter's
``constant_memory`` mode. The columns of each table are a stable interface (``COLUMNS``):
new columns are only ever appended.

Values: times in ISO 8601 in the hotline's time zone (``2026-11-28T09:05:00+07:00``, to the
second), numbers as numbers, empty for none. In CSV and XLSX a text cell starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe so that a spreadsheet
never runs it as a formula (OWASP "CSV injection"); JSON Lines keeps the values as they are.
Excel holds at most 32,767 characters in a cell: a longer text is cut in XLSX with a visible
marker at its end, and counted (``ExportStats``) so that the command can say so; CSV and JSON
Lines keep every character.

CSV is UTF-8 with a byte-order mark by default (Excel then shows Vietnamese diacritics), CRLF
line ends, quoted only where needed (RFC 4180).

The formatting of CSV works on whole columns of a batch (``set``, ``str.join``, one regular
expression) rather than cell by cell: it is what lets a Python export keep up with the
``sqlite3`` command-line shell (see ``bench/export.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import queue
import re
import tempfile
import threading
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Literal, overload

import sqlalchemy as sa

from ivr.config.routing import Routing
from ivr.config.settings import Settings
from ivr.models import Call, CallEvent, Case, CaseAssignment
from ivr.records import volunteers as vol

TABLES = ("calls", "cases", "surveys", "assists", "shifts")
VOLUNTEER_TABLES = ("assists", "shifts")
FORMATS = ("csv", "xlsx", "jsonl")
BATCH = 2000
XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit, less the header
XLSX_MAX_CHARS = 32_767  # Excel's cell limit, in UTF-16 code units
XLSX_CUT_MARK = "…[CẮT BỚT]"
DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r")

# (name, kind): kind is "text", "time", "num" or "bool".
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "calls": (
        ("call_id", "text"), ("started_at", "time"), ("caller", "text"), ("hotline", "text"),
        ("branch_digit", "text"), ("branch_name", "text"), ("agency_code", "text"), ("agency_name", "text"),
        ("answered_by", "text"), ("wait_s", "num"), ("talk_s", "num"), ("disposition", "text"),
        ("case_code", "text"), ("survey_score", "num"), ("ended_at", "time"), ("ended_in", "text"),
        ("hangup_by", "text"), ("recording", "text"), ("recording_s", "num"), ("recording_deleted_at", "time"),
        # The branch queue (docs/queue.md): seconds waited in it and how the wait ended (turn,
        # hangup, complaint, timeout, callback); an outbound callback's row names the call that asked.
        ("queue_wait_s", "num"), ("queue_end", "text"), ("callback_of", "text"),
    ),
    "cases": (
        ("case_code", "text"), ("channel", "text"), ("received_at", "time"), ("category", "text"),
        ("status", "text"), ("overdue", "bool"), ("deadline_at", "time"), ("answered_at", "time"),
        ("closed_reason", "text"), ("branch_digit", "text"), ("branch_name", "text"), ("agency_code", "text"),
        ("agency_name", "text"), ("assigned_agencies", "text"), ("inspection", "bool"), ("anonymous", "bool"),
        ("caller", "text"), ("call_id", "text"), ("recording", "text"), ("summary", "text"), ("answer", "text"),
    ),
    "surveys": (
        ("channel", "text"), ("call_id", "text"), ("answered_at", "time"), ("branch_digit", "text"),
        ("branch_name", "text"), ("agency_code", "text"), ("agency_name", "text"), ("answered_by", "text"),
        ("score", "num"),
    ),
    "assists": vol.ASSIST_COLUMNS,
    "shifts": vol.SHIFT_COLUMNS,
}


class ExportError(Exception):
    """Bad arguments or an export that cannot be made; the message is for staff (Vietnamese)."""


@dataclass
class ExportStats:
    """What an export had to change: the command tells staff."""

    truncated_cells: int = 0  # XLSX cells cut to Excel's limit


# --------------------------------------------------------------------------------- arguments


@dataclass(frozen=True)
class Query:
    """What to export: validated by :func:`make_query`."""

    table: str
    start: dt.datetime | None  # UTC, inclusive
    end: dt.datetime | None  # UTC, exclusive
    branch: str | None = None
    agency: str | None = None
    home_affairs: bool = False  # show anonymous callers' numbers (cases)
    desks: tuple[str, ...] | None = None  # assists, shifts: the desks of --agency (it and those under it)


# Dates an export may name: far wider than any call log, far from datetime's limits (year 1 and
# 9999 overflow once moved to UTC or given the extra day of an inclusive --to).
FIRST_YEAR, LAST_YEAR = 1900, 9998


def parse_date(text: str, what: str) -> dt.date:
    """``YYYY-MM-DD`` or ``DD/MM/YYYY``, years FIRST_YEAR to LAST_YEAR."""
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            day = dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise ExportError(f"{what} '{text}': năm phải từ {FIRST_YEAR} đến {LAST_YEAR} "
                              "(bỏ --from/--to để lấy từ đầu hoặc đến cuối nhật ký)")
        return day
    raise ExportError(f"{what} {text[:40]!r} không phải ngày hợp lệ (dạng YYYY-MM-DD hoặc DD/MM/YYYY)")


def local_day_start(day: dt.date, tz: str) -> dt.datetime:
    """Midnight of ``day`` in ``tz``, in UTC."""
    return dt.datetime.combine(day, dt.time(), zoneinfo.ZoneInfo(tz)).astimezone(dt.timezone.utc)


def make_query(table: str, routing: Routing, *, date_from: str | None = None, date_to: str | None = None,
               branch: str | None = None, agency: str | None = None, known_agencies: Iterable[str] = (),
               home_affairs: bool = False) -> Query:
    """Check the arguments (Vietnamese errors) and turn local dates into a UTC range.

    ``--to`` is inclusive: the whole day. ``known_agencies``: codes found in the log (an agency
    may have been renamed or merged away in routing.yaml since). For assists and shifts,
    ``--agency`` is a desk, or a district with every desk under it.
    """
    if table not in TABLES:
        raise ExportError(f"không có bảng '{table}' (chọn một trong: {', '.join(TABLES)})")
    tz = routing.hotline.timezone
    d_from = parse_date(date_from, "--from") if date_from else None
    d_to = parse_date(date_to, "--to") if date_to else None
    if d_from and d_to and d_from > d_to:
        raise ExportError(f"--from {d_from:%d/%m/%Y} sau --to {d_to:%d/%m/%Y}: khoảng ngày bị ngược")
    if branch is not None and table in VOLUNTEER_TABLES:
        raise ExportError(f"--branch không dùng với {table} (lọc theo bộ phận một cửa: --agency MÃ)")
    if branch is not None and routing.branch(branch.strip()) is None:
        digits = ", ".join(b.digit for b in routing.branches)
        raise ExportError(f"không có nhánh '{branch}' (các nhánh: {digits})")
    if agency is not None and agency not in routing.agencies and agency not in set(known_agencies):
        raise ExportError(f"không có cơ quan mã '{agency}' (trong routing.yaml hay trong nhật ký)")
    return Query(
        table=table,
        start=local_day_start(d_from, tz) if d_from else None,
        end=local_day_start(d_to + dt.timedelta(days=1), tz) if d_to else None,
        branch=branch.strip() if branch is not None else None,
        agency=agency,
        home_affairs=home_affairs,
        desks=(vol.desks_under(routing, agency) if agency in routing.agencies else (agency,))
        if agency is not None and table in VOLUNTEER_TABLES else None,
    )


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ExportError(f"định dạng '{fmt}' không hỗ trợ (chọn một trong: {', '.join(FORMATS)})")
    return fmt


# ----------------------------------------------------------------------------------- queries


def _raw(col):
    """The column without its Python result processing (UTCDateTime): formatted in bulk here."""
    return sa.type_coerce(col, sa.String) if isinstance(col.type, sa.types.TypeDecorator) else col


def _range(stmt, col, q: Query):
    if q.start is not None:
        stmt = stmt.where(col >= q.start)
    if q.end is not None:
        stmt = stmt.where(col < q.end)
    return stmt


def _as_text(cols: list, kinds: list[str]) -> list:
    """Every column but times as text, '' for NULL (portable SQL): what the CSV fast path needs."""
    out = []
    for col, kind in zip(cols, kinds):
        if kind == "time":
            out.append(col)
        elif kind == "text":
            out.append(sa.func.coalesce(col, ""))
        else:
            out.append(sa.func.coalesce(sa.cast(col, sa.String), ""))
    return out


def _call_filters(stmt: sa.Select, q: Query) -> sa.Select:
    """The date range, branch and agency of a calls-based export, in call order."""
    c = Call
    stmt = _range(stmt, c.started_at, q)
    if q.branch:
        stmt = stmt.where(c.branch_digit == q.branch)
    if q.agency:
        stmt = stmt.where(c.agency_code == q.agency)
    return stmt.order_by(c.started_at, c.id)


def _queue_columns() -> list:
    """Per call, from its ``dequeued`` events: seconds waited in the queue, how the last wait ended."""
    ev = CallEvent
    mine = (ev.call_id == Call.id, ev.kind == "dequeued")
    waited = sa.select(sa.func.sum(ev.detail["waited_s"].as_float())).where(*mine).correlate(Call).scalar_subquery()
    end = (sa.select(ev.detail["why"].as_string()).where(*mine).order_by(ev.seq.desc()).limit(1)
           .correlate(Call).scalar_subquery())
    return [waited, end]


def calls_select(q: Query, *, as_text: bool = False) -> sa.Select:
    c = Call
    cols = [
        c.id, _raw(c.started_at), c.caller, c.hotline, c.branch_digit, c.branch_name, c.agency_code, c.agency_name,
        c.answered_by, c.wait_s, c.talk_s, c.disposition, c.case_code, c.survey_score, _raw(c.ended_at), c.ended_in,
        c.hangup_by,
        # The file's path while it exists; once retention deleted it, when that was.
        sa.case((c.recording_deleted_at.is_(None), c.recording), else_=None), c.recording_s, _raw(c.recording_deleted_at),
        *_queue_columns(), c.callback_of,
    ]
    stmt = sa.select(*(_as_text(cols, [k for _, k in COLUMNS["calls"]]) if as_text else cols))
    return _call_filters(stmt, q)


def surveys_select(q: Query, *, as_text: bool = False) -> sa.Select:
    c = Call
    cols = [
        sa.literal("phone"), c.id, _raw(c.ended_at),  # the survey ends the call
        c.branch_digit, c.branch_name, c.agency_code, c.agency_name, c.answered_by, c.survey_score,
    ]
    stmt = sa.select(*(_as_text(cols, [k for _, k in COLUMNS["surveys"]]) if as_text else cols))
    stmt = stmt.where(c.survey_score.is_not(None))
    return _call_filters(stmt, q)


def cases_select(q: Query) -> sa.Select:
    k = Case
    stmt = sa.select(
        k.id, k.code, k.channel, _raw(k.received_at), k.category, k.status, _raw(k.deadline_at), _raw(k.answered_at),
        k.closed_reason, k.branch_digit, k.branch_name, k.agency_code, k.agency_name, k.inspection, k.anonymous,
        k.caller, k.call_id, k.recording, k.summary, k.answer,
    )
    stmt = _range(stmt, k.received_at, q)
    if q.branch:
        stmt = stmt.where(k.branch_digit == q.branch)
    if q.agency:
        assigned = sa.select(CaseAssignment.case_id).where(CaseAssignment.agency_code == q.agency)
        stmt = stmt.where(sa.or_(k.agency_code == q.agency, k.id.in_(assigned)))
    return stmt.order_by(k.received_at, k.id)


def assists_select(q: Query) -> sa.Select:
    return vol.assists_select(q.start, q.end, q.desks, raw=_raw)


def shifts_select(q: Query) -> sa.Select:
    return vol.shifts_select(q.start, q.end, q.desks, raw=_raw)


def count_select(q: Query) -> sa.Select:
    """How many rows the export will write (for the progress bar)."""
    inner = {"calls": calls_select, "surveys": surveys_select, "cases": cases_select, "assists": assists_select,
             "shifts": shifts_select}[q.table](q).order_by(None)
    return sa.select(sa.func.count()).select_from(inner.subquery())


# ------------------------------------------------------------------------------ row sources


def sync_url(url: str) -> str | None:
    """The synchronous twin of an SQLite URL (stdlib sqlite3: faster to stream, no thread hop)."""
    u = sa.engine.make_url(url)
    if u.get_backend_name() == "sqlite":
        return str(u.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False))
    return None


def iter_batches(settings: Settings, stmt: sa.Select, *, batch: int = BATCH, force_async: bool = False) -> Iterator[Sequence[tuple]]:
    """Batches of result tuples, never the whole result in memory.

    SQLite is read with a synchronous engine; any other database with the configured async
    driver and a server-side cursor, in a helper thread feeding a small bounded queue.
    """
    url = None if force_async else sync_url(settings.database_url)
    if url is not None:
        eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with eng.connect() as conn:
                # pysqlite reads lazily: fetching from the DB-API cursor streams, with plain tuples
                # and no Row objects (nothing to process: see _raw()). No yield_per here: it would
                # buffer rows inside the Result, out of the cursor's reach.
                result = conn.execute(stmt)
                cursor = result.cursor
                while part := cursor.fetchmany(batch):
                    yield part
                result.close()
        finally:
            eng.dispose()
        return
    yield from _async_batches(settings, stmt, batch)


_END = object()


def _async_batches(settings: Settings, stmt: sa.Select, batch: int) -> Iterator[list]:
    from ivr.records import db as db_mod

    q: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    async def produce() -> None:
        engine = db_mod.engine(settings)
        try:
            async with engine.connect() as conn:
                result = await conn.stream(stmt.execution_options(yield_per=batch))
                async for part in result.partitions():
                    while not stop.is_set():
                        try:
                            q.put(part, timeout=0.2)
                            break
                        except queue.Full:
                            await asyncio.sleep(0)
                    if stop.is_set():
                        return
        finally:
            await engine.dispose()

    def run() -> None:
        try:
            asyncio.run(produce())
            q.put(_END)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    t = threading.Thread(target=run, name="export-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def _assignments(settings: Settings, ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    stmt = (sa.select(CaseAssignment.case_id, CaseAssignment.agency_code)
            .where(CaseAssignment.case_id.in_(ids)).order_by(CaseAssignment.case_id, CaseAssignment.id))
    for part in iter_batches(settings, stmt):
        for case_id, code in part:
            out.setdefault(case_id, []).append(code)
    return out


def rows(settings: Settings, q: Query, *, now: dt.datetime | None = None, as_text: bool = False,
         routing: Routing | None = None) -> Iterator[Sequence]:
    """Batches of rows in the column order of ``COLUMNS[q.table]``; times still raw.

    ``as_text``: calls and surveys come with every other value as text, '' for none (CSV).
    ``routing``: names of desks and districts, the working calendar (assists, shifts).
    """
    if q.table in VOLUNTEER_TABLES:
        if routing is None:
            raise ValueError(f"exporting {q.table} needs the routing")
        now = now or dt.datetime.now(dt.timezone.utc)
        if q.table == "assists":
            for part in iter_batches(settings, assists_select(q)):
                yield vol.assist_rows(part, routing)
        else:
            for part in iter_batches(settings, shifts_select(q)):
                yield vol.shift_rows(part, routing, now)
    elif q.table == "calls":
        yield from iter_batches(settings, calls_select(q, as_text=as_text))
    elif q.table == "surveys":
        yield from iter_batches(settings, surveys_select(q, as_text=as_text))
    else:
        from ivr.records.cases import OPEN_STATUSES

        now = now or dt.datetime.now(dt.timezone.utc)
        for part in iter_batches(settings, cases_select(q)):
            assigned = _assignments(settings, [r[0] for r in part])
            out = []
            for (cid, code, channel, received, category, status, deadline, answered, closed_reason, bdigit, bname,
                 acode, aname, inspection, anonymous, caller, call_id, recording, summary, answer) in part:
                overdue = status in OPEN_STATUSES and _utc(deadline) < now
                out.append((code, channel, received, category, status, overdue, deadline, answered, closed_reason,
                            bdigit, bname, acode, aname, ";".join(assigned.get(cid, ())), bool(inspection),
                            bool(anonymous), caller if (q.home_affairs or not anonymous) else "", call_id,
                            recording, summary, answer))
            yield out


def _utc(v) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=dt.timezone.utc) if v.tzinfo is None else v
    return dt.datetime.fromisoformat(v).replace(tzinfo=dt.timezone.utc)


# ---------------------------------------------------------------------------------- formats


def neutralise(v: str) -> str:
    """Make a text cell inert in a spreadsheet: a leading apostrophe before = + - @ tab CR."""
    return "'" + v if v[:1] in DANGEROUS_START else v


def fit_excel_cell(v: str) -> str | None:
    """``v`` cut to Excel's cell limit with :data:`XLSX_CUT_MARK` at the end, or None if it fits.

    Excel counts UTF-16 code units (a character outside the BMP counts two); xlsxwriter would
    otherwise cut the text silently, without a mark.
    """
    if len(v) <= XLSX_MAX_CHARS // 2:  # at most two units a character: fits
        return None
    units = v.encode("utf-16-le")
    if len(units) <= 2 * XLSX_MAX_CHARS:
        return None
    room = XLSX_MAX_CHARS - len(XLSX_CUT_MARK)
    return units[: 2 * room].decode("utf-16-le", errors="ignore") + XLSX_CUT_MARK  # never half a pair


class LocalTime:
    """Stored UTC times (SQLite text or datetimes) -> ISO 8601 in ``tz``, to the second.

    Stored text is ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (SQLAlchemy's SQLite format). The local
    prefix of each UTC hour is computed once; an hour whose offset is not whole hours or changes
    inside it takes the slow, exact path.
    """

    def __init__(self, tz: str):
        self.zone = zoneinfo.ZoneInfo(tz)
        self._hours: dict[str, tuple[str, str] | None] = {}

    def _hour(self, key: str) -> tuple[str, str] | None:
        try:
            utc = dt.datetime.fromisoformat(key + ":00:00").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            return None
        loc = utc.astimezone(self.zone)
        off = loc.utcoffset()
        last = (utc + dt.timedelta(seconds=3599)).astimezone(self.zone).utcoffset()
        if off is None or off != last or off.total_seconds() % 3600:
            return None
        return loc.strftime("%Y-%m-%dT%H"), loc.isoformat()[19:]

    @overload
    def one(self, v: None) -> None: ...
    @overload
    def one(self, v: str | dt.datetime) -> str: ...
    def one(self, v: str | dt.datetime | None) -> str | None:
        if v is None:
            return None
        if isinstance(v, str):
            hit: tuple[str, str] | None | Literal[False] = self._hours.get(v[:13], False)
            if hit is False:
                hit = self._hours[v[:13]] = self._hour(v[:13])
            if hit is not None and len(v) >= 19 and v[13] == ":":
                return hit[0] + v[13:19] + hit[1]
            v = dt.datetime.fromisoformat(v)
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return v.astimezone(self.zone).isoformat(timespec="seconds")

    def csv_column(self, values: list) -> list[str]:
        """:meth:`column` with '' for none."""
        out = self.column(values)
        if None in out:
            return ["" if v is None else v for v in out]
        return out

    def column(self, values: Sequence) -> list:
        hours = self._hours
        out: list = []
        append = out.append
        for v in values:
            if v.__class__ is str and len(v) >= 19:
                hit: tuple[str, str] | None | Literal[False] = hours.get(v[:13], False)
                if hit:
                    append(hit[0] + v[13:19] + hit[1])
                    continue
            append(self.one(v))
        return out


_CSV_ATTENTION = re.compile(r'[,"\r\n]|\x00[=+\-@\t]').search
_CSV_QUOTE = re.compile(r'[,"\r\n]').search


def _csv_cell(v: str) -> str:
    v = neutralise(v)
    return '"' + v.replace('"', '""') + '"' if _CSV_QUOTE(v) else v


def _csv_text(values: Sequence) -> Iterable[str]:
    distinct = set(values)
    if None in distinct:
        distinct.discard(None)
        fixed = {None: ""}
    else:
        fixed = {}
    if _CSV_ATTENTION("\x00" + "\x00".join(distinct)):
        for v in distinct:
            c = _csv_cell(v)
            if c is not v:
                fixed[v] = c
    return map(fixed.get, values, values) if fixed else values


def _csv_num(values: tuple) -> Iterable[str]:
    if None in values:
        return ["" if v is None else str(v) for v in values]
    return map(str, values)


def _csv_bool(values: tuple) -> Iterable[str]:
    return ["" if v is None else ("true" if v else "false") for v in values]


class CsvWriter:
    """CSV, UTF-8 (with a BOM unless ``bom=False``), CRLF; formats whole columns of a batch."""

    def __init__(self, out: IO[bytes], columns, tz: str, *, bom: bool = True, text_rows: bool = False):
        """``text_rows``: every value but the times is already text, '' for none (``rows(as_text=True)``)."""
        self.out = out
        self.text_rows = text_rows
        self.kinds = [k for _, k in columns]
        times = LocalTime(tz)
        self.conv: list[Callable] = [
            {"text": _csv_text, "num": _csv_num, "bool": _csv_bool}.get(k) or (lambda vs: _csv_text(times.column(vs)))
            for k in self.kinds
        ]
        head = ",".join(n for n, _ in columns) + "\r\n"
        out.write(("\ufeff" if bom else "").encode() + head.encode())

        # The fast path, for rows whose values are all text but the times: each line is built by
        # one str.format call ("{2[0]},{0},…": the converted times, then the row's cells), and the
        # whole batch is checked at once: as many commas and line ends as the separators means no
        # cell needs quoting; a separator followed by = + - @ or a tab starts a cell to neutralise.
        self.times_at = [j for j, k in enumerate(self.kinds) if k == "time"]
        self.local = times
        nt = len(self.times_at)
        self.line = ",".join(
            "{%d}" % self.times_at.index(j) if k == "time" else "{%d[%d]}" % (nt, j) for j, k in enumerate(self.kinds)
        ).format
        self.fast_batches = 0

    def write(self, batch: list) -> None:
        if not batch:
            return
        if not (self.text_rows and self._write_fast(batch)):
            cols = [conv(vals) for conv, vals in zip(self.conv, zip(*batch))]
            self.out.write(("\r\n".join(map(",".join, zip(*cols))) + "\r\n").encode("utf-8"))

    def _write_fast(self, batch: list) -> bool:
        """Rows of text (and raw times) only; False when a cell needs quoting: the slow path."""
        local = self.local
        times = [local.csv_column(list(map(itemgetter(j), batch))) for j in self.times_at]
        s = "\r\n".join(map(self.line, *times, batch))
        n = len(batch)
        if (s.count(",") != n * (len(self.kinds) - 1) or s.count("\n") != n - 1 or s.count("\r") != n - 1
                or '"' in s):
            return False
        for c in DANGEROUS_START[:-1]:  # \r is caught above
            for sep in (",", "\n"):
                if sep + c in s:
                    s = s.replace(sep + c, sep + "'" + c)
        if s[:1] in DANGEROUS_START:
            s = "'" + s
        self.out.write((s + "\r\n").encode("utf-8"))
        self.fast_batches += 1
        return True

    def close(self) -> None:
        pass


class JsonlWriter:
    """One JSON object a line, values unchanged (no spreadsheet neutralisation)."""

    def __init__(self, out: IO[bytes], columns, tz: str):
        self.out = out
        self.names = [n for n, _ in columns]
        self.times = [i for i, (_, k) in enumerate(columns) if k == "time"]
        self.lt = LocalTime(tz)

    def write(self, batch: list) -> None:
        lines = []
        names, times, lt = self.names, self.times, self.lt
        for r in batch:
            r = list(r)
            for i in times:
                r[i] = lt.one(r[i])
            lines.append(json.dumps(dict(zip(names, r)), ensure_ascii=False))
        if lines:
            self.out.write(("\n".join(lines) + "\n").encode("utf-8"))

    def close(self) -> None:
        pass


class XlsxWriter:
    """An .xlsx workbook written in constant memory (xlsxwriter), one sheet, text as text."""

    def __init__(self, path: Path, columns, tz: str, sheet: str, stats: ExportStats | None = None):
        import xlsxwriter

        self.stats = stats if stats is not None else ExportStats()

        self.wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False,
                                                  "strings_to_formulas": False, "strings_to_urls": False})
        self.ws = self.wb.add_worksheet(sheet)
        bold = self.wb.add_format({"bold": True})
        self.kinds = [k for _, k in columns]
        self.lt = LocalTime(tz)
        for j, (n, _) in enumerate(columns):
            self.ws.write_string(0, j, n, bold)
        self.ws.freeze_panes(1, 0)
        self.row = 0

    def write(self, batch: list) -> None:
        ws, kinds, lt = self.ws, self.kinds, self.lt
        for r in batch:
            self.row += 1
            if self.row > XLSX_MAX_ROWS:
                limit = f"{XLSX_MAX_ROWS:,}".replace(",", ".")
                raise ExportError(f"quá {limit} dòng, vượt giới hạn của Excel: hãy xuất csv hoặc thu hẹp khoảng ngày")
            for j, v in enumerate(r):
                if v is None:
                    continue
                k = kinds[j]
                if k == "num":
                    ws.write_number(self.row, j, v)
                elif k == "bool":
                    ws.write_boolean(self.row, j, bool(v))
                else:
                    text = neutralise(lt.one(v) if k == "time" else v)
                    cut = fit_excel_cell(text)
                    if cut is not None:
                        text = cut
                        self.stats.truncated_cells += 1
                    ws.write_string(self.row, j, text)

    def close(self) -> None:
        self.wb.close()


# ------------------------------------------------------------------------------------- run


def publish(tmp: Path, out: Path) -> None:
    """Give a finished temporary file its final name, with the usual mode (mkstemp's is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, out)


def export(settings: Settings, routing: Routing, q: Query, fmt: str, out: Path | None, *, bom: bool = True,
           stdout: IO[bytes] | None = None, progress: Callable[[int], None] | None = None,
           now: dt.datetime | None = None, stats: ExportStats | None = None) -> int:
    """Write the export; returns the number of rows.

    To a file: written under a temporary name in the same directory and renamed at the end, so
    an interrupted or failed export leaves nothing behind. Without ``out``: to ``stdout``.
    """
    columns = COLUMNS[q.table]
    tz = routing.hotline.timezone
    tmp: Path | None = None  # the file being written, removed unless the export completes
    xtmp: Path | None = None  # xlsx to stdout: the workbook before it is copied out
    if out is not None:
        out = Path(out)
        if out.is_dir():
            raise ExportError(f"{out} là thư mục, cần một tên tệp")
        if not out.parent.is_dir():
            raise ExportError(f"thư mục {out.parent} không tồn tại")
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        if fmt == "xlsx":
            target = tmp
            if target is None:  # to stdout: xlsxwriter needs a real file to zip from
                fd, name = tempfile.mkstemp(suffix=".xlsx")
                os.close(fd)
                target = xtmp = Path(name)
            writer: Any = XlsxWriter(target, columns, tz, q.table, stats)
            stream = None
        else:
            stream = open(tmp, "wb") if tmp is not None else stdout
            assert stream is not None
            writer = (CsvWriter(stream, columns, tz, bom=bom, text_rows=q.table in ("calls", "surveys")) if fmt == "csv"
                      else JsonlWriter(stream, columns, tz))
        n = 0
        try:
            for batch in rows(settings, q, now=now, as_text=fmt == "csv", routing=routing):
                writer.write(batch)
                n += len(batch)
                if progress:
                    progress(len(batch))
            writer.close()
        finally:
            if stream is not None and stream is not stdout:
                stream.close()
            elif stream is not None:
                stream.flush()
        if fmt == "xlsx" and tmp is None:
            assert stdout is not None and target is not None
            with open(target, "rb") as f:
                while chunk := f.read(1 << 20):
                    stdout.write(chunk)
            stdout.flush()
        if tmp is not None:
            assert out is not None  # a temporary file is made only for one
            publish(tmp, out)
            tmp = None
        return n
    finally:
        for p in (tmp, xtmp):
            if p is not None:
                p.unlink(missing_ok=True)
