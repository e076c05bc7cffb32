"""Youth volunteers ("Đoàn thanh niên chung tay CCHC"), on SQLite and PostgreSQL: the roster
import (a bad file names its lines and writes nothing; re-importing updates by phone), shifts
(overlaps refused, days off of the working calendar marked), check-in/out, the assistance log,
the exports, and a month whose report figures (HTML, PDF, JSON) this test recomputes itself.

The fixture month is September 2026 (1–2/9 National Day), as in test_report; like it, the CLI
steps assume the machine's clock is past that month.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import html.parser
import io
import json
import re
import subprocess
import zoneinfo
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ivr.cli import main
from ivr.config import routing as rt
from ivr.config.hours import is_working_day
from ivr.records import db
from ivr.records import report as rp
from ivr.records import volunteers as vm
from tests.paths import REPO_ROOT

VN = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
UTC = dt.timezone.utc
ROUTING = rt.load(REPO_ROOT / "routing.yaml")
NOW = dt.datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
SEPTEMBER = rp.Month(2026, 9, "Asia/Ho_Chi_Minh")

# The roster: name, phone, desk, unit. C's unit starts like a formula (exports neutralise it).
ROSTER = [
    ("Nguyễn Văn An", "0909000001", "TTPVHCC", "Chi đoàn Văn phòng UBND tỉnh"),
    ("Trần Thị Bình", "0909000002", "DV31318", "Đoàn phường I, TP Vị Thanh"),
    ("Lê Văn Cường", "0909000003", "DV930", "=1+2 Đoàn TP Vị Thanh"),
    ("Phạm Thị Dung", "0909000004", "DV31340", "Đoàn phường Ngã Bảy"),
    ("Võ Minh Em", "0909000005", "DV31393", "Đoàn TT Kinh Cùng"),  # enrolled, never serves
]
# The district of each desk used here, written out by hand (routing.yaml's tree).
DISTRICT = {"TTPVHCC": "province", "DV31318": "DV930", "DV930": "DV930", "DV31340": "DV931", "DV31393": "DV934"}
# Shifts: phone, desk (None: the volunteer's), date, from, to, check-in, check-out (local, None: missing).
SHIFTS = [
    ("0909000001", None, "2026-09-03", "07:00", "11:30", "07:05", "11:32"),
    ("0909000001", None, "2026-09-03", "13:00", "17:00", "12:58", "17:10"),
    ("0909000001", None, "2026-09-02", "07:00", "11:00", "07:00", "10:45"),  # National Day
    ("0909000002", None, "2026-09-04", "07:00", "11:30", "07:20", None),  # no check-out
    ("0909000002", None, "2026-09-07", "07:00", "11:30", None, None),  # never came
    ("0909000002", "DV31340", "2026-09-08", "13:00", "17:00", "13:03", "16:59"),  # another district's desk
    ("0909000003", None, "2026-09-12", "07:30", "11:00", "07:31", "11:01"),  # a Saturday
    ("0909000004", None, "2026-09-30", "13:00", "17:00", "13:00", "16:30"),
    ("0909000004", None, "2026-10-01", "07:00", "11:00", "07:00", "11:00"),  # October
    ("0909000003", None, "2026-08-31", "07:00", "11:00", "07:00", "11:00"),  # August
]
# Assists: phone, kind, local time, procedure, the desk it must be counted at (by hand).
ASSISTS = [
    ("0909000001", "guidance", "2026-09-03 07:30", "Đăng ký khai sinh", "TTPVHCC"),
    ("0909000001", "vneid", "2026-09-03 08:10", "Kích hoạt VNeID mức 2", "TTPVHCC"),
    ("0909000001", "vneid", "2026-09-03 14:00", None, "TTPVHCC"),
    ("0909000001", "online_submission", "2026-09-02 09:00", "Cấp phiếu lý lịch tư pháp", "TTPVHCC"),
    ("0909000002", "form_filling", "2026-09-04 08:00", "Đăng ký thường trú", "DV31318"),  # checked in, no check-out yet
    ("0909000002", "guidance", "2026-09-08 14:00", None, "DV31340"),  # the shift's desk, not hers
    ("0909000002", "other", "2026-09-07 09:00", None, "DV31318"),  # not checked in: her own desk
    ("0909000003", "guidance", "2026-09-12 08:00", "Chứng thực bản sao", "DV930"),
    ("0909000004", "vneid", "2026-09-30 23:30", None, "DV31340"),  # 16:30 UTC: still September
    ("0909000004", "vneid", "2026-10-01 00:10", None, "DV31340"),  # 30/9 17:10 UTC: October
    ("0909000004", "form_filling", "2026-08-31 23:59", None, "DV31340"),  # August
]


def local(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=VN).astimezone(UTC)


def roster_csv(path: Path, rows=ROSTER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "phone", "desk", "unit"])
        w.writerows(rows)
    return path


def run(coro_fn, settings):
    """Run ``coro_fn(service)`` on a fresh engine of ``settings``."""

    async def go():
        engine = db.engine(settings)
        try:
            return await coro_fn(vm.Volunteers(engine, ROUTING))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def counts(settings) -> tuple[int, int, int]:
    async def go(v):
        async with v.engine.connect() as c:
            return tuple([(await c.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one()
                          for t in ("volunteers", "volunteer_shifts", "volunteer_assists")])

    return run(go, settings)


@pytest.fixture
def cli(db_settings, monkeypatch):
    """``cli(*args)``: `tongdai …` on this test's database; the result."""
    db.upgrade(db_settings)
    for k, v in db_settings.env.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args))

    invoke.settings = db_settings
    return invoke


