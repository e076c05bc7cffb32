"""A private PostgreSQL cluster for the test session: no system service, no password setup.

``initdb`` into a fresh directory (as the ``postgres`` OS user when the tests run as root, since
PostgreSQL refuses to run as root), ``pg_ctl start`` on a free TCP port of 127.0.0.1 with its unix
socket in the same directory, trust authentication for local connections only. Tests may stop and
start the server (that is the point: the call log must survive a database outage).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def find_bindir() -> Path | None:
    """PostgreSQL's server binaries: ``pg_config --bindir``, else /usr/lib/postgresql/<newest>/bin."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
            if out:
                candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                      if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file() and (c / "postgres").is_file():
            return c
    return None


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgError(RuntimeError):
    pass


class PgCluster:
    """One throwaway cluster. ``start()`` / ``stop()`` may be called repeatedly."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.user: str | None = None  # OS user the server runs as (None: the current one)
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PgError("running as root and there is no 'postgres' OS user to run PostgreSQL as") from None
            self.user = "postgres"
        self.root = Path(tempfile.mkdtemp(prefix="tongdai-pg-"))
        if self.user:
            os.chown(self.root, pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid)
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = _free_tcp_port()
        self._dbs = 0

    # ------------------------------------------------------------------ processes

    def _run(self, *args: str, timeout: float = 60) -> str:
        cmd = [str(a) for a in args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if p.returncode != 0:
            raise PgError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}\n"
                          f"{self.log_tail()}")
        return p.stdout

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def init(self) -> None:
        self._run(self.bindir / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "30", "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: what a service stop does (sessions are terminated); ``immediate``: a crash."""
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-w", "-t", "30", "-m", mode, "stop")

    def running(self) -> bool:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0

    def psql(self, sql: str, db: str = "postgres") -> str:
        return self._run(self.bindir / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.root,
                         "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql)

    # ------------------------------------------------------------------ databases

    def url(self, db: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{db}"

    def dsn(self, db: str) -> str:
        """For asyncpg directly (no SQLAlchemy)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its name."""
        self._dbs += 1
        name = f"{prefix}_{os.getpid()}_{self._dbs}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def destroy(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
