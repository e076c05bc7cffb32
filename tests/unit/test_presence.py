"""Presence: the snapshot read after each AMI login and the events around it."""

from __future__ import annotations

from types import SimpleNamespace

from ivr.pbx.presence import Presence

URI = "sip:2401@127.0.0.1:45680"


class Log:
    def __init__(self):
        self.rows = []

    def presence(self, ext, agency, status, since, address):
        self.rows.append((ext, status))


def presence(events_during_contacts=()):
    """A Presence whose AMI answers the snapshot with 2401 registered.

    ``events_during_contacts`` are delivered to the event handlers while PJSIPShowContacts is in
    flight, as panoramisk does when they arrive on the socket before the action's last line.
    """
    routing = SimpleNamespace(extensions={"2401": SimpleNamespace(agency="SNV"),
                                          "2402": SimpleNamespace(agency="SNV")})
    log = Log()
    p = Presence("127.0.0.1", 1, "u", "s", lambda: routing, log)

    async def send_action(action):
        name = action["Action"]
        if name == "CoreSettings":
            return {"AsteriskVersion": "22.10.1"}
        if name == "PJSIPShowEndpoints":
            return [{"Event": "EndpointList", "ObjectName": "2401", "DeviceState": "Not in use"}]
        for ev in events_during_contacts:
            handler = p._on_contact_status if ev["Event"] == "ContactStatus" else p._on_device_state
            handler(p.manager, ev)
        return [{"Event": "ContactList", "Endpoint": "2401", "Uri": URI, "Status": "NonQualified",
                 "ViaAddr": "127.0.0.1"}, {"Event": "ContactListComplete"}]

    p.manager.send_action = send_action
    return p, log


async def test_snapshot_alone_sets_the_status():
    p, log = presence()
    await p._snapshot()
    assert p.reachable("2401") is True and p.reachable("2402") is False
    assert p.phones["2401"].device_state == "NOT_INUSE"
    assert ("2401", "registered") in log.rows


async def test_an_unregister_during_the_snapshot_is_not_lost():
    # Seen in the e2e test that kills Asterisk: the restarted Asterisk loads the phone's contact
    # from astdb, lists it, and the phone's unregister arrives while the lists are read. Applied
    # before the lists were assigned, the Removed was overwritten and the phone looked registered.
    removed = {"Event": "ContactStatus", "EndpointName": "2401", "AOR": "2401", "URI": URI,
               "ContactStatus": "Removed"}
    busy = {"Event": "DeviceStateChange", "Device": "PJSIP/2401", "State": "INUSE"}
    p, log = presence([removed, busy])
    await p._snapshot()
    assert p.reachable("2401") is False
    assert p.phones["2401"].device_state == "INUSE"
    # only the final state is news: no registered -> unregistered flap in the history
    assert [r for r in log.rows if r[0] == "2401"] == [("2401", "unregistered")]


async def test_events_after_the_snapshot_apply_at_once():
    p, log = presence()
    await p._snapshot()
    p._on_contact_status(p.manager, {"Event": "ContactStatus", "EndpointName": "2401", "URI": URI,
                                     "ContactStatus": "Removed"})
    assert p.reachable("2401") is False
    assert log.rows[-1] == ("2401", "unregistered")


async def test_a_new_login_replaces_a_snapshot_still_waiting():
    import asyncio

    from ivr.testing import wait_until

    p, log = presence()
    stuck = asyncio.Event()
    asked = []
    answer = p.manager.send_action

    async def first_connection(action):
        asked.append(action)
        await stuck.wait()  # the connection dropped: no answer ever comes
        return await answer(action)

    p.manager.send_action = first_connection
    p._on_login(p.manager)
    await wait_until(lambda: asked, 2, "the first snapshot to ask")
    old = p._snapshot_task
    p.manager.send_action = answer
    p._on_login(p.manager)
    await p._snapshot_task
    await wait_until(old.done, 2, "the first snapshot to end")
    assert old.cancelled()
    assert p.reachable("2401") is True and p._held is None


async def test_a_phone_failing_its_qualify_is_unreachable_and_back_when_it_answers():
    # qualify_frequency on the AORs: Asterisk reports a contact that stops answering OPTIONS as
    # Unreachable while its registration still runs; routing must skip it (reachable False).
    p, log = presence()
    await p._snapshot()
    p._on_contact_status(p.manager, {"Event": "ContactStatus", "EndpointName": "2401", "URI": URI,
                                     "ContactStatus": "Unreachable"})
    assert p.reachable("2401") is False
    assert p.status()["2401"]["status"] == "unreachable"
    assert log.rows[-1] == ("2401", "unreachable")
    p._on_contact_status(p.manager, {"Event": "ContactStatus", "EndpointName": "2401", "URI": URI,
                                     "ContactStatus": "Reachable"})
    assert p.reachable("2401") is True
    assert log.rows[-1] == ("2401", "registered")


async def test_a_cluster_nodes_static_contacts_are_read_per_endpoint():
    # A cluster node reaches its phones at Kamailio's address (static contacts), which
    # PJSIPShowContacts leaves out; a phone qualified before the login sends no event later.
    routing = SimpleNamespace(extensions={"2401": SimpleNamespace(agency="SNV"),
                                          "2402": SimpleNamespace(agency="SNV")})
    log = Log()
    p = Presence("127.0.0.1", 1, "u", "s", lambda: routing, log)
    kamailio = "sip:{}@127.0.0.1:5060"
    asked = []

    async def send_action(action):
        name = action["Action"]
        if name == "CoreSettings":
            return {"AsteriskVersion": "22.10.1"}
        if name == "PJSIPShowEndpoints":
            return [{"Event": "EndpointList", "ObjectName": e, "DeviceState": "Not in use",
                     "Contacts": f"{e}/{kamailio.format(e)},"} for e in ("2401", "2402")]
        if name == "PJSIPShowContacts":
            return [{"Event": "ContactListComplete"}]
        assert name == "PJSIPShowEndpoint"
        asked.append(action["Endpoint"])
        status = {"2401": "Reachable", "2402": "NonQualified"}[action["Endpoint"]]  # 2402: not qualified yet
        return [{"Event": "EndpointDetail", "ObjectName": action["Endpoint"]},
                {"Event": "ContactStatusDetail", "AOR": action["Endpoint"], "URI": kamailio.format(action["Endpoint"]),
                 "Status": status}, {"Event": "EndpointDetailComplete"}]

    p.manager.send_action = send_action
    await p._snapshot()
    assert sorted(asked) == ["2401", "2402"]
    assert p.reachable("2401") is True and not p.reachable("2402")
    assert ("2401", "registered") in log.rows and ("2402", "registered") not in log.rows


async def test_phones_that_register_need_no_question_per_endpoint():
    p, log = presence()
    asked = []
    answer = p.manager.send_action

    async def send_action(action):
        asked.append(action["Action"])
        return await answer(action)

    p.manager.send_action = send_action
    await p._snapshot()
    assert "PJSIPShowEndpoint" not in asked