# ------------------------------------------------------------------------------ the roster


def test_a_bad_roster_names_its_lines_and_writes_nothing(cli, tmp_path):
    bad = tmp_path / "vol.csv"
    bad.write_text(
        "name,phone,desk,unit\n"
        "Nguyễn Văn An,0909000001,TTPVHCC,Chi đoàn VP\n"
        "Trần Thị Bình,0909000002,XYZ,Đoàn phường I\n"  # line 3
        'Lê Văn Cường,0909000003,DV930,"Đoàn thành phố\n(Vị Thanh)"\n'  # lines 4-5, valid
        ",12,SNV,\n"  # line 6
        "Phạm Thị Dung,+84 909 000 001,DV31340,Đoàn phường\n",  # line 7: An's number again
        encoding="utf-8")
    res = cli("volunteers", "import", str(bad))
    assert res.exit_code == 1, res.output
    lines = res.stderr.splitlines()
    assert lines == [
        "vol.csv:3 desk: không có cơ quan 'XYZ' trong routing.yaml",
        "vol.csv:6 name: để trống",
        "vol.csv:6 phone: '12' không phải số điện thoại Việt Nam",
        "vol.csv:6 desk: 'SNV' (Sở Nội vụ, loại department) không có bộ phận một cửa (chỉ loại: center, district, commune)",
        "vol.csv:6 unit: để trống (chi đoàn, đoàn cơ sở)",
        "vol.csv:7 phone: 0909000001 trùng với dòng 2",
        "6 lỗi — không nạp dòng nào.",
    ], res.stderr
    assert counts(cli.settings) == (0, 0, 0)

    latin = tmp_path / "latin.csv"
    latin.write_bytes("name,phone,desk,unit\nA,0909000001,TTPVHCC,X\nLê Đan,0909000002,DV930,Y\n".encode("cp1258"))
    res = cli("volunteers", "import", str(latin))
    assert res.exit_code == 1 and "latin.csv:3: không phải UTF-8" in res.stderr, res.output
    assert counts(cli.settings) == (0, 0, 0)

    res = cli("volunteers", "import", str(roster_csv(tmp_path / "roster.csv")))
    assert res.exit_code == 0, res.output
    assert "thêm 5, cập nhật 0, không đổi 0" in res.output
    # Re-importing updates by phone number (in any written form); nobody is added twice.
    moved = [list(r) for r in ROSTER[:2]]
    moved[1][1] = "+84 909 000 002"
    moved[1][2] = "DV31321"
    res = cli("volunteers", "import", str(roster_csv(tmp_path / "again.csv", moved)))
    assert res.exit_code == 0 and "thêm 0, cập nhật 1, không đổi 1" in res.output, res.output
    res = cli("volunteers", "list", "--desk", "DV31321")
    assert "0909000002" in res.output and "Trần Thị Bình" in res.output and "1 đoàn viên." in res.output
    assert counts(cli.settings) == (5, 0, 0)
    res = cli("volunteers", "list")
    assert res.output.count("09090000") == 5 and res.output.index("TTPVHCC —") < res.output.index("DV930 —")
    res = cli("volunteers", "list", "--desk", "SNV")
    assert res.exit_code == 2 and "không có bộ phận một cửa" in res.stderr


