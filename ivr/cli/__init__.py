"""`tongdai`: the operator's command line (also `python -m ivr`).

What operators and staff read is Vietnamese; logs and code stay English.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from pathlib import Path

import click

from ivr.config import agencies as agencies_mod
from ivr.config import hours as cal
from ivr.config import routing as rt
from ivr.config import credentials as secrets_mod
from ivr.pbx.asterisk import Layout, PbxError
from ivr.config.settings import Settings


def _settings() -> Settings:
    return Settings.from_env()


def _load_routing(path: Path) -> rt.Routing:
    try:
        return rt.load(path)
    except rt.RoutingError as e:
        for p in e.errors:
            click.echo(str(p), err=True)
        n = len(e.errors)
        click.echo(f"{path}: {n} lỗi — cấu hình không hợp lệ.", err=True)
        sys.exit(1)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"lỗi: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Tổng đài hỗ trợ công tác CCHC — công cụ cho người vận hành."""


# ------------------------------------------------------------------------------------- check


@main.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="In cấu hình đã chuẩn hoá dạng JSON (cho script).")
def check(path: Path | None, as_json: bool) -> None:
    """Kiểm tra routing.yaml: báo mọi lỗi kèm dòng và đường dẫn YAML."""
    s = _settings()
    path = path or s.routing_path
    r = _load_routing(path)
    if as_json:
        click.echo(json.dumps(r.to_json(), ensure_ascii=False, indent=1))
        return
    click.echo(f"{path}: hợp lệ.")
    click.echo(rt.summary(r))
    st = cal.state(r, s.hours_override_path)
    click.echo(f"Trạng thái giờ làm việc: {'MỞ' if st.open else 'ĐÓNG'} ({st.reason})")


# ------------------------------------------------------------------------------------ render


def _render_to(s: Settings, r: rt.Routing, out: Path | None) -> tuple[Path, list[str]]:
    from ivr.dialplan import render as rd

    layout = Layout.for_settings(s)
    sec = secrets_mod.load(s.secrets_path, list(r.extensions))
    files = rd.render(r, s, sec, layout)
    if out is None:
        layout.prepare()
        out = layout.etc
        changed = rd.write(files, out)
        layout.chown()
    else:
        changed = rd.write(files, out)
    return out, changed


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Thư mục ghi cấu hình (mặc định: của phiên bản Asterisk này).")
def render(out: Path | None) -> None:
    """Sinh toàn bộ cấu hình Asterisk từ routing.yaml."""
    s = _settings()
    r = _load_routing(s.routing_path)
    out, changed = _render_to(s, r, out)
    click.echo(f"Đã ghi cấu hình vào {out}: {len(changed)} tệp thay đổi" + (f" ({', '.join(changed)})" if changed else "") + ".")


# -------------------------------------------------------------------------------- extensions


@main.group()
def extensions() -> None:
    """Máy lẻ: thông tin cấu hình điện thoại bàn."""


def _credentials(s: Settings, r: rt.Routing, number: str) -> dict:
    sec = secrets_mod.load(s.secrets_path, list(r.extensions))
    ext = r.extensions[number]
    agency = r.agencies[ext.agency]
    return {
        "extension": number,
        "name": ext.name,
        "agency_code": agency.code,
        "agency_name": agency.name,
        "sip_server": s.bind,
        "sip_port": s.sip_port,
        "transport": "udp",
        "username": number,
        "password": sec.sip_password(number),
    }


