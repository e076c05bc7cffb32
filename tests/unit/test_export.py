"""Exports: stable columns, local ISO times, date/branch/agency filters, CSV with and without BOM,
formula injection made inert (CSV and XLSX), JSONL untouched, streaming in batches (sync and async
paths give the same rows), progress bar only on a terminal, bad arguments -> exit 2 and no file."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import zipfile
import zoneinfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.orm import Session

from ivr.cli import main
from ivr.config import routing as rt
from ivr.models import Call, CallEvent, Case, CaseAssignment
from ivr.records import db
from ivr.records import export as ex
from ivr.testing import wait_until
from tests.paths import REPO_ROOT

VN = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
ROUTING = rt.load(REPO_ROOT / "routing.yaml")
CALL_HEADER = ("call_id,started_at,caller,hotline,branch_digit,branch_name,agency_code,agency_name,answered_by,"
               "wait_s,talk_s,disposition,case_code,survey_score,ended_at,ended_in,hangup_by,recording,recording_s,"
               "recording_deleted_at,queue_wait_s,queue_end,callback_of")
NASTY = {  # caller -> what a spreadsheet must see
    "=HYPERLINK(\"http://x\",\"bấm\")": "'=HYPERLINK(\"http://x\",\"bấm\")",
    "+84909000111": "'+84909000111",
    "-2+3": "'-2+3",
    "@SUM(A1)": "'@SUM(A1)",
    "\tTAB": "'\tTAB",
    "\rCR": "'\rCR",
    "0909, \"Ông Ba\"\nxuống dòng": "0909, \"Ông Ba\"\nxuống dòng",
}


def t(m, d, h=9, mi=0):
    return dt.datetime(2026, m, d, h, mi, tzinfo=VN)


def fill(settings):
    db.upgrade(settings)
    eng = sa.create_engine(settings.database_url.replace("+aiosqlite", ""))
    with Session(eng) as s, s.begin():
        b4, b1 = ROUTING.branch("4"), ROUTING.branch("1")
        rows = [
            ("a1", t(10, 1, 0, 10), b4, "0909000001", 5),  # 30/9 17:10 UTC, but 1/10 in Vietnam
            ("a2", t(10, 15, 8, 0), b1, "0909000002", None),
            ("a3", t(10, 31, 23, 30), b4, "0909000003", 3),
            ("a4", t(11, 1, 0, 5), b4, "0909000004", None),  # November
            ("a5", t(9, 30, 23, 59), b1, "0909000005", 4),  # September
        ]
        for cid, start, b, caller, score in rows:
            s.add(Call(id=cid, caller=caller, hotline="1022", started_at=start, answered_at=start + dt.timedelta(seconds=12),
                       ended_at=start + dt.timedelta(seconds=100.5), branch_digit=b.digit, branch_name=b.name,
                       agency_code=b.agency, agency_name=ROUTING.agencies[b.agency].name, answered_by=b.targets[0],
                       wait_s=12.25, talk_s=88.0, disposition="answered", ended_in="survey", hangup_by="system",
                       survey_score=score))
        # a1's conversation was recorded; a2's too, and retention has since deleted the file.
        s.flush()
        a1, a2 = s.get(Call, "a1"), s.get(Call, "a2")
        a1.recording, a1.recording_s = "recordings/calls/2026/09/a1.wav", 87.96
        a2.recording, a2.recording_s, a2.recording_deleted_at = "recordings/calls/2026/10/a2.wav", 88.0, t(12, 1, 2)
        # a2 waited in the queue twice (a failover to another branch), then asked for a callback.
        for seq, why, waited in ((3, "timeout", 30.0), (7, "callback", 12.5)):
            s.add(CallEvent(call_id="a2", seq=seq, at=t(10, 15, 8, 1), kind="dequeued",
                            detail={"branch": "1", "why": why, "waited_s": waited}))
        for i, caller in enumerate(NASTY):
            s.add(Call(id=f"n{i}", caller=caller, hotline="1022", started_at=t(10, 20, 9, i), branch_digit=None,
                       disposition="abandoned", ended_in="menu", wait_s=3.0))
        # An agency since merged away: only the log knows it.
        s.add(Call(id="old", caller="0909", hotline="1022", started_at=t(10, 21), branch_digit="2", branch_name="Doanh nghiệp",
                   agency_code="HHDN-CU", agency_name="=Hiệp hội cũ", disposition="no_answer", ended_in="complaint",
                   case_code="123456"))
        c1 = Case(code="123456", channel="phone", caller="0909111222", anonymous=True, category="misconduct",
                  branch_digit="4", agency_code="VPUBND", agency_name="Văn phòng UBND tỉnh", received_at=t(10, 21, 9, 5),
                  deadline_at=t(10, 28, 17), status="assigned", inspection=True, inspection_reason="sách nhiễu",
                  summary="-bị đòi tiền", recording="recordings/2026/10/old.wav")
        c2 = Case(code="234567", channel="phone", caller="0909333444", anonymous=False, category="question",
                  branch_digit="1", agency_code="SNV", agency_name="Sở Nội vụ", received_at=t(10, 22, 9, 5),
                  deadline_at=t(12, 28, 17), status="answered", answered_at=t(10, 23), answer="Đã trả lời")
        s.add_all([c1, c2])
        s.flush()
        s.add(CaseAssignment(case_id=c1.id, agency_code="STP", agency_name="Sở Tư pháp", assigned_at=t(10, 21, 10)))
        s.add(CaseAssignment(case_id=c1.id, agency_code="SNV", agency_name="Sở Nội vụ", assigned_at=t(10, 21, 10)))
    eng.dispose()


@pytest.fixture
def env(settings_factory, monkeypatch, tmp_path):
    s = settings_factory()
    fill(s)
    for k, v in s.env.items():
        monkeypatch.setenv(k, v)
    return s


def cli(*args):
    return CliRunner().invoke(main, ["export", *args])


def csv_rows(data: bytes, bom: bool = True) -> list[dict]:
    assert data.startswith(b"\xef\xbb\xbf") == bom
    text = data.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_calls_csv_columns_times_and_month_filter(env, tmp_path):
    out = tmp_path / "calls.csv"
    res = cli("calls", "--from", "2026-10-01", "--to", "31/10/2026", "--out", str(out))
    assert res.exit_code == 0, res.output
    data = out.read_bytes()
    assert data.split(b"\r\n", 1)[0] == b"\xef\xbb\xbf" + CALL_HEADER.encode()
    rows = csv_rows(data)
    # Local days: a1 (1/10 00:10 VN) and a3 (31/10 23:30 VN) in; a4 (1/11) and a5 (30/9) out.
    assert [r["call_id"] for r in rows if r["call_id"].startswith("a")] == ["a1", "a2", "a3"]
    a1 = rows[0]
    assert a1["started_at"] == "2026-10-01T00:10:00+07:00"
    assert a1["ended_at"] == "2026-10-01T00:11:40+07:00"  # 100.5 s later, to the second
    assert a1["branch_name"] == "Cải cách thủ tục hành chính" and a1["wait_s"] == "12.25" and a1["survey_score"] == "5"
    assert rows[1]["survey_score"] == "" and rows[1]["case_code"] == ""
    # The recording's path while the file exists; after retention, empty, and when it went.
    assert (a1["recording"], a1["recording_s"], a1["recording_deleted_at"]) == ("recordings/calls/2026/09/a1.wav", "87.96", "")
    assert (rows[1]["recording"], rows[1]["recording_s"], rows[1]["recording_deleted_at"]) == ("", "88.0", "2026-12-01T02:00:00+07:00")
    assert rows[2]["recording"] == "" and rows[2]["recording_s"] == ""
    # The queue: waits summed, the last wait's end; the callback's row says whose it is.
    assert (rows[1]["queue_wait_s"], rows[1]["queue_end"], rows[1]["callback_of"]) == ("42.5", "callback", "")
    assert (a1["queue_wait_s"], a1["queue_end"]) == ("", "")
    assert len(rows) == 3 + len(NASTY) + 1
    assert res.output.strip().endswith(f"Đã xuất {len(rows)} dòng vào {out}.")


def test_formula_injection_is_neutralised_in_csv(env, tmp_path):
    res = CliRunner().invoke(main, ["export", "calls", "--no-bom", "--from", "2026-10-20", "--to", "2026-10-21"])
    assert res.exit_code == 0
    rows = csv_rows(res.stdout_bytes, bom=False)
    got = {r["caller"]: r for r in rows}
    for caller, safe in NASTY.items():
        assert safe in got, caller
    assert got["0909"]["agency_name"] == "'=Hiệp hội cũ"
    # Nothing in any cell starts a formula.
    for r in rows:
        for v in r.values():
            assert not v or v[0] not in "=+-@\t\r", v


def test_jsonl_keeps_values_and_types(env):
    res = CliRunner().invoke(main, ["export", "calls", "--format", "jsonl", "--from", "2026-10-01", "--to", "2026-10-31"])
    assert res.exit_code == 0
    rows = [json.loads(line) for line in res.stdout_bytes.decode().splitlines()]
    assert list(rows[0]) == CALL_HEADER.split(",")
    assert rows[0]["started_at"] == "2026-10-01T00:10:00+07:00" and rows[0]["wait_s"] == 12.25 and rows[0]["survey_score"] == 5
    assert rows[1]["survey_score"] is None
    assert {r["caller"] for r in rows} >= set(NASTY)  # raw: JSON is no spreadsheet


def test_xlsx_streams_text_as_inert_strings(env, tmp_path):
    out = tmp_path / "calls.xlsx"
    res = cli("calls", "--format", "xlsx", "--out", str(out))
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(out) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
        strings = z.read("xl/sharedStrings.xml").decode() if "xl/sharedStrings.xml" in z.namelist() else ""
    assert "<f>" not in sheet and "<f " not in sheet  # no formula anywhere
    texts = re.findall(r"<t[^>]*>([^<]*)</t>", sheet + strings)
    assert "'=HYPERLINK(&quot;http://x&quot;,&quot;bấm&quot;)" in texts or "'=HYPERLINK(\"http://x\",\"bấm\")" in texts
    assert "'+84909000111" in texts and "'@SUM(A1)" in texts and "2026-10-01T00:10:00+07:00" in texts
    assert len(re.findall(r"<row ", sheet)) == 1 + 5 + len(NASTY) + 1
    assert '<c r="J2" s="0"><v>12.25</v></c>' in sheet or re.search(r'<c r="J2"[^>]*><v>12.25</v>', sheet)


def test_xlsx_to_a_pipe(env):
    res = CliRunner().invoke(main, ["export", "surveys", "--format", "xlsx"])
    assert res.exit_code == 0
    assert res.stdout_bytes[:2] == b"PK"
    with zipfile.ZipFile(io.BytesIO(res.stdout_bytes)) as z:
        assert len(re.findall(r"<row ", z.read("xl/worksheets/sheet1.xml").decode())) == 1 + 3


def test_branch_and_agency_filters_including_an_agency_only_in_the_log(env):
    res = cli("calls", "--branch", "1", "--format", "jsonl")
    assert [json.loads(x)["call_id"] for x in res.stdout_bytes.decode().splitlines()] == ["a5", "a2"]
    res = cli("calls", "--agency", "HHDN-CU", "--format", "jsonl")
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["call_id"] for x in res.stdout_bytes.decode().splitlines()] == ["old"]
    res = cli("calls", "--agency", "VPUBND", "--to", "2026-10-31", "--format", "jsonl")
    assert [json.loads(x)["call_id"] for x in res.stdout_bytes.decode().splitlines()] == ["a1", "a3"]


def test_cases_export_masks_anonymous_callers_unless_home_affairs(env):
    rows = csv_rows(cli("cases").stdout_bytes)
    assert [r["case_code"] for r in rows] == ["123456", "234567"]
    c1, c2 = rows
    assert c1["caller"] == "" and c2["caller"] == "0909333444"
    assert c1["assigned_agencies"] == "STP;SNV" and c1["inspection"] == "true" and c1["anonymous"] == "true"
    assert c1["overdue"] == ("true" if dt.datetime.now(dt.timezone.utc) > t(10, 28, 17) else "false")
    assert c1["summary"] == "'-bị đòi tiền" and c1["deadline_at"] == "2026-10-28T17:00:00+07:00"
    assert c2["answered_at"] == "2026-10-23T09:00:00+07:00" and c2["overdue"] == "false"
    full = csv_rows(cli("cases", "--home-affairs").stdout_bytes)
    assert full[0]["caller"] == "0909111222"
    by_agency = csv_rows(cli("cases", "--agency", "STP").stdout_bytes)  # assigned, not owner
    assert [r["case_code"] for r in by_agency] == ["123456"]


def test_surveys_export(env):
    rows = csv_rows(cli("surveys", "--from", "2026-10-01").stdout_bytes)
    assert [(r["call_id"], r["score"], r["channel"]) for r in rows] == [("a1", "5", "phone"), ("a3", "3", "phone")]
    assert list(rows[0]) == [n for n, _ in ex.COLUMNS["surveys"]]


@pytest.mark.parametrize("args, message", [
    (["calls", "--from", "2026-10-31", "--to", "2026-10-01"], "khoảng ngày bị ngược"),
    (["calls", "--branch", "9"], "không có nhánh '9'"),
    (["calls", "--agency", "KHONGCO"], "không có cơ quan mã 'KHONGCO'"),
    (["calls", "--format", "pdf"], "định dạng 'pdf' không hỗ trợ"),
    (["calls", "--from", "31-10-2026"], "không phải ngày hợp lệ"),
    (["calls", "--format", "jsonl", "--no-bom"], "--no-bom chỉ dùng với --format csv"),
    (["goi"], "không có bảng 'goi'"),
])
def test_bad_arguments_exit_2_and_write_nothing(env, tmp_path, args, message):
    out = tmp_path / "out" / "x.csv"
    out.parent.mkdir()
    res = cli(*args, "--out", str(out))
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.startswith("lỗi: ")
    assert list(out.parent.iterdir()) == []


def test_a_failed_export_leaves_no_partial_file(env, tmp_path, monkeypatch):
    out = tmp_path / "calls.csv"

    def boom(self, batch):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex.CsvWriter, "write", boom)
    r = cli("calls", "--out", str(out))
    assert r.exit_code != 0
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]


def test_streams_in_batches_and_async_path_matches(env):
    q = ex.make_query("calls", ROUTING)
    sync = list(ex.iter_batches(env, ex.calls_select(q), batch=4))
    asyn = list(ex.iter_batches(env, ex.calls_select(q), batch=4, force_async=True))
    assert [len(b) for b in sync] == [4, 4, 4, 1] and sum(map(len, sync)) == 13
    assert [tuple(r) for b in sync for r in b] == [tuple(r) for b in asyn for r in b]
    # Stopping early (a closed pipe) ends the async reader thread too.
    it = ex.iter_batches(env, ex.calls_select(q), batch=2, force_async=True)
    next(it)
    it.close()


def test_local_time_formatting():
    lt = ex.LocalTime("Asia/Ho_Chi_Minh")
    assert lt.one("2026-12-31 17:30:05.123456") == "2027-01-01T00:30:05+07:00"
    assert lt.column(("2026-12-31 17:30:05.123456", None, "2026-12-31 17:59:59")) == [
        "2027-01-01T00:30:05+07:00", None, "2027-01-01T00:59:59+07:00"]
    assert lt.one(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)) == "2026-01-01T07:00:00+07:00"
    # A zone whose offset is not whole hours takes the exact path.
    assert ex.LocalTime("Asia/Kolkata").column(("2026-01-01 00:00:00.000000",)) == ["2026-01-01T05:30:00+05:30"]
    # A daylight-saving change inside an hour (New York, 8 March 2026, 07:00 UTC).
    ny = ex.LocalTime("America/New_York")
    assert ny.column(("2026-03-08 06:59:59", "2026-03-08 07:00:00")) == ["2026-03-08T01:59:59-05:00", "2026-03-08T03:00:00-04:00"]


def _run_cli(args, tty: bool, env_vars, tmp_path):
    env = dict(os.environ, **env_vars, PYTHONPATH=str(REPO_ROOT))
    if not tty:
        p = subprocess.run([sys.executable, "-m", "ivr", "export", *args], env=env, capture_output=True, timeout=60)
        return p.stderr.decode()
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "ivr", "export", *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 4096)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    p.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_only_on_a_terminal(env, tmp_path):
    out = tmp_path / "c.csv"
    piped = _run_cli(["calls", "--out", str(out)], False, env.env, tmp_path)
    assert "Đang xuất" not in piped and "Đã xuất 13 dòng" in piped
    term = _run_cli(["calls", "--out", str(out)], True, env.env, tmp_path)
    assert "Đang xuất" in term and "13/13" in term


def test_bench_smoke(tmp_path):
    p = subprocess.run([sys.executable, "-m", "bench.export", "--rows", "300", "--quick", "--cache", str(tmp_path)],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert re.search(r"speed ratio:\s+\d+\.\d\d of sqlite3", p.stdout), p.stdout
    assert re.search(r"export peak RSS:\s+\d+ MB", p.stdout)
    assert "rows:            300" in p.stdout


def test_csv_fast_path_writes_what_the_cell_by_cell_path_writes():
    cols = ex.COLUMNS["calls"]
    rows = [("id1", "2026-10-01 01:02:03.5", "+84909", "1022", "4", "Cải cách", "VPUBND", "Văn phòng", "2401",
             "12.25", "", "answered", "", "5", None, "survey", "system", "recordings/calls/2026/10/id1.wav", "87.5",
             None, "31.5", "turn", ""),  # times stay raw: None for none
            ("id2", "2026-10-01 01:02:04", "=1+1", "1022", "", "", "", "@x", "-", "", "", "abandoned", "", "",
             "2026-10-01 01:05:00.000001", "\tmenu", "caller", "", "", None, "", "", "")]
    outs = []
    for text_rows in (True, False):
        buf = io.BytesIO()
        w = ex.CsvWriter(buf, cols, "Asia/Ho_Chi_Minh", text_rows=text_rows)
        w.write(rows)
        assert w.fast_batches == (1 if text_rows else 0)
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    got = csv_rows(outs[0])
    assert [r["caller"] for r in got] == ["'+84909", "'=1+1"]
    assert got[1]["agency_name"] == "'@x" and got[1]["answered_by"] == "'-" and got[1]["ended_in"] == "'\tmenu"
    assert got[0]["started_at"] == "2026-10-01T08:02:03+07:00" and got[1]["ended_at"] == "2026-10-01T08:05:00+07:00"
    # A cell that needs quoting sends the batch down the cell-by-cell path, quoted right.
    buf = io.BytesIO()
    w = ex.CsvWriter(buf, cols, "Asia/Ho_Chi_Minh", text_rows=True)
    w.write([rows[0][:5] + ('Tên, có "phẩy"',) + rows[0][6:]])
    assert w.fast_batches == 0 and csv_rows(buf.getvalue())[0]["branch_name"] == 'Tên, có "phẩy"'


def _long_cases(settings):
    eng = sa.create_engine(settings.database_url.replace("+aiosqlite", ""))
    with Session(eng) as s, s.begin():
        s.add(Case(code="900001", channel="zalo", caller="0909", anonymous=False, category="other",
                   received_at=t(10, 25), deadline_at=t(11, 5), status="answered",
                   summary="A" * 40_000, answer="đ" * 32_767))  # the answer fits exactly
        s.add(Case(code="900002", channel="zalo", caller="0909", anonymous=False, category="other",
                   received_at=t(10, 26), deadline_at=t(11, 5), status="received",
                   summary="😀" * 20_000))  # 40,000 UTF-16 units for Excel, 20,000 characters for Python
    eng.dispose()


def test_xlsx_cuts_overlong_cells_visibly_and_says_how_many(env, tmp_path):
    _long_cases(env)
    out = tmp_path / "cases.xlsx"
    res = cli("cases", "--format", "xlsx", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "cảnh báo: 2 ô dài quá 32.767 ký tự (giới hạn của Excel) đã bị cắt" in res.stderr
    assert ex.XLSX_CUT_MARK in res.stderr and "--format csv hoặc jsonl" in res.stderr
    with zipfile.ZipFile(out) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
        strings = z.read("xl/sharedStrings.xml").decode() if "xl/sharedStrings.xml" in z.namelist() else ""
    texts = re.findall(r"<t[^>]*>([^<]*)</t>", sheet + strings)
    cut = [x for x in texts if x.endswith(ex.XLSX_CUT_MARK)]
    assert len(cut) == 2
    # Up to Excel's limit (one less where the cut would have split an emoji in two).
    assert [len(x.encode("utf-16-le")) // 2 for x in cut] == [ex.XLSX_MAX_CHARS, ex.XLSX_MAX_CHARS - 1]
    assert cut[0].startswith("A" * 1000) and cut[1].startswith("😀" * 1000)
    assert "đ" * 32_767 in texts  # a text at the limit is whole
    # CSV and JSON Lines keep every character, and say nothing.
    res = cli("cases", "--format", "jsonl")
    rows = {r["case_code"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert rows["900001"]["summary"] == "A" * 40_000 and rows["900002"]["summary"] == "😀" * 20_000
    assert "cảnh báo" not in res.stderr
    res = cli("cases")
    assert {r["case_code"]: r["summary"] for r in csv_rows(res.stdout_bytes)}["900001"] == "A" * 40_000


def test_fit_excel_cell():
    assert ex.fit_excel_cell("x" * ex.XLSX_MAX_CHARS) is None
    assert ex.fit_excel_cell("😀" * (ex.XLSX_MAX_CHARS // 2)) is None
    cut = ex.fit_excel_cell("ab" + "😀" * ex.XLSX_MAX_CHARS)  # the cut falls inside a surrogate pair
    assert cut.endswith(ex.XLSX_CUT_MARK) and len(cut.encode("utf-16-le")) // 2 == ex.XLSX_MAX_CHARS - 1
    assert "\ud83d" not in cut


# An export that blocks after its first batch, until a signal ends it: the state an operator's
# Ctrl-C or a service manager's SIGTERM finds a long export in.
_STALLED_EXPORT = """
import os, sys, threading
from ivr.records import export as ex
from ivr.cli import main
write = ex.CsvWriter.write
def stalled(self, batch):
    write(self, batch)
    open(os.environ["STALLED_MARK"], "w").close()
    threading.Event().wait()
ex.CsvWriter.write = stalled
sys.argv = ["tongdai", "export", "calls", "--out", os.environ["STALLED_OUT"]]
main()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_an_interrupted_export_removes_its_partial_file(env, tmp_path, sig):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    mark = tmp_path / "stalled"
    proc_env = dict(os.environ, **env.env, PYTHONPATH=str(REPO_ROOT), STALLED_MARK=str(mark),
                    STALLED_OUT=str(out_dir / "calls.csv"))
    p = subprocess.Popen([sys.executable, "-c", _STALLED_EXPORT], env=proc_env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        await wait_until(lambda: mark.exists() or p.poll() is not None, 60, "the export's first batch", interval=0.05)
        parts = list(out_dir.iterdir())
        assert len(parts) == 1 and parts[0].name.startswith(".calls.csv.") and parts[0].name.endswith(".part")
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == (128 + signal.SIGTERM if sig == signal.SIGTERM else 1)
    assert list(out_dir.iterdir()) == []  # no .part left behind, no half-written calls.csv
    assert b"Traceback" not in err
