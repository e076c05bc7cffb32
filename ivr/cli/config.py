"""`tongdai check`, `render`, `extensions`, `hours`, `agencies`: the configuration."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from pathlib import Path

import click

from ivr.cli.common import fail, load_routing, settings, show_warnings
from ivr.config import agencies as agencies_mod
from ivr.config import credentials as secrets_mod
from ivr.config import hours as cal
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.pbx.asterisk import Layout

# ------------------------------------------------------------------------------------- check


@click.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="In cấu hình đã chuẩn hoá dạng JSON (cho script).")
def check(path: Path | None, as_json: bool) -> None:
    """Kiểm tra routing.yaml: báo mọi lỗi kèm dòng và đường dẫn YAML."""
    s = settings()
    path = path or s.routing_path
    r = load_routing(path)
    show_warnings(r)
    if as_json:
        click.echo(json.dumps(r.to_json(), ensure_ascii=False, indent=1))
        return
    click.echo(f"{path}: hợp lệ.")
    click.echo(rt.summary(r))
    st = cal.state(r, s.hours_override_path)
    click.echo(f"Trạng thái giờ làm việc: {'MỞ' if st.open else 'ĐÓNG'} ({st.reason})")
    if st.problem:
        click.echo(f"cảnh báo: {st.problem}", err=True)


# ------------------------------------------------------------------------------------ render


def render_to(s: Settings, r: rt.Routing, out: Path | None) -> tuple[Path, list[str]]:
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


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Thư mục ghi cấu hình (mặc định: của phiên bản Asterisk này).")
def render(out: Path | None) -> None:
    """Sinh toàn bộ cấu hình Asterisk từ routing.yaml."""
    s = settings()
    r = load_routing(s.routing_path)
    out, changed = render_to(s, r, out)
    click.echo(f"Đã ghi cấu hình vào {out}: {len(changed)} tệp thay đổi" + (f" ({', '.join(changed)})" if changed else "") + ".")


# -------------------------------------------------------------------------------- extensions


@click.group()
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
    s = settings()
    r = load_routing(s.routing_path)
    if number not in r.extensions:
        fail(f"không có máy lẻ '{number}' trong {s.routing_path}", 2)
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
    s = settings()
    r = load_routing(s.routing_path)
    fields = ["extension", "name", "agency_code", "agency_name", "sip_server", "sip_port", "transport", "username", "password"]
    w = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for number in r.extensions:
        w.writerow(_credentials(s, r, number))


# ------------------------------------------------------------------------------------- hours


@click.command()
@click.argument("mode", type=click.Choice(["open", "closed", "auto"]))
@click.option("--until", "until", help="Đến lúc nào: HH:MM, YYYY-MM-DD hoặc 'YYYY-MM-DD HH:MM' (giờ Việt Nam).")
def hours(mode: str, until: str | None) -> None:
    """Ép tổng đài mở/đóng (ví dụ trực Tết, nghỉ đột xuất) hoặc trở về theo lịch (auto)."""
    s = settings()
    r = load_routing(s.routing_path)
    now = dt.datetime.now(dt.timezone.utc)
    until_at = None
    if until:
        if mode == "auto":
            fail("--until không dùng với auto", 2)
        try:
            until_at = cal.parse_until(until, now, r.hotline.timezone)
        except ValueError as e:
            fail(str(e), 2)
    cal.write_override(s.hours_override_path, mode, until_at, now)
    st = cal.state(r, s.hours_override_path, now)
    click.echo(f"Tổng đài: {'MỞ' if st.open else 'ĐÓNG'} ({st.reason}).")
    if st.problem:
        click.echo(f"cảnh báo: {st.problem}", err=True)


# ---------------------------------------------------------------------------------- agencies


@click.group()
def agencies() -> None:
    """Danh sách cơ quan, đơn vị."""


@agencies.command("import")
@click.argument("csv_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--province", help="Tên hoặc mã tỉnh, thành phố: nạp các xã, phường hiện nay từ gói vietnam-provinces.")
@click.option("--replace", "replace_all", is_flag=True,
              help="CSV: thay toàn bộ danh sách; --province: thay các đơn vị cấp huyện, xã hiện có (mặc định: gộp theo mã).")
@click.option("--root", help="Mã cơ quan cấp trên cho các đơn vị mới không ghi cấp trên (ví dụ UBND-HG).")
def agencies_import(csv_file: Path | None, province: str | None, replace_all: bool, root: str | None) -> None:
    """Nạp danh sách cơ quan từ CSV (code,name,kind,parent[,station] hoặc dạng mã GSO) hoặc từ --province."""
    s = settings()
    if (csv_file is None) == (province is None):
        fail("cần một tệp CSV hoặc --province (không cả hai)", 2)
    if province is not None:
        from ivr.config import provinces

        try:
            res = provinces.import_province(s.routing_path, province, replace=replace_all, root=root,
                                            usage=provinces.database_usage(s))
        except provinces.UnknownProvince as e:
            fail(f"không có tỉnh, thành phố '{province}'. Gần nhất: {', '.join(e.suggestions)}", 2)
        except provinces.CatalogueError as e:
            fail(str(e))
        except agencies_mod.ImportError_ as e:
            for p in e.problems:
                click.echo(p, err=True)
            sys.exit(1)
        click.echo(provinces.report(res))
        return
    assert csv_file is not None  # exactly one of the two, refused above otherwise
    try:
        r, added, updated = agencies_mod.import_agencies(s.routing_path, csv_file, replace_all=replace_all, root=root)
    except agencies_mod.ImportError_ as e:
        for p in e.problems:
            click.echo(p, err=True)
        click.echo(f"{csv_file}: không nạp được — chưa ghi gì vào {s.routing_path}.", err=True)
        sys.exit(1)
    click.echo(f"Đã nạp {csv_file}: thêm {added}, cập nhật {updated}; nay có {len(r.agencies)} cơ quan, {len(r.extensions)} máy lẻ.")


COMMANDS = [check, render, extensions, hours, agencies]