@extensions.command("credentials")
@click.argument("number")
@click.option("--json", "as_json", is_flag=True)
def ext_credentials(number: str, as_json: bool) -> None:
    """Thông tin đăng ký SIP của một máy lẻ (máy chủ, tên đăng nhập, mật khẩu)."""
    s = _settings()
    r = _load_routing(s.routing_path)
    if number not in r.extensions:
        _fail(f"không có máy lẻ '{number}' trong {s.routing_path}", 2)
    c = _credentials(s, r, number)
    if as_json:
        click.echo(json.dumps(c, ensure_ascii=False))
        return
    click.echo(
        f"Máy lẻ:        {c['extension']} — {c['name']}\n"
        f"Cơ quan:       {c['agency_name']} ({c['agency_code']})\n"
        f"Máy chủ SIP:   {c['sip_server']}:{c['sip_port']} ({c['transport'].upper()})\n"
        f"Tên đăng nhập: {c['username']}\n"
        f"Mật khẩu:      {c['password']}"
    )


@extensions.command("sheet")
@click.option("--format", "fmt", type=click.Choice(["csv"]), default="csv", show_default=True)
def ext_sheet(fmt: str) -> None:
    """Bảng thông tin đăng ký của mọi máy lẻ, cho bộ phận CNTT."""
    s = _settings()
    r = _load_routing(s.routing_path)
    fields = ["extension", "name", "agency_code", "agency_name", "sip_server", "sip_port", "transport", "username", "password"]
    w = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for number in r.extensions:
        w.writerow(_credentials(s, r, number))


# ----------------------------------------------------------------------------------- sandbox


@main.group()
def sandbox() -> None:
    """Asterisk: cài (sandbox Debian sid), khởi động, dừng, xem trạng thái."""


@sandbox.command("install")
def sandbox_install() -> None:
    """Tạo sandbox Asterisk 22 (debootstrap Debian sid) nếu chưa có."""
    s = _settings()
    layout = Layout.for_settings(s)
    try:
        layout.install(log=click.echo)
    except PbxError as e:
        _fail(str(e))
    click.echo(f"Asterisk sẵn sàng ({s.asterisk_mode}: {layout.chroot or s.asterisk_bin}).")


def start_asterisk(s: Settings, r: rt.Routing) -> Layout:
    layout = Layout.for_settings(s)
    layout.install(log=click.echo)
    _render_to(s, r, None)
    pid = layout.start()
    click.echo(f"Asterisk đang chạy (PID {pid}), SIP {s.bind}:{s.sip_port}/udp, ARI {s.bind}:{s.ari_port}, AMI {s.bind}:{s.ami_port}.")
    return layout


@sandbox.command("start")
def sandbox_start() -> None:
    """Sinh cấu hình và khởi động Asterisk, chờ đến khi khởi động xong."""
    s = _settings()
    r = _load_routing(s.routing_path)
    try:
        start_asterisk(s, r)
    except PbxError as e:
        _fail(str(e))


@sandbox.command("stop")
def sandbox_stop() -> None:
    """Dừng Asterisk của phiên bản này (theo PID)."""
    layout = Layout.for_settings(_settings())
    click.echo("Đã dừng Asterisk." if layout.stop() else "Asterisk không chạy.")


@sandbox.command("status")
def sandbox_status() -> None:
    """Asterisk có đang chạy không, phiên bản nào."""
    s = _settings()
    layout = Layout.for_settings(s)
    pid = layout.pid()
    if pid is None:
        click.echo(f"Asterisk: không chạy ({s.asterisk_mode}; đã cài: {'có' if layout.installed() else 'chưa'}).")
        sys.exit(3)
    click.echo(f"Asterisk: đang chạy, PID {pid}, {layout.version() or 'không rõ phiên bản'} ({s.asterisk_mode}).")


# ---------------------------------------------------------------------------------------- db


@main.group()
def db() -> None:
    """Cơ sở dữ liệu."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Áp dụng các migration (Alembic) lên cơ sở dữ liệu đã cấu hình."""
    from ivr.records import db as db_mod

    s = _settings()
    try:
        db_mod.upgrade(s)
    except Exception as e:  # the operator needs the reason, not a traceback
        _fail(f"không nâng cấp được cơ sở dữ liệu: {e}")
    click.echo("Cơ sở dữ liệu đã ở phiên bản mới nhất.")


