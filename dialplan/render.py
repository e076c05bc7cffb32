"""Render the complete Asterisk configuration from a validated routing.yaml.

Deterministic: the same routing, settings and secrets give byte-identical files (no timestamps,
sorted iteration), so ``diff`` shows exactly what an edit changes.

Nothing is written that was not checked (docs/config-safety.md): the routing's texts are checked
again against the rules routing.yaml's validation applies, and every value a template
interpolates passes one gate (Jinja's ``finalize``) that refuses line breaks, control characters,
the characters Asterisk's config syntax gives meaning to and overlong values, whatever their
source (routing, settings from the environment, secrets.json).
"""

from __future__ import annotations

import importlib.resources
import os
import tempfile
from pathlib import Path

import jinja2

from ivr.config import routing as rt
from ivr.config import text as tx
from ivr.config.credentials import Secrets
from ivr.config.routing import Routing
from ivr.config.settings import Settings
from ivr.pbx import guard, presence
from ivr.pbx.asterisk import CEL_FILE, Layout

# The repository's asterisk/templates, installed as package data of ivr.asterisk.
TEMPLATES = Path(str(importlib.resources.files("ivr.asterisk") / "templates"))

FILES = (
    "asterisk.conf",
    "modules.conf",
    "logger.conf",
    "pjsip.conf",
    "extensions.conf",
    "rtp.conf",
    "http.conf",
    "ari.conf",
    "manager.conf",
    "musiconhold.conf",
    "indications.conf",
    "cel.conf",
    "cel_custom.conf",
)

# Modules that must not load (see ../shared/docs/asterisk-and-sip-notes.md and the sandbox's log):
# chan_iax2 listens on 0.0.0.0:4569; the STIR/SHAKEN modules miss a symbol in this build; the
# rest need services or hardware we do not have, or duplicate chan_pjsip.
NOLOAD = (
    # From the measured notes: listen on 0.0.0.0, miss symbols, or need absent services/hardware.
    "app_voicemail_imap.so",
    "app_voicemail_odbc.so",
    "cdr_pgsql.so",
    "cdr_radius.so",
    "cdr_tds.so",
    "cel_pgsql.so",
    "cel_radius.so",
    "cel_tds.so",
    "chan_alsa.so",
    "chan_console.so",
    "chan_dahdi.so",
    "chan_iax2.so",
    "chan_mgcp.so",
    "chan_mobile.so",
    "chan_ooh323.so",
    "chan_oss.so",
    "chan_sip.so",
    "chan_skinny.so",
    "chan_unistim.so",
    "pbx_dundi.so",
    "res_config_ldap.so",
    "res_config_pgsql.so",
    "res_corosync.so",
    "res_hep.so",
    "res_hep_pjsip.so",
    "res_hep_rtcp.so",
    "res_pjsip_stir_shaken.so",
    "res_resolver_unbound.so",
    "res_stir_shaken.so",
    # Features the hotline does not use; each would otherwise log an ERROR for its missing
    # config (seen in the sandbox's messages.log) or open something we do not want open.
    "app_adsiprog.so",
    "app_agent_pool.so",
    "app_alarmreceiver.so",
    "app_amd.so",
    "app_confbridge.so",
    "app_festival.so",
    "app_followme.so",
    "app_getcpeid.so",
    "app_minivm.so",
    "app_page.so",
    "app_queue.so",
    "app_voicemail.so",
    "cdr_adaptive_odbc.so",
    "cdr_csv.so",
    "cdr_custom.so",
    "cdr_manager.so",
    "cdr_odbc.so",
    "cdr_sqlite3_custom.so",
    "cel_manager.so",
    "cel_odbc.so",
    "cel_sqlite3_custom.so",
    "chan_motif.so",
    "func_odbc.so",
    "pbx_ael.so",
    "pbx_lua.so",
    "res_adsi.so",
    "res_calendar.so",
    "res_calendar_caldav.so",
    "res_calendar_ews.so",
    "res_calendar_exchange.so",
    "res_calendar_icalendar.so",
    "res_clialiases.so",
    "res_config_odbc.so",
    "res_config_sqlite3.so",
    "res_odbc.so",
    "res_odbc_transaction.so",
    "res_phoneprov.so",
    "res_pjsip_phoneprov_provider.so",
    "res_prometheus.so",
    "res_snmp.so",
    "res_stun_monitor.so",
    "res_xmpp.so",
)

