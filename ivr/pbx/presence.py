"""Desk-phone presence over AMI (panoramisk): who is registered, who is on a call, since when.

Routing asks :meth:`Presence.reachable` before ringing a phone, so a phone that is not
registered is skipped at once instead of ringing into nothing. Every change between up
(registered/reachable) and down (unregistered/unreachable) is appended to the
``registration_events`` table through the call log writer (and its spool), so a report can say
which desk phones were unreachable, and for how long.

After every (re)connection the full picture is read again (``PJSIPShowEndpoints`` and
``PJSIPShowContacts``): AMI sends no events for what happened while we were away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from panoramisk import Manager

from ivr.records.calllog import utcnow

if TYPE_CHECKING:
    from ivr.config.routing import Routing
    from ivr.records.calllog import CallLog

log = logging.getLogger("tongdai.presence")

# ContactStatus values (Asterisk res_pjsip): a contact in one of these can take calls.
CONTACT_UP = {"Created", "Reachable", "NonQualified", "Updated", "Unknown"}
CONTACT_UNREACHABLE = {"Unreachable"}
QUALIFIED = {"Reachable", "Unreachable"}  # the statuses a qualify sets
# Device states (DeviceStateChange) of a phone that must not be rung for a hotline call: in a
# call (hotline or private), on hold, or already ringing for another call.
DEVICE_BUSY = {"INUSE", "BUSY", "ONHOLD", "RINGING", "RINGINUSE"}

# How often Asterisk qualifies each desk phone's contact (OPTIONS; pjsip.conf's AORs): a phone
# unplugged without unregistering is Unreachable after at most this plus the 3 s qualify timeout.
QUALIFY_SECONDS = 30
# A cluster node (docs/cluster.md) learns that a phone registered with Kamailio only from the
# qualify (Kamailio answers for a registered phone, stays silent for one that is not): often.
CLUSTER_QUALIFY_SECONDS = 5


@dataclass
class Phone:
    """What we know about one desk phone right now."""

    extension: str
    contacts: dict[str, str] = field(default_factory=dict)  # contact URI -> ContactStatus
    device_state: str = "UNKNOWN"  # DeviceStateChange state: NOT_INUSE, INUSE, RINGING, UNAVAILABLE…
    status: str | None = None  # registered, unregistered, unreachable (None: not known yet)
    since: dt.datetime | None = None  # when ``status`` began (as far as we saw it)
    address: str | None = None
    last_up: dt.datetime | None = None  # when a phone now down was last seen registered

    @property
    def up(self) -> bool:
        return any(s in CONTACT_UP for s in self.contacts.values())

    def derived_status(self) -> str:
        if self.up:
            return "registered"
        if any(s in CONTACT_UNREACHABLE for s in self.contacts.values()):
            return "unreachable"
        return "unregistered"


# The AMI events presence acts on. manager.conf lets only these (and the guard's) through:
# each call makes Asterisk emit dozens of others, each formatted, sent and parsed for nothing
# (the bench measured panoramisk's parsing at a sixth of the controller's CPU per call).
EVENTS = ("ContactStatus", "DeviceStateChange")


class Presence:
    """Live registration and device state of the desk phones, from AMI.

    ``routing`` is a callable returning the current routing (it changes on reload);
    ``calllog`` receives the registration history.
    """

    def __init__(self, host: str, port: int, user: str, secret: str, routing: Callable[[], Routing],
                 calllog: CallLog | None = None, *, reconnect: float = 2, ping: float = 10,
                 on_booted: Callable[[], None] | None = None):
        self.routing = routing
        self.on_booted = on_booted  # Asterisk said FullyBooted (the ARI client reconnects at once)
        self.calllog = calllog
        self.phones: dict[str, Phone] = {}
        self.connected = False  # logged in and the snapshot is read
        self.asterisk_version: str | None = None
        self.connected_at: dt.datetime | None = None
        self.lost_at: dt.datetime | None = None
        self._ready = asyncio.Event()
        self._snapshot_task: asyncio.Task | None = None
        self._held: list | None = None  # events that arrive while a snapshot is read
        self._closed = False
        # panoramisk logs to its own logger ("panoramisk"); our log lines say what matters.
        self.manager = _Manager(host=host, port=port, username=user, secret=secret, ping_delay=ping,
                               ping_interval=ping, reconnect_timeout=reconnect,
                               on_login=self._on_login, on_disconnect=self._on_disconnect)
        contact, device = EVENTS
        self.manager.register_event(contact, self._on_contact_status)
        self.manager.register_event(device, self._on_device_state)
        self.manager.register_event("FullyBooted", self._on_fully_booted)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, known: dict[str, tuple[str, dt.datetime, bool]] | None = None) -> None:
        """Connect (in the background; panoramisk reconnects by itself).

        ``known``: the last status of each extension from the history table, so that only real
        changes are appended after a restart.
        """
        for ext, (status, since, ever_up) in (known or {}).items():
            down = status not in ("registered", "reachable")
            self.phones[ext] = Phone(ext, status=status, since=since, last_up=since if down and ever_up else None)
        try:
            await self.manager.connect()
        except OSError as e:
            # panoramisk retries on its own (connection_made schedules the next attempt).
            log.warning("AMI not reachable yet (%s); retrying", e.__class__.__name__)

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self._closed = True
        self.connected = False
        if self._snapshot_task:
            self._snapshot_task.cancel()
        self.manager.stopped = True  # no reconnect after this
        self.manager.close()

    def _on_login(self, manager) -> None:
        # A snapshot of a connection that dropped may still wait for its answers; the new one
        # replaces it (two at once would share the events held during a snapshot).
        if self._snapshot_task and not self._snapshot_task.done():
            self._snapshot_task.cancel()
        self._snapshot_task = asyncio.ensure_future(self._snapshot())

    def _on_fully_booted(self, manager, ev) -> None:
        if self.on_booted is not None:
            self.on_booted()

    def _on_disconnect(self, manager, exc) -> None:
        if self._closed:
            return
        self.connected = False
        self._ready.clear()
        self.lost_at = utcnow()
        log.warning("AMI connection lost; reconnecting")

    # ------------------------------------------------------------------ state from AMI

    async def _snapshot(self) -> None:
        # An event that arrives while the lists are read may be older or newer than them (e.g. a
        # phone unregistering just after Asterisk restarted). Applied at once, it would be
        # overwritten when the lists are assigned below; so events are held and applied after
        # the lists. Each one is the full status of one contact or device, so replaying them in
        # order ends in the right state whichever side of the lists they happened.
        self._held = []
        try:
            settings = await self.manager.send_action({"Action": "CoreSettings"})
            self.asterisk_version = settings.get("AsteriskVersion")
            endpoints = await self.manager.send_action({"Action": "PJSIPShowEndpoints"})
            contacts = await self.manager.send_action({"Action": "PJSIPShowContacts"})
        except Exception as e:  # a failed snapshot: the next login tries again
            log.error("AMI snapshot failed: %s", e)
            for phone in self._apply_held():
                self._changed(phone)
            return
        known = set(self.routing().extensions)
        seen: dict[str, dict[str, str]] = {ext: {} for ext in known}
        devices: dict[str, str] = {}
        with_contacts: list[str] = []  # registered or static: a static one is read below
        for ev in _as_list(endpoints):
            if ev.get("Event") == "EndpointList" and ev.get("ObjectName") in known:
                devices[ev["ObjectName"]] = _device_state(ev.get("DeviceState", ""))
                if ev.get("Contacts", "").strip(" ,"):
                    with_contacts.append(ev["ObjectName"])
        for ev in _as_list(contacts):
            ext = ev.get("Endpoint")
            if ev.get("Event") == "ContactList" and ext in known:
                seen[ext][ev.get("Uri", "")] = ev.get("Status", "Unknown")
                self._phone(ext).address = ev.get("ViaAddr") or None
        # A cluster node's desk phones have static contacts (Kamailio's address), which
        # PJSIPShowContacts leaves out (it lists registrations): their qualify status is read per
        # endpoint. Without it a phone qualified before we connected stays "unregistered" until
        # its status changes again (no event for Reachable -> Reachable).
        for ext in with_contacts:
            if seen[ext]:
                continue
            try:
                detail = await self.manager.send_action({"Action": "PJSIPShowEndpoint", "Endpoint": ext})
            except Exception as e:
                log.warning("AMI: contacts of %s not read: %s", ext, e)
                continue
            for ev in _as_list(detail):
                # Only a qualify's answer says anything of a static contact: before its first one it
                # reads "NonQualified" (Asterisk's CREATED) or "Unknown", whether the phone is there or not.
                if ev.get("Event") == "ContactStatusDetail" and ev.get("URI") and ev.get("Status") in QUALIFIED:
                    seen[ext][ev["URI"]] = ev["Status"]
        for ext in known:
            phone = self._phone(ext)
            phone.contacts = seen[ext]
            phone.device_state = devices.get(ext, phone.device_state)
        self._apply_held()
        for ext in known:
            self._changed(self.phones[ext])
        self.connected = True
        self.connected_at = utcnow()
        self._ready.set()
        up = sum(1 for ext in known if self.phones[ext].up)
        log.info("AMI connected (Asterisk %s): %d of %d desk phones registered", self.asterisk_version, up, len(known))

    def _on_contact_status(self, manager, ev) -> None:
        if self._held is not None:
            self._held.append((self._apply_contact_status, ev))
        elif phone := self._apply_contact_status(ev):
            self._changed(phone)

    def _on_device_state(self, manager, ev) -> None:
        if self._held is not None:
            self._held.append((self._apply_device_state, ev))
        else:
            self._apply_device_state(ev)

    def _apply_held(self) -> list[Phone]:
        """Apply the events held during a snapshot, in order; return the phones they touched."""
        held, self._held = self._held or [], None
        touched: dict[str, Phone] = {}
        for apply, ev in held:
            if phone := apply(ev):
                touched[phone.extension] = phone
        return list(touched.values())

    def _apply_contact_status(self, ev) -> Phone | None:
        ext = ev.get("EndpointName") or ev.get("AOR")
        if not ext or ext not in self.routing().extensions:
            return None
        phone = self._phone(ext)
        uri, status = ev.get("URI", ""), ev.get("ContactStatus", "")
        if status == "Removed":
            phone.contacts.pop(uri, None)
        else:
            phone.contacts[uri] = status
        return phone

    def _apply_device_state(self, ev) -> None:  # display only: no status change to log
        device = ev.get("Device", "")
        if device.startswith("PJSIP/"):
            ext = device[6:]
            if ext in self.routing().extensions:
                self._phone(ext).device_state = ev.get("State", "UNKNOWN")

    def _phone(self, ext: str) -> Phone:
        phone = self.phones.get(ext)
        if phone is None:
            phone = self.phones[ext] = Phone(ext)
        return phone

    def _changed(self, phone: Phone) -> None:
        status = phone.derived_status()
        if status == phone.status:
            return
        before, phone.status, phone.since = phone.status, status, utcnow()
        if before == "registered":
            phone.last_up = phone.since
        # The first sight of a phone that never registered is not news: one summary line says it.
        log.log(logging.DEBUG if before is None and status != "registered" else logging.INFO,
                "desk phone %s: %s -> %s", phone.extension, before or "unknown", status)
        if self.calllog is not None:
            ext = self.routing().extensions.get(phone.extension)
            self.calllog.presence(phone.extension, ext.agency if ext else None, status, phone.since, phone.address)

    # ------------------------------------------------------------------ queries

    def reachable(self, ext: str) -> bool | None:
        """True/False when AMI says so; None when we cannot tell (AMI down, unknown phone)."""
        if not self.connected:
            return None
        phone = self.phones.get(ext)
        if phone is None or phone.status is None:
            return None
        return phone.up

    def in_use(self, ext: str) -> bool:
        """Whether Asterisk says the phone is in a call or ringing (a private call counts too).
        False when AMI is down or the phone unknown: the controller's own calls still count."""
        if not self.connected:
            return False
        phone = self.phones.get(ext)
        return phone is not None and phone.device_state in DEVICE_BUSY

    def status(self) -> dict:
        """The live picture, for `tongdai status`."""
        now = utcnow()
        out = {}
        for ext, phone in sorted(self.phones.items()):
            seen = now if phone.up else phone.last_up
            out[ext] = {
                "status": phone.status, "device_state": phone.device_state,
                "since": phone.since.isoformat() if phone.since else None,
                "last_seen": seen.isoformat() if seen else None,
                "address": phone.address,
            }
        return out


class _Manager(Manager):
    """panoramisk's Manager, with a way to stop its reconnect loop for good."""

    stopped = False

    def connect(self, *args, **kwargs):
        if self.stopped:
            fut = asyncio.get_event_loop().create_future()
            fut.set_result(None)
            return fut
        return super().connect(*args, **kwargs)


def _as_list(resp) -> list:
    return list(resp) if isinstance(resp, list) else [resp]


def _device_state(text: str) -> str:
    # PJSIPShowEndpoints says "Not in use"; DeviceStateChange says NOT_INUSE.
    return text.strip().upper().replace(" ", "_").replace("NOT_IN_USE", "NOT_INUSE").replace("IN_USE", "INUSE") or "UNKNOWN"
