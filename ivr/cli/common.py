"""What every command group shares: settings, the routing file, and how a command fails."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import sys
import tempfile
import zoneinfo
from pathlib import Path

import click

from ivr.config import routing as rt
from ivr.config.settings import Settings


def settings() -> Settings:
    return Settings.from_env()


def load_routing(path: Path) -> rt.Routing:
    """The validated routing, or every error on stderr and exit 1."""
    try:
        return rt.load(path)
    except rt.RoutingError as e:
        for p in e.errors:
            click.echo(str(p), err=True)
        n = len(e.errors)
        click.echo(f"{path}: {n} lỗi — cấu hình không hợp lệ.", err=True)
        sys.exit(1)


def show_warnings(r: rt.Routing) -> None:
    """What validated but is most likely a mistake, on stderr (``check``, ``apply``)."""
    for w in r.warnings:
        click.echo(f"cảnh báo: {w}", err=True)


def need_database(s: Settings, *, must_exist: bool = True) -> None:
    """Refuse before touching a database that is not there: reading an SQLite file that does not
    exist would create it, empty, and the command would fail on missing tables. ``must_exist``
    False (``db upgrade``, which creates it): only a directory in its place is refused."""
    import sqlalchemy as sa

    try:
        u = sa.engine.make_url(s.database_url)
    except sa.exc.ArgumentError:
        fail(f"TONGDAI_DATABASE_URL không hợp lệ: {s.database_url!r}")
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.database.startswith("file:"):
        return
    p = Path(u.database)
    if p.is_dir():
        fail(f"cơ sở dữ liệu {p} là một thư mục, không phải tệp SQLite.\n"
             "Sửa TONGDAI_DATABASE_URL hoặc chuyển thư mục đó đi, rồi chạy `tongdai db upgrade`.")
    if must_exist and not p.exists():
        fail(f"chưa có cơ sở dữ liệu {p}.\nChạy `tongdai db upgrade` (hoặc `make run`) trước.")


def unwritable(out: Path) -> str | None:
    """Why ``--out`` cannot be written (Vietnamese), or None: a file is created and removed
    beside it, the way the command will write it, before any work is done."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
    except OSError as e:
        return f"--out {out}: không ghi được vào thư mục {out.parent} ({e.strerror or e})"
    os.close(fd)
    os.unlink(name)
    return None


def fail(message: str, code: int = 1) -> None:
    """One line for the operator: exit 1 for a runtime problem, 2 for bad arguments."""
    click.echo(f"lỗi: {message}", err=True)
    sys.exit(code)


def actor(by: str | None) -> str:
    """``--by``, else the login name (the cases service checks it is one line)."""
    if by is not None:
        return by
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without an entry for this uid)
        return f"uid {os.getuid()}"


def fmt_time(t: dt.datetime, tz: str) -> str:
    return t.astimezone(zoneinfo.ZoneInfo(tz)).strftime("%d/%m/%Y %H:%M")
