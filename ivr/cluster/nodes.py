"""A cluster node's settings, derived from the cluster's own (docs/cluster.md).

Node ``i`` (1, 2, …) is named ``node<i>``, listens on 127.0.0.<10+i> (a loopback address of its
own, so SIP, ARI and AMI never collide with the edge or another node), on the cluster's SIP, ARI
and AMI port numbers plus ``i``, with a slice of the RTP range, and keeps its Asterisk instance,
secrets (ARI/AMI) and spools in ``$TONGDAI_HOME/cluster/node<i>``. The call log, the cases and
everything else shared is in the one database (TONGDAI_DATABASE_URL), and desk phones are
reached through Kamailio (TONGDAI_SIP_PROXY).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ivr.config.settings import Settings

MAX_NODES = 9
# Variables a node never inherits from the cluster's environment: they are the node's own.
OWN = ("TONGDAI_HOME", "TONGDAI_BIND", "TONGDAI_SIP_PORT", "TONGDAI_ARI_PORT", "TONGDAI_AMI_PORT",
       "TONGDAI_RTP_START", "TONGDAI_RTP_END", "TONGDAI_NODE", "TONGDAI_SIP_PROXY", "TONGDAI_DATABASE_URL",
       "TONGDAI_WEB_ADDR")


@dataclass(frozen=True)
class Node:
    index: int
    name: str
    address: str
    home: Path
    env: dict[str, str]  # the node's whole environment (for its controller and Settings)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)


def node_home(cluster: Settings, index: int) -> Path:
    return cluster.home / "cluster" / f"node{index}"


def plan(cluster: Settings, count: int, database_url: str) -> list[Node]:
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"--nodes {count}: expected 1 to {MAX_NODES}")
    span = (cluster.rtp_end - cluster.rtp_start + 1) // count
    if span < 100:
        raise ValueError(f"TONGDAI_RTP_START..END has too few ports for {count} nodes")
    base = {k: v for k, v in cluster.env.items() if k not in OWN}
    nodes = []
    for i in range(1, count + 1):
        home = node_home(cluster, i)
        address = f"127.0.0.{10 + i}"
        rtp = cluster.rtp_start + (i - 1) * span
        env = {
            **base,
            "TONGDAI_HOME": str(home),
            "TONGDAI_ROUTING": str(cluster.routing_path),
            "TONGDAI_BIND": address,
            "TONGDAI_SIP_PORT": str(cluster.sip_port + i),
            "TONGDAI_ARI_PORT": str(cluster.ari_port + i),
            "TONGDAI_AMI_PORT": str(cluster.ami_port + i),
            "TONGDAI_RTP_START": str(rtp),
            "TONGDAI_RTP_END": str(rtp + span - 1),
            "TONGDAI_NODE": f"node{i}",
            "TONGDAI_SIP_PROXY": f"{cluster.bind}:{cluster.sip_port}",
            "TONGDAI_DATABASE_URL": database_url,
            "TONGDAI_ASTERISK": cluster.asterisk_mode,
            "TONGDAI_SANDBOX_DIR": str(cluster.sandbox_dir),
        }
        nodes.append(Node(i, f"node{i}", address, home, env))
    return nodes