# -------------------------------------------------------------------------------- shifts


def test_overlapping_shifts_of_one_volunteer_are_refused(cli, tmp_path):
    cli("volunteers", "import", str(roster_csv(tmp_path / "r.csv")))
    add = lambda phone, day, a, b, *more: cli("volunteers", "shift", "add", "--volunteer", phone, "--date", day,  # noqa: E731
                                               "--from", a, "--to", b, *more)
    res = add("0909000001", "2026-09-03", "07:00", "11:30")
    assert res.exit_code == 0 and "Đã xếp ca #" in res.output and "Lưu ý" not in res.output, res.output
    for a, b in [("11:00", "12:00"), ("06:00", "07:01"), ("08:00", "09:00"), ("06:00", "12:00"), ("07:00", "11:30")]:
        res = add("0909000001", "2026-09-03", a, b, "--desk", "DV930")
        assert res.exit_code == 1, (a, b, res.output)
        assert "trùng giờ" in res.stderr and "07:00–11:30" in res.stderr, res.stderr
    assert counts(cli.settings)[1] == 1
    # Touching is not overlapping; another volunteer may serve at the same time.
    assert add("0909000001", "2026-09-03", "11:30", "12:00").exit_code == 0
    assert add("0909000001", "2026-09-03", "06:30", "07:00").exit_code == 0
    assert add("0909000002", "2026-09-03", "07:00", "11:30").exit_code == 0
    assert counts(cli.settings)[1] == 4
    # Bad arguments: exit 2, nothing written.
    for args, msg in [
        (("2026-09-03", "11:00", "10:00"), "phải sau"),
        (("2026-02-30", "07:00", "08:00"), "không phải ngày"),
        (("2026-09-04", "7h", "08:00"), "không phải giờ"),
        (("2026-09-04", "07:00", "08:00", "--desk", "STP"), "không có bộ phận một cửa"),
        (("2026-09-04", "07:00", "08:00", "--desk", "NOPE"), "không có cơ quan 'NOPE'"),
    ]:
        res = add("0909000001", *args)
        assert res.exit_code in (1, 2) and msg in res.stderr, (args, res.output)
    res = add("0988888888", "2026-09-04", "07:00", "08:00")
    assert res.exit_code == 1 and "không có đoàn viên số 0988888888" in res.stderr
    assert counts(cli.settings)[1] == 4


def test_the_working_calendar_marks_shifts_on_days_off(settings_factory, database_url, tmp_path, monkeypatch):
    # A swapped working day (Saturday 19/9) and an extra day off (Tuesday 22/9) in routing.yaml.
    text = (REPO_ROOT / "routing.yaml").read_text(encoding="utf-8")
    text = text.replace("  closed_days: []", "  closed_days: [2026-09-22]").replace("  working_days: []", "  working_days: [2026-09-19]")
    routing = tmp_path / "routing.yaml"
    routing.write_text(text, encoding="utf-8")
    s = settings_factory(TONGDAI_DATABASE_URL=database_url, TONGDAI_ROUTING=str(routing))
    db.upgrade(s)
    for k, v in s.env.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()
    runner.invoke(main, ["volunteers", "import", str(roster_csv(tmp_path / "r.csv"))])
    marks = {}
    for day in ("2026-09-02", "2026-09-14", "2026-09-19", "2026-09-20", "2026-09-22"):
        res = runner.invoke(main, ["volunteers", "shift", "add", "--volunteer", "0909000001", "--date", day,
                                   "--from", "07:00", "--to", "11:00"])
        assert res.exit_code == 0, res.output
        marks[day] = re.search(r"Lưu ý: .* — (.*)\.$", res.output.strip(), re.M)
    assert marks["2026-09-02"].group(1) == "ngày lễ: Quốc khánh"
    assert marks["2026-09-14"] is None and marks["2026-09-19"] is None  # a Monday; a swapped working day
    assert marks["2026-09-20"].group(1) == "cuối tuần (Chủ nhật)"
    assert marks["2026-09-22"].group(1) == "ngày nghỉ theo routing.yaml"
    res = runner.invoke(main, ["volunteers", "shift", "list", "--week", "2026-W38"])
    assert res.exit_code == 0, res.output
    assert "Lịch trực tuần 2026-W38 (14/09–20/09/2026)" in res.output
    lines = [ln for ln in res.output.splitlines() if "Nguyễn Văn An" in ln]
    assert len(lines) == 3 and "NGÀY NGHỈ" not in lines[0] + lines[1] and "NGÀY NGHỈ — cuối tuần (Chủ nhật)" in lines[2]
    assert "3 ca, 1 ca vào ngày nghỉ." in res.output
    res = runner.invoke(main, ["volunteers", "shift", "list", "--week", "2026-38"])
    assert res.exit_code == 2 and "--week '2026-38' không hợp lệ" in res.stderr