# ------------------------------------------------------------------------------------- hours


@main.command()
@click.argument("mode", type=click.Choice(["open", "closed", "auto"]))
@click.option("--until", "until", help="Đến lúc nào: HH:MM, YYYY-MM-DD hoặc 'YYYY-MM-DD HH:MM' (giờ Việt Nam).")
def hours(mode: str, until: str | None) -> None:
    """Ép tổng đài mở/đóng (ví dụ trực Tết, nghỉ đột xuất) hoặc trở về theo lịch (auto)."""
    s = _settings()
    r = _load_routing(s.routing_path)
    now = dt.datetime.now(dt.timezone.utc)
    until_at = None
    if until:
        if mode == "auto":
            _fail("--until không dùng với auto", 2)
        try:
            until_at = cal.parse_until(until, now, r.hotline.timezone)
        except ValueError as e:
            _fail(str(e), 2)
    cal.write_override(s.hours_override_path, mode, until_at, now)
    st = cal.state(r, s.hours_override_path, now)
    click.echo(f"Tổng đài: {'MỞ' if st.open else 'ĐÓNG'} ({st.reason}).")


# ---------------------------------------------------------------------------------- agencies


@main.group()
def agencies() -> None:
    """Danh sách cơ quan, đơn vị."""


@agencies.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", "replace_all", is_flag=True, help="Thay toàn bộ danh sách (mặc định: gộp theo mã).")
@click.option("--root", help="Mã cơ quan cấp trên cho các đơn vị mới không ghi cấp trên (ví dụ UBND-HG).")
def agencies_import(csv_file: Path, replace_all: bool, root: str | None) -> None:
    """Nạp danh sách cơ quan từ CSV (code,name,kind,parent[,station] hoặc dạng mã GSO)."""
    s = _settings()
    try:
        r, added, updated = agencies_mod.import_agencies(s.routing_path, csv_file, replace_all=replace_all, root=root)
    except agencies_mod.ImportError_ as e:
        for p in e.problems:
            click.echo(p, err=True)
        sys.exit(1)
    click.echo(f"Đã nạp {csv_file}: thêm {added}, cập nhật {updated}; nay có {len(r.agencies)} cơ quan, {len(r.extensions)} máy lẻ.")


# -------------------------------------------------------------------------------------- cases


def _actor(by: str | None) -> str:
    import getpass

    return by or getpass.getuser()


def _cases_call(fn):
    """Run ``fn(cases, routing, settings)`` against the configured database; CaseError -> exit 1."""
    import asyncio

    from ivr.records import cases as cases_mod
    from ivr.records import db as db_mod

    s = _settings()
    r = _load_routing(s.routing_path)

    async def go():
        engine = db_mod.engine(s)
        try:
            return await fn(cases_mod.Cases(engine, r), r, s)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except cases_mod.CaseError as e:
        _fail(str(e))


def _fmt_time(t: dt.datetime, tz: str) -> str:
    import zoneinfo

    return t.astimezone(zoneinfo.ZoneInfo(tz)).strftime("%d/%m/%Y %H:%M")


def _caller_shown(case, home_affairs: bool) -> str:
    if case.anonymous and not home_affairs:
        return "ẩn danh"
    return (case.caller or "-") + (" (ẩn danh với cơ quan)" if case.anonymous else "")


@main.group()
def cases() -> None:
    """Phản ánh, kiến nghị: danh sách, xem, phân loại, giao, trả lời, đóng."""


