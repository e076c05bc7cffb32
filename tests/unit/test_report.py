"""The monthly report: a fixture month built by hand (September 2026: 1-2/9 are National Day
holidays), every figure checked against values this test computes itself from the fixture rows,
the HTML self-contained, the PDF rendered to an image and not blank, the CLI's errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import html.parser
import math
import re
import shutil
import subprocess
import zoneinfo
from collections import Counter

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.orm import Session

from ivr.cli import main
from ivr.config import routing as rt
from ivr.config.hours import is_working_day
from ivr.models import Call, CallEvent, CallLeg, Case, CaseAssignment, CaseEvent, RegistrationEvent
from ivr.records import db
from ivr.records import report as rp
from tests.paths import REPO_ROOT

VN = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
UTC = dt.timezone.utc
ROUTING = rt.load(REPO_ROOT / "routing.yaml")
NOW = dt.datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def t(m, d, h=9, mi=0, y=2026):
    return dt.datetime(y, m, d, h, mi, tzinfo=VN)


# ------------------------------------------------------------------------- the fixture month
# (id, start, branch, agency, disposition, ended_in, wait, answered_by, score)
CALLS = [
    ("c01", t(9, 3, 8, 0), "4", "VPUBND", "answered", "survey", 10.0, "2401", 5),
    ("c02", t(9, 3, 8, 30), "4", "VPUBND", "answered", "survey", 20.0, "2402", 4),
    ("c03", t(9, 3, 9, 0), "4", "VPUBND", "no_answer", "complaint", 40.0, None, None),
    ("c04", t(9, 4, 10, 0), "1", "SNV", "answered", "survey", 30.0, "2101", 3),
    ("c05", t(9, 4, 10, 5), "1", "SNV", "abandoned", "dialing", 15.0, None, None),
    ("c06", t(9, 7, 7, 30), None, None, "abandoned", "menu", 6.0, None, None),
    ("c07", t(9, 7, 7, 40), None, None, "abandoned", "greeting", 2.0, None, None),
    ("c08", t(9, 7, 20, 0), None, None, "closed", "complaint", 3.0, None, None),
    ("c09", t(9, 8, 14, 0), "2", "HHDN", "busy", "complaint", 21.0, None, None),
    ("c10", t(9, 8, 14, 10), "2", "HHDN", "answered", "bridged", 8.0, "2201", None),
    ("c11", t(9, 9, 9, 0), None, None, "complaint", "complaint", 9.0, None, None),
    ("c12", t(9, 10, 9, 0), "4", "VPUBND", "answered", "survey", 12.0, "2401", 1),
    ("c13", t(9, 30, 23, 30), "8", "SKHCN", "answered", "survey", 5.0, "2801", 5),  # 16:30 UTC: still September
    ("c14", t(10, 1, 0, 10), "8", "SKHCN", "no_answer", "complaint", 20.0, None, None),  # 30/9 17:10 UTC: October
    ("c15", t(8, 31, 23, 50), "4", "VPUBND", "answered", "survey", 7.0, "2401", 2),  # August
    ("c16", t(9, 1, 0, 5), None, None, "invalid_input", "complaint", 25.0, None, None),  # 31/8 17:05 UTC: September
]
# Waits in a branch's queue: (call, how the wait ended, seconds waited); c15 is August's.
QUEUED = [("c02", "turn", 12.5), ("c05", "hangup", 14.0), ("c09", "callback", 20.0), ("c03", "timeout", 31.0),
          ("c10", "complaint", 4.0), ("c15", "turn", 3.0)]
# Outbound callbacks (never calls to the hotline): (id, start, asked in call, disposition); cb3 is October's.
CALLBACK_ROWS = [("cb1", t(9, 8, 14, 5), "c09", "callback_no_answer"), ("cb2", t(9, 8, 14, 8), "c09", "callback_answered"),
                 ("cb3", t(10, 1, 8, 0), "c09", "callback_failed")]
# (call, extension, result)
LEGS = [
    ("c01", "2401", "answered"), ("c01", "2402", "cancelled"), ("c01", "2403", "cancelled"),
    ("c02", "2402", "answered"), ("c02", "2401", "cancelled"),
    ("c03", "2401", "no_answer"), ("c03", "2402", "no_answer"), ("c03", "2403", "unreachable"),
    ("c04", "2101", "answered"), ("c04", "2102", "cancelled"),
    ("c05", "2101", "no_answer"), ("c05", "2102", "no_answer"),
    ("c09", "2201", "busy"), ("c09", "2202", "busy"),
    ("c10", "2201", "answered"), ("c12", "2401", "answered"), ("c13", "2801", "answered"),
    ("c14", "2801", "no_answer"), ("c15", "2401", "answered"),
]
# (at, extension, agency, status)
PRESENCE = [
    (t(8, 20, 16, 0), "2403", "VPUBND", "unregistered"),  # down when the month starts
    (t(9, 3, 10, 0), "2403", "VPUBND", "registered"),
    (t(9, 15, 14, 0), "2403", "VPUBND", "unreachable"),
    (t(9, 15, 15, 30), "2403", "VPUBND", "reachable"),
    (t(8, 1, 8, 0), "2102", "SNV", "registered"),
    (t(9, 29, 16, 0), "2102", "SNV", "unregistered"),  # down until the end of the month
    (t(9, 10, 8, 0), "2201", "HHDN", "reachable"),
    (t(9, 11, 11, 0), "2201", "HHDN", "unreachable"),  # across the lunch break
    (t(9, 11, 13, 30), "2201", "HHDN", "registered"),
    (t(10, 2, 8, 0), "2401", "VPUBND", "unregistered"),  # October only
    (t(9, 20, 8, 0), "2999", "OLD", "unregistered"),  # a phone no longer in routing.yaml (Sunday)
    (t(9, 21, 8, 0), "2999", "OLD", "registered"),
    (t(9, 22, 9, 0), "2999", "OLD", "unregistered"),
    (t(9, 22, 10, 15), "2999", "OLD", "registered"),
]
# code, received, deadline, answered, closed, category, agency (owning), assigned, inspection reason
CASES = [
    ("100001", t(9, 3, 9, 1), t(9, 17, 17), t(9, 10, 10), None, "procedure", "VPUBND", ["VPUBND", "STP"], None),
    ("100002", t(9, 9, 9, 2), t(9, 16, 17), None, None, "misconduct", None, ["SNV"], "Phản ánh sách nhiễu (phím 9)"),
    ("100003", t(9, 25, 10), t(10, 2, 17), None, None, "question", "VPUBND", [], None),
    ("100004", t(9, 4, 8), t(9, 18, 17), t(9, 22, 9), None, "other", "STP", ["STP"], None),
    ("100005", t(9, 4, 9), t(9, 18, 17), None, t(9, 7, 10), "other", "SNV", [], "Cần kiểm tra thái độ cán bộ"),
    ("100006", t(8, 20, 9), t(9, 3, 17), None, None, "procedure", "VPUBND", ["VPUBND"], None),  # backlog, overdue
    ("100007", t(8, 10, 9), t(8, 24, 17), t(8, 15, 9), None, "question", "SNV", [], None),  # old, answered
    ("100008", t(9, 28, 9), t(9, 29, 17), t(10, 2, 9), None, "question", "STC", ["STC"], None),  # answered after the month
]


def build_db(settings) -> None:
    db.upgrade(settings)
    eng = sa.create_engine(settings.database_url.replace("+aiosqlite", ""))
    with Session(eng) as s, s.begin():
        for cid, start, digit, agency, disp, ended_in, wait, by, score in CALLS:
            answered = start + dt.timedelta(seconds=wait) if disp == "answered" else None
            s.add(Call(id=cid, caller="0909000" + cid[1:], hotline="1022", started_at=start, answered_at=answered,
                       ended_at=start + dt.timedelta(seconds=wait + 60), branch_digit=digit,
                       branch_name=ROUTING.branch(digit).name if digit else None, agency_code=agency,
                       agency_name=ROUTING.agencies[agency].name if agency else None, answered_by=by, wait_s=wait,
                       talk_s=50.0 if answered else None, disposition=disp, ended_in=ended_in, survey_score=score))
        for cid, start, of, disp in CALLBACK_ROWS:
            s.add(Call(id=cid, caller="0912345678", hotline="1022", started_at=start, ended_at=start + dt.timedelta(minutes=1),
                       branch_digit="2", agency_code="HHDN", answered_by="2201", disposition=disp, callback_of=of))
        s.flush()
        start_of = {c[0]: c[1] for c in CALLS}
        for cid, why, waited in QUEUED:
            s.add(CallEvent(call_id=cid, seq=1, at=start_of[cid], kind="queued", detail={"branch": "4", "position": 1}))
            s.add(CallEvent(call_id=cid, seq=2, at=start_of[cid], kind="dequeued",
                            detail={"branch": "4", "why": why, "waited_s": waited}))
        for i, (cid, ext, result) in enumerate(LEGS):
            s.add(CallLeg(call_id=cid, channel_id=f"leg{i}", extension=ext, started_at=start_of[cid] + dt.timedelta(seconds=3),
                          result=result))
        for at, ext, agency, status in PRESENCE:
            s.add(RegistrationEvent(at=at, extension=ext, agency_code=agency, status=status))
        for code, received, deadline, answered, closed, cat, agency, assigned, reason in CASES:
            status = "closed" if closed else "answered" if answered else "assigned" if assigned else "received"
            case = Case(code=code, channel="phone", caller="0909123456", anonymous=False, category=cat,
                        agency_code=agency, agency_name=ROUTING.agencies[agency].name if agency else None,
                        received_at=received, deadline_at=deadline, answered_at=answered, status=status,
                        closed_reason="duplicate" if closed else None, answer="Đã trả lời" if answered else None,
                        inspection=reason is not None, inspection_reason=reason)
            s.add(case)
            s.flush()
            s.add(CaseEvent(case_id=case.id, at=received, actor="system", action="receive", to_status="received"))
            for a in assigned:
                s.add(CaseAssignment(case_id=case.id, agency_code=a, agency_name=ROUTING.agencies[a].name,
                                     assigned_at=received + dt.timedelta(hours=1)))
            if closed:
                s.add(CaseEvent(case_id=case.id, at=closed, actor="x", action="close", from_status="received",
                                to_status="closed"))
    eng.dispose()


# ------------------------------------------------------------- expected values, independently


def in_month(when: dt.datetime) -> bool:
    local = when.astimezone(VN)
    return (local.year, local.month) == (2026, 9)


def open_minute(minute: dt.datetime) -> bool:
    local = minute.astimezone(VN)
    if not is_working_day(ROUTING.hours, local.date()):
        return False
    hm = local.hour * 60 + local.minute
    return 7 * 60 <= hm < 11 * 60 + 30 or 13 * 60 <= hm < 17 * 60


def down_at(ext: str, minute: dt.datetime) -> bool:
    last = None
    for at, e, _, status in PRESENCE:
        if e == ext and at <= minute:
            last = status
    return last in ("unregistered", "unreachable")


def expected(cutoff: dt.datetime) -> dict:
    E: dict = {}
    calls = [c for c in CALLS if in_month(c[1])]
    assert len(calls) == 14
    closed = sum(1 for c in calls if c[4] == "closed")
    answered = [c for c in calls if c[4] == "answered"]
    E["calls.total"] = len(calls)
    E["calls.closed"] = closed
    E["calls.in_hours"] = len(calls) - closed
    E["calls.answered"] = len(answered)
    E["calls.answer_rate"] = len(answered) / (len(calls) - closed)
    E["calls.abandoned"] = sum(1 for c in calls if c[4] == "abandoned")
    waits = sorted(c[6] for c in answered)
    E["wait.avg"] = sum(waits) / len(waits)
    E["wait.p95"] = waits[math.ceil(0.95 * len(waits)) - 1]
    for d, n in Counter(c[4] for c in calls).items():
        E[f"disp.{d}"] = n
    for s, n in Counter(c[5] for c in calls if c[4] == "abandoned").items():
        E[f"abandon.{s}"] = n
    start_of = {c[0]: c[1] for c in CALLS}
    queued = [q for q in QUEUED if in_month(start_of[q[0]])]
    E["queue.calls"] = len(queued)
    qw = sorted(q[2] for q in queued)
    E["queue.wait_avg"] = sum(qw) / len(qw)
    E["queue.wait_p95"] = qw[math.ceil(0.95 * len(qw)) - 1]
    for why in ("turn", "hangup", "complaint", "timeout", "callback"):
        E[f"queue.{why}"] = sum(1 for q in queued if q[1] == why)
    callbacks = [c for c in CALLBACK_ROWS if in_month(c[1])]
    E["callback.total"] = len(callbacks)
    for d in ("callback_answered", "callback_no_answer", "callback_failed"):
        E[f"callback.{d}"] = sum(1 for c in callbacks if c[3] == d)
    day = dt.date(2026, 9, 1)
    while day.month == 9:
        E[f"day.{day}"] = sum(1 for c in calls if c[1].astimezone(VN).date() == day)
        day += dt.timedelta(days=1)
    for digit in [b.digit for b in ROUTING.branches] + [None]:
        key = digit or "none"
        mine = [c for c in calls if c[2] == digit]
        ans = [c for c in mine if c[4] == "answered"]
        w = sorted(c[6] for c in ans)
        E[f"branch.{key}.calls"] = len(mine)
        E[f"branch.{key}.answered"] = len(ans)
        E[f"branch.{key}.rate"] = len(ans) / len(mine) if mine else None
        E[f"branch.{key}.abandoned"] = sum(1 for c in mine if c[4] == "abandoned")
        if digit:
            E[f"branch.{key}.wait_avg"] = sum(w) / len(w) if w else None
            E[f"branch.{key}.wait_p95"] = w[math.ceil(0.95 * len(w)) - 1] if w else None
    for digit in [b.digit for b in ROUTING.branches] + ["all"]:
        mine = [c for c in calls if digit == "all" or c[2] == digit]
        scores = [c[8] for c in mine if c[8] is not None]
        n_ans = sum(1 for c in mine if c[4] == "answered")
        E[f"survey.{digit}.count"] = len(scores)
        E[f"survey.{digit}.avg"] = sum(scores) / len(scores) if scores else None
        E[f"survey.{digit}.rate"] = len(scores) / n_ans if n_ans else None
        for s in range(1, 6):
            E[f"survey.{digit}.s{s}"] = scores.count(s)

    # Desk phones: legs of the month's calls, and unreachable minutes counted one by one.
    month_ids = {c[0] for c in calls}
    legs = [leg for leg in LEGS if leg[0] in month_ids]
    start = dt.datetime(2026, 9, 1, tzinfo=VN)
    minutes = []
    m = start
    while m < cutoff:
        if open_minute(m):
            minutes.append(m)
        m += dt.timedelta(minutes=1)
    exts = sorted({leg[1] for leg in legs} | {p[1] for p in PRESENCE if any(down_at(p[1], x) for x in minutes)})
    ext_agency = {}
    for ext in exts:
        e = ROUTING.extensions.get(ext)
        ext_agency[ext] = e.agency if e else [p[2] for p in PRESENCE if p[1] == ext][-1]
        mine = [leg[2] for leg in legs if leg[1] == ext]
        E[f"ext.{ext}.legs"] = len(mine)
        E[f"ext.{ext}.answered"] = mine.count("answered")
        E[f"ext.{ext}.no_answer"] = mine.count("no_answer")
        E[f"ext.{ext}.busy"] = mine.count("busy")
        E[f"ext.{ext}.unreachable"] = mine.count("unreachable") + mine.count("failed")
        E[f"ext.{ext}.down_s"] = 60.0 * sum(1 for x in minutes if down_at(ext, x))
        E[f"ext.{ext}.down_count"] = sum(
            1 for at, e, _, st in PRESENCE
            if e == ext and start <= at < cutoff and st in ("unregistered", "unreachable")
            and not down_at(ext, at - dt.timedelta(seconds=1)))
    for code in sorted({c[3] for c in calls if c[3]} | set(ext_agency.values())):
        mine = [c for c in calls if c[3] == code]
        n_ans = sum(1 for c in mine if c[4] == "answered")
        E[f"agency.{code}.calls"] = len(mine)
        E[f"agency.{code}.answered"] = n_ans
        E[f"agency.{code}.missed"] = len(mine) - n_ans
        E[f"agency.{code}.legs_missed"] = sum(1 for leg in legs if ext_agency[leg[1]] == code
                                              and leg[2] in ("no_answer", "busy", "unreachable", "failed"))
        E[f"agency.{code}.down_s"] = sum(E[f"ext.{x}.down_s"] for x in exts if ext_agency[x] == code)

    # Cases received in the month, where each stands at the cut-off.
    def state(received, deadline, answered, closed):
        if answered and answered <= cutoff:
            return "answered_on_time" if answered <= deadline else "answered_late"
        if closed and closed <= cutoff:
            return "closed_no_answer"
        return "overdue" if deadline < cutoff else "pending"

    keys = ("received", "answered_on_time", "answered_late", "closed_no_answer", "overdue", "pending")
    tally: Counter = Counter()
    for _code, received, deadline, answered, closed, cat, agency, assigned, _ in CASES:
        if not (in_month(received) and received < cutoff):
            continue
        owners = assigned or [agency]
        for k in ("received", state(received, deadline, answered, closed)):
            tally[k] += 1
            tally["cat", cat, k] += 1
            for o in owners:
                tally["agency", o, k] += 1
    for k in keys:
        E[f"cases.{k}"] = tally[k]
        for cat in ("procedure", "regulation", "misconduct", "question", "other"):
            E[f"cases.cat.{cat}.{k}"] = tally["cat", cat, k]
        for o in {o for c in CASES if in_month(c[1]) and c[1] < cutoff for o in (c[7] or [c[6]])}:
            E[f"cases.agency.{o}.{k}"] = tally["agency", o, k]
    E["cases.backlog_overdue"] = sum(
        1 for c in CASES if c[1] < start and state(c[1], c[2], c[3], c[4]) == "overdue")
    E["insp.count"] = sum(1 for c in CASES if c[8] and in_month(c[1]) and c[1] < cutoff)
    return E


# ------------------------------------------------------------------------------------ tests


class Figures(html.parser.HTMLParser):
    """Collects every data-k figure: raw value (data-v) and the text shown."""

    def __init__(self):
        super().__init__()
        self.raw: dict[str, str] = {}  # figures in the text
        self.bars: dict[str, str] = {}  # chart bars
        self.text: dict[str, str] = {}
        self.cases: list[str] = []
        self.external: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-k" in a:
            where = self.bars if tag == "rect" else self.raw
            assert a["data-k"] not in where, f"figure {a['data-k']} shown twice"
            where[a["data-k"]] = a["data-v"]
            if tag == "span":
                self._open = a["data-k"]
                self.text[self._open] = ""
        if "data-case" in a:
            self.cases.append(a["data-case"])
        for k in ("src", "href"):
            if a.get(k):
                self.external.append(a[k])
        if tag in ("link", "script", "img", "iframe"):
            self.external.append(tag)

    def handle_data(self, data):
        if self._open:
            self.text[self._open] += data

    def handle_endtag(self, tag):
        if tag == "span":
            self._open = None


def vi_number(v) -> str:
    """How a Vietnamese report writes a figure (this test's own reading)."""
    if isinstance(v, int):
        return f"{v:,}".replace(",", ".")
    return f"{v:.1f}".replace(".", ",")


@pytest.fixture
def fixture_db(settings_factory):
    s = settings_factory()
    build_db(s)
    return s


def build(s, now=NOW):
    return asyncio.run(_build(s, now))


async def _build(s, now):
    eng = db.engine(s)
    try:
        return await rp.build(eng, ROUTING, rp.Month(2026, 9, "Asia/Ho_Chi_Minh"), now=now)
    finally:
        await eng.dispose()


def test_every_figure_matches_an_independent_computation(fixture_db):
    r = build(fixture_db)
    cutoff = dt.datetime(2026, 10, 1, tzinfo=VN)
    assert r.cutoff == cutoff
    exp = expected(cutoff)
    assert set(r.figures) == set(exp), (set(r.figures) ^ set(exp))
    for k, v in exp.items():
        got = r.figures[k]
        assert (got is None) == (v is None) and (v is None or math.isclose(got, v, abs_tol=1e-9)), (k, got, v)
    # A few by hand, as a sanity check of the fixture itself.
    assert r["calls.total"] == 14 and r["calls.answered"] == 6 and r["day.2026-09-30"] == 1
    assert r["queue.calls"] == 5 and r["queue.hangup"] == 1 and r["callback.total"] == 2
    assert r["ext.2201.down_s"] == 3600.0  # 11:00-11:30 and 13:00-13:30, not the lunch break
    # Down Sunday 20/9 08:00 to Monday 21/9 08:00: only Monday 07:00-08:00 counts; then 09:00-10:15 on 22/9.
    assert r["ext.2999.down_s"] == (60 + 75) * 60
    assert r["cases.overdue"] == 2 and r["cases.backlog_overdue"] == 1
    assert [c["code"] for c in r.inspection] == ["100005", "100002"]


def test_html_is_self_contained_and_shows_every_figure(fixture_db, tmp_path):
    out = tmp_path / "bao-cao.html"
    r = rp.write(db.engine(fixture_db), ROUTING, rp.Month(2026, 9, "Asia/Ho_Chi_Minh"), out, now=NOW)
    text = out.read_text(encoding="utf-8")
    p = Figures()
    p.feed(text)
    assert p.external == [], "the page must not load anything from outside"
    exp = expected(r.cutoff)
    # Every figure the page shows is one this test expects, and every expected figure is shown.
    assert set(p.raw) | set(p.bars) == set(exp)
    assert set(p.raw) == {k for k in exp if not k.startswith("day.")}  # days: in the chart only
    for k, v in exp.items():
        if k not in p.raw:
            continue
        assert (p.raw[k] == "") if v is None else math.isclose(float(p.raw[k]), v, abs_tol=1e-9), (k, p.raw[k], v)
        if k in p.text and v is not None:
            shown = p.text[k]
            if k.endswith("down_s"):
                h, mi = divmod(round(v / 60), 60)
                assert shown == (f"{h} giờ {mi:02d} phút" if h else f"{mi} phút"), (k, shown)
            elif k.endswith("rate"):
                assert shown == vi_number(100 * v) + "%", (k, shown)
            else:
                assert shown == vi_number(v), (k, shown)
    # Chart bars: calls per day and per branch, average score per branch (0 when no answer).
    assert {k for k in p.bars if k.startswith("day.")} == {k for k in exp if k.startswith("day.")}
    assert len(p.bars) == 30 + 2 * len(ROUTING.branches)
    for k, v in p.bars.items():
        assert float(v) == (exp[k] or 0), k
    assert p.cases == ["100005", "100002"]
    assert "Chưa có dữ liệu khảo sát qua Zalo" in text
    assert "Tháng 09/2026" in text and "<svg" in text


def test_cutoff_mid_month_counts_up_to_now(fixture_db):
    now = t(9, 16, 12, 0).astimezone(UTC)
    r = build(fixture_db, now)
    exp = expected(now)
    for k in ("ext.2403.down_s", "ext.2102.down_s", "cases.overdue", "cases.pending", "cases.received", "insp.count"):
        assert r[k] == exp[k], k
    assert r["cases.overdue"] == 0 and r["cases.pending"] == 2  # 100002 is due at 17:00 on 16/9; 100004 on 18/9


def test_zalo_survey_answers_of_the_month_are_reported(fixture_db):
    from sqlalchemy.orm import Session

    from ivr.models import SurveyAnswer, SurveyRecipient

    answers = [  # (answered at, Vietnam time; the five ratings)
        (dt.datetime(2026, 9, 5, 9, 0, tzinfo=VN), (4, 5, 5, 4, None)),
        (dt.datetime(2026, 9, 30, 23, 30, tzinfo=VN), (2, 3, 1, 5, 5)),
        (dt.datetime(2026, 10, 1, 0, 30, tzinfo=VN), (1, 1, 1, 1, 1)),  # October: not counted
    ]
    eng = sa.create_engine(fixture_db.database_url.replace("+aiosqlite", ""))
    with Session(eng) as s, s.begin():
        for i, (at, q) in enumerate(answers):
            rcp = SurveyRecipient(code=f"K{i}", phone=f"8490000000{i}", name="A", procedure="P", office="TTPVHCC",
                                  completed_at=at - dt.timedelta(days=1), imported_at=at - dt.timedelta(days=1),
                                  status="answered")
            s.add(rcp)
            s.flush()
            s.add(SurveyAnswer(recipient_id=rcp.id, office="TTPVHCC", answered_at=at, q_access=q[0], q_procedure=q[1],
                               q_official=q[2], q_result=q[3], q_complaints=q[4]))
    eng.dispose()
    r = build(fixture_db)
    september = [4, 5, 5, 4, 2, 3, 1, 5, 5]
    assert r.zalo["count"] == 2
    assert r.zalo["avg"] == pytest.approx(sum(september) / 9)
    assert [r.zalo[f"s{i}"] for i in range(1, 6)] == [1, 1, 1, 2, 4]
    assert r.zalo["q_access"] == 3.0 and r.zalo["q_complaints"] == 5.0 and r.zalo["q_official"] == 3.0
    html = rp.render_html(r, ROUTING)
    assert "Tiếp cận dịch vụ" in html and "Chưa có dữ liệu khảo sát qua Zalo" not in html


def test_pdf_renders_a_page_that_is_not_blank(fixture_db, tmp_path):
    out = tmp_path / "bao-cao.pdf"
    rp.write(db.engine(fixture_db), ROUTING, rp.Month(2026, 9, "Asia/Ho_Chi_Minh"), out, now=NOW)
    assert out.read_bytes()[:5] == b"%PDF-"
    assert shutil.which("pdftoppm"), "pdftoppm (poppler-utils) is installed by scripts/install-system-deps.sh"
    subprocess.run(["pdftoppm", "-r", "40", "-gray", "-f", "1", "-l", "1", str(out), str(tmp_path / "page")], check=True)
    pgm = next(tmp_path.glob("page*.pgm")).read_bytes()
    m = re.match(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s", pgm)
    w, h = int(m.group(1)), int(m.group(2))
    pixels = pgm[m.end():]
    assert len(pixels) == w * h
    dark = sum(1 for b in pixels if b < 128)
    assert 0.01 < dark / (w * h) < 0.5, dark / (w * h)
    txt = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(out), "-"], capture_output=True, text=True, check=True).stdout
    assert "BÁO CÁO KẾT QUẢ HOẠT ĐỘNG" in txt and "Tháng 09/2026" in txt


def test_cli_report_and_its_errors(fixture_db, tmp_path, monkeypatch):
    for k, v in fixture_db.env.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()
    out = tmp_path / "r.html"
    res = runner.invoke(main, ["report", "monthly", "--month", "2026-09", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Tổng số cuộc gọi đến" in out.read_text(encoding="utf-8")
    for args, msg in [
        (["--month", "2026-13", "--out", str(tmp_path / "a.html")], "không hợp lệ"),
        (["--month", "09-2026", "--out", str(tmp_path / "a.html")], "không hợp lệ"),
        (["--month", "2026-09", "--out", str(tmp_path / "a.docx")], ".html hoặc .pdf"),
        (["--month", "2026-09", "--out", str(tmp_path / "no" / "a.pdf")], "thư mục"),
        (["--month", "2999-01", "--out", str(tmp_path / "a.pdf")], "chưa bắt đầu"),
    ]:
        res = runner.invoke(main, ["report", "monthly", *args])
        assert res.exit_code == 2 and msg in res.output, (args, res.output)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["r.html"]
