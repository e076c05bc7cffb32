"""Several Asterisk nodes behind Kamailio with one PostgreSQL (docs/cluster.md).

- :mod:`ivr.cluster.kamailio`: Kamailio's configuration (dispatcher, registrar, credentials),
  its process and what its dispatcher thinks of each node.
- :mod:`ivr.cluster.nodes`: a node's settings (address, ports, data directory) from the cluster's.
- :mod:`ivr.cluster.postgres`: the private PostgreSQL ``tongdai cluster up`` starts when
  TONGDAI_DATABASE_URL is not set.
- :mod:`ivr.cluster.up`: starting, watching and stopping the whole cluster on one machine.
"""
