"""The monthly report (báo cáo tháng) that Sở Nội vụ sends to the provincial committee.

``build()`` computes every figure of one calendar month (local time) from the database into a
:class:`Report`; ``render_html()`` turns it into one self-contained Vietnamese HTML page (inline
CSS, charts as inline SVG, no external resource); ``write()`` saves it as HTML, as PDF through
WeasyPrint, or as JSON (``to_json()``: every figure, for other systems).

Every figure shown is wrapped as ``<span data-k="KEY" data-v="RAW">shown</span>`` (chart bars as
``<rect data-k=… data-v=…>``) so that tests can check each one against values they compute
themselves.

Definitions (also printed in the report):

- a call belongs to the month it started in; "in hours" calls are all but ``closed``;
- answered: a desk phone answered (``disposition = answered``); answer rate = answered / calls in
  hours (per branch: / calls routed to that branch);
- wait: from arrival to the answer, answered calls only; average and 95th percentile
  (nearest rank);
- per desk extension: legs rung in the month and what they did; time unreachable counts only
  opening hours of working days, from ``registration_events`` (down from ``unregistered`` /
  ``unreachable`` until ``registered`` / ``reachable``), up to the cut-off;
- cases received in the month, their state at the cut-off (end of the month, or now for the
  current month): answered on time / late (``answered_at`` against ``deadline_at``), closed
  without an answer, overdue (deadline passed, neither answered nor closed), pending. A case
  counts for each agency it was assigned to, or for the branch's agency when not assigned.
- the branch queue (docs/queue.md): calls that waited (each ``dequeued`` event), their wait
  (average, 95th percentile) and how the wait ended: a desk phone, hung up (abandoned in the
  queue), the voice complaint, ``max_wait``, a callback request. Callbacks are outbound calls
  (dispositions ``callback_*``): counted apart, never as calls to the hotline;
- "Đoàn thanh niên chung tay CCHC": :func:`ivr.records.volunteers.month_summary` (shifts by
  planned start, hours from check-in to check-out, assists by kind and by the desk's district).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import math
import os
import tempfile
import zoneinfo
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ivr.config import hours as cal
from ivr.config.routing import Routing
from ivr.models import Call, CallEvent, CallLeg, Case, CaseAssignment, CaseEvent, RegistrationEvent
from ivr.models.presence import UP_STATUSES
from ivr.records import volunteers as vol
from ivr.records.export import publish
from ivr.vocab import AssistKind, Category, Disposition

STATE_VI = {
    "answering": "khi tổng đài nhấc máy", "greeting": "khi nghe lời chào", "menu": "khi chọn nhánh (menu)",
    "dialing": "khi chờ cán bộ nghe máy", "queue": "khi chờ trong hàng đợi", "bridged": "trong khi đàm thoại", "survey": "khi khảo sát",
    "complaint": "khi ghi âm phản ánh", "closed": "khi nghe thông báo ngoài giờ", "fallback": "khi nghe thông báo lỗi",
    "ended": "khi kết thúc",
}
DISPOSITION_VI = Disposition.labels()
CATEGORY_VI = Category.labels()
CASE_STATES = ("received", "answered_on_time", "answered_late", "closed_no_answer", "overdue", "pending")
MISSED_LEG = ("no_answer", "busy", "unreachable", "failed")


class ReportError(Exception):
    """Bad arguments; the message is for staff (Vietnamese)."""


# ------------------------------------------------------------------------------------ month


@dataclass(frozen=True)
class Month:
    year: int
    month: int
    tz: str

    @classmethod
    def parse(cls, text: str, tz: str) -> Month:
        """``YYYY-MM`` (or ``MM/YYYY``)."""
        t = text.strip()
        for fmt in ("%Y-%m", "%m/%Y"):
            try:
                d = dt.datetime.strptime(t, fmt)
            except ValueError:
                continue
            if not 1900 <= d.year <= 9998:  # year 1 or 9999 overflow once moved to UTC
                raise ReportError(f"--month '{text}': năm phải từ 1900 đến 9998")
            return cls(d.year, d.month, tz)
        raise ReportError(f"--month {text[:40]!r} không hợp lệ (dạng YYYY-MM, ví dụ 2026-10)")

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.tz)

    @property
    def first_day(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def next_first_day(self) -> dt.date:
        return dt.date(self.year + self.month // 12, self.month % 12 + 1, 1)

    @property
    def days(self) -> list[dt.date]:
        n = (self.next_first_day - self.first_day).days
        return [self.first_day + dt.timedelta(days=i) for i in range(n)]

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first_day, dt.time(), self.zone).astimezone(dt.timezone.utc)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.next_first_day, dt.time(), self.zone).astimezone(dt.timezone.utc)

    @property
    def label(self) -> str:
        return f"{self.month:02d}/{self.year}"


# ------------------------------------------------------------------------------- the figures


@dataclass
class Report:
    """Every figure of the report. ``figures`` maps a stable key to its raw value."""

    month: Month
    cutoff: dt.datetime
    generated_at: dt.datetime
    figures: dict[str, Any] = field(default_factory=dict)
    branches: list[tuple[str, str]] = field(default_factory=list)  # (digit, name)
    dispositions: list[str] = field(default_factory=list)
    abandon_states: list[str] = field(default_factory=list)
    agencies: list[tuple[str, str]] = field(default_factory=list)  # (code, name)
    extensions: list[tuple[str, str, str]] = field(default_factory=list)  # (number, agency code, name)
    case_agencies: list[tuple[str, str]] = field(default_factory=list)
    inspection: list[dict] = field(default_factory=list)
    zalo: dict | None = None
    volunteers: dict | None = None  # vol.month_summary(); its figures are in ``figures`` when there is activity

    def __getitem__(self, key: str) -> Any:
        return self.figures[key]


@overload
def _utc(v: dt.datetime) -> dt.datetime: ...
@overload
def _utc(v: None) -> None: ...
@overload
def _utc(v: dt.datetime | None) -> dt.datetime | None: ...
def _utc(v: dt.datetime | None) -> dt.datetime | None:
    if v is None:
        return None
    return v.replace(tzinfo=dt.timezone.utc) if v.tzinfo is None else v.astimezone(dt.timezone.utc)


def percentile(sorted_values, p: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    n = len(sorted_values)
    if not n:
        return None
    return sorted_values[max(0, math.ceil(p / 100 * n) - 1)]


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _mean(total: float, n: int) -> float | None:
    return total / n if n else None


async def _calls(conn: AsyncConnection, r: Report, routing: Routing) -> tuple[Counter, Counter, dict[str, str]]:
    """The call figures; returns each agency's calls, answered calls and name, for :func:`_desks`."""
    m, f = r.month, r.figures
    tz = m.zone
    total = closed = answered = abandoned = 0
    disp: Counter = Counter()
    ab_state: Counter = Counter()
    per_day: Counter = Counter()
    b_calls: Counter = Counter()
    b_answered: Counter = Counter()
    b_abandoned: Counter = Counter()
    b_wait: dict[str, array] = defaultdict(lambda: array("d"))
    all_wait = array("d")
    a_calls: Counter = Counter()
    a_answered: Counter = Counter()
    names: dict[str, str] = {}
    s_count: Counter = Counter()
    s_sum: Counter = Counter()
    s_dist: Counter = Counter()
    stmt = (sa.select(Call.started_at, Call.branch_digit, Call.agency_code, Call.agency_name, Call.disposition,
                      Call.ended_in, Call.wait_s, Call.survey_score)
            .where(Call.started_at >= m.start, Call.started_at < m.end))
    result = await conn.stream(stmt.execution_options(yield_per=2000))
    callbacks: Counter = Counter()
    async for started, digit, acode, aname, d, ended_in, wait, score in result:
        if d in CALLBACKS:  # an outbound callback, not a call to the hotline
            callbacks[d] += 1
            continue
        total += 1
        disp[d] += 1
        per_day[_utc(started).astimezone(tz).date()] += 1
        bkey = digit or "none"
        b_calls[bkey] += 1
        if acode:
            a_calls[acode] += 1
            names.setdefault(acode, aname or acode)
        if d == "closed":
            closed += 1
        if d == "abandoned":
            abandoned += 1
            b_abandoned[bkey] += 1
            ab_state[ended_in or "?"] += 1
        if d == "answered":
            answered += 1
            b_answered[bkey] += 1
            if acode:
                a_answered[acode] += 1
            if wait is not None:
                all_wait.append(wait)
                b_wait[bkey].append(wait)
        if score is not None:
            for k in (bkey, "all"):
                s_count[k] += 1
                s_sum[k] += score
                s_dist[k, score] += 1

    for d in CALLBACKS:
        f[f"callback.{d}"] = callbacks[d]
    f["callback.total"] = sum(callbacks.values())
    f["calls.total"] = total
    f["calls.closed"] = closed
    f["calls.in_hours"] = total - closed
    f["calls.answered"] = answered
    f["calls.answer_rate"] = _ratio(answered, total - closed)
    f["calls.abandoned"] = abandoned
    waits = sorted(all_wait)
    f["wait.avg"] = _mean(sum(waits), len(waits))
    f["wait.p95"] = percentile(waits, 95)
    r.dispositions = [d for d in DISPOSITION_VI if disp[d]] + sorted(d for d in disp if d not in DISPOSITION_VI)
    for d in r.dispositions:
        f[f"disp.{d}"] = disp[d]
    r.abandon_states = sorted(ab_state, key=lambda s: (-ab_state[s], s))
    for s in r.abandon_states:
        f[f"abandon.{s}"] = ab_state[s]
    for day in m.days:
        f[f"day.{day.isoformat()}"] = per_day[day]

    known = [(b.digit, b.name) for b in routing.branches]
    extra = sorted(k for k in b_calls if k != "none" and k not in {d for d, _ in known})
    r.branches = known + [(d, "(nhánh không còn trong cấu hình)") for d in extra]
    for d, _ in r.branches + [("none", "")]:
        w = sorted(b_wait[d])
        f[f"branch.{d}.calls"] = b_calls[d]
        f[f"branch.{d}.answered"] = b_answered[d]
        f[f"branch.{d}.rate"] = _ratio(b_answered[d], b_calls[d])
        f[f"branch.{d}.abandoned"] = b_abandoned[d]
        if d != "none":
            f[f"branch.{d}.wait_avg"] = _mean(sum(w), len(w))
            f[f"branch.{d}.wait_p95"] = percentile(w, 95)
    for d, _ in r.branches + [("all", "")]:
        f[f"survey.{d}.count"] = s_count[d]
        f[f"survey.{d}.avg"] = _mean(s_sum[d], s_count[d])
        answered_d = answered if d == "all" else b_answered[d]
        f[f"survey.{d}.rate"] = _ratio(s_count[d], answered_d)
        for score in range(1, 6):
            f[f"survey.{d}.s{score}"] = s_dist[d, score]
    return a_calls, a_answered, names


