"""Cases: the lifecycle (every transition and refusal), deadlines in Vietnamese working days, CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.config import routing as rt
from ivr.records import cases as cm
from ivr.records import db
from tests.paths import REPO_ROOT

VN = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
TEXT = (REPO_ROOT / "routing.yaml").read_text(encoding="utf-8")


def at(y, m, d, h=9, mi=0):
    return dt.datetime(y, m, d, h, mi, tzinfo=VN)


def routing(closed="[]", working="[]"):
    return rt.loads(TEXT.replace("closed_days: []", f"closed_days: {closed}", 1).replace("working_days: []", f"working_days: {working}", 1))


# ---------------------------------------------------------------- deadlines on real dates


def test_deadline_friday_before_tet_2027():
    r = routing()
    # Received Friday 29 Jan 2027. Working days after it: Mon 1, Tue 2, Wed 3 Feb; Tết holidays
    # Thu 4 - Wed 10 Feb; then Thu 11, Fri 12, Mon 15 ...
    assert cm.deadline(r, at(2027, 1, 29, 10), "misconduct") == at(2027, 2, 12, 17)  # 5 days
    assert cm.deadline(r, at(2027, 1, 29, 10), "procedure") == at(2027, 2, 19, 17)  # 10 days
    assert cm.deadline(r, at(2027, 1, 29, 10), "regulation") == at(2027, 2, 26, 17)  # 15 days


def test_deadline_before_reunification_and_labour_day_2027():
    r = routing()
    # Received Thu 29 Apr 2027: Fri 30/4 holiday, Sat 1/5 holiday, Mon 3/5 observed holiday.
    assert cm.deadline(r, at(2027, 4, 29, 15), "question") == at(2027, 5, 10, 17)


def test_deadline_counts_a_swapped_working_day_and_skips_a_closed_one():
    plain = routing()
    swapped = routing(closed="[2027-02-03]", working="[2027-01-30]")
    three = dict(plain.complaints.deadlines, other=3)
    plain = rt.Routing(**{**plain.__dict__, "complaints": rt.Complaints("9", 180, 6, three)})
    swapped = rt.Routing(**{**swapped.__dict__, "complaints": rt.Complaints("9", 180, 6, three)})
    assert cm.deadline(plain, at(2027, 1, 29), "other") == at(2027, 2, 3, 17)
    # Saturday 30 Jan is worked in exchange for Wednesday 3 Feb.
    assert cm.deadline(swapped, at(2027, 1, 29), "other") == at(2027, 2, 2, 17)


# ---------------------------------------------------------------- lifecycle


@pytest.fixture
async def svc(db_settings):
    """The case service on a fresh database, on every supported backend."""
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    yield cm.Cases(engine, rt.load(REPO_ROOT / "routing.yaml")), s
    await engine.dispose()


async def new(c: cm.Cases, **kw) -> str:
    case = await c.create(cm.NewCase(channel="phone", caller="0909123456", branch_digit="4", agency_code="VPUBND",
                                     agency_name="Văn phòng Ủy ban nhân dân tỉnh", **kw))
    return case.code


async def test_full_lifecycle_with_history(svc):
    c, _ = svc
    code = await new(c)
    assert len(code) == 6 and code.isdigit() and code[0] != "0"
    await c.act(code, "classify", actor="snv1", category="procedure")
    await c.act(code, "assign", actor="snv1", agencies=["VPUBND", "STP"])
    await c.act(code, "start", actor="vp1")
    await c.act(code, "answer", actor="vp1", text="Đã hướng dẫn công dân bổ sung hồ sơ.")
    await c.act(code, "close", actor="snv1", reason="resolved")
    await c.act(code, "reopen", actor="snv1", note="Công dân gọi lại: chưa được giải quyết")
    await c.act(code, "assign", actor="snv1", agencies=["SNV"])
    await c.act(code, "start", actor="snv2")
    await c.act(code, "answer", actor="snv2", text="Đã làm việc trực tiếp.")
    case = await c.act(code, "close", actor="snv1", reason="resolved")
    assert case.status == "closed" and case.closed_reason == "resolved"
    assert [a.agency_code for a in case.assignments] == ["VPUBND", "STP", "SNV"]
    assert [(e.action, e.from_status, e.to_status) for e in case.history] == [
        ("receive", None, "received"), ("classify", "received", "classified"), ("assign", "classified", "assigned"),
        ("start", "assigned", "in_progress"), ("answer", "in_progress", "answered"), ("close", "answered", "closed"),
        ("reopen", "closed", "reopened"), ("assign", "reopened", "assigned"), ("start", "assigned", "in_progress"),
        ("answer", "in_progress", "answered"), ("close", "answered", "closed"),
    ]
    assert {e.actor for e in case.history} == {"system", "snv1", "vp1", "snv2"}


REFUSALS = [
    # (actions to reach the state, refused action, kwargs, message fragment)
    ([], "start", {}, "không thể bắt đầu xử lý"),
    ([], "answer", {"text": "x"}, "không thể trả lời"),
    ([], "reopen", {"note": "x"}, "không thể mở lại"),
    ([], "assign", {"agencies": ["SNV"]}, "không thể giao xử lý"),
    ([], "close", {"reason": "resolved"}, "chưa được trả lời"),
    ([], "classify", {"category": "nonsense"}, "loại phản ánh phải là"),
    (["classify"], "assign", {"agencies": ["NOPE"]}, "không có cơ quan mã: NOPE"),
    (["classify"], "assign", {"agencies": []}, "cần ít nhất một cơ quan"),
    (["classify", "assign"], "assign", {"agencies": ["SNV"]}, "đã được giao"),
    (["classify", "assign", "start"], "answer", {"text": "  "}, "không được để trống"),
    (["classify", "assign", "start"], "classify", {"category": "other"}, "không thể phân loại"),
    (["classify", "assign", "start", "answer"], "start", {}, "không thể bắt đầu xử lý"),
    (["classify", "assign", "start", "answer"], "reopen", {}, "cần ghi lý do"),
    (["classify", "assign", "start", "answer", "close"], "close", {"reason": "duplicate"}, "không thể đóng"),
    (["classify", "assign", "start", "answer", "close"], "answer", {"text": "x"}, "không thể trả lời"),
    (["classify"], "close", {"reason": "whatever"}, "lý do đóng phải là"),
]
STEP_KW = {"classify": {"category": "procedure"}, "assign": {"agencies": ["SNV"]}, "start": {},
           "answer": {"text": "ok"}, "close": {"reason": "resolved"}}


@pytest.mark.parametrize("steps,action,kw,fragment", REFUSALS, ids=[f"{'-'.join(r[0]) or 'received'}:{r[1]}" for r in REFUSALS])
async def test_refusals_are_clear_and_change_nothing(svc, steps, action, kw, fragment):
    c, _ = svc
    code = await new(c)
    for st in steps:
        await c.act(code, st, actor="t", **STEP_KW[st])
    before = await c.get(code)
    with pytest.raises(cm.CaseError) as e:
        await c.act(code, action, actor="t", **kw)
    assert fragment in str(e.value)
    after = await c.get(code)
    assert (after.status, len(after.history), len(after.assignments)) == (before.status, len(before.history), len(before.assignments))


async def test_early_close_for_a_duplicate_and_unknown_code(svc):
    c, _ = svc
    code = await new(c)
    case = await c.act(code, "close", actor="t", reason="duplicate", note="trùng với phản ánh khác")
    assert case.status == "closed" and case.closed_reason == "duplicate"
    with pytest.raises(cm.CaseError, match="không có phản ánh mã '000000'"):
        await c.act("000000", "start", actor="t")


async def test_classify_recomputes_the_deadline_and_overdue_is_derived(svc):
    c, _ = svc
    case = await c.create(cm.NewCase(channel="phone", caller="1"), received_at=at(2027, 1, 29, 10))
    assert case.deadline_at == at(2027, 2, 19, 17)  # other: 10 days
    case = await c.act(case.code, "classify", actor="t", category="misconduct")
    assert case.deadline_at == at(2027, 2, 12, 17)
    assert not cm.is_overdue(case, at(2027, 2, 12, 16))
    assert cm.is_overdue(case, at(2027, 2, 12, 18))
    assert [x.code for x in await c.list(overdue=True, now=at(2027, 2, 13))] == [case.code]
    for st in ("assign", "start", "answer"):
        case = await c.act(case.code, st, actor="t", **STEP_KW[st])
    assert not cm.is_overdue(case, at(2030, 1, 1))  # answered: no longer overdue


async def test_flag_inspection_once(svc):
    c, _ = svc
    code = await new(c)
    case = await c.flag_inspection(code, actor="snv1", reason="Dấu hiệu vòi vĩnh")
    assert case.inspection and case.history[-1].action == "flag_inspection"
    with pytest.raises(cm.CaseError, match="đã được chuyển"):
        await c.flag_inspection(code, actor="snv1", reason="again")
    with pytest.raises(cm.CaseError, match="cần ghi lý do"):
        await c.flag_inspection(await new(c), actor="snv1", reason=" ")
    assert [x.code for x in await c.list(inspection=True)] == [code]


async def test_cli_cases_commands(svc):
    c, s = svc
    code = await new(c, anonymous=True, category="misconduct", inspection_reason="báo qua phím 9")
    env = {"TONGDAI_HOME": str(s.home), "TONGDAI_DATABASE_URL": s.database_url}

    def run(*args):
        return CliRunner().invoke(main, ["cases", *args], env=env)

    res = await asyncio.to_thread(run, "list")
    assert res.exit_code == 0 and code in res.output and "ẩn danh" in res.output and "0909123456" not in res.output
    res = await asyncio.to_thread(run, "list", "--home-affairs", "--inspection")
    assert "0909123456" in res.output and "[KIỂM TRA]" in res.output
    res = await asyncio.to_thread(run, "start", code)
    assert res.exit_code == 1 and "không thể bắt đầu xử lý" in res.output
    for args in (("classify", code, "--category", "misconduct", "--by", "snv1"), ("assign", code, "--agency", "SNV", "--agency", "TTRA"),
                 ("start", code), ("answer", code, "--text", "Đã xác minh"), ("close", code, "--reason", "resolved")):
        res = await asyncio.to_thread(run, *args)
        assert res.exit_code == 0, res.output
    res = await asyncio.to_thread(run, "show", code)
    assert "đã đóng" in res.output and "Thanh tra tỉnh" in res.output and "snv1: classify" in res.output
    res = await asyncio.to_thread(run, "list", "--agency", "NOPE")
    assert res.exit_code == 1 and "không có cơ quan" in res.output


async def test_an_actor_is_one_line_of_text(svc):
    """--by (and later the console's user) cannot forge a line of a case's history."""
    c, s = svc
    code = await new(c)
    forged = "snv1: classify\n    01/12/2026 09:00  giam-doc: close received→closed — đã giải quyết"
    for by, fragment in ((forged, "xuống dòng \\(U\\+000A\\)"), ("a\rb", "U\\+000D"), ("a\u2028b", "U\\+2028"),
                         ("a\x1b[2Jb", "điều khiển"), ("  ", "không được để trống"), ("x" * 65, "dài quá 64 ký tự")):
        with pytest.raises(cm.CaseError, match=fragment):
            await c.act(code, "classify", actor=by, category="question")
        with pytest.raises(cm.CaseError, match=fragment):
            await c.flag_inspection(code, actor=by, reason="kiểm tra")
        with pytest.raises(cm.CaseError, match=fragment):
            await c.create(cm.NewCase(channel="phone", caller="0909"), actor=by)
    case = await c.get(code)
    assert case.status == "received" and len(case.history) == 1 and len(await c.list()) == 1
    await c.act(code, "classify", actor="  Nguyễn Văn A (Sở Nội vụ)  ", category="question")
    assert (await c.get(code)).history[-1].actor == "Nguyễn Văn A (Sở Nội vụ)"
    env = {"TONGDAI_HOME": str(s.home), "TONGDAI_DATABASE_URL": s.database_url}
    res = await asyncio.to_thread(CliRunner().invoke, main, ["cases", "assign", code, "--agency", "SNV", "--by", forged],
                                  env=env)
    assert res.exit_code == 1 and res.stderr.startswith("lỗi: tên người thực hiện (--by) có ký tự xuống dòng")
    assert "Traceback" not in res.output
