"""`make bench` = `python -m bench [--quick]`: every benchmark of the project, one after the other.

- ``bench.capacity``: the hotline's call capacity against a dialplan-only IVR (always).
- ``bench.reconnect``: Asterisk booted → controller ready, over a few Asterisk restarts (always).
- ``bench.queue``: the branch queue with more callers than desk phones: every caller answered or
  called back, none lost, CPU per caller (``python -m bench.queue [--quick]``, always).
- ``bench.export``: the export benchmark, run as ``python -m bench.export [--quick]`` when that
  module exists in this checkout (it is skipped, with a note, when it does not).
- ``bench.console``: the staff console at 100,000 cases and 1,000,000 calls, and calls with the
  console loaded (``python -m bench.console [--quick]``).
- ``bench.cluster``: two nodes behind Kamailio, failover times (``python -m bench.cluster [--quick]``).

Arguments other than ``--quick`` go to the capacity bench (``--levels``, ``--talk``, ``--profile``,
``--keep``, ``--out``; see ``python -m bench.capacity --help``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from bench import capacity, reconnect


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    code = capacity.main(argv)
    print("\nbench: controller back after an Asterisk restart (python -m bench.reconnect)", flush=True)
    out = argv[argv.index("--out"):argv.index("--out") + 2] if "--out" in argv else []
    code = reconnect.main((["--quick"] if quick else []) + out) or code
    print("\nbench: the branch queue, more callers than desk phones (python -m bench.queue)", flush=True)
    code = subprocess.run([sys.executable, "-m", "bench.queue", *(["--quick"] if quick else [])]).returncode or code
    if importlib.util.find_spec("bench.export") is None:
        print("\nbench: no bench/export.py in this checkout; export benchmark skipped")
        return code
    print("\nbench: export benchmark (python -m bench.export)", flush=True)
    export = subprocess.run([sys.executable, "-m", "bench.export", *(["--quick"] if quick else [])])
    print("\nbench: the staff console (python -m bench.console)", flush=True)
    console = subprocess.run([sys.executable, "-m", "bench.console", *(["--quick"] if quick else [])])
    print("\nbench: the cluster's failover (python -m bench.cluster)", flush=True)
    cluster = subprocess.run([sys.executable, "-m", "bench.cluster", *(["--quick"] if quick else [])])
    return code or export.returncode or console.returncode or cluster.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