# ------------------------------------------------------------------------------- arrival


def test_checkin_checkout_and_assists_from_the_command_line(cli, tmp_path):
    cli("volunteers", "import", str(roster_csv(tmp_path / "r.csv")))
    for a, b in (("07:00", "11:30"), ("13:00", "17:00")):
        assert cli("volunteers", "shift", "add", "--volunteer", "0909000002", "--date", "2026-09-03", "--from", a,
                   "--to", b).exit_code == 0

    res = cli("volunteers", "checkout", "0909000002", "--at", "2026-09-03 07:10")
    assert res.exit_code == 1 and "không có ca nào đã vào mà chưa ra" in res.stderr, res.output
    res = cli("volunteers", "checkin", "0909000002", "--at", "2026-09-04 07:10")
    assert res.exit_code == 1 and "không có ca nào ngày 04/09/2026" in res.stderr, res.output
    res = cli("volunteers", "checkin", "0909000002", "--at", "2026-09-03 06:52")
    assert res.exit_code == 0 and "vào ca #1" in res.output and "lúc 06:52 03/09/2026" in res.output, res.output
    res = cli("volunteers", "checkin", "0909000002", "--shift", "1", "--at", "2026-09-03 06:55")
    assert res.exit_code == 1 and "đã vào lúc 06:52" in res.stderr
    res = cli("volunteers", "assist", "0909000002", "--kind", "vneid", "--procedure", "VNeID cho ông 0912 345 678",
              "--at", "2026-09-03 08:00")
    assert res.exit_code == 1 and "không ghi thông tin cá nhân" in res.stderr
    res = cli("volunteers", "assist", "0909000002", "--kind", "vneid", "--case", "999999", "--at", "2026-09-03 08:00")
    assert res.exit_code == 1 and "không có phản ánh mã 999999" in res.stderr
    res = cli("volunteers", "assist", "0909000002", "--kind", "form_filling", "--procedure", "Đăng ký kết hôn",
              "--at", "2026-09-03 08:00")
    assert res.exit_code == 0 and "hỗ trợ kê khai hồ sơ — Đăng ký kết hôn" in res.output and "Phường I" in res.output
    assert res.stderr == ""  # on a shift: no warning
    # The morning has no check-out; the afternoon is checked in at 12:58 and out at 17:09.
    assert cli("volunteers", "checkin", "0909000002", "--at", "2026-09-03 12:58").exit_code == 0
    res = cli("volunteers", "checkout", "0909000002", "--at", "2026-09-04 11:00")
    assert res.exit_code == 1 and "giờ ra phải cùng ngày" in res.stderr and '--at "2026-09-03 HH:MM"' in res.stderr
    res = cli("volunteers", "checkout", "0909000002", "--at", "2026-09-03 17:09")
    assert res.exit_code == 0 and "ra ca #2 lúc 17:09" in res.output and "đã trực 4 giờ 11 phút" in res.output, res.output
    res = cli("volunteers", "checkin", "0909000002", "--at", "2999-01-01 07:00")
    assert res.exit_code == 1 and "chưa tới" in res.stderr
    res = cli("volunteers", "checkin", "0909000002", "--at", "03/09/2026 7h")
    assert res.exit_code == 2 and "--at '03/09/2026 7h' không hợp lệ" in res.stderr

    res = cli("volunteers", "shift", "list", "--week", "2026-W36")
    rows = [ln for ln in res.output.splitlines() if ln.startswith("  #")]
    assert "thiếu giờ ra: vào 06:52, ra —" in rows[0]  # shown, not guessed from the plan
    assert "đã trực: vào 12:58, ra 17:09 (4 giờ 11 phút)" in rows[1]
    # A shift nobody checked in to can be cancelled; one with a check-in cannot.
    assert cli("volunteers", "shift", "add", "--volunteer", "0909000002", "--date", "2026-09-05", "--from", "07:00",
               "--to", "09:00").exit_code == 0
    assert cli("volunteers", "shift", "cancel", "3").exit_code == 0
    res = cli("volunteers", "shift", "cancel", "1")
    assert res.exit_code == 1 and "đã có giờ vào" in res.stderr
    assert counts(cli.settings) == (5, 2, 1)


