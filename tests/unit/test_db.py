"""Migrations: `tongdai db upgrade` builds the schema, and the models match the migrations."""

from __future__ import annotations

import sqlite3

from alembic import command
from click.testing import CliRunner

from ivr.cli import main
from ivr.db import alembic_config


def test_upgrade_creates_schema_and_models_match(settings_factory):
    s = settings_factory()
    res = CliRunner().invoke(main, ["db", "upgrade"], env={"TONGDAI_HOME": str(s.home)})
    assert res.exit_code == 0, res.output
    tables = {r[0] for r in sqlite3.connect(s.home / "tongdai.db").execute("select name from sqlite_master where type='table'")}
    assert {"calls", "call_events", "call_legs", "alembic_version"} <= tables
    command.check(alembic_config(s))  # raises if the models and the migrations disagree


def test_upgrade_reports_a_broken_database_url(settings_factory):
    res = CliRunner().invoke(main, ["db", "upgrade"], env={"TONGDAI_DATABASE_URL": "sqlite+aiosqlite:////nonexistent/dir/x.db"})
    assert res.exit_code == 1 and "không nâng cấp được" in res.output
