"""`tongdai volunteers …`: "Đoàn thanh niên chung tay CCHC" for the Youth Union coordinators.

The roster, the week's shifts per desk, arrival and departure, one line per person helped.
Bad arguments exit 2, refusals (an overlapping shift, a check-out without a check-in…) exit 1;
both write nothing.
"""

from __future__ import annotations

import datetime as dt
import sys
import zoneinfo
from pathlib import Path

import click

from ivr.cli.common import actor as _actor
from ivr.cli.common import fail, load_routing, need_database, settings
from ivr.vocab import AssistKind, ShiftState

# The service (SQLAlchemy, the models) is imported inside the commands, as in cases.py, so that
# other `tongdai` commands start as fast as before.


def _run(fn, *, parse=None):
    """``parse(vm, routing)`` first (its VolunteerError: exit 2), then ``fn(service, routing, parsed)``
    against the configured database (VolunteerError: exit 1)."""
    import asyncio

    from ivr.records import db as db_mod
    from ivr.records import volunteers as vm

    s = settings()
    r = load_routing(s.routing_path)
    try:
        parsed = parse(vm, r) if parse else None
    except vm.VolunteerError as e:
        fail(str(e), 2)
    need_database(s)

    async def go():
        engine = db_mod.engine(s)
        try:
            return await fn(vm.Volunteers(engine, r), r, parsed)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except vm.RosterError as e:
        for p in e.problems:
            click.echo(p, err=True)
        click.echo(f"{len(e.problems)} lỗi — không nạp dòng nào.", err=True)
        sys.exit(1)
    except vm.VolunteerError as e:
        fail(str(e))


def _local(t: dt.datetime | None, tz: str, fmt: str = "%H:%M") -> str:
    return t.astimezone(zoneinfo.ZoneInfo(tz)).strftime(fmt) if t else "—"


WEEKDAY = ("T2", "T3", "T4", "T5", "T6", "T7", "CN")
STATE_VI = ShiftState.labels()


def _shift_line(sh, tz: str) -> str:
    from ivr.records.volunteers import fmt_minutes

    head = (f"#{sh.id:<5} {WEEKDAY[sh.day.weekday()]} {sh.day:%d/%m}  {_local(sh.starts_at, tz)}–{_local(sh.ends_at, tz)}  "
            f"{sh.name} ({sh.phone})")
    what = STATE_VI[sh.state]
    if sh.checkin_at:
        what += f": vào {_local(sh.checkin_at, tz)}, ra {_local(sh.checkout_at, tz)}"
        what += f" ({fmt_minutes(sh.served_minutes)})" if sh.served_minutes is not None else ""
    off = f"  [NGÀY NGHỈ — {sh.day_off}]" if sh.day_off else ""
    return f"  {head}  {what}{off}"


@click.group("volunteers")
def volunteers() -> None:
    """Đoàn thanh niên chung tay CCHC: đoàn viên, ca trực, giờ vào/ra, lượt hỗ trợ người dân."""


@volunteers.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def vol_import(csv_file: Path) -> None:
    """Nạp danh sách đoàn viên từ CSV UTF-8: name,phone,desk,unit (cập nhật theo số điện thoại)."""

    async def go(v, r, _):
        res = await v.import_roster(csv_file)
        click.echo(f"Đã nạp {csv_file.name}: thêm {res.added}, cập nhật {res.updated}, không đổi {res.unchanged}.")

    _run(go)


@volunteers.command("list")
@click.option("--desk", metavar="MÃ", help="Chỉ một bộ phận một cửa (mã cơ quan trong routing.yaml).")
def vol_list(desk: str | None) -> None:
    """Danh sách đoàn viên theo bộ phận một cửa."""

    async def go(v, r, _):
        rows = await v.list_volunteers(desk=desk)
        current = None
        for x in rows:
            if x.desk_code != current:
                current = x.desk_code
                click.echo(f"{x.desk_code} — {x.desk_name}")
            click.echo(f"  {x.phone:<12} {x.name:<30} {x.unit}")
        click.echo(f"{len(rows)} đoàn viên.")

    _run(go, parse=lambda vm, r: desk and vm.check_desk(r, desk))


@volunteers.group("shift")
def shift() -> None:
    """Ca trực: thêm, xem lịch tuần, huỷ."""


@shift.command("add")
@click.option("--volunteer", "phone", required=True, metavar="SỐ", help="Số điện thoại của đoàn viên.")
@click.option("--desk", metavar="MÃ", help="Bộ phận một cửa (mặc định: nơi đoàn viên đăng ký).")
@click.option("--date", "day", required=True, metavar="YYYY-MM-DD", help="Ngày trực.")
@click.option("--from", "start", required=True, metavar="HH:MM", help="Giờ bắt đầu.")
@click.option("--to", "end", required=True, metavar="HH:MM", help="Giờ kết thúc (cùng ngày).")
@click.option("--by", help="Người xếp ca (mặc định: tên đăng nhập).")
def shift_add(phone, desk, day, start, end, by) -> None:
    """Xếp một ca trực (không nhận ca trùng giờ với ca khác của cùng đoàn viên)."""

    def parse(vm, r):
        if desk is not None:
            vm.check_desk(r, desk)
        return vm.parse_phone(phone), vm.parse_day(day), vm.parse_hm(start, "--from"), vm.parse_hm(end, "--to")

    async def go(v, r, p):
        sh = await v.add_shift(p[0], p[1], p[2], p[3], desk=desk, actor=_actor(by))
        click.echo(f"Đã xếp ca #{sh.id}: {sh.name} tại {sh.desk_name} ({sh.desk_code}), "
                   f"{sh.day:%d/%m/%Y} {_local(sh.starts_at, v.tz)}–{_local(sh.ends_at, v.tz)}.")
        if sh.day_off:
            click.echo(f"Lưu ý: ngày {sh.day:%d/%m/%Y} là ngày nghỉ theo lịch làm việc — {sh.day_off}.")

    _run(go, parse=parse)