@cases.command("list")
@click.option("--status", type=click.Choice(["received", "classified", "assigned", "in_progress", "answered", "closed", "reopened"]))
@click.option("--agency", help="Mã cơ quan (được giao hoặc sở hữu nhánh).")
@click.option("--overdue", is_flag=True, help="Chỉ những phản ánh quá hạn.")
@click.option("--inspection", is_flag=True, help="Chỉ những phản ánh chuyển Tổ Kiểm tra đột xuất.")
@click.option("--home-affairs", is_flag=True, help="Xem như Sở Nội vụ (hiện số của người gọi ẩn danh).")
def cases_list(status, agency, overdue, inspection, home_affairs) -> None:
    """Danh sách phản ánh."""
    from ivr.records import cases as cm

    async def go(c, r, s):
        if agency and agency not in r.agencies:
            raise cm.CaseError(f"không có cơ quan mã '{agency}'")
        rows = await c.list(status=status, agency=agency, overdue=overdue, inspection=inspection)
        tz = r.hotline.timezone
        for case in rows:
            flags = ("QUÁ HẠN " if cm.is_overdue(case) else "") + ("[KIỂM TRA] " if case.inspection else "")
            assigned = ",".join(a.agency_code for a in case.assignments) or (case.agency_code or "-")
            click.echo(f"{case.code}  {_fmt_time(case.received_at, tz)}  {cm.STATUS_VI[case.status]:<14} "
                       f"{cm.CATEGORY_VI[case.category]:<20} {assigned:<12} hạn {_fmt_time(case.deadline_at, tz)}  "
                       f"{flags}{_caller_shown(case, home_affairs)}")
        click.echo(f"{len(rows)} phản ánh.")

    _cases_call(go)


@cases.command("show")
@click.argument("code")
@click.option("--home-affairs", is_flag=True, help="Xem như Sở Nội vụ (hiện số của người gọi ẩn danh).")
def cases_show(code, home_affairs) -> None:
    """Chi tiết một phản ánh: diễn biến, bản ghi âm."""
    from ivr.records import cases as cm

    async def go(c, r, s):
        case = await c.get(code)
        tz = r.hotline.timezone
        lines = [
            f"Phản ánh {case.code} — {cm.STATUS_VI[case.status]}" + (f" ({cm.REASON_VI[case.closed_reason]})" if case.closed_reason else ""),
            f"  Kênh: {case.channel}; người phản ánh: {_caller_shown(case, home_affairs)}",
            f"  Nhánh: {case.branch_digit or '-'} {case.branch_name or ''}; cơ quan: {case.agency_name or '-'}",
            f"  Loại: {cm.CATEGORY_VI[case.category]}; nhận lúc {_fmt_time(case.received_at, tz)}; "
            f"hạn trả lời {_fmt_time(case.deadline_at, tz)}" + (" — QUÁ HẠN" if cm.is_overdue(case) else ""),
            "  Giao cho: " + (", ".join(f"{a.agency_name} ({a.agency_code})" for a in case.assignments) or "chưa giao"),
        ]
        if case.recording:
            lines.append(f"  Bản ghi âm: {s.home / case.recording}" + (f" ({case.recording_seconds:.0f} giây)" if case.recording_seconds else ""))
        if case.summary:
            lines.append(f"  Nội dung: {case.summary}")
        if case.answer:
            lines.append(f"  Trả lời: {case.answer}")
        if case.inspection:
            lines.append(f"  Chuyển Tổ Kiểm tra đột xuất: {case.inspection_reason}")
        lines.append("  Diễn biến:")
        for e in case.history:
            move = f" {e.from_status or ''}→{e.to_status}" if e.to_status else ""
            lines.append(f"    {_fmt_time(e.at, tz)}  {e.actor}: {e.action}{move}" + (f" — {e.note}" if e.note else ""))
        click.echo("\n".join(lines))

    _cases_call(go)


def _case_action(action: str, code: str, by: str | None, **kw) -> None:
    from ivr.records import cases as cm

    async def go(c, r, s):
        case = await c.act(code, action, actor=_actor(by), **kw)
        click.echo(f"Phản ánh {case.code}: {cm.STATUS_VI[case.status]}.")
        if action == "answer" and case.channel == "zalo":
            click.echo("Câu trả lời đã được xếp hàng gửi cho người dân qua Zalo (`tongdai zalo outbox`).")

    _cases_call(go)