def test_the_service_serves_a_web_page_plain_data(db_settings, tmp_path):
    """The youth console calls the same service: async, on an engine, plain data back."""
    db.upgrade(db_settings)

    async def go(v):
        await v.import_roster(roster_csv(tmp_path / "r.csv"), now=NOW - dt.timedelta(days=100))
        me = await v.get("+84909000003")
        sh = await v.add_shift(me.phone, dt.date(2026, 9, 14), dt.time(7), dt.time(11), now=NOW)
        on = await v.check_in(me.phone, local("2026-09-14 07:04") + dt.timedelta(seconds=41), shift_id=sh.id, now=NOW)
        a = await v.assist(me.phone, "guidance", at=local("2026-09-14 09:00"), now=NOW)
        off = await v.check_out(me.phone, local("2026-09-14 10:59") + dt.timedelta(seconds=59), shift_id=sh.id, now=NOW)
        week = await v.roster(dt.date(2026, 9, 14), desk="DV930", now=NOW)
        listed = await v.assists(day=dt.date(2026, 9, 14))
        return me, on, a, off, week, listed

    me, on, a, off, week, listed = run(go, db_settings)
    assert (me.name, me.desk_code, me.desk_name) == ("Lê Văn Cường", "DV930", "Thành phố Vị Thanh")
    assert on.checkin_at == local("2026-09-14 07:04") and on.state == "no_checkout" and on.served_minutes is None
    assert off.checkout_at == local("2026-09-14 10:59") and off.served_minutes == 235 and off.state == "served"
    assert a.shift_id == on.id and a.desk_code == "DV930"
    assert [s.id for s in week] == [on.id] and week[0].day == dt.date(2026, 9, 14) and week[0].day_off is None
    assert [x.id for x in listed] == [a.id]
    json.dumps([vars(x) for x in (me, on, a, off)], default=str)  # nothing but plain values


# --------------------------------------------------------------------------- the month


def build_month(settings, tmp_path) -> None:
    db.upgrade(settings)

    async def go(v):
        await v.import_roster(roster_csv(tmp_path / "roster.csv"), now=dt.datetime(2026, 8, 20, tzinfo=UTC))
        ids = []
        for phone, desk, day, a, b, _, _ in SHIFTS:
            sh = await v.add_shift(phone, dt.date.fromisoformat(day), dt.time.fromisoformat(a), dt.time.fromisoformat(b),
                                   desk=desk, now=NOW)
            ids.append(sh.id)
        # Arrivals in time order, as they happen; then the assists.
        events = []
        for sid, (phone, _, day, _, _, cin, cout) in zip(ids, SHIFTS):
            if cin:
                events.append((local(f"{day} {cin}"), "in", phone, sid))
            if cout:
                events.append((local(f"{day} {cout}"), "out", phone, sid))
        for at, what, phone, _ in sorted(events):
            await (v.check_in if what == "in" else v.check_out)(phone, at, now=NOW)
        for phone, kind, at, procedure, _ in ASSISTS:
            await v.assist(phone, kind, procedure=procedure, at=local(at), now=NOW)

    run(go, settings)


def in_september(t: dt.datetime) -> bool:
    t = t.astimezone(VN)
    return (t.year, t.month) == (2026, 9)


def minutes(a: str, b: str) -> int:
    (h1, m1), (h2, m2) = (map(int, a.split(":")), map(int, b.split(":")))
    return (h2 * 60 + m2) - (h1 * 60 + m1)