# Core modules we keep read these files; with none Asterisk logs an ERROR. Their defaults are
# what we want, so they are rendered (nearly) empty.
STUB_FILES = {
    "acl.conf": "",
    "aeap.conf": "",
    "ccss.conf": "[general]\n",
    "cdr.conf": "[general]\n; The controller keeps its own call log.\nenable = no\n",
    "chan_websocket.conf": "",
    "features.conf": "[general]\n",
    "geolocation.conf": "",
    "pjproject.conf": "",
    "pjsip_notify.conf": "",
    "pjsip_wizard.conf": "",
    "res_http_media_cache.conf": "[general]\n",
    "res_parking.conf": "[general]\n",
    "statsd.conf": "[general]\nenabled = no\n",
    "udptl.conf": "[general]\n",
    "websocket_client.conf": "",
}

SECRET_FILES = ("pjsip.conf", "ari.conf", "manager.conf")

# Asterisk reads its config files line by line into an 8 KiB buffer; no value comes near this.
MAX_VALUE = 1024


class UnsafeValue(Exception):
    """A value that could act as syntax in an Asterisk config file; nothing was rendered."""


def _gate(value):
    """Jinja's finalize: every ``{{ … }}`` of every template goes through here."""
    if value is None or isinstance(value, bool):
        raise UnsafeValue(f"{value!r} is not a value for a config file")
    text = str(value)
    problem = tx.check_line(text, max_len=MAX_VALUE) if text else None
    if problem is not None:
        shown = text if len(text) <= 60 else text[:60] + "…"
        raise UnsafeValue(f"{shown!r} {problem}")
    return text


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_gate,
    )


def render(routing: Routing, settings: Settings, secrets: Secrets, layout: Layout | None = None) -> dict[str, str]:
    """Every Asterisk config file, name -> text. Raises :class:`UnsafeValue` rather than write a
    value that could act as syntax."""
    unsafe = rt.unsafe_texts(routing)
    if unsafe:
        raise UnsafeValue("routing: " + "; ".join(unsafe[:5]) + (f" (and {len(unsafe) - 5} more)" if len(unsafe) > 5 else ""))
    layout = layout or Layout.for_settings(settings)
    ctx = {
        "routing": routing,
        "settings": settings,
        "secrets": secrets,
        "directories": layout.directories(),
        "run_user": layout.run_user(),
        "noload": NOLOAD,
        # panoramisk listens for FullyBooted itself: after a re-login it resends the actions
        # that the lost connection left unanswered.
        "ami_events": ("FullyBooted",) + presence.EVENTS + guard.FAILED_AUTH_EVENTS,
        "moh_dir": layout.ast("data/moh"),
        "cel_file": layout.ast(CEL_FILE),  # Asterisk's record of every hotline call
        "qualify_frequency": presence.CLUSTER_QUALIFY_SECONDS if settings.sip_proxy else presence.QUALIFY_SECONDS,
        # Behind Kamailio (a cluster node) the Contact is the phone's own and Kamailio
        # record-routes: rewriting it to the packet's source would point requests at Kamailio.
        "rewrite_contact": "no" if settings.sip_proxy else "yes",
    }
    env = _env()
    files = {}
    for name in FILES:
        try:
            files[name] = env.get_template(name + ".j2").render(ctx)
        except UnsafeValue as e:
            raise UnsafeValue(f"{name}: {e}") from None
    for name, body in STUB_FILES.items():
        files[name] = "; Rendered by `tongdai render`: defaults wanted, file present so Asterisk does not complain.\n" + body
    return dict(sorted(files.items()))


def write(files: dict[str, str], out: Path, *, owner_uid: int | None = None) -> list[str]:
    """Write rendered files atomically; return the names that changed. Secret-bearing files are 0640."""
    out.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in files.items():
        path = out / name
        data = text.encode("utf-8")
        try:
            if path.read_bytes() == data:
                continue
        except OSError:
            pass
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o640 if name in SECRET_FILES else 0o644)
        if owner_uid is not None:
            os.chown(tmp, owner_uid, -1)
        os.replace(tmp, path)
        changed.append(name)
    return changed