_by = click.option("--by", help="Người thực hiện (mặc định: tên đăng nhập).")
_note = click.option("--note", help="Ghi chú.")


@cases.command("classify")
@click.argument("code")
@click.option("--category", required=True, type=click.Choice(["procedure", "regulation", "misconduct", "question", "other"]))
@_note
@_by
def cases_classify(code, category, note, by) -> None:
    """Phân loại (tính lại hạn trả lời theo loại)."""
    _case_action("classify", code, by, category=category, note=note)


@cases.command("assign")
@click.argument("code")
@click.option("--agency", "agencies", multiple=True, required=True, help="Mã cơ quan; lặp lại để giao nhiều cơ quan.")
@_note
@_by
def cases_assign(code, agencies, note, by) -> None:
    """Giao cho một hoặc nhiều cơ quan xử lý."""
    _case_action("assign", code, by, agencies=list(agencies), note=note)


@cases.command("start")
@click.argument("code")
@_note
@_by
def cases_start(code, note, by) -> None:
    """Bắt đầu xử lý."""
    _case_action("start", code, by, note=note)


@cases.command("answer")
@click.argument("code")
@click.option("--text", required=True, help="Nội dung trả lời.")
@_by
def cases_answer(code, text, by) -> None:
    """Trả lời phản ánh."""
    _case_action("answer", code, by, text=text)


@cases.command("close")
@click.argument("code")
@click.option("--reason", required=True, type=click.Choice(["resolved", "transferred", "duplicate", "invalid", "no_further_action"]))
@_note
@_by
def cases_close(code, reason, note, by) -> None:
    """Đóng phản ánh."""
    _case_action("close", code, by, reason=reason, note=note)


@cases.command("reopen")
@click.argument("code")
@click.option("--note", required=True, help="Lý do mở lại.")
@_by
def cases_reopen(code, note, by) -> None:
    """Mở lại phản ánh đã trả lời hoặc đã đóng."""
    _case_action("reopen", code, by, note=note)


@cases.command("flag-inspection")
@click.argument("code")
@click.option("--reason", required=True, help="Vì sao cần Tổ Kiểm tra đột xuất xem xét.")
@_by
def cases_flag(code, reason, by) -> None:
    """Chuyển phản ánh cho Tổ Kiểm tra đột xuất."""

    async def go(c, r, s):
        case = await c.flag_inspection(code, actor=_actor(by), reason=reason)
        click.echo(f"Phản ánh {case.code}: đã chuyển Tổ Kiểm tra đột xuất.")

    _cases_call(go)


# ------------------------------------------------------------------------------------ prompts


def build_prompts(s: Settings, layout: Layout | None = None, force: bool = False):
    from ivr.pbx import sounds as prompts_mod

    layout = layout or Layout.for_settings(s)
    layout.prepare()
    texts = Path(s.env.get("TONGDAI_PROMPTS") or prompts_mod.TEXTS)
    report = prompts_mod.build(layout.host(layout.ast("data/sounds/vi")), texts_path=texts,
                              recordings=prompts_mod.recordings_dir(s.routing_path), force=force)
    layout.chown()
    return report


@main.group()
def prompts() -> None:
    """Lời nhắc tiếng Việt."""


@prompts.command("build")
@click.option("--force", is_flag=True, help="Sinh lại tất cả, kể cả lời nhắc không đổi.")
def prompts_build(force: bool) -> None:
    """Sinh lời nhắc (espeak-ng + sox) hoặc dùng bản ghi âm trong prompts/recordings/vi/."""
    try:
        r = build_prompts(_settings(), force=force)
    except (RuntimeError, ValueError) as e:
        _fail(str(e))
    click.echo(f"Lời nhắc: {len(r.generated)} sinh mới, {len(r.recorded)} từ bản ghi âm, {r.unchanged} không đổi.")


