"""`tongdai users …`: the staff console's accounts.

Passwords are read from standard input (``--password-stdin``), never from the command line (it
would stay in the shell's history and in ``ps``). Messages are Vietnamese.
"""

from __future__ import annotations

import asyncio
import sys
import zoneinfo

import click

from ivr.cli.common import fail as _fail
from ivr.cli.common import load_routing, need_database, settings
from ivr.vocab import Role


def _run(fn):
    """Run ``fn(accounts, routing)`` against the configured database; AccountError -> exit 1."""
    from ivr.records import db
    from ivr.web.accounts import AccountError, Accounts

    s = settings()
    r = load_routing(s.routing_path)
    need_database(s)  # reading a missing SQLite file would create it empty

    async def go():
        engine = db.engine(s)
        try:
            return await fn(Accounts(engine, lambda: r), r)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except AccountError as e:
        _fail(str(e))


def _read_password(from_stdin: bool) -> str:
    if not from_stdin:
        _fail("cần --password-stdin: mật khẩu được đọc từ đầu vào chuẩn, không ghi trên dòng lệnh", 2)
    if sys.stdin.isatty():
        return click.prompt("Mật khẩu", hide_input=True, confirmation_prompt="Nhập lại mật khẩu", err=True)
    text = sys.stdin.readline()
    password = text[:-1] if text.endswith("\n") else text
    password = password[:-1] if password.endswith("\r") else password
    if not password:
        _fail("không đọc được mật khẩu từ đầu vào chuẩn (dòng đầu tiên trống)", 2)
    return password


@click.group("users")
def users() -> None:
    """Tài khoản bảng điều khiển web: thêm, liệt kê, khoá, đổi mật khẩu."""


@users.command("add")
@click.argument("login")
@click.option("--role", required=True, metavar="ROLE", help="officer | supervisor | inspector | operator | youth")
@click.option("--agency", metavar="MÃ", help="Mã cơ quan (bắt buộc với officer).")
@click.option("--name", metavar="TÊN", help="Họ tên, chức vụ.")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="Đọc mật khẩu từ đầu vào chuẩn.")
def users_add(login, role, agency, name, password_stdin) -> None:
    """Thêm tài khoản."""
    password = _read_password(password_stdin)

    async def go(accounts, r):
        a = await accounts.add(login, role.strip().lower(), password, agency=agency, name=name)
        where = f", {r.agencies[a.agency_code].name} ({a.agency_code})" if a.agency_code else ""
        click.echo(f"Đã thêm tài khoản {a.login}: {Role.labels()[a.role]}{where}.")

    _run(go)


@users.command("list")
def users_list() -> None:
    """Danh sách tài khoản."""

    async def go(accounts, r):
        rows = await accounts.list()
        zone = zoneinfo.ZoneInfo(r.hotline.timezone)
        for a in rows:
            state = "ĐÃ KHOÁ" if a.disabled else "hoạt động"
            click.echo(f"{a.login:<20} {a.role:<10} {Role.labels()[a.role]:<24} {a.agency_code or '-':<10} {state:<9} "
                       f"tạo {a.created_at.astimezone(zone):%d/%m/%Y}  {a.name or ''}".rstrip())
        click.echo(f"{len(rows)} tài khoản.")

    _run(go)


@users.command("disable")
@click.argument("login")
def users_disable(login) -> None:
    """Khoá tài khoản (đăng xuất ngay mọi phiên đang mở)."""

    async def go(accounts, r):
        a = await accounts.disable(login)
        click.echo(f"Đã khoá tài khoản {a.login}; mọi phiên đăng nhập của tài khoản đã kết thúc.")

    _run(go)


@users.command("enable")
@click.argument("login")
def users_enable(login) -> None:
    """Mở khoá tài khoản đã khoá bằng `users disable`."""

    async def go(accounts, r):
        a = await accounts.enable(login)
        click.echo(f"Đã mở khoá tài khoản {a.login}.")

    _run(go)


@users.command("password")
@click.argument("login")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="Đọc mật khẩu mới từ đầu vào chuẩn.")
def users_password(login, password_stdin) -> None:
    """Đặt mật khẩu mới (mọi phiên đăng nhập của tài khoản kết thúc)."""
    password = _read_password(password_stdin)

    async def go(accounts, r):
        a = await accounts.set_password(login, password)
        click.echo(f"Đã đổi mật khẩu của {a.login}; cần đăng nhập lại.")

    _run(go)


COMMANDS = [users]
