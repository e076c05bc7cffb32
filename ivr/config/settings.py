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
| TONGDAI_ARI_LANES | 4 | ARI applications the hotline's calls are spread over (Asterisk queues each app's events in one thread) |
| TONGDAI_ARI_REST | ``auto`` | ARI requests over websockets when Asterisk offers it (``auto``), or always ``http`` |
| TONGDAI_RTP_START / TONGDAI_RTP_END | 20100 / 23999 | Asterisk's RTP port range |
| TONGDAI_HOLD_SECONDS | 20 | how long callers are held while no controller takes calls, before the apology (0: at once) |
| TONGDAI_TRUNK_MATCH | ``127.0.0.1`` | comma-separated addresses/networks of the telco trunk |
| TONGDAI_TRUNK_OUT | unset | ``host:port`` of the telco's SIP gateway for outbound calls (callbacks); unset: no callback offered |
| TONGDAI_CALL_WAITING | ``0`` | ``1``: ring desk phones already in a call (the bench's SIPp desks); default: never |
| TONGDAI_DATABASE_URL | SQLite in TONGDAI_HOME | SQLAlchemy async URL (while `tongdai cluster up` runs its private PostgreSQL: that one) |
| TONGDAI_WEB_ADDR | ``127.0.0.1:8080`` | where `tongdai web` listens: the staff console and the Zalo webhook |
| TONGDAI_ZALO_* | unset: Zalo off | the Zalo Official Account, see :class:`ZaloSettings` |
| TONGDAI_RECORDINGS_GROUP | unset | a group that may read recordings: files 0640 and folders 0750 of that group (else 0600 / 0700) |
| TONGDAI_RECORDINGS_MIN_FREE_MB | 2048 | ``tongdai status`` warns when the recordings' disk has less free space |
| TONGDAI_NODE | unset | cluster node name (docs/cluster.md): Asterisk's system name, the call log's ``node`` |
| TONGDAI_CLUSTER_DEAD_AFTER | 30 | cluster: seconds without a node's heartbeat before the others close its calls as interrupted |
| TONGDAI_SIP_PROXY | unset | cluster: HOST:PORT of Kamailio; desk phones register there and are dialled through it |
"""

from __future__ import annotations

import grp
import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path


def checkout_root() -> Path | None:
    """The source checkout the package runs from (editable install, ``python -m ivr`` in the
    repository), or None when it is installed: then nothing is looked for beside the code."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "routing.yaml").is_file() else None


def default_home(env: dict[str, str]) -> Path:
    root = checkout_root()
    if root is not None:
        return root / "var"
    return Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tongdai"


def default_routing() -> Path:
    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "routing.yaml"


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a whole number") from None


def _flag(env: dict[str, str], name: str) -> bool:
    raw = (env.get(name) or "0").strip().lower()
    if raw not in ("0", "1", "no", "yes", "false", "true"):
        raise SystemExit(f"{name}={raw!r}: expected 0 or 1")
    return raw in ("1", "yes", "true")


def _lanes(env: dict[str, str]) -> int:
    n = _int(env, "TONGDAI_ARI_LANES", 4)
    if not 1 <= n <= 16:
        raise SystemExit(f"TONGDAI_ARI_LANES={n}: expected 1 to 16")
    return n


def _group(env: dict[str, str]) -> int | None:
    """TONGDAI_RECORDINGS_GROUP: a group name (or number) -> its id; unset -> None."""
    raw = (env.get("TONGDAI_RECORDINGS_GROUP") or "").strip()
    if not raw:
        return None
    try:
        return grp.getgrnam(raw).gr_gid
    except KeyError:
        if raw.isdigit():
            return int(raw)
        raise SystemExit(f"TONGDAI_RECORDINGS_GROUP={raw!r}: no such group on this machine") from None


def _min_free(env: dict[str, str]) -> int:
    n = _int(env, "TONGDAI_RECORDINGS_MIN_FREE_MB", 2048)
    if n < 0:
        raise SystemExit(f"TONGDAI_RECORDINGS_MIN_FREE_MB={n}: expected 0 or more megabytes")
    return n


def _hold(env: dict[str, str]) -> int:
    n = _int(env, "TONGDAI_HOLD_SECONDS", 20)
    if not 0 <= n <= 600:
        raise SystemExit(f"TONGDAI_HOLD_SECONDS={n}: expected 0 to 600")
    return n


def _node(env: dict[str, str]) -> str | None:
    raw = (env.get("TONGDAI_NODE") or "").strip()
    if raw and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,19}", raw):
        raise SystemExit(f"TONGDAI_NODE={raw!r}: expected 1 to 20 lowercase letters, digits or '-'")
    return raw or None


def _cluster_database(home: Path) -> str | None:
    """The private PostgreSQL of a `tongdai cluster up` running on this data directory (it writes
    its URL here while it runs), so every other command works against the cluster unchanged."""
    try:
        return (home / "cluster" / "database-url").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _dead_after(env: dict[str, str]) -> int:
    n = _int(env, "TONGDAI_CLUSTER_DEAD_AFTER", 30)
    if not 3 <= n <= 3600:
        raise SystemExit(f"TONGDAI_CLUSTER_DEAD_AFTER={n}: expected 3 to 3600 seconds")
    return n


