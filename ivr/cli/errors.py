"""What the operator reads when a command cannot go on: one or two Vietnamese lines, never a
traceback (``TONGDAI_DEBUG=1`` or ``tongdai -v …`` shows it, for developers).

:func:`explain` maps the exceptions a command may meet and cannot do anything about — the
database (missing, not migrated, corrupt, locked, read-only, unreachable), files (permissions,
a full disk, not UTF-8, not YAML, nested too deep), numbers and dates out of range, the state
files — to a message and an exit code: 1 for a runtime problem, 2 for bad arguments (README).
Anything else is still told in one line, with how to get the details.
"""

from __future__ import annotations

import errno
import os
import traceback

EXIT_RUNTIME = 1
EXIT_ARGS = 2


def debug_wanted(verbose: bool = False) -> bool:
    return verbose or os.environ.get("TONGDAI_DEBUG", "").strip() not in ("", "0", "false", "no")


def _database() -> tuple[str, str | None]:
    """How to name the configured database in a message (never its password), and the SQLite
    file if it is one."""
    try:
        from sqlalchemy.engine import make_url

        from ivr.config.settings import Settings

        u = make_url(Settings.from_env().database_url)
        if u.get_backend_name() == "sqlite":
            return (u.database or ":memory:"), u.database
        return u.render_as_string(hide_password=True), None
    except BaseException:  # noqa: BLE001 - only for the wording of a message
        return "đã cấu hình (TONGDAI_DATABASE_URL)", None


def _database_error(e: BaseException) -> str:
    where, sqlite_file = _database()
    orig = getattr(e, "orig", None) or e
    text = f"{type(orig).__name__}: {orig}".lower()
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if sqlite_file and os.path.isdir(sqlite_file):
        return (f"cơ sở dữ liệu {where} là một thư mục, không phải tệp SQLite.\n"
                "Sửa TONGDAI_DATABASE_URL hoặc chuyển thư mục đó đi, rồi chạy `tongdai db upgrade`.")
    if any(k in text for k in ("no such table", "undefinedtable", "no such column", "undefinedcolumn")) or (
            "does not exist" in text and ("relation" in text or "column" in text)):
        return (f"cơ sở dữ liệu {where} chưa có bảng hoặc chưa ở phiên bản mới nhất.\n"
                "Chạy `tongdai db upgrade` rồi thử lại.")
    if any(k in text for k in ("file is not a database", "malformed", "not a database", "file is encrypted")):
        return (f"tệp cơ sở dữ liệu {where} hỏng hoặc không phải SQLite.\n"
                "Khôi phục từ bản sao lưu; hoặc chuyển tệp hỏng đi rồi chạy `tongdai db upgrade` để tạo mới.")
    if "locked" in text or "lock timeout" in text or "could not obtain lock" in text:
        return (f"cơ sở dữ liệu {where} đang bị một tiến trình khác khoá.\n"
                "Thử lại sau ít phút; nếu vẫn vậy, tìm tiến trình đang giữ nó (ví dụ một bản sao lưu đang chạy).")
    if "readonly" in text or "read-only" in text or "read only" in text:
        return (f"cơ sở dữ liệu {where} chỉ cho đọc, không ghi được.\n"
                "Kiểm tra quyền ghi của tệp và thư mục chứa nó (hoặc quyền của người dùng PostgreSQL).")
    if "unable to open database" in text:
        return (f"không mở được cơ sở dữ liệu {where}.\n"
                "Kiểm tra đường dẫn trong TONGDAI_DATABASE_URL, thư mục chứa tệp và quyền truy cập.")
    if any(k in text for k in ("connect", "refused", "timeout", "timed out", "name or service", "authentication",
                               "no route", "unreachable", "closed the connection")):
        return (f"không kết nối được cơ sở dữ liệu {where}: {first}.\n"
                "Kiểm tra máy chủ cơ sở dữ liệu đang chạy và TONGDAI_DATABASE_URL.")
    return f"lỗi cơ sở dữ liệu {where}: {first}."


def _raised_by_database_driver(e: BaseException) -> bool:
    return any(f.f_globals.get("__name__", "").startswith(("asyncpg", "aiosqlite", "sqlalchemy", "psycopg"))
               for f, _ in traceback.walk_tb(e.__traceback__))


