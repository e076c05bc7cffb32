"""Shared fixtures: an isolated data directory and settings per test session, and the databases.

Tests that touch the database run on both supported backends (``database_url`` is parametrized):
SQLite in the test's data directory and a private PostgreSQL cluster started for the session
(:mod:`tests.pg`). Locally a machine without PostgreSQL skips the PostgreSQL half; in CI
(TONGDAI_REQUIRE_E2E=1, set by .ci/run, or CI=true) that is a failure, never a skip.
"""

from __future__ import annotations

import os
import socket

import pytest

from ivr.config.settings import Settings

from .pg import PgCluster, PgError, find_bindir

REQUIRED = bool(os.environ.get("TONGDAI_REQUIRE_E2E")) or os.environ.get("CI", "").lower() == "true"


def require(ok: bool, reason: str) -> None:
    """Skip locally, fail in CI."""
    if ok:
        return
    if REQUIRED:
        pytest.fail(f"test prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def sipp_traces(tmp_path_factory):
    """SIPp's trace directories under pytest's temporary directory (it keeps the last three
    runs), not one new directory in /tmp per call and phone, kept for ever."""
    from ivr.pbx import sipp

    sipp.TRACE_ROOT = tmp_path_factory.mktemp("sipp")
    yield sipp.TRACE_ROOT
    sipp.TRACE_ROOT = None


@pytest.fixture
def settings_factory(tmp_path):
    """Settings for a fresh data directory (nothing shared with `make run`)."""

    def make(**env: str) -> Settings:
        base = {
            "TONGDAI_HOME": str(tmp_path / "home"),
            "TONGDAI_ASTERISK": "sandbox",
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/root"),
        }
        base.update(env)
        return Settings.from_env(base)

    return make


_pg_failure: str | None = None


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server for the whole session (tests may stop and start it)."""
    global _pg_failure
    if _pg_failure:
        require(False, _pg_failure)
    bindir = find_bindir()
    if bindir is None:
        _pg_failure = "PostgreSQL is not installed (Debian package postgresql; scripts/install-system-deps.sh)"
        require(False, _pg_failure)
    try:
        cluster = PgCluster(bindir)
        cluster.init()
        cluster.start()
    except (PgError, OSError) as e:
        _pg_failure = f"cannot start a PostgreSQL cluster: {e}"
        require(False, _pg_failure)
    yield cluster
    cluster.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh, empty database on each supported backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'home' / 'tongdai.db'}"
    pg: PgCluster = request.getfixturevalue("postgres")
    if not pg.running():  # a test that stopped it failed before starting it again
        pg.start()
    return pg.url(pg.create_database())


@pytest.fixture
def db_settings(settings_factory, database_url) -> Settings:
    """Settings of a fresh data directory whose database is ``database_url``."""
    return settings_factory(TONGDAI_DATABASE_URL=database_url)