def expected() -> dict:
    """The section's figures, from the fixture lists alone."""
    home = {phone: desk for _, phone, desk, _ in ROSTER}
    shifts = [s for s in SHIFTS if s[2].startswith("2026-09")]
    served = [s for s in shifts if s[5]]
    E: dict = {
        "vol.enrolled": len(ROSTER),
        "vol.volunteers": len({s[0] for s in served}),
        "vol.days": len({(s[0], s[2]) for s in served}),
        "vol.shifts_planned": len(shifts),
        "vol.shifts": len(served),
        "vol.absent": sum(1 for s in shifts if not s[5]),
        "vol.no_checkout": sum(1 for s in served if not s[6]),
        "vol.shifts_day_off": sum(1 for s in shifts if not is_working_day(ROUTING.hours, dt.date.fromisoformat(s[2]))),
        "vol.served_s": 60.0 * sum(minutes(s[5], s[6]) for s in served if s[6]),
    }
    assists = [a for a in ASSISTS if in_september(local(a[2]))]
    E["vol.assists"] = len(assists)
    kinds = Counter(a[1] for a in assists)
    for k in ("guidance", "form_filling", "online_submission", "vneid", "other"):
        E[f"vol.kind.{k}"] = kinds[k]
    districts = ["province"] + [c for c, a in ROUTING.agencies.items() if a.kind == "district"]
    for d in districts:
        mine = [s for s in served if DISTRICT[s[1] or home[s[0]]] == d]
        E[f"vol.district.{d}.volunteers"] = len({s[0] for s in mine})
        E[f"vol.district.{d}.shifts"] = len(mine)
        E[f"vol.district.{d}.served_s"] = 60.0 * sum(minutes(s[5], s[6]) for s in mine if s[6])
        E[f"vol.district.{d}.assists"] = sum(1 for a in assists if DISTRICT[a[4]] == d)
    desks = [c for c, a in ROUTING.agencies.items() if a.kind in ("center", "district", "commune")]
    E["vol.desks_without"] = len(set(desks) - {s[1] or home[s[0]] for s in served})
    return E


class Figures(html.parser.HTMLParser):
    """Every ``data-k`` span of the page: raw value and the text shown."""

    def __init__(self):
        super().__init__()
        self.raw: dict[str, str] = {}
        self.text: dict[str, str] = {}
        self.bars: dict[str, str] = {}
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-k" in a and tag == "rect":
            self.bars[a["data-k"]] = a["data-v"]
        elif "data-k" in a:
            self.raw[a["data-k"]], self.text[a["data-k"]], self._open = a["data-v"], "", a["data-k"]

    def handle_data(self, data):
        if self._open:
            self.text[self._open] += data

    def handle_endtag(self, tag):
        if tag == "span":
            self._open = None


