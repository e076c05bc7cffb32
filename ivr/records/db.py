"""Database access: the engine and Alembic migrations (``tongdai db upgrade``)."""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import sqlite3

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ivr.config.settings import Settings

log = logging.getLogger(__name__)


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    # The migrations are package data (the repository's migrations/ is installed as ivr.migrations).
    cfg.set_main_option("script_location", str(importlib.resources.files("ivr.migrations")))
    cfg.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; creates the SQLite file's directory if needed."""
    settings.home.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)
    path = sqlite_path(settings.database_url)
    if path is not None:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
            use_wal(conn)


def sqlite_path(url: str) -> str | None:
    """The file of an SQLite URL; None for other databases and in-memory SQLite."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return u.database


def use_wal(dbapi_conn) -> None:
    """Put an SQLite database in write-ahead-log mode (it stays so: the mode lives in the file).

    In SQLite's default mode a reader holds off every writer until it has read its last row, so
    a `tongdai export` or report streaming a year of calls sent each call log write meanwhile to
    the spool after the 5 s lock wait. With the WAL, readers and the one writer go on together;
    ``synchronous=FULL`` (per connection; some builds lower it in WAL mode) still syncs each
    commit. Switching needs the file to itself: if another connection is busy, the next
    connection tries again.
    """
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA journal_mode=WAL")
        mode = cur.fetchone()[0]
        if mode not in ("wal", "memory"):
            log.warning("sqlite: journal mode stays %s", mode)
    except Exception as e:  # noqa: BLE001 - locked by a reader or writer right now
        log.warning("sqlite: journal mode not switched to WAL yet (%s)", e)
    finally:
        cur.close()


# How long opening a connection to a database server may take: a server that does not answer
# (stopped host, firewall dropping packets) must fail fast, not hold a write for a minute.
CONNECT_TIMEOUT = 5


def engine(settings: Settings) -> AsyncEngine:
    kwargs: dict = {}
    sqlite = settings.database_url.startswith("sqlite")
    if sqlite:
        if "timeout" not in make_url(settings.database_url).query:  # ?timeout=S in the URL wins
            kwargs["connect_args"] = {"timeout": 5}
    else:
        # A pooled connection dies when the server restarts; pre-ping replaces it on checkout, so
        # the first write after a restart goes straight in instead of failing into the spool.
        kwargs["pool_pre_ping"] = True
        if settings.database_url.startswith("postgresql+asyncpg"):
            kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT}
    eng = create_async_engine(settings.database_url, **kwargs)
    if sqlite:
        # Also here, not only in upgrade(): a database made before WAL was used, or by a tool.
        event.listen(eng.sync_engine, "connect", lambda conn, _rec: use_wal(conn))
    return eng
