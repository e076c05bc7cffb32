"""The private PostgreSQL of a cluster on one machine, when TONGDAI_DATABASE_URL is not set.

``initdb`` once into ``$TONGDAI_HOME/cluster/postgres`` (as the ``postgres`` OS user when run as
root: PostgreSQL refuses root), then ``pg_ctl start`` on 127.0.0.1 only, trust authentication
for local connections; ``tongdai cluster down`` stops it, the data stays for the next ``up``.
A production cluster points every node at its PostgreSQL server with TONGDAI_DATABASE_URL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

DB = "tongdai"


class PostgresError(RuntimeError):
    pass


def bindir() -> Path:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True,
                    key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0):
        if all(os.path.exists(os.path.join(d, b)) for b in ("initdb", "pg_ctl", "postgres", "psql")):
            return Path(d)
    raise PostgresError("PostgreSQL's server is not installed (Debian: apt-get install postgresql; "
                        "or set TONGDAI_DATABASE_URL to a server)")


class Postgres:
    def __init__(self, root: Path, port: int):
        self.root = root
        self.data = root / "data"
        self.port = port
        self.user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{DB}"

    def _run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=self.root)
        if check and p.returncode != 0:
            raise PostgresError(f"{' '.join(cmd[-3:])}: {(p.stderr or p.stdout).strip()[-1500:]}")
        return p

    def running(self) -> bool:
        return self.data.exists() and self._run(bindir() / "pg_ctl", "-D", self.data, "status", check=False).returncode == 0

    def start(self) -> None:
        b = bindir()
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            if self._run("test", "-w", self.root, check=False).returncode != 0:
                raise PostgresError(f"the '{self.user}' user cannot reach {self.root} (a folder on the way is "
                                    "closed to others: chmod o+x it), or set TONGDAI_DATABASE_URL")
        fresh = not (self.data / "PG_VERSION").exists()
        if fresh:
            if self.data.exists():
                shutil.rmtree(self.data)
            self._run(b / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C")
        if not self.running():
            opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
            self._run(b / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w", "-t", "30", "-o", opts, "start")
        if fresh:
            self._run(b / "psql", "-X", "-q", "-h", self.root, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                      "-c", f'CREATE DATABASE "{DB}"')

    def stop(self) -> None:
        if self.running():
            self._run(bindir() / "pg_ctl", "-D", self.data, "-w", "-t", "30", "-m", "fast", "stop")