def shown(key: str, v) -> str:
    if key.endswith("served_s"):
        h, m = divmod(int(v) // 60, 60)
        return f"{h} giờ {m:02d} phút" if h else f"{m} phút"
    return f"{v:,}".replace(",", ".")


@pytest.fixture
def month_db(db_settings, tmp_path):
    build_month(db_settings, tmp_path)
    return db_settings


def test_a_month_of_volunteering_in_the_report_html_pdf_and_json(month_db, tmp_path):
    E = expected()
    # By hand, as a check of the fixture itself: 23 h 20 min served, 9 people helped in September.
    assert E["vol.served_s"] == (23 * 60 + 20) * 60 and E["vol.assists"] == 9 and E["vol.shifts"] == 7
    assert E["vol.shifts_day_off"] == 2 and E["vol.desks_without"] == 80

    paths = {kind: tmp_path / f"bao-cao.{kind}" for kind in ("html", "pdf", "json")}
    for path in paths.values():
        r = rp.write(db.engine(month_db), ROUTING, SEPTEMBER, path, now=NOW)
    assert {k: v for k, v in r.figures.items() if k.startswith("vol.")} == E

    # HTML: every figure of the section, its raw value and how it reads.
    p = Figures()
    p.feed(paths["html"].read_text(encoding="utf-8"))
    got = {k: v for k, v in p.raw.items() if k.startswith("vol.")}
    assert set(got) == set(E)
    for k, v in E.items():
        assert float(got[k]) == v and p.text[k] == shown(k, v), (k, got[k], p.text[k], v)
    assert {k: float(v) for k, v in p.bars.items() if k.startswith("vol.")} == {k: v for k, v in E.items() if k.startswith("vol.kind.")}
    page = paths["html"].read_text(encoding="utf-8")
    assert "IX. Đoàn thanh niên chung tay CCHC" in page and "Phường Hiệp Thành" in page  # a desk nobody served
    assert "Trung tâm Phục vụ hành chính công" not in page.split("chưa có đoàn viên trực")[1].split("Ghi chú")[0]

    # PDF: the same figures in the text of the page.
    text = subprocess.run(["pdftotext", "-layout", str(paths["pdf"]), "-"], capture_output=True, text=True, check=True).stdout
    section = text[text.index("IX. Đoàn thanh niên chung tay CCHC"):text.index("Ghi chú cách tính")]

    def row(label: str) -> list[str]:
        line = next(ln for ln in section.splitlines() if ln.strip().startswith(label) and re.search(r"\d\s*(phút)?$", ln))
        return re.split(r"\s{2,}", line.strip())[1:]

    assert row("Đoàn viên trong danh sách") == [shown("", E["vol.enrolled"])]
    assert row("Đoàn viên đã đến trực trong tháng") == [shown("", E["vol.volunteers"])]
    assert row("Ca đã trực (có giờ vào)") == [shown("", E["vol.shifts"])]
    assert row("Ca thiếu giờ ra") == [shown("", E["vol.no_checkout"])]
    assert row("Thời gian trực (từ giờ vào đến giờ ra)") == [shown("vol.served_s", E["vol.served_s"])] == ["23 giờ 20 phút"]
    assert row("Lượt người dân được hỗ trợ") == [shown("", E["vol.assists"])]
    table = section[section.index("Nội dung hỗ trợ"):]
    for k, label in (("guidance", "hướng dẫn thủ tục"), ("vneid", "hỗ trợ VNeID"), ("form_filling", "hỗ trợ kê khai hồ sơ"),
                     ("online_submission", "hỗ trợ nộp hồ sơ trực tuyến"), ("other", "hỗ trợ khác")):
        line = next(ln for ln in table.splitlines() if ln.strip().startswith(label))
        assert line.split()[-1] == str(E[f"vol.kind.{k}"]), (k, line)
    for code, name in (("province", "Cấp tỉnh"), ("DV930", "Thành phố Vị Thanh"), ("DV931", "Thành phố Ngã Bảy"),
                       ("DV934", "Huyện Phụng Hiệp")):
        line = next(ln for ln in section.splitlines() if ln.strip().startswith(name) and "phút" in ln)
        assert re.split(r"\s{2,}", line.strip())[1:] == [
            shown("", E[f"vol.district.{code}.volunteers"]), shown("", E[f"vol.district.{code}.shifts"]),
            shown("vol.served_s", E[f"vol.district.{code}.served_s"]), shown("", E[f"vol.district.{code}.assists"])], line

    # JSON: the volunteers object, and every figure under the page's keys.
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    v = data["volunteers"]
    assert data["month"] == "2026-09" and data["figures"] == json.loads(json.dumps(r.figures))
    assert v["volunteers"] == E["vol.volunteers"] and v["enrolled"] == E["vol.enrolled"] and v["shifts"] == E["vol.shifts"]
    assert v["minutes"] == E["vol.served_s"] / 60 == 1400 and v["hours"] == round(1400 / 60, 2) == 23.33
    assert v["assists"] == E["vol.assists"]
    assert v["by_kind"] == {k.split(".")[-1]: n for k, n in E.items() if k.startswith("vol.kind.")}
    assert v["by_district"] == {k.split(".")[2]: n for k, n in E.items() if k.startswith("vol.district.") and k.endswith(".assists")}
    assert v["by_district"]["DV931"] == 2 and v["by_district"]["province"] == 4 and v["by_district"]["DV934"] == 0
    assert len(v["desks_without"]) == E["vol.desks_without"] and v["desks"] == 84
    assert {d["code"] for d in v["desks_without"]}.isdisjoint({"TTPVHCC", "DV31318", "DV930", "DV31340"})


def test_report_monthly_json_from_the_command_line(month_db, tmp_path, monkeypatch):
    for k, val in month_db.env.items():
        monkeypatch.setenv(k, val)
    out = tmp_path / "so-lieu.json"
    res = CliRunner().invoke(main, ["report", "monthly", "--month", "2026-09", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text(encoding="utf-8"))
    for key in ("volunteers", "enrolled", "shifts", "hours", "assists", "by_kind", "by_district"):
        assert key in data["volunteers"], key
    assert data["volunteers"]["hours"] == 23.33 and data["figures"]["vol.served_s"] == 84000.0
    assert data["figures"]["calls.total"] == 0 and data["zalo"] is None  # every section, not only this one
    res = CliRunner().invoke(main, ["report", "monthly", "--month", "2026-09", "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and ".json, .html hoặc .pdf" in res.output


def test_a_month_without_volunteers_says_so(db_settings, tmp_path):
    db.upgrade(db_settings)
    r = rp.write(db.engine(db_settings), ROUTING, SEPTEMBER, tmp_path / "r.html", now=NOW)
    assert not any(k.startswith("vol.") for k in r.figures)
    assert "Chưa có đoàn viên nào trong danh sách" in (tmp_path / "r.html").read_text(encoding="utf-8")
    assert r.volunteers["enrolled"] == 0 and r.volunteers["hours"] == 0 and r.volunteers["by_kind"]["vneid"] == 0


# ------------------------------------------------------------------------------ exports


def test_exports_of_shifts_and_assists(month_db, tmp_path, monkeypatch):
    for k, val in month_db.env.items():
        monkeypatch.setenv(k, val)
    runner = CliRunner()
    res = runner.invoke(main, ["export", "shifts", "--from", "2026-09-01", "--to", "2026-09-30", "--out", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    raw = (tmp_path / "s.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfshift_id,date,starts_at,") and b"\r\n" in raw
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    september = [s for s in SHIFTS if s[2].startswith("2026-09")]
    assert len(rows) == len(september)
    by_start = {(r["volunteer_phone"], r["starts_at"]): r for r in rows}
    for phone, _, day, a, _, cin, cout in september:
        r = by_start[(phone, f"{day}T{a}:00+07:00")]
        assert r["checkin_at"] == (f"{day}T{cin}:00+07:00" if cin else "")
        assert r["served_min"] == (str(minutes(cin, cout)) if cin and cout else "")
        assert r["state"] == ("served" if cout else "no_checkout" if cin else "absent")
        assert (r["day_off"] != "") == (not is_working_day(ROUTING.hours, dt.date.fromisoformat(day)))
    assert {r["unit"] for r in rows if r["volunteer_phone"] == "0909000003"} == {"'=1+2 Đoàn TP Vị Thanh"}
    assert by_start[("0909000001", "2026-09-02T07:00:00+07:00")]["day_off"] == "ngày lễ: Quốc khánh"

    res = runner.invoke(main, ["export", "assists", "--from", "2026-09-01", "--to", "2026-09-30", "--agency", "DV931",
                               "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    got = [json.loads(ln) for ln in res.stdout.splitlines()]
    want = [a for a in ASSISTS if in_september(local(a[2])) and DISTRICT[a[4]] == "DV931"]
    assert [(g["volunteer_phone"], g["kind"], g["desk_code"], g["district_code"]) for g in got] == [
        (a[0], a[1], a[4], "DV931") for a in sorted(want, key=lambda a: local(a[2]))]
    assert got[-1]["assisted_at"] == "2026-09-30T23:30:00+07:00" and got[-1]["shift_id"] is None
    res = runner.invoke(main, ["export", "assists", "--format", "jsonl", "--agency", "DV31318"])
    assert {json.loads(ln)["unit"] for ln in res.stdout.splitlines()} == {"Đoàn phường I, TP Vị Thanh"}
    res = runner.invoke(main, ["export", "shifts", "--format", "jsonl", "--agency", "DV930"])
    assert {json.loads(ln)["unit"] for ln in res.stdout.splitlines()} >= {"=1+2 Đoàn TP Vị Thanh"}  # JSON Lines untouched
    res = runner.invoke(main, ["export", "shifts", "--branch", "1"])
    assert res.exit_code == 2 and "--branch không dùng với shifts" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".csv") == ["roster.csv", "s.csv"]


def test_who_planned_or_logged_is_one_line(cli, tmp_path):
    cli("volunteers", "import", str(roster_csv(tmp_path / "r.csv")))
    forged = "điều phối\n    #9 đã huỷ bởi Bí thư"
    res = cli("volunteers", "shift", "add", "--volunteer", "0909000001", "--date", "2026-09-03", "--from", "07:00",
              "--to", "11:00", "--by", forged)
    assert res.exit_code == 1 and res.stderr.startswith("lỗi: tên người thực hiện (--by) có ký tự xuống dòng"), res.output
    res = cli("volunteers", "assist", "0909000001", "--kind", "guidance", "--by", "x\x1b[2J")
    assert res.exit_code == 1 and "ký tự điều khiển" in res.stderr and "Traceback" not in res.output
    assert counts(cli.settings) == (5, 0, 0)
