"""The cluster's parts that need no Asterisk (docs/cluster.md): case codes unique across nodes,
a dead node's calls closed by a survivor, node settings, Kamailio's files and its dispatcher's view.
The whole cluster, with Kamailio, two Asterisk nodes and SIPp, is tests/e2e/test_cluster.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil

import pytest
from sqlalchemy import select

from ivr.cluster import kamailio as kam
from ivr.cluster import nodes as nodes_mod
from ivr.cluster.watch import NodeWatch
from ivr.config import credentials as sec_mod
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.models import Call, Case
from ivr.records import cases as cm
from ivr.records import db
from ivr.records.calllog import CallLog, CallRecord
from tests.conftest import require
from tests.paths import REPO_ROOT

ROUTING = rt.load(REPO_ROOT / "routing.yaml")


def test_case_codes_are_a_permutation_of_the_code_space():
    key = "ab" * 32
    codes = [cm.code_for(n, key) for n in range(20000)]
    assert len(set(codes)) == len(codes)
    assert all(len(c) == cm.CODE_DIGITS and c[0] != "0" for c in codes)
    # Consecutive cases do not get consecutive codes, and another key gives other codes.
    assert sum(abs(int(a) - int(b)) == 1 for a, b in zip(codes, codes[1:])) < 20
    assert [cm.code_for(n, "cd" * 32) for n in range(50)] != codes[:50]
    with pytest.raises(cm.CaseError):
        cm.code_for(cm.CODE_SPACE, key)


async def test_two_nodes_creating_cases_at_once_never_share_a_code(db_settings):
    """Two engines (two nodes' controllers) on one database, creating cases concurrently."""
    await asyncio.to_thread(db.upgrade, db_settings)
    engines = [db.engine(db_settings), db.engine(db_settings)]
    try:
        services = [cm.Cases(e, ROUTING) for e in engines]

        async def make(svc: cm.Cases, i: int) -> str:
            case = await svc.create(cm.NewCase(channel="phone", caller=f"09090{i:05d}"))
            return case.code

        codes = await asyncio.gather(*(make(services[i % 2], i) for i in range(40)))
        assert len(set(codes)) == 40
        async with engines[0].connect() as conn:
            assert len((await conn.execute(select(Case.code))).all()) == 40
    finally:
        for e in engines:
            await e.dispose()


async def test_a_random_code_from_an_outage_is_skipped_by_the_counter(db_settings):
    await asyncio.to_thread(db.upgrade, db_settings)
    engine = db.engine(db_settings)
    try:
        svc = cm.Cases(engine, ROUTING)
        first = await svc.create(cm.NewCase(channel="web", caller=None, summary="một"))
        key = await _key(engine)
        assert first.code == cm.code_for(0, key)
        # A code told to a caller while the database was down, stored later (the spool's replay),
        # sits where the counter arrives next: the counter passes over it.
        await svc.create(cm.NewCase(channel="phone", caller="0909000001"), code=cm.code_for(1, key))
        second = await svc.create(cm.NewCase(channel="web", caller=None, summary="hai"))
        assert second.code == cm.code_for(2, key)
    finally:
        await engine.dispose()


async def _key(engine) -> str:
    from ivr.models import CaseCodeCounter

    async with engine.connect() as conn:
        return (await conn.execute(select(CaseCodeCounter.key))).scalar_one()


def _record(cid: str, started: dt.datetime) -> CallRecord:
    return CallRecord(id=cid, caller="0909000111", hotline="1022", started_at=started)


async def test_a_survivor_closes_the_calls_of_a_node_that_stopped_beating(db_settings):
    await asyncio.to_thread(db.upgrade, db_settings)
    engine = db.engine(db_settings)
    try:
        t0 = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
        up = {"node1": True, "node2": True}
        w1 = NodeWatch(engine, "node1", lambda: up["node1"], dead_after=10)
        w2 = NodeWatch(engine, "node2", lambda: up["node2"], dead_after=10)
        await w1.tick(t0)
        await w2.tick(t0)
        logs = {n: CallLog(engine, node=n) for n in ("node1", "node2")}
        for log in logs.values():
            log.start()
        logs["node1"].opened(_record("node1-1.1", t0 - dt.timedelta(seconds=5)))
        logs["node2"].opened(_record("node2-1.1", t0 - dt.timedelta(seconds=5)))
        for log in logs.values():
            await log.flush()
        # node1's Asterisk dies: node1 stops beating; node2 goes on. Not yet dead after 5 s…
        up["node1"] = False
        assert await w1.tick(t0 + dt.timedelta(seconds=5)) == []
        assert await w2.tick(t0 + dt.timedelta(seconds=5)) == []
        # …dead after 10: node2 closes node1's call, never its own.
        assert await w2.tick(t0 + dt.timedelta(seconds=12)) == ["node1-1.1"]
        assert await w2.tick(t0 + dt.timedelta(seconds=14)) == []  # once
        async with engine.connect() as conn:
            rows = dict((await conn.execute(select(Call.id, Call.disposition))).all())
            ended = (await conn.execute(select(Call.ended_at).where(Call.id == "node1-1.1"))).scalar_one()
        assert rows == {"node1-1.1": "interrupted", "node2-1.1": "in_progress"}
        assert ended == t0
        # A node cut off from its own Asterisk judges no other.
        up["node2"] = False
        assert await w2.tick(t0 + dt.timedelta(seconds=60)) == []
        for log in logs.values():
            await log.close()
    finally:
        await engine.dispose()


def test_nodes_get_their_own_address_ports_home_and_rtp_slice(tmp_path):
    s = Settings.from_env({"TONGDAI_HOME": str(tmp_path), "TONGDAI_SIP_PORT": "45060", "TONGDAI_ARI_PORT": "45088",
                           "TONGDAI_AMI_PORT": "45038", "TONGDAI_RTP_START": "40000", "TONGDAI_RTP_END": "40999",
                           "TONGDAI_ASTERISK": "sandbox"})
    plan = nodes_mod.plan(s, 2, "postgresql+asyncpg://x@127.0.0.1:1/t")
    a, b = (n.settings for n in plan)
    assert (a.bind, b.bind) == ("127.0.0.11", "127.0.0.12")
    assert (a.node, b.node) == ("node1", "node2") and a.sip_proxy == ("127.0.0.1", 45060)
    assert a.home != b.home and a.home.parent == tmp_path / "cluster"
    assert len({a.sip_port, b.sip_port, a.ari_port, b.ari_port, a.ami_port, b.ami_port}) == 6
    assert a.rtp_end < b.rtp_start and b.rtp_end <= 40999
    assert a.database_url == b.database_url == "postgresql+asyncpg://x@127.0.0.1:1/t"
    with pytest.raises(ValueError):
        nodes_mod.plan(s, 0, "x")


def test_a_node_renders_desk_phones_behind_kamailio(tmp_path):
    from ivr.config import credentials as sec_mod
    from ivr.dialplan import render as rd

    s = Settings.from_env({"TONGDAI_HOME": str(tmp_path), "TONGDAI_ASTERISK": "sandbox"})
    node = nodes_mod.plan(s, 2, "sqlite+aiosqlite:///x")[0].settings
    files = rd.render(ROUTING, node, sec_mod.load(node.secrets_path, list(ROUTING.extensions)))
    pjsip = files["pjsip.conf"]
    assert "contact = sip:2401@127.0.0.1:5060" in pjsip
    assert "password" not in pjsip  # the phones authenticate with Kamailio, not with the node
    assert "systemname = node1" in files["asterisk.conf"]
    single = rd.render(ROUTING, s, sec_mod.load(s.secrets_path, list(ROUTING.extensions)))
    assert "systemname" not in single["asterisk.conf"] and "contact = sip:" not in single["pjsip.conf"]


DISPATCHER_LIST = """{
\tNRSETS: 1
\tRECORDS: {
\t\tSET: {
\t\t\tID: 1
\t\t\tTARGETS: {
\t\t\t\tDEST: {
\t\t\t\t\tURI: sip:127.0.0.12:45062
\t\t\t\t\tFLAGS: IP
\t\t\t\t\tPRIORITY: 0
\t\t\t\t\tATTRS: {
\t\t\t\t\t\tBODY: duid=node2
\t\t\t\t\t\tDUID: node2
\t\t\t\t\t}
\t\t\t\t}
\t\t\t\tDEST: {
\t\t\t\t\tURI: sip:127.0.0.11:45061
\t\t\t\t\tFLAGS: AP
\t\t\t\t\tPRIORITY: 0
\t\t\t\t\tATTRS: {
\t\t\t\t\t\tBODY: duid=node1
\t\t\t\t\t\tDUID: node1
\t\t\t\t\t}
\t\t\t\t}
\t\t\t}
\t\t}
\t}
}
"""


def test_the_dispatchers_view_of_each_node():
    got = {t.name: t.healthy for t in kam.parse_dispatcher_list(DISPATCHER_LIST)}
    assert got == {"node1": True, "node2": False}


def test_kamailio_accepts_the_rendered_configuration(tmp_path):
    """`kamailio -c` on what `cluster up` writes (Kamailio is a system dependency)."""
    require(shutil.which("kamailio") is not None or kam.os.path.exists("/usr/sbin/kamailio"),
            "Kamailio is not installed (scripts/install-system-deps.sh installs it)")
    s = Settings.from_env({"TONGDAI_HOME": str(tmp_path), "TONGDAI_SIP_PORT": "45960",
                           "TONGDAI_TRUNK_MATCH": "127.0.0.1,10.1.2.0/24"})
    k = kam.Kamailio(s)
    k.render(ROUTING, [("node1", "127.0.0.11", 45961), ("node2", "127.0.0.12", 45962)])
    k.check()
    assert 'is_in_subnet("$si", "10.1.2.0/24")' in k.cfg.read_text()
    assert (k.dir / "dispatcher.list").read_text().count("duid=node") == 2
    assert oct(k.dir.stat().st_mode & 0o777) == "0o700"
    # Started: the passwords go into its table over the control socket, and it says which
    # phones are registered (none yet).
    k.start()
    try:
        k.load_credentials(ROUTING)
        assert f"value: {sec_mod.load(s.secrets_path).sip_password('2401')}\n" in k.rpc("htable.get", "creds", "s:2401")
        assert k.registered() == []
        assert {t.name for t in k.targets()} == {"node1", "node2"}
    finally:
        assert k.stop()