# ------------------------------------------------------------------------------------- serve


@main.command()
@click.option("--grace", default=30.0, show_default=True, help="Giây chờ các cuộc gọi đang diễn ra kết thúc khi dừng.")
def serve(grace: float) -> None:
    """Chạy bộ điều khiển tổng đài (ARI). Asterisk phải đang chạy."""

    from ivr import server

    s = _settings()
    server.setup_logging(s)
    try:
        code = server.run(server.serve(s, grace=grace))
    except RuntimeError as e:
        _fail(str(e))
    sys.exit(code)


# -------------------------------------------------------------------------------------- call


@main.command("call")
@click.option("--digits", default="4", show_default=True, help="Phím bấm sau khi nghe lời chào.")
@click.option("--hotline", default=None, help="Số gọi (mặc định: số tổng đài).")
@click.option("--caller", "caller_number", default=None,
              help="Số người gọi (mặc định: một số thử 0909xxxxxx ngẫu nhiên, để giới hạn số cuộc gọi/phút không chặn).")
@click.option("--talk", default=3.0, show_default=True, help="Giây đàm thoại trước khi người gọi gác máy.")
@click.option("--no-desk", is_flag=True, help="Không giả lập điện thoại bàn (đã có máy thật đăng ký).")
def call_cmd(digits: str, hotline: str | None, caller_number: str | None, talk: float, no_desk: bool) -> None:
    """Gọi thử một cuộc thật (SIPp) vào hệ thống đang chạy và in kết quả."""
    import asyncio
    import random

    caller_number = caller_number or "0909" + "".join(random.choice("0123456789") for _ in range(6))

    from ivr.pbx import testcall

    s = _settings()
    r = _load_routing(s.routing_path)
    try:
        lines, ok = asyncio.run(testcall.run(s, r, digits=digits, hotline=hotline or r.hotline.number,
                                             caller=caller_number, talk=talk, simulate_desk=not no_desk))
    except testcall.TestCallError as e:
        _fail(str(e))
    for ln in lines:
        click.echo(ln)
    sys.exit(0 if ok else 1)


# ------------------------------------------------------------------------------ status, apply


@main.command()
@click.option("--json", "as_json", is_flag=True, help="In dạng JSON (cho script).")
def status(as_json: bool) -> None:
    """Tình trạng: Asterisk, ARI/AMI, cuộc gọi đang diễn ra, máy bàn đã đăng ký theo cơ quan."""
    import asyncio

    from ivr import status as status_mod

    s = _settings()
    r = _load_routing(s.routing_path)
    st = asyncio.run(status_mod.gather(s, r))
    if as_json:
        click.echo(json.dumps(st, ensure_ascii=False, indent=1))
    else:
        click.echo(status_mod.render(st, r, r.hotline.timezone))
    sys.exit(0 if st.get("asterisk", {}).get("version") else 3)


