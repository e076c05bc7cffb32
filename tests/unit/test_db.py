"""Migrations: `tongdai db upgrade` builds the schema, the models match the migrations, and every
migration goes down and up again, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio

from alembic import command
from click.testing import CliRunner
from sqlalchemy import inspect

from ivr.cli import main
from ivr.records import db
from ivr.records.db import alembic_config

TABLES = {"calls", "call_events", "call_legs", "cases", "case_assignments", "case_events",
          "registration_events", "alembic_version"}


async def tables(s) -> set[str]:
    engine = db.engine(s)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def check_constraints(s, table: str) -> set[str]:
    engine = db.engine(s)
    try:
        async with engine.connect() as conn:
            return {c["name"] for c in await conn.run_sync(lambda c: inspect(c).get_check_constraints(table))}
    finally:
        await engine.dispose()


async def test_upgrade_creates_schema_and_models_match(db_settings):
    s = db_settings
    env = {"TONGDAI_HOME": str(s.home), "TONGDAI_DATABASE_URL": s.database_url}
    res = await asyncio.to_thread(CliRunner().invoke, main, ["db", "upgrade"], env=env)
    assert res.exit_code == 0, res.output
    assert TABLES <= await tables(s)
    assert {"ck_calls_disposition", "ck_calls_survey_score"} <= await check_constraints(s, "calls")
    await asyncio.to_thread(command.check, alembic_config(s))  # raises if the models and the migrations disagree


async def test_every_migration_goes_down_and_up_again(db_settings):
    s = db_settings
    cfg = alembic_config(s)
    await asyncio.to_thread(db.upgrade, s)
    await asyncio.to_thread(command.downgrade, cfg, "0001")
    assert "cases" not in await tables(s) and "calls" in await tables(s)
    assert "ck_calls_survey_score" not in await check_constraints(s, "calls")
    await asyncio.to_thread(command.downgrade, cfg, "base")
    assert await tables(s) <= {"alembic_version"}
    await asyncio.to_thread(db.upgrade, s)
    assert TABLES <= await tables(s)
    await asyncio.to_thread(command.check, cfg)


def test_upgrade_reports_a_broken_database_url(settings_factory):
    res = CliRunner().invoke(main, ["db", "upgrade"], env={"TONGDAI_DATABASE_URL": "sqlite+aiosqlite:////nonexistent/dir/x.db"})
    assert res.exit_code == 1 and "không nâng cấp được" in res.output


def test_upgrade_reports_an_unreachable_postgresql(settings_factory):
    import socket

    from tests.conftest import free_port

    port = free_port(socket.SOCK_STREAM)  # nothing listens there
    res = CliRunner().invoke(main, ["db", "upgrade"], env={
        "TONGDAI_HOME": str(settings_factory().home),
        "TONGDAI_DATABASE_URL": f"postgresql+asyncpg://tongdai:secret-pw@127.0.0.1:{port}/tongdai"})
    assert res.exit_code == 1 and "không nâng cấp được" in res.output
    assert "secret-pw" not in res.output


async def test_the_youth_role_needs_migration_0013_and_goes_with_its_downgrade(db_settings):
    """0013 widens users.role's CHECK to 'youth'; going back to 0011 removes youth accounts (no
    older role fits them) and their sessions, and the constraint refuses 'youth' again."""
    import datetime as dt

    import sqlalchemy as sa
    from sqlalchemy.exc import IntegrityError

    s = db_settings
    cfg = alembic_config(s)
    await asyncio.to_thread(db.upgrade, s)
    now = dt.datetime(2026, 12, 8, tzinfo=dt.timezone.utc)
    row = dict(name=None, agency_code="DV930", password_hash="x", disabled=False, created_at=now, password_changed_at=now)
    users = sa.table("users", *(sa.column(c) for c in ("id", "login", "role", *row)))
    sessions = sa.table("web_sessions", *(sa.column(c) for c in ("id", "user_id", "created_at", "last_seen_at")))
    engine = db.engine(s)
    try:
        async with engine.begin() as conn:
            await conn.execute(users.insert().values(id=1, login="doan", role="youth", **row))
            await conn.execute(users.insert().values(id=2, login="snv", role="supervisor", **row))
            await conn.execute(sessions.insert().values(id="a" * 64, user_id=1, created_at=now, last_seen_at=now))
    finally:
        await engine.dispose()
    await asyncio.to_thread(command.downgrade, cfg, "0011")
    engine = db.engine(s)
    try:
        async with engine.connect() as conn:
            assert list((await conn.execute(sa.select(users.c.login))).scalars()) == ["snv"]
            assert (await conn.execute(sa.select(sa.func.count()).select_from(sessions))).scalar_one() == 0
        try:
            async with engine.begin() as conn:
                await conn.execute(users.insert().values(id=3, login="doan2", role="youth", **row))
        except IntegrityError:
            pass
        else:
            raise AssertionError("users.role accepted 'youth' before migration 0013")
    finally:
        await engine.dispose()
    await asyncio.to_thread(db.upgrade, s)
    await asyncio.to_thread(command.check, cfg)
