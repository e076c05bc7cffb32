"""`tongdai sandbox`, `prompts`, `call`, `status`, `apply`: Asterisk and the running system."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ivr.cli.common import fail, load_routing, settings, show_warnings
from ivr.cli.config import render_to
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.pbx.asterisk import Layout, PbxError

# ----------------------------------------------------------------------------------- sandbox


@click.group()
def sandbox() -> None:
    """Asterisk: cài (sandbox Debian sid), khởi động, dừng, xem trạng thái."""


@sandbox.command("install")
def sandbox_install() -> None:
    """Tạo sandbox Asterisk 22 (debootstrap Debian sid) nếu chưa có."""
    s = settings()
    layout = Layout.for_settings(s)
    try:
        layout.install(log=click.echo)
    except PbxError as e:
        fail(str(e))
    click.echo(f"Asterisk sẵn sàng ({s.asterisk_mode}: {layout.chroot or s.asterisk_bin}).")


def start_asterisk(s: Settings, r: rt.Routing, *, replace: bool = False) -> Layout:
    """Render and start this instance's Asterisk. A leftover of this instance is stopped (every
    one with ``replace``: `tongdai run`); ports held by anything else are refused (PbxError)."""
    from ivr.pbx import preflight

    layout = Layout.for_settings(s)
    layout.install(log=click.echo)
    preflight.before_start(layout, replace=replace, say=click.echo)
    render_to(s, r, None)
    pid = layout.start()
    click.echo(f"Asterisk đang chạy (PID {pid}), SIP {s.bind}:{s.sip_port}/udp, ARI {s.bind}:{s.ari_port}, AMI {s.bind}:{s.ami_port}.")
    return layout


@sandbox.command("start")
def sandbox_start() -> None:
    """Sinh cấu hình và khởi động Asterisk, chờ đến khi khởi động xong."""
    s = settings()
    r = load_routing(s.routing_path)
    try:
        start_asterisk(s, r)
    except PbxError as e:
        fail(str(e))


@sandbox.command("stop")
def sandbox_stop() -> None:
    """Dừng Asterisk của phiên bản này (theo PID)."""
    layout = Layout.for_settings(settings())
    click.echo("Đã dừng Asterisk." if layout.stop() else "Asterisk không chạy.")


@sandbox.command("status")
def sandbox_status() -> None:
    """Asterisk có đang chạy không, phiên bản nào."""
    s = settings()
    layout = Layout.for_settings(s)
    pid = layout.pid()
    if pid is None:
        click.echo(f"Asterisk: không chạy ({s.asterisk_mode}; đã cài: {'có' if layout.installed() else 'chưa'}).")
        sys.exit(3)
    click.echo(f"Asterisk: đang chạy, PID {pid}, {layout.version() or 'không rõ phiên bản'} ({s.asterisk_mode}).")


# ------------------------------------------------------------------------------------ prompts


def build_prompts(s: Settings, layout: Layout | None = None, force: bool = False):
    from ivr.pbx import sounds as prompts_mod

    layout = layout or Layout.for_settings(s)
    layout.prepare()
    texts = Path(s.env.get("TONGDAI_PROMPTS") or prompts_mod.TEXTS)
    report = prompts_mod.build(layout.host(layout.ast("data/sounds/vi")), texts_path=texts,
                              recordings=prompts_mod.recordings_dir(s.routing_path), force=force)
    prompts_mod.build_moh(layout.host(layout.ast("data/moh")))  # the branch queue's hold music
    layout.chown()
    return report


@click.group()
def prompts() -> None:
    """Lời nhắc tiếng Việt."""


@prompts.command("build")
@click.option("--force", is_flag=True, help="Sinh lại tất cả, kể cả lời nhắc không đổi.")
def prompts_build(force: bool) -> None:
    """Sinh lời nhắc (espeak-ng + sox) hoặc dùng bản ghi âm trong prompts/recordings/vi/."""
    try:
        r = build_prompts(settings(), force=force)
    except (RuntimeError, ValueError) as e:
        fail(str(e))
    click.echo(f"Lời nhắc: {len(r.generated)} sinh mới, {len(r.recorded)} từ bản ghi âm, {r.unchanged} không đổi.")


# -------------------------------------------------------------------------------------- call


@click.command("call")
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

    s = settings()
    r = load_routing(s.routing_path)
    try:
        lines, ok = asyncio.run(testcall.run(s, r, digits=digits, hotline=hotline or r.hotline.number,
                                             caller=caller_number, talk=talk, simulate_desk=not no_desk))
    except testcall.TestCallError as e:
        fail(str(e))
    for ln in lines:
        click.echo(ln)
    sys.exit(0 if ok else 1)


# ------------------------------------------------------------------------------ status, apply


@click.command()
@click.option("--json", "as_json", is_flag=True, help="In dạng JSON (cho script).")
def status(as_json: bool) -> None:
    """Tình trạng: Asterisk, ARI/AMI, cuộc gọi đang diễn ra, máy bàn đã đăng ký theo cơ quan."""
    import asyncio

    from ivr import status as status_mod

    s = settings()
    r = load_routing(s.routing_path)
    st = asyncio.run(status_mod.gather(s, r))
    if as_json:
        click.echo(json.dumps(st, ensure_ascii=False, indent=1))
    else:
        click.echo(status_mod.render(st, r, r.hotline.timezone))
    sys.exit(0 if st.get("asterisk", {}).get("version") else 3)


@click.command("apply")
@click.option("--yes", "-y", is_flag=True, help="Không hỏi lại trước khi ghi.")
@click.option("--dry-run", is_flag=True, help="Chỉ kiểm tra và in khác biệt, không ghi gì.")
def apply_cmd(yes: bool, dry_run: bool) -> None:
    """Áp dụng routing.yaml: kiểm tra → sinh cấu hình → so sánh → ghi → nạp lại Asterisk và bộ điều khiển."""
    import asyncio

    from ivr.pbx import apply as ap

    s = settings()
    r = load_routing(s.routing_path)  # an invalid file stops here: nothing written, nothing reloaded
    show_warnings(r)
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
            fail("cần --yes khi không chạy trên terminal", 2)
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
            fail(str(e))
    try:
        res = asyncio.run(ap.reload_controller(s, s.routing_path))
    except ConnectionError:
        click.echo("Bộ điều khiển không chạy; routing mới sẽ dùng khi khởi động.")
        return
    if not res.get("ok"):
        for error in res.get("errors", []):
            click.echo(error, err=True)
        fail("bộ điều khiển từ chối routing mới; vẫn dùng routing cũ")
    click.echo(f"Bộ điều khiển đã nạp routing mới ({res['branches']} nhánh, {res['extensions']} máy lẻ); "
               "cuộc gọi đang diễn ra vẫn theo routing cũ.")


COMMANDS = [sandbox, prompts, call_cmd, status, apply_cmd]