@main.command("apply")
@click.option("--yes", "-y", is_flag=True, help="Không hỏi lại trước khi ghi.")
@click.option("--dry-run", is_flag=True, help="Chỉ kiểm tra và in khác biệt, không ghi gì.")
def apply_cmd(yes: bool, dry_run: bool) -> None:
    """Áp dụng routing.yaml: kiểm tra → sinh cấu hình → so sánh → ghi → nạp lại Asterisk và bộ điều khiển."""
    import asyncio

    from ivr.pbx import apply as ap

    s = _settings()
    r = _load_routing(s.routing_path)  # an invalid file stops here: nothing written, nothing reloaded
    p = ap.plan(s, r)
    if not p.changed:
        click.echo("Cấu hình Asterisk không thay đổi.")
    else:
        click.echo(p.diff)
        click.echo(f"Tệp thay đổi: {', '.join(p.changed)}")
    if dry_run:
        return
    if p.changed and not yes:
        if not sys.stdin.isatty():
            _fail("cần --yes khi không chạy trên terminal", 2)
        click.confirm("Ghi và nạp lại?", abort=True)
    if p.changed:
        ap.write(s, p)
        click.echo(f"Đã ghi {len(p.changed)} tệp vào {Layout.for_settings(s).etc}.")
        if p.restart_needed:
            click.echo(f"Cần khởi động lại Asterisk để áp dụng: {', '.join(p.restart_needed)}")
        try:
            for line in asyncio.run(ap.reload_asterisk(s, r, p.reloads)):
                click.echo(f"  Asterisk {line}")
        except ConnectionError as e:
            click.echo(f"Asterisk không chạy hoặc AMI không kết nối được ({e}); cấu hình sẽ dùng khi khởi động.")
        except RuntimeError as e:
            _fail(str(e))
    try:
        res = asyncio.run(ap.reload_controller(s, s.routing_path))
    except ConnectionError:
        click.echo("Bộ điều khiển không chạy; routing mới sẽ dùng khi khởi động.")
        return
    if not res.get("ok"):
        for e in res.get("errors", []):
            click.echo(e, err=True)
        _fail("bộ điều khiển từ chối routing mới; vẫn dùng routing cũ")
    click.echo(f"Bộ điều khiển đã nạp routing mới ({res['branches']} nhánh, {res['extensions']} máy lẻ); "
               "cuộc gọi đang diễn ra vẫn theo routing cũ.")


# --------------------------------------------------------------------------------------- run


@main.command()
@click.option("--grace", default=30.0, show_default=True)
def run(grace: float) -> None:
    """Chạy tất cả (dùng bởi `make run`): migration, cấu hình, lời nhắc, Asterisk, bộ điều khiển."""

    from ivr.records import db as db_mod
    from ivr import server

    s = _settings()
    r = _load_routing(s.routing_path)
    click.echo(f"TONGDAI_HOME={s.home}")
    try:
        db_mod.upgrade(s)
    except Exception as e:
        _fail(f"không nâng cấp được cơ sở dữ liệu: {e}")
    try:
        layout = start_asterisk(s, r)
        build_prompts(s, layout)
    except (PbxError, RuntimeError) as e:
        _fail(str(e))
    log_path = server.setup_logging(s)
    hotline = r.hotline.number
    first = r.branches[0].targets[0]

    def ready(_service) -> None:
        click.echo(
            f"ready: tổng đài {hotline} đang nhận cuộc gọi (SIP {s.bind}:{s.sip_port}/udp, nhật ký {log_path})\n"
            f"  Gọi thử từ một cửa sổ khác:   .venv/bin/tongdai call --digits 4\n"
            f"  (lệnh này giả lập điện thoại bàn của nhánh 4 nếu chưa có máy nào đăng ký)\n"
            f"  Hoặc gọi {hotline} từ trung kế {', '.join(s.trunk_match)} (không cần mật khẩu).\n"
            f"  Đăng ký một điện thoại bàn:   .venv/bin/tongdai extensions credentials {first}\n"
            f"      máy chủ {s.bind}:{s.sip_port} UDP, tên đăng nhập = số máy lẻ, mật khẩu do lệnh trên in ra\n"
            f"  Ctrl-C để dừng."
        )

    code = 1
    try:
        code = server.run(server.serve(s, grace=grace, on_ready=ready))
    except RuntimeError as e:
        click.echo(f"lỗi: {e}", err=True)
    finally:
        layout.stop()
        click.echo("Đã dừng tổng đài và Asterisk.")
    sys.exit(code)


# ------------------------------------------------------------------------- zalo and surveys

from ivr.cli.zalo import register as _register_zalo  # noqa: E402

_register_zalo(main)

# ------------------------------------------------------------------- exports, monthly report

from ivr.cli.records import register as _register_export  # noqa: E402

_register_export(main)
