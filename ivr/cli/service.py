"""`tongdai db upgrade`, `serve` and `run` (what `make run` runs)."""

from __future__ import annotations

import sys

import click

from ivr.cli import errors
from ivr.cli.common import fail, load_routing, need_database, settings
from ivr.cli.pbx import build_prompts, start_asterisk
from ivr.config.settings import Settings
from ivr.pbx.asterisk import PbxError

# ---------------------------------------------------------------------------------------- db


@click.group()
def db() -> None:
    """Cơ sở dữ liệu."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Áp dụng các migration (Alembic) lên cơ sở dữ liệu đã cấu hình."""
    s = settings()
    _upgrade(s)
    click.echo("Cơ sở dữ liệu đã ở phiên bản mới nhất.")


def _upgrade(s: Settings) -> None:
    from ivr.records import db as db_mod

    need_database(s, must_exist=False)  # aiosqlite, failing to open a directory, leaves a thread behind
    try:
        db_mod.upgrade(s)
    except Exception as e:  # the operator needs the reason, not a traceback
        if errors.debug_wanted():
            raise
        found = errors.known(e)  # else Alembic's own words, e.g. a revision this version does not know
        why = found[0] if found else (str(e).strip().splitlines() or [type(e).__name__])[0]
        fail(f"không nâng cấp được cơ sở dữ liệu: {why}")


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

    import asyncio
    import signal

    from ivr import server, supervise
    from ivr.pbx.asterisk import Layout

    s = settings()
    r = load_routing(s.routing_path)
    click.echo(f"TONGDAI_HOME={s.home}")
    _upgrade(s)
    layout = Layout.for_settings(s)
    try:
        layout.install(log=click.echo)
        build_prompts(s, layout)  # the hold music must be there when Asterisk boots
        layout = start_asterisk(s, r, replace=True)
    except (PbxError, RuntimeError) as e:
        fail(str(e))
    log_path = server.setup_logging(s)
    hotline = r.hotline.number
    first = r.branches[0].targets[0]
    host, port = s.web_addr
    console_url = f"http://{host}:{port}/"
    up: set[str] = set()

    def ready(child: supervise.Child, starts: int) -> None:
        if starts > 1:
            what = "bộ điều khiển" if child.name == "controller" else "bảng điều khiển web"
            click.echo(f"ready: {what} đã khởi động lại (lần {starts - 1}).")
            return
        up.add(child.name)
        if up != {"controller", "web"}:
            return  # the ready line waits for both
        click.echo(
            f"ready: tổng đài {hotline} đang nhận cuộc gọi (SIP {s.bind}:{s.sip_port}/udp, nhật ký {log_path}); "
            f"bảng điều khiển web {console_url}\n"
            f"  Tạo tài khoản cán bộ:          .venv/bin/tongdai users add TÊN --role officer --agency MÃ --password-stdin\n"
            f"  Gọi thử từ một cửa sổ khác:   .venv/bin/tongdai call --digits 4\n"
            f"  (lệnh này giả lập điện thoại bàn của nhánh 4 nếu chưa có máy nào đăng ký)\n"
            f"  Hoặc gọi {hotline} từ trung kế {', '.join(s.trunk_match)} (không cần mật khẩu).\n"
            f"  Đăng ký một điện thoại bàn:   .venv/bin/tongdai extensions credentials {first}\n"
            f"      máy chủ {s.bind}:{s.sip_port} UDP, tên đăng nhập = số máy lẻ, mật khẩu do lệnh trên in ra\n"
            f"  Bộ điều khiển và bảng điều khiển web được giám sát: nếu dừng bất thường, chúng được khởi động lại ngay.\n"
            f"  Ctrl-C để dừng."
        )

    # The controller and the console are children restarted if they die; Asterisk stays up
    # meanwhile (held callers wait for the new controller). The console is a process of its own:
    # pages and reports never run on the controller's loop.
    children = [
        supervise.Child("controller", supervise.python("serve", "--grace", f"{grace:g}"),
                        env=supervise.env_with(), ready="controller ready", on_ready=ready),
        supervise.Child("web", supervise.python("web"), env=supervise.env_with(), ready="ready:", on_ready=ready),
    ]
    sup = supervise.Supervisor(children, grace=grace + 10)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(sup.run())
        await stop.wait()
        click.echo("Đang dừng: các cuộc gọi đang diễn ra được kết thúc trước…")
        await sup.stop()
        await task

    try:
        asyncio.run(main())
    finally:
        layout.stop()
        click.echo("Đã dừng tổng đài, bảng điều khiển web và Asterisk.")
    sys.exit(0)


COMMANDS = [db, serve, run]