CALLBACKS = (Disposition.CALLBACK_ANSWERED.value, Disposition.CALLBACK_NO_ANSWER.value,
             Disposition.CALLBACK_FAILED.value)
QUEUE_ENDS = ("turn", "hangup", "complaint", "timeout", "callback")  # dequeued.why


async def _queue(conn: AsyncConnection, r: Report) -> None:
    """The branch queue's figures, from the calls' ``dequeued`` events."""
    m, f = r.month, r.figures
    stmt = (sa.select(CallEvent.detail).join(Call, Call.id == CallEvent.call_id)
            .where(Call.started_at >= m.start, Call.started_at < m.end, CallEvent.kind == "dequeued"))
    waits = array("d")
    ends: Counter = Counter()
    result = await conn.stream(stmt.execution_options(yield_per=2000))
    async for (detail,) in result:
        detail = detail or {}
        ends[detail.get("why") or "?"] += 1
        if isinstance(detail.get("waited_s"), (int, float)):
            waits.append(float(detail["waited_s"]))
    f["queue.calls"] = sum(ends.values())
    w = sorted(waits)
    f["queue.wait_avg"] = _mean(sum(w), len(w))
    f["queue.wait_p95"] = percentile(w, 95)
    for why in QUEUE_ENDS:
        f[f"queue.{why}"] = ends[why]


