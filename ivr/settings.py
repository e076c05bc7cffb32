"""Runtime settings, read from the environment.

Everything that differs between a developer's sandbox, a test run and a production server is a
setting here; routing.yaml only describes the hotline itself and never holds a secret.

| variable | default | meaning |
|---|---|---|
| TONGDAI_HOME | ``<repo>/var`` | data directory: database, secrets, rendered config, recordings, spool |
| TONGDAI_ROUTING | ``<repo>/routing.yaml`` | the routing file |
| TONGDAI_ASTERISK | ``auto`` | ``sandbox`` (Debian sid chroot), ``native`` (installed asterisk) or ``auto`` |
| TONGDAI_SANDBOX_DIR | ``~/.cache/tongdai/asterisk-sid`` | where the sandbox chroot is cached |
| TONGDAI_ASTERISK_BIN | ``asterisk`` on PATH | native mode: the asterisk binary |
| TONGDAI_ASTERISK_MODDIR | autodetected | native mode: the modules directory |
| TONGDAI_BIND | ``127.0.0.1`` | address SIP, ARI/HTTP and AMI listen on |
| TONGDAI_SIP_PORT | 5060 | SIP (UDP) |
| TONGDAI_ARI_PORT | 8088 | Asterisk HTTP server (ARI) |
| TONGDAI_AMI_PORT | 5038 | AMI |
| TONGDAI_RTP_START / TONGDAI_RTP_END | 20100 / 23999 | Asterisk's RTP port range |
| TONGDAI_TRUNK_MATCH | ``127.0.0.1`` | comma-separated addresses/networks of the telco trunk |
| TONGDAI_DATABASE_URL | SQLite in TONGDAI_HOME | SQLAlchemy async URL |
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a whole number") from None


@dataclass(frozen=True)
class Settings:
    """Resolved settings; build with :meth:`from_env`."""

    home: Path
    routing_path: Path
    asterisk_mode: str  # "sandbox" or "native" (auto is resolved at load time)
    sandbox_dir: Path
    asterisk_bin: str
    asterisk_moddir: str | None
    bind: str
    sip_port: int
    ari_port: int
    ami_port: int
    rtp_start: int
    rtp_end: int
    trunk_match: tuple[str, ...]
    database_url: str
    ari_app: str = "tongdai"
    env: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home = Path(env.get("TONGDAI_HOME") or REPO_ROOT / "var").expanduser().resolve()
        routing = Path(env.get("TONGDAI_ROUTING") or REPO_ROOT / "routing.yaml").expanduser()
        mode = (env.get("TONGDAI_ASTERISK") or "auto").strip().lower()
        asterisk_bin = env.get("TONGDAI_ASTERISK_BIN") or "asterisk"
        if mode == "auto":
            mode = "native" if env.get("TONGDAI_ASTERISK_BIN") or shutil.which("asterisk") else "sandbox"
        if mode not in ("sandbox", "native"):
            raise SystemExit(f"TONGDAI_ASTERISK={mode!r}: expected sandbox, native or auto")
        sandbox_dir = Path(
            env.get("TONGDAI_SANDBOX_DIR") or Path.home() / ".cache" / "tongdai" / "asterisk-sid"
        ).expanduser()
        db_url = env.get("TONGDAI_DATABASE_URL") or f"sqlite+aiosqlite:///{home / 'tongdai.db'}"
        trunk = tuple(
            t.strip() for t in (env.get("TONGDAI_TRUNK_MATCH") or "127.0.0.1").split(",") if t.strip()
        )
        return cls(
            home=home,
            routing_path=routing,
            asterisk_mode=mode,
            sandbox_dir=sandbox_dir,
            asterisk_bin=asterisk_bin,
            asterisk_moddir=env.get("TONGDAI_ASTERISK_MODDIR") or None,
            bind=env.get("TONGDAI_BIND") or "127.0.0.1",
            sip_port=_int(env, "TONGDAI_SIP_PORT", 5060),
            ari_port=_int(env, "TONGDAI_ARI_PORT", 8088),
            ami_port=_int(env, "TONGDAI_AMI_PORT", 5038),
            rtp_start=_int(env, "TONGDAI_RTP_START", 20100),
            rtp_end=_int(env, "TONGDAI_RTP_END", 23999),
            trunk_match=trunk,
            database_url=db_url,
            env=env,
        )

    @property
    def instance_id(self) -> str:
        """A short stable id for this data directory, used to keep sandbox instances apart."""
        return hashlib.sha1(str(self.home).encode()).hexdigest()[:10]

    @property
    def secrets_path(self) -> Path:
        return self.home / "secrets.json"

    @property
    def hours_override_path(self) -> Path:
        return self.home / "hours-override.json"