def _os_error(e: OSError) -> str:
    name = e.filename if e.filename is not None else ""
    what = f"{name}: " if name else ""
    reason = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        return f"hết chỗ trống trên đĩa ({what}{reason}): giải phóng dung lượng rồi thử lại."
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"không có quyền truy cập {what}{reason}.\nKiểm tra quyền của tệp, thư mục, hoặc chạy với người dùng phù hợp."
    if e.errno == errno.EROFS:
        return f"hệ thống tệp chỉ cho đọc: {what}{reason}."
    if isinstance(e, ConnectionError) or e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                                                       errno.ETIMEDOUT):
        return f"không kết nối được: {reason}.\nKiểm tra dịch vụ cần kết nối (cơ sở dữ liệu, Asterisk) có đang chạy không."
    return f"không đọc/ghi được {what}{reason}."


def explain(e: BaseException) -> tuple[str, int]:
    """The operator's message for ``e`` (without the ``lỗi: `` prefix) and the exit code."""
    found = known(e)
    if found is not None:
        return found
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return (f"lỗi không lường trước ({type(e).__name__}{': ' + first if first else ''}).\n"
            "Chạy lại với TONGDAI_DEBUG=1 để xem chi tiết và gửi cho nhóm phát triển."), EXIT_RUNTIME


def known(e: BaseException) -> tuple[str, int] | None:
    """:func:`explain` for the exceptions we can name (``e`` or one it was raised from), else None."""
    import yaml
    from sqlalchemy import exc as sa_exc

    from ivr.config import credentials, hours
    from ivr.config import routing as rt
    from ivr.dialplan.render import UnsafeValue

    chain: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in chain and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for x in chain:
        if isinstance(x, (credentials.SecretsError, hours.OverrideError)):
            return str(x), EXIT_RUNTIME
        if isinstance(x, rt.RoutingError):
            return "\n".join(str(p) for p in x.errors[:20]), EXIT_RUNTIME
        if isinstance(x, UnsafeValue):
            return (f"không ghi cấu hình Asterisk: {x}.\n"
                    "Sửa giá trị đó (routing.yaml, biến môi trường TONGDAI_* hoặc secrets.json) rồi chạy lại."), EXIT_RUNTIME
        if isinstance(x, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
            return f"TONGDAI_DATABASE_URL không hợp lệ: {x}.", EXIT_RUNTIME
        if isinstance(x, (sa_exc.DBAPIError, sa_exc.DatabaseError)) or type(x).__module__.startswith(("sqlite3", "asyncpg")):
            return _database_error(x), EXIT_RUNTIME
        if isinstance(x, UnicodeDecodeError):
            return (f"tệp không phải văn bản UTF-8 (byte 0x{x.object[x.start]:02x} ở vị trí {x.start}).\n"
                    "Lưu lại tệp dưới dạng UTF-8 (trong Excel: 'CSV UTF-8') rồi thử lại."), EXIT_RUNTIME
        if isinstance(x, yaml.YAMLError):
            mark = getattr(x, "problem_mark", None)
            at = f" (dòng {mark.line + 1})" if mark is not None else ""
            return f"tệp YAML không hợp lệ{at}: {getattr(x, 'problem', None) or x}.", EXIT_RUNTIME
        if isinstance(x, RecursionError):
            return "dữ liệu lồng nhau quá sâu, không xử lý được (tệp có đúng loại không?).", EXIT_RUNTIME
        if isinstance(x, MemoryError):
            return "không đủ bộ nhớ: dữ liệu vào quá lớn.", EXIT_RUNTIME
        if isinstance(x, OverflowError):
            return "một ngày, giờ hoặc số vượt quá khoảng xử lý được: hãy dùng giá trị nhỏ hơn.", EXIT_ARGS
        if isinstance(x, OSError) and _raised_by_database_driver(x):  # asyncpg's connect does not wrap them
            return _database_error(x), EXIT_RUNTIME
        if isinstance(x, OSError):
            return _os_error(x), EXIT_RUNTIME
    return None