def _trunk_out(env: dict[str, str]) -> tuple[str, int] | None:
    """TONGDAI_TRUNK_OUT=host:port; unset or empty: None (no outbound calls)."""
    raw = (env.get("TONGDAI_TRUNK_OUT") or "").strip()
    if not raw:
        return None
    host, port = _addr(env, "TONGDAI_TRUNK_OUT", raw)
    # Rendered into pjsip.conf: a host is letters, digits, dots, dashes or an IPv6 address.
    if not host or not all(c.isalnum() or c in ".-:" for c in host) or not 0 < port < 65536:
        raise SystemExit(f"TONGDAI_TRUNK_OUT={raw!r}: expected HOST:PORT of the telco's SIP gateway")
    return host, port


def _addr(env: dict[str, str], name: str, default: str) -> tuple[str, int]:
    raw = (env.get(name) or default).strip()
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"{name}={raw!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class ZaloSettings:
    """The Zalo Official Account ("Phản ánh về thủ tục hành chính Hậu Giang").

    Enabled when TONGDAI_ZALO_APP_ID is set. Secrets are read from the environment only (never
    routing.yaml) and are kept out of ``repr`` so they never reach a log line.

    | variable | default | meaning |
    |---|---|---|
    | TONGDAI_ZALO_APP_ID | unset (Zalo off) | the Zalo app's id (developers.zalo.me) |
    | TONGDAI_ZALO_APP_SECRET | required | the app's secret key: ``secret_key`` header of the token refresh |
    | TONGDAI_ZALO_OA_SECRET_KEY | required | the OA secret key: last term of the webhook signature |
    | TONGDAI_ZALO_OA_ID | unset | the OA's id; when set, events for another OA are refused |
    | TONGDAI_ZALO_REFRESH_TOKEN | unset | the first refresh token; later ones live in ``$TONGDAI_HOME/zalo-tokens.json`` |
    | TONGDAI_ZALO_API_URL | ``https://openapi.zalo.me`` | OA API base URL |
    | TONGDAI_ZALO_OAUTH_URL | ``https://oauth.zaloapp.com`` | OAuth base URL (token refresh) |
    | TONGDAI_ZALO_ZNS_URL | ``https://business.openapi.zalo.me`` | ZNS (template message) base URL |
    | TONGDAI_ZALO_ZNS_TEMPLATE_ID | unset | approved ZNS template for the satisfaction survey |
    | TONGDAI_ZALO_QUIET_HOURS | ``22:00-06:00`` | no staff answer or survey is sent in this range (hotline time zone) |
    | TONGDAI_ZALO_MAX_EVENT_AGE | 10800 | seconds; an older signed event is refused as a replay |
    | TONGDAI_ZALO_SURVEY_EVERY | 60 | minutes between automatic survey runs in ``tongdai serve``; 0: only by command |
    """

    app_id: str
    app_secret: str = field(repr=False)
    oa_secret_key: str = field(repr=False)
    initial_refresh_token: str | None = field(repr=False)
    oa_id: str | None
    api_url: str
    oauth_url: str
    zns_url: str
    zns_template_id: str | None
    quiet_start: str
    quiet_end: str
    max_event_age: int
    survey_every_min: int
    token_path: Path
    spool_path: Path

    @classmethod
    def from_env(cls, env: dict[str, str], home: Path) -> ZaloSettings | None:
        app_id = (env.get("TONGDAI_ZALO_APP_ID") or "").strip()
        if not app_id:
            return None
        missing = [n for n in ("TONGDAI_ZALO_APP_SECRET", "TONGDAI_ZALO_OA_SECRET_KEY") if not env.get(n)]
        if missing:
            raise SystemExit(f"TONGDAI_ZALO_APP_ID is set: {' and '.join(missing)} must be set too")
        quiet = (env.get("TONGDAI_ZALO_QUIET_HOURS") or "22:00-06:00").strip()
        start, sep, end = quiet.partition("-")
        if not sep or not all(_hhmm(x) for x in (start, end)):
            raise SystemExit(f"TONGDAI_ZALO_QUIET_HOURS={quiet!r}: expected HH:MM-HH:MM")
        return cls(
            app_id=app_id,
            app_secret=env["TONGDAI_ZALO_APP_SECRET"],
            oa_secret_key=env["TONGDAI_ZALO_OA_SECRET_KEY"],
            initial_refresh_token=env.get("TONGDAI_ZALO_REFRESH_TOKEN") or None,
            oa_id=(env.get("TONGDAI_ZALO_OA_ID") or "").strip() or None,
            api_url=(env.get("TONGDAI_ZALO_API_URL") or "https://openapi.zalo.me").rstrip("/"),
            oauth_url=(env.get("TONGDAI_ZALO_OAUTH_URL") or "https://oauth.zaloapp.com").rstrip("/"),
            zns_url=(env.get("TONGDAI_ZALO_ZNS_URL") or "https://business.openapi.zalo.me").rstrip("/"),
            zns_template_id=(env.get("TONGDAI_ZALO_ZNS_TEMPLATE_ID") or "").strip() or None,
            quiet_start=start.strip(),
            quiet_end=end.strip(),
            max_event_age=_int(env, "TONGDAI_ZALO_MAX_EVENT_AGE", 3 * 3600),
            survey_every_min=_int(env, "TONGDAI_ZALO_SURVEY_EVERY", 60),
            token_path=home / "zalo-tokens.json",
            spool_path=home / "spool" / "zalo-events.jsonl",
        )


