"""CLI of the exports, the monthly report and recordings retention.

``tongdai export calls|cases|surveys|assists|shifts …``, ``tongdai report monthly …``,
``tongdai recordings prune …``. Messages for staff are Vietnamese; bad arguments exit 2 and
write nothing.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from ivr.cli.common import fail as _fail
from ivr.cli.common import load_routing, need_database, unwritable
from ivr.config.settings import Settings

# ivr.export (SQLAlchemy, the models) is imported inside the commands that need it, so that
# every other `tongdai` command starts as fast as before.


def _routing(s: Settings):
    return load_routing(s.routing_path)


def _agency_in_log(s: Settings, code: str, table: str) -> bool:
    import sqlalchemy as sa

    from ivr.models import Call, Case, CaseAssignment, VolunteerAssist, VolunteerShift
    from ivr.records import export as ex

    cols = ((VolunteerAssist.desk_code, VolunteerShift.desk_code) if table in ex.VOLUNTEER_TABLES
            else (Call.agency_code, Case.agency_code, CaseAssignment.agency_code))
    for col in cols:
        stmt = sa.select(sa.literal(1)).where(col == code).limit(1)
        for part in ex.iter_batches(s, stmt):
            if part:
                return True
    return False


@click.command("export")
@click.argument("table", metavar="calls|cases|surveys|assists|shifts")
@click.option("--from", "date_from", metavar="NGÀY", help="Từ ngày (YYYY-MM-DD hoặc DD/MM/YYYY), giờ Việt Nam.")
@click.option("--to", "date_to", metavar="NGÀY", help="Đến hết ngày này.")
@click.option("--branch", metavar="D", help="Chỉ một nhánh (phím 1–8).")
@click.option("--agency", metavar="MÃ", help="Chỉ một cơ quan (mã trong routing.yaml hoặc trong nhật ký); "
              "assists, shifts: một bộ phận một cửa, hoặc một huyện với các xã của nó.")
@click.option("--format", "fmt", default="csv", show_default=True, metavar="csv|xlsx|jsonl", help="Định dạng.")
@click.option("--out", type=click.Path(path_type=Path), help="Tệp ghi ra (mặc định: đầu ra chuẩn).")
@click.option("--no-bom", is_flag=True, help="CSV không có BOM UTF-8 (mặc định có, để Excel hiện đúng dấu).")
@click.option("--home-affairs", is_flag=True, help="cases: hiện số của người phản ánh ẩn danh (Sở Nội vụ).")
def export_cmd(table, date_from, date_to, branch, agency, fmt, out, no_bom, home_affairs) -> None:
    """Xuất nhật ký cuộc gọi, phản ánh, khảo sát, lượt hỗ trợ hoặc ca trực của đoàn viên (CSV, XLSX, JSON Lines)."""
    from ivr.records import export as ex

    s = Settings.from_env()
    r = _routing(s)
    try:
        ex.check_format(fmt)
        ex.make_query(table, r, date_from=date_from, date_to=date_to, branch=branch)  # cheap checks first
        if out is None and fmt == "xlsx" and sys.stdout.isatty():
            raise ex.ExportError("không in tệp xlsx ra màn hình: dùng --out TỆP.xlsx hoặc chuyển hướng đầu ra")
        if out is not None and out.is_dir():
            raise ex.ExportError(f"--out {out} là thư mục, cần một tên tệp")
        if out is not None and not out.parent.is_dir():
            raise ex.ExportError(f"--out: thư mục {out.parent} không tồn tại")
        if out is not None and (why := unwritable(out)):
            raise ex.ExportError(why)
        if no_bom and fmt != "csv":
            raise ex.ExportError("--no-bom chỉ dùng với --format csv")
    except ex.ExportError as e:
        _fail(str(e), 2)
    need_database(s)
    try:
        known = [agency] if agency and agency not in r.agencies and _agency_in_log(s, agency, table) else []
        q = ex.make_query(table, r, date_from=date_from, date_to=date_to, branch=branch, agency=agency,
                          known_agencies=known, home_affairs=home_affairs)
    except ex.ExportError as e:
        _fail(str(e), 2)

    show_bar = sys.stderr.isatty() and not (out is None and sys.stdout.isatty())
    stats = ex.ExportStats()
    try:
        if show_bar:
            total = next(iter(ex.iter_batches(s, ex.count_select(q))))[0][0]
            with click.progressbar(length=total, label="Đang xuất", file=sys.stderr, show_pos=True) as bar:
                n = ex.export(s, r, q, fmt, out, bom=not no_bom, stdout=sys.stdout.buffer, progress=bar.update,
                              stats=stats)
        else:
            n = ex.export(s, r, q, fmt, out, bom=not no_bom, stdout=sys.stdout.buffer, stats=stats)
    except ex.ExportError as e:
        _fail(str(e))
    except BrokenPipeError:  # `| head`: the reader is gone, nothing more to say
        sys.stderr.close()
        sys.exit(0)
    if stats.truncated_cells:
        limit = f"{ex.XLSX_MAX_CHARS:,}".replace(",", ".")
        click.echo(f"cảnh báo: {stats.truncated_cells} ô dài quá {limit} ký tự (giới hạn của Excel) đã bị cắt, "
                   f"cuối ô có dấu «{ex.XLSX_CUT_MARK}»; xuất --format csv hoặc jsonl để có đủ nội dung.", err=True)
    if out is not None:
        click.echo(f"Đã xuất {n} dòng vào {out}.", err=True)


@click.group("report")
def report_group() -> None:
    """Báo cáo định kỳ."""


@report_group.command("monthly")
@click.option("--month", required=True, metavar="YYYY-MM", help="Tháng báo cáo, ví dụ 2026-10.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Tệp .html, .pdf, hoặc .json (mọi số liệu, cho hệ thống khác).")
def report_monthly(month: str, out: Path) -> None:
    """Báo cáo tháng gửi UBND tỉnh (HTML hoặc PDF, biểu đồ nhúng sẵn; JSON: số liệu)."""
    from ivr.records import db as db_mod
    from ivr.records import report as rp

    s = Settings.from_env()
    r = _routing(s)
    try:
        m = rp.Month.parse(month, r.hotline.timezone)
        rp.check_out(out)
        if out.is_dir() or not out.parent.is_dir():
            raise rp.ReportError(f"--out {out}: cần một tên tệp trong thư mục đã có")
        if why := unwritable(out):
            raise rp.ReportError(why)
        if m.start >= dt.datetime.now(dt.timezone.utc):
            raise rp.ReportError(f"tháng {m.label} chưa bắt đầu")
    except rp.ReportError as e:
        _fail(str(e), 2)
    need_database(s)
    try:
        rp.write(db_mod.engine(s), r, m, out)
    except rp.ReportError as e:
        _fail(str(e))
    click.echo(f"Đã lập báo cáo tháng {m.label}: {out}", err=True)


@click.group("recordings")
def recordings_group() -> None:
    """Bản ghi âm: phản ánh và cuộc gọi."""


@recordings_group.command("prune")
@click.option("--days", type=int, default=None, metavar="N",
              help="Giữ bản ghi âm phản ánh N ngày (mặc định: TONGDAI_RECORDINGS_KEEP_DAYS, nếu không có thì 365).")
@click.option("--as-of", "as_of", metavar="NGÀY",
              help="Tính tuổi bản ghi như thể hôm nay là NGÀY (YYYY-MM-DD hoặc DD/MM/YYYY); dùng với --dry-run để xem trước.")
@click.option("--dry-run", is_flag=True, help="Chỉ liệt kê, không xoá.")
def recordings_prune(days: int | None, as_of: str | None, dry_run: bool) -> None:
    """Xoá bản ghi âm quá hạn lưu giữ: phản ánh cũ hơn N ngày, cuộc gọi cũ hơn recording.retention_days
    (routing.yaml). Giữ bản ghi của phản ánh chưa đóng hoặc đã chuyển Tổ Kiểm tra."""
    from ivr.records import db as db_mod
    from ivr.records import export as ex
    from ivr.records import retention

    s = Settings.from_env()
    r = _routing(s)
    try:
        keep = retention.keep_days(days, s.env)
        now = None
        if as_of is not None:
            now = ex.local_day_start(ex.parse_date(as_of, "--as-of"), r.hotline.timezone)
    except (retention.RetentionError, ex.ExportError) as e:
        _fail(str(e), 2)
    need_database(s)
    call_days = r.recording.retention_days
    res = retention.prune(s, db_mod.engine(s), keep, call_days=call_days, dry_run=dry_run, now=now)
    verb = "Sẽ xoá" if dry_run else "Đã xoá"
    for p in res.deleted + res.calls_deleted:
        click.echo(f"{verb}: {p}")
    for p, why in res.failed:
        click.echo(f"KHÔNG xoá được {p}: {why}", err=True)
    click.echo(f"{verb} {len(res.deleted)} bản ghi âm phản ánh cũ hơn {keep} ngày và {len(res.calls_deleted)} bản ghi âm "
               f"cuộc gọi cũ hơn {call_days} ngày ({res.freed // 1024} KiB); giữ lại {len(res.kept_open)} bản ghi phản ánh "
               f"và {len(res.calls_kept)} bản ghi cuộc gọi của phản ánh chưa đóng hoặc đã chuyển Tổ Kiểm tra.", err=True)
    if res.failed:
        sys.exit(1)


COMMANDS = [export_cmd, report_group, recordings_group]
