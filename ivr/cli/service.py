"""`tongdai db upgrade`, `serve` and `run` (what `make run` runs)."""

from __future__ import annotations

import sys

import click

from ivr.cli.common import fail, load_routing, settings
from ivr.cli.pbx import build_prompts, start_asterisk
from ivr.pbx.asterisk import PbxError

# ---------------------------------------------------------------------------------------- db


@click.group()
def db() -> None:
    """Cơ sở dữ liệu."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Áp dụng các migration (Alembic) lên cơ sở dữ liệu đã cấu hình."""
    from ivr.records import db as db_mod

    s = settings()
    try:
        db_mod.upgrade(s)
    except Exception as e:  # the operator needs the reason, not a traceback
        fail(f"không nâng cấp được cơ sở dữ liệu: {e}")
    click.echo("Cơ sở dữ liệu đã ở phiên bản mới nhất.")


# ------------------------------------------------------------------------------------- serve


@click.command()
@click.option("--grace", default=30.0, show_default=True, help="Giây chờ các cuộc gọi đang diễn ra kết thúc khi dừng.")
def serve(grace: float) -> None:
    """Chạy bộ điều khiển tổng đài (ARI). Asterisk phải đang chạy."""

    from ivr import server

    s = settings()
    server.setup_logging(s)
    try:
        code = server.run(server.serve(s, grace=grace))
    except RuntimeError as e:
        fail(str(e))
    sys.exit(code)


# --------------------------------------------------------------------------------------- run


@click.command()
@click.option("--grace", default=30.0, show_default=True)
def run(grace: float) -> None:
    """Chạy tất cả (dùng bởi `make run`): migration, cấu hình, lời nhắc, Asterisk, bộ điều khiển, bảng điều khiển web."""

    from ivr import server
    from ivr.records import db as db_mod
    from ivr.web.process import ConsoleProcess

    s = settings()
    r = load_routing(s.routing_path)
    click.echo(f"TONGDAI_HOME={s.home}")
    try:
        db_mod.upgrade(s)
    except Exception as e:
        fail(f"không nâng cấp được cơ sở dữ liệu: {e}")
    try:
        layout = start_asterisk(s, r)
        build_prompts(s, layout)
    except (PbxError, RuntimeError) as e:
        fail(str(e))
    log_path = server.setup_logging(s)
    hotline = r.hotline.number
    first = r.branches[0].targets[0]
    # The console is a process of its own (pages never run on the controller's loop); it starts
    # first so that a port already taken stops everything before a call is accepted.
    console = ConsoleProcess(s, echo=click.echo)
    try:
        console_url = console.start()
    except RuntimeError as e:
        layout.stop()
        fail(str(e))

    def ready(_service) -> None:
        click.echo(
            f"ready: tổng đài {hotline} đang nhận cuộc gọi (SIP {s.bind}:{s.sip_port}/udp, nhật ký {log_path}); "
            f"bảng điều khiển web {console_url}\n"
            f"  Tạo tài khoản cán bộ:          .venv/bin/tongdai users add TÊN --role officer --agency MÃ --password-stdin\n"
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
        console.stop()
        layout.stop()
        click.echo("Đã dừng tổng đài, bảng điều khiển web và Asterisk.")
    sys.exit(code)


COMMANDS = [db, serve, run]
