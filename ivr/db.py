"""Database access: the engine and Alembic migrations (``tongdai db upgrade``)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .settings import REPO_ROOT, Settings


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; creates the SQLite file's directory if needed."""
    settings.home.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)


# How long opening a connection to a database server may take: a server that does not answer
# (stopped host, firewall dropping packets) must fail fast, not hold a write for a minute.
CONNECT_TIMEOUT = 5


def engine(settings: Settings) -> AsyncEngine:
    kwargs: dict = {}
    if settings.database_url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 5}
    else:
        # A pooled connection dies when the server restarts; pre-ping replaces it on checkout, so
        # the first write after a restart goes straight in instead of failing into the spool.
        kwargs["pool_pre_ping"] = True
        if settings.database_url.startswith("postgresql+asyncpg"):
            kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT}
    return create_async_engine(settings.database_url, **kwargs)
