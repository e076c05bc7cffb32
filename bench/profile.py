"""Read a py-spy ``--format raw`` profile of the controller (``python -m bench --profile``).

``python -m bench.profile FILE`` prints where the controller's CPU went, by area, leaving out the
samples of threads that were only waiting (the event loop in epoll, aiosqlite's worker waiting
for work), which py-spy's non-blocking mode still records.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# The first area whose pattern appears anywhere in a sample's stack gets the sample.
AREAS = (
    ("logging", r"logging/__init__"),
    ("JSON", r"\bjson/"),
    ("call log: database thread (aiosqlite)", r"aiosqlite/core\.py"),
    ("call log: writer (SQLAlchemy)", r"calllog\.py|sqlalchemy/"),
    ("ARI REST requests (aiohttp)", r"Ari\.request"),
    ("ARI websocket events", r"Ari\.run"),
    ("call steps", r"ivr/(call|prompt|menu|route|bridge|survey|complaint|controller)\.py"),
    ("event loop and transports", r"asyncio/|selectors|uvloop|aiohttp/"),
)
IDLE = re.compile(r"(EpollSelector\.select|_connection_worker_thread \(.*core\.py:(59|63)\)|"
                  r"run_forever \(uvloop|Runner\.run \(asyncio/runners\.py:\d+\)$)")


def areas(path: Path) -> tuple[int, Counter]:
    out: Counter = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        if IDLE.search(stack.split(";")[-1]):
            continue
        total += int(n)
        out[next((name for name, pat in AREAS if re.search(pat, stack)), "other")] += int(n)
    return total, out


def report(path: Path) -> list[str]:
    total, out = areas(path)
    if not total:
        return [f"{path.name}: no samples"]
    return [f"{path.name}: {total} busy samples"] + [f"  {100 * n / total:5.1f}%  {name}" for name, n in out.most_common()]


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print("\n".join(report(Path(arg))))