def _open_intervals(routing: Routing, m: Month, until: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """Opening hours of the month's working days, in UTC, cut at ``until``."""
    out = []
    for day in m.days:
        if not cal.is_working_day(routing.hours, day):
            continue
        for iv in routing.hours.open:
            a = dt.datetime.combine(day, iv.start, m.zone).astimezone(dt.timezone.utc)
            b = dt.datetime.combine(day, iv.end, m.zone).astimezone(dt.timezone.utc)
            b = min(b, until)
            if a < b:
                out.append((a, b))
    return out


def _overlap(a0, a1, spans) -> float:
    return sum(max(0.0, (min(a1, b1) - max(a0, b0)).total_seconds()) for b0, b1 in spans)


async def unreachable(conn: AsyncConnection, routing: Routing, m: Month,
                      cutoff: dt.datetime) -> tuple[dict[str, float], Counter, dict[str, str]]:
    """Per desk extension: seconds unreachable within opening hours of the month's working days
    up to ``cutoff``, how many times it went down, and the agency its events name. The state
    at the month's start, then every change (also /phones in the console)."""
    spans = _open_intervals(routing, m, cutoff)
    down_s: dict[str, float] = defaultdict(float)  # seconds: a Counter is typed for ints
    down_n: Counter = Counter()
    ev_agency: dict[str, str] = {}
    last_before = (sa.select(RegistrationEvent.extension, sa.func.max(RegistrationEvent.id).label("id"))
                   .where(RegistrationEvent.at < m.start).group_by(RegistrationEvent.extension).subquery())
    state: dict[str, tuple[bool, dt.datetime]] = {}  # ext -> (down, since)
    for ext, status, acode in (await conn.execute(
            sa.select(RegistrationEvent.extension, RegistrationEvent.status, RegistrationEvent.agency_code)
            .join(last_before, RegistrationEvent.id == last_before.c.id))).all():
        state[ext] = (status not in UP_STATUSES, m.start)
        if acode:
            ev_agency[ext] = acode
    changes = (sa.select(RegistrationEvent.extension, RegistrationEvent.at, RegistrationEvent.status, RegistrationEvent.agency_code)
               .where(RegistrationEvent.at >= m.start, RegistrationEvent.at < cutoff)
               .order_by(RegistrationEvent.at, RegistrationEvent.id))
    async for ext, at, status, acode in await conn.stream(changes.execution_options(yield_per=2000)):
        at = _utc(at)
        if acode:
            ev_agency[ext] = acode
        down = status not in UP_STATUSES
        prev = state.get(ext)
        if prev and prev[0]:
            down_s[ext] += _overlap(prev[1], at, spans)
        if down and not (prev and prev[0]):
            down_n[ext] += 1
        if prev is None or prev[0] != down:
            state[ext] = (down, at)
    for ext, (down, since) in state.items():
        if down:
            down_s[ext] += _overlap(since, cutoff, spans)
    return down_s, down_n, ev_agency


async def _desks(conn: AsyncConnection, r: Report, routing: Routing,
                 agency_calls: tuple[Counter, Counter, dict[str, str]]) -> None:
    m, f, cutoff = r.month, r.figures, r.cutoff
    legs: dict[str, Counter] = defaultdict(Counter)
    stmt = (sa.select(CallLeg.extension, CallLeg.result)
            .where(CallLeg.started_at >= m.start, CallLeg.started_at < m.end))
    async for ext, result in await conn.stream(stmt.execution_options(yield_per=2000)):
        legs[ext]["legs"] += 1
        legs[ext][result or "unknown"] += 1

    down_s, down_n, ev_agency = await unreachable(conn, routing, m, cutoff)

    def agency_of(ext: str) -> str:
        e = routing.extensions.get(ext)
        return e.agency if e else ev_agency.get(ext, "?")

    shown = sorted(set(legs) | {e for e in down_s if down_s[e] or down_n[e]} | set(down_n))
    r.extensions = [(e, agency_of(e), routing.extensions[e].name if e in routing.extensions else "") for e in shown]
    a_legs_missed: Counter = Counter()
    a_down: dict[str, float] = defaultdict(float)
    for ext, acode, _ in r.extensions:
        c = legs[ext]
        f[f"ext.{ext}.legs"] = c["legs"]
        f[f"ext.{ext}.answered"] = c["answered"]
        f[f"ext.{ext}.no_answer"] = c["no_answer"]
        f[f"ext.{ext}.busy"] = c["busy"]
        f[f"ext.{ext}.unreachable"] = c["unreachable"] + c["failed"]
        f[f"ext.{ext}.down_s"] = float(down_s[ext])
        f[f"ext.{ext}.down_count"] = down_n[ext]
        a_legs_missed[acode] += sum(c[x] for x in MISSED_LEG)
        a_down[acode] += down_s[ext]

    a_calls, a_answered, names = agency_calls
    codes = sorted(set(a_calls) | {a for _, a, _ in r.extensions})
    r.agencies = [(c, routing.agencies[c].name if c in routing.agencies else names.get(c, c)) for c in codes]
    for code in codes:
        f[f"agency.{code}.calls"] = a_calls[code]
        f[f"agency.{code}.answered"] = a_answered[code]
        f[f"agency.{code}.missed"] = a_calls[code] - a_answered[code]
        f[f"agency.{code}.legs_missed"] = a_legs_missed[code]
        f[f"agency.{code}.down_s"] = float(a_down[code])


def case_state(received_at, deadline_at, answered_at, closed_at, cutoff) -> str:
    """Where a case stands at ``cutoff``: one of CASE_STATES (but ``received``)."""
    if answered_at is not None and answered_at <= cutoff:
        return "answered_on_time" if answered_at <= deadline_at else "answered_late"
    if closed_at is not None and closed_at <= cutoff:
        return "closed_no_answer"
    return "overdue" if deadline_at < cutoff else "pending"


async def _cases(conn: AsyncConnection, r: Report, routing: Routing) -> None:
    m, f, cutoff = r.month, r.figures, r.cutoff
    closes = (sa.select(CaseEvent.case_id, sa.func.min(CaseEvent.at).label("at"))
              .where(CaseEvent.action == "close", CaseEvent.at <= cutoff).group_by(CaseEvent.case_id).subquery())
    rows = (await conn.execute(
        sa.select(Case.id, Case.code, Case.received_at, Case.deadline_at, Case.answered_at, closes.c.at, Case.category,
                  Case.agency_code, Case.agency_name, Case.inspection, Case.inspection_reason, Case.status,
                  Case.branch_digit)
        .outerjoin(closes, closes.c.case_id == Case.id)
        .where(Case.received_at < m.end, Case.received_at < cutoff)
        # this month's cases, and older ones that may still be overdue at the cut-off
        .where(sa.or_(Case.received_at >= m.start, Case.answered_at.is_(None), Case.answered_at > cutoff))
        .order_by(Case.received_at, Case.id))).all()
    ids = [row[0] for row in rows if _utc(row[2]) >= m.start]
    assigned: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for i in range(0, len(ids), 500):
        for cid, code, name in (await conn.execute(
                sa.select(CaseAssignment.case_id, CaseAssignment.agency_code, CaseAssignment.agency_name)
                .where(CaseAssignment.case_id.in_(ids[i:i + 500]), CaseAssignment.assigned_at <= cutoff)
                .order_by(CaseAssignment.id))).all():
            assigned[cid].append((code, name))

    total: Counter = Counter()
    by_cat: Counter = Counter()
    by_agency: Counter = Counter()
    agency_names: dict[str, str] = {}
    backlog = 0
    for (cid, code, received, deadline, answered, closed, category, acode, aname, inspection, reason, _status,
         digit) in rows:
        received, deadline, answered, closed = _utc(received), _utc(deadline), _utc(answered), _utc(closed)
        st = case_state(received, deadline, answered, closed, cutoff)
        if received < m.start:
            backlog += st == "overdue"
            continue
        owners = assigned.get(cid) or [(acode or "?", aname or "chưa xác định")]
        for key in ("received", st):
            total[key] += 1
            by_cat[category, key] += 1
            for oc, on in owners:
                by_agency[oc, key] += 1
                agency_names.setdefault(oc, on)
        if inspection:
            r.inspection.append({
                "code": code, "received_at": received, "category": category, "branch": digit,
                "agency": ", ".join(n for _, n in owners), "reason": reason or "", "state": st, "deadline_at": deadline,
            })
    for key in CASE_STATES:
        f[f"cases.{key}"] = total[key]
        for c in CATEGORY_VI:
            f[f"cases.cat.{c}.{key}"] = by_cat[c, key]
    r.case_agencies = sorted(((c, routing.agencies[c].name if c in routing.agencies else n) for c, n in agency_names.items()),
                             key=lambda x: x[0])
    for c, _ in r.case_agencies:
        for key in CASE_STATES:
            f[f"cases.agency.{c}.{key}"] = by_agency[c, key]
    f["cases.backlog_overdue"] = backlog
    f["insp.count"] = len(r.inspection)


ZALO_QUESTIONS = ("q_access", "q_procedure", "q_official", "q_result", "q_complaints")


async def zalo_survey_rows(conn: AsyncConnection, m: Month) -> list[tuple[int | None, ...]] | None:
    """The month's SIPAS-style answers over Zalo (:mod:`ivr.zalo.surveys`): one tuple of the five
    ratings (1..5, None when skipped) per answer; None when the database has no survey table."""
    from ivr.models import SurveyAnswer

    has = await conn.run_sync(lambda c: sa.inspect(c).has_table(SurveyAnswer.__tablename__))
    if not has:
        return None
    cols = [getattr(SurveyAnswer, q) for q in ZALO_QUESTIONS]
    q = sa.select(*cols).where(SurveyAnswer.answered_at >= m.start, SurveyAnswer.answered_at < m.end)
    return [tuple(row) for row in (await conn.execute(q)).all()]


VOLUNTEER_COUNTS = ("enrolled", "volunteers", "days", "shifts_planned", "shifts", "absent", "no_checkout",
                    "shifts_day_off", "assists")


def _volunteer_figures(f: dict[str, Any], v: dict) -> None:
    for k in VOLUNTEER_COUNTS:
        f[f"vol.{k}"] = v[k]
    f["vol.served_s"] = float(v["minutes"] * 60)
    for kind, count in v["by_kind"].items():
        f[f"vol.kind.{kind}"] = count
    for d in v["districts"]:
        for k in ("volunteers", "shifts", "assists"):
            f[f"vol.district.{d['code']}.{k}"] = d[k]
        f[f"vol.district.{d['code']}.served_s"] = float(d["minutes"] * 60)
    f["vol.desks_without"] = len(v["desks_without"])


async def build(engine: AsyncEngine, routing: Routing, month: Month, *, now: dt.datetime | None = None) -> Report:
    """Compute every figure of ``month``; the cut-off is the month's end, or ``now`` if earlier."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if month.start >= now:
        raise ReportError(f"tháng {month.label} chưa bắt đầu")
    r = Report(month=month, cutoff=min(month.end, now), generated_at=now)
    async with engine.connect() as conn:
        agency_calls = await _calls(conn, r, routing)
        await _queue(conn, r)
        await _desks(conn, r, routing, agency_calls)
        await _cases(conn, r, routing)
        answers = await zalo_survey_rows(conn, month)
        r.volunteers = await vol.month_summary(conn, routing, month.start, month.end, r.cutoff)
    if vol.has_activity(r.volunteers):
        _volunteer_figures(r.figures, r.volunteers)
    if answers:
        ratings = [v for row in answers for v in row if v is not None]
        r.zalo = {"count": len(answers), "avg": _mean(sum(ratings), len(ratings)),
                  **{f"s{i}": ratings.count(i) for i in range(1, 6)}}
        for i, q in enumerate(ZALO_QUESTIONS):
            given = [v for row in answers if (v := row[i]) is not None]
            r.zalo[q] = _mean(sum(given), len(given))
        for k, v in r.zalo.items():
            r.figures[f"zalo.{k}"] = v
    return r


# ------------------------------------------------------------------------------ formatting


def fmt_int(v: int) -> str:
    return f"{v:,}".replace(",", ".")


def fmt_dec(v: float | None, places: int = 1) -> str:
    if v is None:
        return "—"
    s = f"{v:,.{places}f}"
    return s.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def fmt_pct(v: float | None) -> str:
    return "—" if v is None else fmt_dec(100 * v) + "%"


def fmt_duration(seconds: float) -> str:
    """Hours and minutes: ``3 giờ 05 phút``; under an hour ``12 phút``."""
    minutes = int(round(seconds / 60))
    h, mi = divmod(minutes, 60)
    return f"{h} giờ {mi:02d} phút" if h else f"{mi} phút"


def shown(key: str, value: Any) -> str:
    """How the report shows a figure; the kind follows from the key."""
    if value is None:
        return "—"
    last = key.rsplit(".", 1)[-1]
    if last in ("rate", "answer_rate"):
        return fmt_pct(value)
    if last in ("avg", "p95", "wait_avg", "wait_p95"):
        return fmt_dec(value)
    if last in ("down_s", "served_s"):
        return fmt_duration(value)
    return fmt_int(value)


# ---------------------------------------------------------------------------------- charts


def _esc(s: str) -> str:
    return html.escape(str(s), quote=True)


def svg_bars(items: list[tuple[str, str, float, str]], *, width: int = 680, bar_h: int = 18, label_w: int = 250,
             colour: str = "#2a6ebb", title: str = "") -> str:
    """Horizontal bars. items: (key, label, value, shown value)."""
    top = 8
    h = top + len(items) * (bar_h + 6) + 8
    vmax = max([v for _, _, v, _ in items] + [0]) or 1
    room = width - label_w - 70
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
             f'role="img" aria-label="{_esc(title)}" font-family="DejaVu Sans, Arial, sans-serif" font-size="11">']
    for i, (key, label, v, text) in enumerate(items):
        y = top + i * (bar_h + 6)
        w = room * v / vmax
        short = label if len(label) <= 34 else label[:33].rstrip() + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + bar_h - 5}" text-anchor="end"><title>{_esc(label)}</title>{_esc(short)}</text>')
        parts.append(f'<rect data-k="{_esc(key)}" data-v="{v}" x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 5}">{_esc(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_columns(items: list[tuple[str, str, float, bool]], *, width: int = 680, height: int = 200) -> str:
    """Vertical bars (calls per day). items: (key, label, value, highlighted); day off = grey."""
    left, bottom, top = 34, 28, 10
    n = max(len(items), 1)
    step = (width - left - 6) / n
    vmax = max([v for _, _, v, _ in items] + [0])
    scale_max = max(2, math.ceil(vmax / 2) * 2)  # even, so that the middle grid line is a whole number
    room = height - bottom - top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="Số cuộc gọi theo ngày" font-family="DejaVu Sans, Arial, sans-serif" font-size="9">']
    for frac in (0, 0.5, 1):
        y = top + room * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccc" stroke-width="0.5"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{fmt_dec(scale_max * frac, 0)}</text>')
    for i, (key, label, v, working) in enumerate(items):
        x = left + i * step + 1
        bh = room * v / scale_max
        fill = "#2a6ebb" if working else "#9aa5b1"
        parts.append(f'<rect data-k="{_esc(key)}" data-v="{v}" x="{x:.1f}" y="{top + room - bh:.1f}" '
                     f'width="{max(step - 2, 1):.1f}" height="{bh:.1f}" fill="{fill}"/>')
        parts.append(f'<text x="{x + (step - 2) / 2:.1f}" y="{height - bottom + 12}" text-anchor="middle">{_esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------- render


def render_html(r: Report, routing: Routing) -> str:
    """The report as one self-contained HTML page (Vietnamese)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("ivr.records", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    f = r.figures

    def n(key: str) -> Any:
        v = f[key]
        raw = "" if v is None else repr(v)
        from markupsafe import Markup

        return Markup(f'<span class="n" data-k="{_esc(key)}" data-v="{_esc(raw)}">{_esc(shown(key, v))}</span>')

    tz = r.month.zone
    day_chart = svg_columns([
        (f"day.{d.isoformat()}", str(d.day), f[f"day.{d.isoformat()}"], cal.is_working_day(routing.hours, d))
        for d in r.month.days
    ])
    branch_chart = svg_bars([
        (f"branch.{d}.calls", f"{d}. {name}", f[f"branch.{d}.calls"], fmt_int(f[f"branch.{d}.calls"]))
        for d, name in r.branches
    ], title="Số cuộc gọi theo nhánh")
    survey_chart = svg_bars([
        (f"survey.{d}.avg", f"{d}. {name}", f[f"survey.{d}.avg"] or 0, fmt_dec(f[f"survey.{d}.avg"]))
        for d, name in r.branches
    ], colour="#3c9a5f", title="Điểm hài lòng trung bình theo nhánh")
    kinds = AssistKind.labels()
    volunteer_chart = svg_bars([
        (f"vol.kind.{k}", label, f[f"vol.kind.{k}"], fmt_int(f[f"vol.kind.{k}"])) for k, label in kinds.items()
    ], colour="#c0392b", title="Lượt hỗ trợ theo nội dung") if "vol.enrolled" in f else ""
    desks_without: dict[str, list[str]] = {}
    for d in (r.volunteers or {}).get("desks_without", []):
        desks_without.setdefault(vol.district_name(routing, d["district"]), []).append(d["name"])
    return env.get_template("report_monthly.html.j2").render(
        r=r, f=f, n=n, routing=routing, day_chart=day_chart, branch_chart=branch_chart, survey_chart=survey_chart,
        volunteer_chart=volunteer_chart, ASSIST_KIND_VI=kinds, desks_without=desks_without,
        STATE_VI=STATE_VI, DISPOSITION_VI=DISPOSITION_VI, CATEGORY_VI=CATEGORY_VI, CASE_STATES=CASE_STATES,
        local=lambda t: t.astimezone(tz).strftime("%d/%m/%Y %H:%M"), fmt_int=fmt_int,
        agency_name={c: name for c, name in r.agencies} | {c: a.name for c, a in routing.agencies.items()},
    )


def write_pdf(html_text: str, path: Path) -> None:
    """Render the HTML page to PDF (WeasyPrint: fonts from the system, e.g. DejaVu)."""
    import logging

    import weasyprint

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    weasyprint.HTML(string=html_text).write_pdf(str(path))


def check_out(out: Path) -> str:
    """``html``, ``pdf`` or ``json`` from the file name; Vietnamese error otherwise."""
    kind = out.suffix.lower().lstrip(".")
    if kind in ("htm", "html"):
        return "html"
    if kind in ("pdf", "json"):
        return kind
    raise ReportError(f"--out {out}: chỉ hỗ trợ tệp .json, .html hoặc .pdf")


def _iso(t: dt.datetime | None, tz: zoneinfo.ZoneInfo) -> str | None:
    return t.astimezone(tz).isoformat(timespec="seconds") if t else None


def to_json(r: Report) -> dict:
    """Every figure of the report as plain JSON data.

    ``figures``: every figure under the same key as in the HTML page (``data-k``); the lists
    name what the keys refer to. ``volunteers``: the youth volunteers' section as an object
    (zeros when nobody is enrolled), hours also in whole ``minutes``.
    """
    tz = r.month.zone
    return {
        "month": f"{r.month.year:04d}-{r.month.month:02d}",
        "timezone": r.month.tz,
        "cutoff": _iso(r.cutoff, tz),
        "generated_at": _iso(r.generated_at, tz),
        "figures": r.figures,
        "branches": [{"digit": d, "name": name} for d, name in r.branches],
        "agencies": [{"code": c, "name": name} for c, name in r.agencies],
        "extensions": [{"number": e, "agency": a, "name": name} for e, a, name in r.extensions],
        "case_agencies": [{"code": c, "name": name} for c, name in r.case_agencies],
        "inspection": [{**c, "received_at": _iso(c["received_at"], tz), "deadline_at": _iso(c["deadline_at"], tz)}
                       for c in r.inspection],
        "zalo": r.zalo,
        "volunteers": r.volunteers,
    }


def write(engine: AsyncEngine, routing: Routing, month: Month, out: Path, *, now: dt.datetime | None = None) -> Report:
    """Build the report and save it to ``out`` (.html, .pdf or .json) atomically; returns the figures."""
    kind = check_out(out)
    if not out.parent.is_dir():
        raise ReportError(f"thư mục {out.parent} không tồn tại")
    r = asyncio.run(_build_and_dispose(engine, routing, month, now))
    text = render_html(r, routing) if kind != "json" else ""
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if kind == "pdf":
            write_pdf(text, tmp)
        elif kind == "json":
            tmp.write_text(json.dumps(to_json(r), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        else:
            tmp.write_text(text, encoding="utf-8")
        publish(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return r


async def _build_and_dispose(engine: AsyncEngine, routing: Routing, month: Month, now) -> Report:
    try:
        return await build(engine, routing, month, now=now)
    finally:
        await engine.dispose()
