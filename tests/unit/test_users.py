"""Staff accounts: `tongdai users …` and the Accounts service (Argon2id), on every backend."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from ivr.cli import main
from ivr.config import routing as rt
from ivr.models import User, WebSession
from ivr.records import db
from ivr.web.accounts import AccountError, Accounts
from tests.paths import REPO_ROOT

ROUTING = rt.load(REPO_ROOT / "routing.yaml")


@pytest.fixture
async def accounts(db_settings):
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    yield Accounts(engine, lambda: ROUTING), s
    await engine.dispose()


def cli(s, *args, stdin: str | None = None):
    env = {"TONGDAI_HOME": str(s.home), "TONGDAI_DATABASE_URL": s.database_url}
    return CliRunner().invoke(main, ["users", *args], env=env, input=stdin)


async def run(s, *args, stdin=None):
    return await asyncio.to_thread(cli, s, *args, stdin=stdin)


async def test_cli_add_list_disable_password(accounts):
    acc, s = accounts
    res = await run(s, "add", "Lan.STP", "--role", "officer", "--agency", "STP", "--name", "Nguyễn Thị Lan",
                    "--password-stdin", stdin="mật khẩu rất dài 1\n")
    assert res.exit_code == 0, res.output
    assert "lan.stp" in res.output and "Sở Tư pháp" in res.output
    res = await run(s, "add", "snv1", "--role", "supervisor", "--password-stdin", stdin="another long one\n")
    assert res.exit_code == 0, res.output
    res = await run(s, "list")
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert any(ln.startswith("lan.stp") and "officer" in ln and "STP" in ln and "Nguyễn Thị Lan" in ln for ln in lines)
    assert any(ln.startswith("snv1") and "supervisor" in ln and "hoạt động" in ln for ln in lines)
    assert lines[-1] == "2 tài khoản."

    # The hash is Argon2id; the password itself is nowhere in the row.
    async with acc.engine.connect() as conn:
        digest = (await conn.execute(select(User.password_hash).where(User.login == "lan.stp"))).scalar_one()
    assert digest.startswith("$argon2id$") and "mật khẩu" not in digest
    # The production cost (RFC 9106's second recommendation): the console's tests use a cheaper one.
    assert digest.split("$")[3] == "m=65536,t=3,p=4"
    assert (await acc.verify("LAN.stp", "mật khẩu rất dài 1")).login == "lan.stp"
    assert await acc.verify("lan.stp", "mật khẩu rất dài 2") is None

    res = await run(s, "password", "lan.stp", "--password-stdin", stdin="một mật khẩu mới\r\n")
    assert res.exit_code == 0, res.output
    assert await acc.verify("lan.stp", "mật khẩu rất dài 1") is None
    assert (await acc.verify("lan.stp", "một mật khẩu mới")) is not None

    res = await run(s, "disable", "lan.stp")
    assert res.exit_code == 0 and "Đã khoá" in res.output
    assert "ĐÃ KHOÁ" in [ln for ln in (await run(s, "list")).output.splitlines() if ln.startswith("lan.stp")][0]
    res = await run(s, "disable", "lan.stp")
    assert res.exit_code == 1 and "đã bị khoá" in res.output


@pytest.mark.parametrize("args, stdin, message", [
    (["add", "x1", "--role", "admin", "--password-stdin"], "long enough pw\n", "vai trò 'admin' không tồn tại"),
    (["add", "x1", "--role", "officer", "--password-stdin"], "long enough pw\n", "cần --agency"),
    (["add", "x1", "--role", "officer", "--agency", "NOPE", "--password-stdin"], "long enough pw\n",
     "không có cơ quan mã 'NOPE'"),
    (["add", "x1", "--role", "supervisor", "--agency", "NOPE", "--password-stdin"], "long enough pw\n",
     "không có cơ quan mã 'NOPE'"),
    (["add", "x1", "--role", "youth", "--agency", "STP", "--password-stdin"], "long enough pw\n",
     "phải là một bộ phận một cửa"),  # a department runs no one-stop desk: no volunteers to see
    (["add", "x1", "--role", "supervisor", "--password-stdin"], "short\n", "ít nhất 10 ký tự"),
    (["add", "x1", "--role", "supervisor", "--password-stdin"], "\n", "không đọc được mật khẩu"),
    (["add", "x 1", "--role", "supervisor", "--password-stdin"], "long enough pw\n", "không hợp lệ"),
    (["add", "x1", "--role", "supervisor"], "long enough pw\n", "--password-stdin"),
    (["password", "nobody", "--password-stdin"], "long enough pw\n", "không có tài khoản 'nobody'"),
    (["disable", "nobody"], None, "không có tài khoản 'nobody'"),
])
async def test_cli_refuses_with_the_reason_and_stores_nothing(accounts, args, stdin, message):
    acc, s = accounts
    res = await run(s, *args, stdin=stdin)
    assert res.exit_code != 0 and message in res.output, res.output
    async with acc.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(User))).scalar_one() == 0


async def test_duplicate_login_is_refused(accounts):
    acc, _ = accounts
    await acc.add("snv1", "supervisor", "long enough pw")
    with pytest.raises(AccountError, match="đã tồn tại"):
        await acc.add("SNV1", "operator", "long enough pw")


async def test_disable_and_new_password_end_the_accounts_sessions(accounts):
    acc, _ = accounts
    a = await acc.add("snv1", "supervisor", "long enough pw")
    b = await acc.add("snv2", "supervisor", "long enough pw")
    async with acc._sm.begin() as s:
        for i, user in enumerate((a, a, b)):
            s.add(WebSession(id=f"{i:064d}", user_id=user.id, created_at=a.created_at, last_seen_at=a.created_at))

    async def sessions(user_id):
        async with acc.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(WebSession)
                                       .where(WebSession.user_id == user_id))).scalar_one()

    assert await sessions(a.id) == 2
    await acc.set_password("snv1", "a new long password")
    assert await sessions(a.id) == 0 and await sessions(b.id) == 1
    await acc.disable("snv2")
    assert await sessions(b.id) == 0
    assert (await acc.verify("snv2", "long enough pw")).disabled  # the sign-in refuses it, see test_web_security


async def test_cli_adds_youth_coordinators(accounts):
    """The Youth Union's coordinators: provincial (every desk) or one desk and those under it."""
    acc, s = accounts
    res = await run(s, "add", "doan.tinh", "--role", "youth", "--name", "Tỉnh Đoàn", "--password-stdin",
                    stdin="mật khẩu rất dài 1\n")
    assert res.exit_code == 0 and "Đoàn Thanh niên (điều phối tình nguyện viên)" in res.output, res.output
    res = await run(s, "add", "doan.vithanh", "--role", "youth", "--agency", "DV930", "--password-stdin",
                    stdin="mật khẩu rất dài 2\n")
    assert res.exit_code == 0 and "Thành phố Vị Thanh (DV930)" in res.output, res.output
    lines = (await run(s, "list")).output.splitlines()
    assert any(ln.startswith("doan.vithanh") and " youth " in ln and "DV930" in ln for ln in lines), lines
    async with acc.engine.connect() as conn:
        assert set((await conn.execute(select(User.role).where(User.login.like("doan.%")))).scalars()) == {"youth"}