def _hhmm(raw: str) -> bool:
    h, sep, m = raw.strip().partition(":")
    return bool(sep) and h.isdigit() and m.isdigit() and int(h) < 24 and int(m) < 60


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
    ari_rest: str = "auto"  # "auto": REST over ARI websockets when offered; "http": never
    ari_lanes: int = 4  # ARI applications the calls are spread over, see ari_apps
    hold_seconds: int = 20  # the dialplan holds callers this long while no controller takes calls
    web_addr: tuple[str, int] = ("127.0.0.1", 8080)
    call_waiting: bool = False  # ring desk phones already in a call (TONGDAI_CALL_WAITING)
    trunk_out: tuple[str, int] | None = None  # TONGDAI_TRUNK_OUT: the telco's gateway for callbacks
    zalo: ZaloSettings | None = None
    recordings_gid: int | None = None  # TONGDAI_RECORDINGS_GROUP: may read recordings (0640/0750)
    recordings_min_free_mb: int = 2048  # `tongdai status` warns below this
    node: str | None = None  # TONGDAI_NODE: this node's name in a cluster (docs/cluster.md)
    sip_proxy: tuple[str, int] | None = None  # TONGDAI_SIP_PROXY: Kamailio, the cluster's SIP edge
    cluster_dead_after: int = 30  # TONGDAI_CLUSTER_DEAD_AFTER: a silent node's calls are closed after this
    env: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("TONGDAI_HOME") or default_home(env)).expanduser().resolve()
        routing = Path(env.get("TONGDAI_ROUTING") or default_routing()).expanduser()
        mode = (env.get("TONGDAI_ASTERISK") or "auto").strip().lower()
        asterisk_bin = env.get("TONGDAI_ASTERISK_BIN") or "asterisk"
        if mode == "auto":
            mode = "native" if env.get("TONGDAI_ASTERISK_BIN") or shutil.which("asterisk") else "sandbox"
        if mode not in ("sandbox", "native"):
            raise SystemExit(f"TONGDAI_ASTERISK={mode!r}: expected sandbox, native or auto")
        sandbox_dir = Path(
            env.get("TONGDAI_SANDBOX_DIR") or Path.home() / ".cache" / "tongdai" / "asterisk-sid"
        ).expanduser()
        ari_rest = (env.get("TONGDAI_ARI_REST") or "auto").strip().lower()
        if ari_rest not in ("auto", "http"):
            raise SystemExit(f"TONGDAI_ARI_REST={ari_rest!r}: expected auto or http")
        db_url = env.get("TONGDAI_DATABASE_URL") or _cluster_database(home) or f"sqlite+aiosqlite:///{home / 'tongdai.db'}"
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
            ari_rest=ari_rest,
            ari_lanes=_lanes(env),
            hold_seconds=_hold(env),
            rtp_start=_int(env, "TONGDAI_RTP_START", 20100),
            rtp_end=_int(env, "TONGDAI_RTP_END", 23999),
            trunk_match=trunk,
            database_url=db_url,
            web_addr=_addr(env, "TONGDAI_WEB_ADDR", "127.0.0.1:8080"),
            call_waiting=_flag(env, "TONGDAI_CALL_WAITING"),
            trunk_out=_trunk_out(env),
            zalo=ZaloSettings.from_env(env, home),
            recordings_gid=_group(env),
            recordings_min_free_mb=_min_free(env),
            node=_node(env),
            cluster_dead_after=_dead_after(env),
            sip_proxy=_addr(env, "TONGDAI_SIP_PROXY", "") if env.get("TONGDAI_SIP_PROXY") else None,
            env=env,
        )

    @property
    def ari_apps(self) -> list[str]:
        """The ARI applications hotline calls enter, one per lane: ``tongdai``, ``tongdai-2``, …

        Asterisk turns every application's messages into events in one thread per application
        (taskprocessor ``stasis/m:ari:application/<app>``); with every call in one application
        that queue was 160 deep under the bench's load and events came 100+ ms late. The
        dialplan picks a lane per call; the controller takes all of them on one websocket.
        """
        return [self.ari_app] + [f"{self.ari_app}-{i}" for i in range(2, self.ari_lanes + 1)]

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
