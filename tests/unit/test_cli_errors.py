"""No command of the CLI ends in a traceback: every command against every broken database.

Each case below breaks the database one way (garbage, truncated, empty, a directory, no tables,
a fresh home before `db upgrade`, locked, read-only; on PostgreSQL: unreachable, not migrated,
read-only). Every command runs against each, from a fresh copy, and must end with the exit code
the README documents (0, or 1 for a runtime problem) and, when it fails, one or two Vietnamese
lines naming the problem, never a traceback. Commands that need a running Asterisk are listed
apart (``NEEDS_PBX``) and the test checks that the table and that list cover every command.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from sqlalchemy.orm import Session

from ivr.cli import main
from ivr.config.settings import Settings
from ivr.models import Case
from ivr.records import db
from tests.paths import REPO_ROOT

ROUTING = {
    "version": 1,
    "hotline": {"number": "1022"},
    "branches": [{"digit": 1, "name": "Nội vụ", "agency": "SNV", "targets": ["2101"]}],
    "extensions": [{"number": "2101", "agency": "SNV", "name": "Đầu mối"}],
    "agencies": [{"code": "SNV", "name": "Sở Nội vụ", "kind": "department", "station": "3001"},
                 {"code": "TTPV", "name": "Trung tâm Phục vụ hành chính công", "kind": "center", "station": "3002"}],
}
OLD = dt.datetime(2020, 1, 5, 3, tzinfo=dt.timezone.utc)
RECORDING = "recordings/2020/01/old.wav"

# (arguments, kind): "none" does not touch the database; "read" reads it; "write" writes it;
# "refused" reads it, then the case's state refuses the action (exit 1 with the reason).
COMMANDS = [
    (["check"], "none"),
    (["render", "--out", "{tmp}/etc"], "none"),
    (["extensions", "credentials", "2101"], "none"),
    (["extensions", "sheet"], "none"),
    (["hours", "closed", "--until", "18:00"], "none"),
    (["agencies", "import", "{tmp}/agencies.csv"], "none"),
    (["apply", "--dry-run"], "none"),
    (["zalo", "status"], "none"),  # Zalo off: says so without the database
    (["db", "upgrade"], "upgrade"),
    (["cases", "list"], "read"),
    (["cases", "show", "123456"], "read"),
    (["cases", "classify", "123456", "--category", "question"], "write"),
    (["cases", "assign", "123456", "--agency", "SNV"], "refused"),
    (["cases", "start", "123456"], "refused"),
    (["cases", "answer", "123456", "--text", "Đã trả lời"], "refused"),
    (["cases", "close", "123456", "--reason", "duplicate"], "write"),
    (["cases", "reopen", "123456", "--note", "sai"], "refused"),
    (["cases", "flag-inspection", "123456", "--reason", "kiểm tra"], "write"),
    (["cases", "note", "123456", "--text", "đã gọi lại"], "write"),
    (["export", "calls", "--out", "{tmp}/calls.csv"], "read"),
    (["export", "cases", "--format", "xlsx", "--out", "{tmp}/cases.xlsx"], "read"),
    (["export", "surveys", "--format", "jsonl", "--out", "{tmp}/s.jsonl"], "read"),
    (["report", "monthly", "--month", "2026-10", "--out", "{tmp}/r.html"], "read"),
    (["recordings", "prune", "--dry-run"], "read"),
    (["recordings", "prune"], "write"),
    (["surveys", "import", "{tmp}/people.csv"], "write"),
    (["surveys", "send"], "refused"),  # Zalo off: refused after the database is reached
    (["surveys", "list"], "read"),
    (["surveys", "report", "--month", "2026-10"], "read"),
    (["zalo", "outbox"], "read"),
    (["volunteers", "import", "{tmp}/volunteers.csv"], "write"),
    (["volunteers", "list"], "read"),
    (["volunteers", "shift", "add", "--volunteer", "0909000222", "--date", "2026-12-10", "--from", "08:00",
      "--to", "11:00"], "refused"),  # nobody with that number: refused after reading
    (["volunteers", "shift", "list", "--week", "2026-W50"], "read"),
    (["volunteers", "shift", "cancel", "1"], "refused"),
    (["volunteers", "checkin", "0909000222"], "refused"),
    (["volunteers", "checkout", "0909000222"], "refused"),
    (["volunteers", "assist", "0909000222", "--kind", "guidance"], "refused"),
    (["users", "list"], "read"),
    (["users", "disable", "nobody"], "refused"),
    (["users", "enable", "nobody"], "refused"),
]
# Commands that start or talk to Asterisk or run a server (the controller, the console): their own
# tests (e2e); and the two that read a password from standard input (tests/unit/test_users.py).
NEEDS_PBX = {"sandbox install", "sandbox start", "sandbox stop", "sandbox status", "prompts build", "call", "status",
             "serve", "run", "web", "users add", "users password",
             "cluster up", "cluster status", "cluster down", "cluster restart", "cluster apply"}

# case -> (what the message says, read-only?)
CASES = {
    "garbage": "hỏng hoặc không phải SQLite",
    "truncated": "hỏng hoặc không phải SQLite",
    "empty": "chưa có bảng",
    "directory": "là một thư mục",
    "no tables": "chưa có bảng",
    "fresh home": "chưa có cơ sở dữ liệu",
    "locked": "đang bị một tiến trình khác khoá",
    "read-only": "chỉ cho đọc",
    "pg unreachable": "không kết nối được cơ sở dữ liệu",
    "pg not migrated": "chưa có bảng",
    "pg read-only": "chỉ cho đọc",
}


def _expected(kind: str, case: str) -> int:
    if kind == "none":
        return 0
    if kind == "upgrade":
        # Creates what is missing; on a read-only database already at the latest version, nothing to do.
        return 0 if case in ("empty", "no tables", "fresh home", "pg not migrated", "read-only", "pg read-only") else 1
    if case.endswith("read-only"):
        return 0 if kind == "read" else 1
    return 1


def _seed_sync(sync_url: str) -> None:
    """A received case to act on, and a closed one whose recording is old enough to prune."""
    eng = sa.create_engine(sync_url)
    with Session(eng) as s, s.begin():
        s.add(Case(code="123456", channel="phone", caller="0909", anonymous=False, category="other",
                   received_at=OLD, deadline_at=OLD, status="received"))
        s.add(Case(code="234567", channel="phone", caller="0908", anonymous=False, category="other",
                   received_at=OLD, deadline_at=OLD, status="closed", closed_reason="duplicate", recording=RECORDING))
    eng.dispose()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> bytes:
    """A migrated SQLite database with two cases, as bytes (each test writes its own copy)."""
    home = tmp_path_factory.mktemp("migrated")
    s = Settings.from_env({"TONGDAI_HOME": str(home), "PATH": os.environ.get("PATH", "")})
    db.upgrade(s)
    _seed_sync(f"sqlite:///{home / 'tongdai.db'}")
    assert not (home / "tongdai.db-wal").exists()
    return (home / "tongdai.db").read_bytes()


@pytest.fixture(scope="module")
def pg_migrated(request):
    """A migrated PostgreSQL database with the same two cases, used as a template."""
    pg = request.getfixturevalue("postgres")
    name = pg.create_database("tmpl")
    s = Settings.from_env({"TONGDAI_HOME": "/nonexistent", "TONGDAI_DATABASE_URL": pg.url(name)})
    db.upgrade(s)
    cols = "code, channel, caller, anonymous, category, received_at, deadline_at, status, closed_reason, recording, inspection"
    pg.psql(f"INSERT INTO cases ({cols}) VALUES "
            f"('123456','phone','0909',false,'other','{OLD.isoformat()}','{OLD.isoformat()}','received',NULL,NULL,false),"
            f"('234567','phone','0908',false,'other','{OLD.isoformat()}','{OLD.isoformat()}','closed','duplicate','{RECORDING}',false)",
            db=name)
    return pg, name


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database(case: str, home: Path, request, migrated: bytes, shared: dict) -> tuple[str, object]:
    """The TONGDAI_DATABASE_URL of a broken database, and what must stay alive while it is used.
    A PostgreSQL database is made once per case: no command but `db upgrade` (run last) can
    change one that is not migrated or read-only."""
    if case in shared:
        return shared[case], None
    path = home / "tongdai.db"
    url = f"sqlite+aiosqlite:///{path}"
    keep = None
    if case == "garbage":
        path.write_bytes(b"this is not an SQLite database at all\n" * 200)
    elif case == "truncated":
        path.write_bytes(migrated[: len(migrated) // 2])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "directory":
        path.mkdir()
    elif case == "no tables":
        with sqlite3.connect(path) as c:
            c.execute("CREATE TABLE notes (x)")
    elif case == "fresh home":
        pass
    elif case == "locked":
        path.write_bytes(migrated)
        keep = sqlite3.connect(path, isolation_level=None)
        keep.execute("PRAGMA locking_mode=EXCLUSIVE")
        keep.execute("BEGIN EXCLUSIVE")
        keep.execute("UPDATE cases SET summary = 'locked' WHERE code = '123456'")
        url += "?timeout=0.2"
    elif case == "read-only":
        path.write_bytes(migrated)
        url = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    elif case == "pg unreachable":
        url = f"postgresql+asyncpg://tongdai:secret@127.0.0.1:{_closed_port()}/tongdai"
    elif case == "pg not migrated":
        pg = request.getfixturevalue("postgres")
        url = pg.url(pg.create_database("fresh"))
    elif case == "pg read-only":
        pg, template = request.getfixturevalue("pg_migrated")
        name = pg.create_database("ro")
        pg.psql(f'DROP DATABASE "{name}"')
        pg.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        pg.psql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        url = pg.url(name)
    else:  # pragma: no cover
        raise AssertionError(case)
    if case.startswith("pg"):
        shared[case] = url
    return url, keep


def _prepare(tmp: Path) -> Path:
    home = tmp / "home"
    (home / "recordings/2020/01").mkdir(parents=True)
    rec = home / RECORDING
    rec.write_bytes(b"RIFF")
    os.utime(rec, (OLD.timestamp(), OLD.timestamp()))
    (tmp / "routing.yaml").write_text(yaml.safe_dump(ROUTING, allow_unicode=True), encoding="utf-8")
    (tmp / "agencies.csv").write_text("code,name,kind,parent\nSTP,Sở Tư pháp,department,\n", encoding="utf-8")
    (tmp / "volunteers.csv").write_text("name,phone,desk,unit\nNguyễn Văn An,0909000111,TTPV,Chi đoàn\n", encoding="utf-8")
    (tmp / "people.csv").write_text("phone,name,procedure,office,completed_at\n"
                                    "0909000111,Nguyễn Văn A,Cấp giấy phép,Sở Nội vụ,2026-10-01\n", encoding="utf-8")
    return home


def _all_commands(group: click.Group = main, prefix: str = "") -> set[str]:
    out = set()
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out |= _all_commands(cmd, f"{prefix}{name} ")
        else:
            out.add(f"{prefix}{name}")
    return out


def _command(args: list[str]) -> str:
    """The command a row of the table runs ("volunteers shift add")."""
    every = _all_commands()
    return next(" ".join(args[:n]) for n in (3, 2, 1) if " ".join(args[:n]) in every)


def test_the_table_covers_every_command():
    assert {_command(args) for args, _ in COMMANDS} | NEEDS_PBX == _all_commands()


@pytest.mark.parametrize("case", list(CASES))
def test_every_command_on_a_broken_database(tmp_path, request, migrated, case):
    failures = []
    shared: dict = {}
    last = sorted(COMMANDS, key=lambda c: c[1] == "upgrade")  # stable: the table's order, upgrade last
    for i, (args, kind) in enumerate(last):
        tmp = tmp_path / str(i)
        home = _prepare(tmp)
        url, keep = _database(case, home, request, migrated, shared)
        env = {"TONGDAI_HOME": str(home), "TONGDAI_ROUTING": str(tmp / "routing.yaml"), "TONGDAI_DATABASE_URL": url,
               "TONGDAI_ASTERISK": "sandbox", "TONGDAI_DEBUG": ""}
        try:
            res = CliRunner().invoke(main, [a.format(tmp=tmp) for a in args], env=env)
        finally:
            if keep is not None:
                keep.close()
        want = _expected(kind, case)
        err = res.stderr
        problems = []
        if res.exit_code != want:
            problems.append(f"exit {res.exit_code}, expected {want}")
        if "Traceback" in res.output or not (res.exception is None or isinstance(res.exception, SystemExit)):
            problems.append(f"traceback / {res.exception!r}")
        if want == 1 and kind != "refused":
            tail = err[err.find("lỗi: "):] if "lỗi: " in err else ""
            if not tail or len(tail.strip().splitlines()) > 2 or CASES[case] not in tail:
                problems.append(f"message {tail!r} lacks {CASES[case]!r}")
        if case == "fresh home" and (home / "tongdai.db").exists() and kind != "upgrade":
            problems.append("created an empty database")
        if problems:
            failures.append(f"{' '.join(args)}: {'; '.join(problems)}\n    stdout: {res.stdout[-300:]!r}\n    stderr: {err[-500:]!r}")
    assert not failures, f"{case}:\n" + "\n".join(failures)


def test_a_real_process_prints_no_traceback_and_debug_shows_it(tmp_path):
    home = _prepare(tmp_path)
    (home / "tongdai.db").write_bytes(b"garbage" * 1000)
    env = dict(os.environ, TONGDAI_HOME=str(home), TONGDAI_ROUTING=str(tmp_path / "routing.yaml"),
               TONGDAI_DATABASE_URL=f"sqlite+aiosqlite:///{home / 'tongdai.db'}", PYTHONPATH=str(REPO_ROOT))
    env.pop("TONGDAI_DEBUG", None)
    p = subprocess.run([sys.executable, "-m", "ivr", "cases", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("lỗi: tệp cơ sở dữ liệu") and len(p.stderr.splitlines()) == 2, p.stderr
    # A database path that is a directory: aiosqlite's worker thread once printed its own traceback
    # after the command had failed.
    (home / "tongdai.db").unlink()
    (home / "tongdai.db").mkdir()
    for args in (["db", "upgrade"], ["cases", "list"], ["export", "calls"]):
        p = subprocess.run([sys.executable, "-m", "ivr", *args], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and "là một thư mục" in p.stderr and len(p.stderr.splitlines()) == 2, (args, p.stderr)
    (home / "tongdai.db").rmdir()
    (home / "tongdai.db").write_bytes(b"garbage" * 1000)
    for debug_env, args in (({"TONGDAI_DEBUG": "1"}, ["cases", "list"]), ({}, ["-v", "cases", "list"])):
        p = subprocess.run([sys.executable, "-m", "ivr", *args], env={**env, **debug_env}, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 1 and "Traceback" in p.stderr and "file is not a database" in p.stderr


BAD_ARGUMENTS = [
    (["export", "calls", "--to", "9999-12-31"], "--to '9999-12-31': năm phải từ 1900 đến 9998"),
    (["export", "calls", "--from", "0001-01-01"], "--from '0001-01-01': năm phải từ 1900 đến 9998"),
    (["export", "cases", "--from", "01/01/0001", "--out", "{tmp}/c.csv"], "năm phải từ 1900 đến 9998"),
    (["export", "calls", "--out", "/proc/tongdai.csv"], "--out /proc/tongdai.csv: không ghi được vào thư mục /proc"),
    (["export", "calls", "--format", "xlsx", "--out", "/sys/tongdai.xlsx"], "không ghi được vào thư mục /sys"),
    (["report", "monthly", "--month", "0001-01", "--out", "{tmp}/r.html"], "--month '0001-01': năm phải từ 1900"),
    (["report", "monthly", "--month", "9999-12", "--out", "{tmp}/r.pdf"], "năm phải từ 1900 đến 9998"),
    (["report", "monthly", "--month", "2026-10", "--out", "/proc/r.html"], "không ghi được vào thư mục /proc"),
    (["recordings", "prune", "--days", "1000000000"], "số ngày lưu giữ tối đa 36500"),
    (["recordings", "prune", "--days", "99999999999999999999999"], "số ngày lưu giữ tối đa 36500"),
    (["surveys", "report", "--month", "0001-01"], "năm phải từ 1900 đến 9998"),
    (["hours", "closed", "--until", "9999-12-31T23:59+00:00"], "quá xa: --until tối đa 366 ngày"),
    (["hours", "open", "--until", "mai"], "không phải thời điểm"),
]


@pytest.mark.parametrize("args,message", BAD_ARGUMENTS, ids=[" ".join(a[:4]) for a, _ in BAD_ARGUMENTS])
def test_out_of_range_arguments_exit_2_and_write_nothing(tmp_path, migrated, args, message):
    home = _prepare(tmp_path)
    (home / "tongdai.db").write_bytes(migrated)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    env = {"TONGDAI_HOME": str(home), "TONGDAI_ROUTING": str(tmp_path / "routing.yaml"), "TONGDAI_ASTERISK": "sandbox"}
    res = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args], env=env)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("lỗi: ") and message in res.stderr and "Traceback" not in res.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_survey_list_with_an_impossible_date_is_refused_by_line(tmp_path, migrated):
    home = _prepare(tmp_path)
    (home / "tongdai.db").write_bytes(migrated)
    (tmp_path / "people.csv").write_text("phone,name,procedure,office,completed_at\n"
                                         "0909000111,A,Cấp phép,Sở Nội vụ,0001-01-01\n"
                                         "0909000112,B,Cấp phép,Sở Nội vụ,9999-12-31 23:59\n", encoding="utf-8")
    env = {"TONGDAI_HOME": str(home), "TONGDAI_ROUTING": str(tmp_path / "routing.yaml")}
    res = CliRunner().invoke(main, ["surveys", "import", str(tmp_path / "people.csv")], env=env)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "people.csv:2: thời điểm hoàn thành '0001-01-01' không hợp lệ" in res.stderr
    assert "people.csv:3: thời điểm hoàn thành '9999-12-31 23:59' không hợp lệ" in res.stderr


# Commands that do not read routing.yaml at all.
NO_ROUTING = {"db upgrade", "zalo status"}  # (recordings prune reads it since call recordings)
ROUTING_FILES = {
    "missing": None,
    "empty": "",
    "not YAML": "hotline: [1022\n",
    "deeply nested": "hotline: " + "[" * 20000 + "]" * 20000 + "\n",
    "a directory": "<dir>",
    "not UTF-8": "hotline:\n  number: 1022 # S\xe1 N\xf4i v\xf5\n",
}


@pytest.mark.parametrize("case", ["missing", "not YAML"])
def test_every_command_with_a_broken_routing_file(tmp_path, migrated, case):
    failures = []
    for i, (args, _) in enumerate(COMMANDS):
        tmp = tmp_path / str(i)
        home = _prepare(tmp)
        (home / "tongdai.db").write_bytes(migrated)
        routing = tmp / "routing.yaml"
        routing.unlink()
        if ROUTING_FILES[case] is not None:
            routing.write_text(ROUTING_FILES[case], encoding="utf-8")
        env = {"TONGDAI_HOME": str(home), "TONGDAI_ROUTING": str(routing), "TONGDAI_ASTERISK": "sandbox"}
        res = CliRunner().invoke(main, [a.format(tmp=tmp) for a in args], env=env)
        name = " ".join(a for a in args if "{" not in a)
        want = 0 if _command(args) in NO_ROUTING else 1
        if res.exit_code != want or "Traceback" in res.output or not (res.exception is None or isinstance(res.exception, SystemExit)):
            failures.append(f"{name}: exit {res.exit_code} (expected {want}), {res.exception!r}: {res.output[-300:]!r}")
        elif want == 1 and "routing.yaml" not in res.stderr:
            failures.append(f"{name}: the message does not name the file: {res.stderr!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("case", list(ROUTING_FILES))
def test_check_and_render_with_a_broken_routing_file(tmp_path, case):
    routing = tmp_path / "routing.yaml"
    content = ROUTING_FILES[case]
    if content == "<dir>":
        routing.mkdir()
    elif content is not None:
        routing.write_bytes(content.encode("latin-1") if case == "not UTF-8" else content.encode())
    env = {"TONGDAI_HOME": str(tmp_path / "home"), "TONGDAI_ROUTING": str(routing)}
    for args in (["check"], ["render", "--out", str(tmp_path / "etc")], ["apply", "--dry-run"], ["cases", "list"]):
        res = CliRunner().invoke(main, args, env=env)
        assert res.exit_code == 1 and "Traceback" not in res.output, (args, res.output)
        assert "routing.yaml" in res.stderr and len(res.stderr.splitlines()) <= 3, (args, res.stderr)