@shift.command("list")
@click.option("--week", metavar="YYYY-Www", help="Tuần theo ISO, ví dụ 2026-W38 (mặc định: tuần này).")
@click.option("--desk", metavar="MÃ", help="Chỉ một bộ phận một cửa.")
def shift_list(week: str | None, desk: str | None) -> None:
    """Lịch trực một tuần, theo bộ phận một cửa."""

    def parse(vm, r):
        if desk is not None:
            vm.check_desk(r, desk)
        if week:
            return vm.parse_week(week)
        today = dt.datetime.now(zoneinfo.ZoneInfo(r.hotline.timezone)).date()
        return today - dt.timedelta(days=today.weekday())

    async def go(v, r, monday):
        from ivr.records.volunteers import week_label

        rows = await v.roster(monday, desk=desk)
        sunday = monday + dt.timedelta(days=6)
        click.echo(f"Lịch trực tuần {week_label(monday)} ({monday:%d/%m}–{sunday:%d/%m/%Y})")
        current = None
        for sh in rows:
            if sh.desk_code != current:
                current = sh.desk_code
                click.echo(f"{sh.desk_code} — {sh.desk_name}")
            click.echo(_shift_line(sh, v.tz))
        off = sum(1 for sh in rows if sh.day_off)
        click.echo(f"{len(rows)} ca" + (f", {off} ca vào ngày nghỉ" if off else "") + ".")

    _run(go, parse=parse)


@shift.command("cancel")
@click.argument("shift_id", type=int)
def shift_cancel(shift_id: int) -> None:
    """Huỷ một ca chưa có giờ vào (xếp nhầm)."""

    async def go(v, r, _):
        sh = await v.cancel_shift(shift_id)
        click.echo(f"Đã huỷ ca #{sh.id}: {sh.name}, {sh.desk_code}, {sh.day:%d/%m/%Y} "
                   f"{_local(sh.starts_at, v.tz)}–{_local(sh.ends_at, v.tz)}.")

    _run(go)


_at = click.option("--at", metavar='"YYYY-MM-DD HH:MM"', help="Thời điểm, giờ Việt Nam (mặc định: bây giờ).")
_shift_id = click.option("--shift", "shift_id", type=int, metavar="SỐ", help="Số ca (mặc định: ca của ngày đó).")


def _parse_at(phone: str, at: str | None):
    def parse(vm, r):
        return vm.parse_phone(phone), (vm.parse_at(at, r.hotline.timezone) if at else None)

    return parse


@volunteers.command("checkin")
@click.argument("phone")
@_at
@_shift_id
def vol_checkin(phone: str, at: str | None, shift_id: int | None) -> None:
    """Ghi giờ vào ca của đoàn viên."""

    async def go(v, r, p):
        sh = await v.check_in(p[0], p[1], shift_id=shift_id)
        click.echo(f"{sh.name}: vào ca #{sh.id} tại {sh.desk_name} lúc {_local(sh.checkin_at, v.tz, '%H:%M %d/%m/%Y')} "
                   f"(ca {_local(sh.starts_at, v.tz)}–{_local(sh.ends_at, v.tz)}).")

    _run(go, parse=_parse_at(phone, at))


@volunteers.command("checkout")
@click.argument("phone")
@_at
@_shift_id
def vol_checkout(phone: str, at: str | None, shift_id: int | None) -> None:
    """Ghi giờ ra; số giờ trực tính từ giờ vào đến giờ ra."""
    from ivr.records.volunteers import fmt_minutes

    async def go(v, r, p):
        sh = await v.check_out(p[0], p[1], shift_id=shift_id)
        click.echo(f"{sh.name}: ra ca #{sh.id} lúc {_local(sh.checkout_at, v.tz, '%H:%M %d/%m/%Y')}; "
                   f"đã trực {fmt_minutes(sh.served_minutes)} (vào {_local(sh.checkin_at, v.tz)}).")

    _run(go, parse=_parse_at(phone, at))


@volunteers.command("assist")
@click.argument("phone")
@click.option("--kind", required=True, type=click.Choice(AssistKind.values()),
              help="; ".join(f"{k}: {label}" for k, label in AssistKind.labels().items()))
@click.option("--procedure", metavar="TÊN", help="Thủ tục được hỗ trợ (không ghi thông tin cá nhân của người dân).")
@click.option("--case", "case_code", metavar="MÃ", help="Mã phản ánh, nếu việc hỗ trợ dẫn tới một phản ánh.")
@_at
@click.option("--by", help="Người ghi (mặc định: tên đăng nhập).")
def vol_assist(phone, kind, procedure, case_code, at, by) -> None:
    """Ghi một lượt hỗ trợ (mỗi người dân được hỗ trợ là một lượt)."""

    async def go(v, r, p):
        a = await v.assist(p[0], kind, procedure=procedure, case_code=case_code, at=p[1], actor=_actor(by))
        click.echo(f"Đã ghi lượt hỗ trợ #{a.id}: {a.name} tại {a.desk_name}, {AssistKind.labels()[a.kind]}"
                   + (f" — {a.procedure}" if a.procedure else "") + (f" (phản ánh {a.case_code})" if a.case_code else "")
                   + f", lúc {_local(a.at, v.tz, '%H:%M %d/%m/%Y')}.")
        if a.shift_id is None:
            click.echo("Lưu ý: đoàn viên không đang trong ca nào đã vào (ghi tại nơi đăng ký).", err=True)

    _run(go, parse=_parse_at(phone, at))


COMMANDS = [volunteers]
