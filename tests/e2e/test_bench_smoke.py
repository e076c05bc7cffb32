"""`make bench QUICK=1`: the capacity bench's smoke level, so that the bench cannot rot.

Runs ``python -m bench.capacity --quick`` (a real Asterisk, the controller as its own process,
SIPp callers and desk phones, a handful of calls through the project and through the dialplan-only
baseline) and checks the results file makes sense. The bench's targets are goals it prints,
never assertions here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.paths import REPO_ROOT

from .conftest import need

pytestmark = [pytest.mark.e2e, pytest.mark.capacity]


def test_quick_bench_measures_both_variants(tmp_path):
    need(shutil.which("sipp") is not None, "SIPp (Debian package sip-tester) is not installed")
    need(os.geteuid() == 0 or os.environ.get("TONGDAI_ASTERISK") == "native",
         "the Asterisk sandbox needs root (debootstrap, chroot)")
    p = subprocess.run([sys.executable, "-m", "bench.capacity", "--quick", "--out", str(tmp_path)],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1, p.stdout
    result = json.loads(files[0].read_text())
    assert result["quick"] is True
    rows = {r["variant"]: r for r in result["levels"]}
    assert set(rows) == {"project", "baseline"}
    for variant, r in rows.items():
        assert r["attempted"] == r["calls"] > 0, (variant, r)
        assert r["succeeded"] > 0, (variant, r["failures"], p.stdout[-2000:])
        assert r["succeeded"] + r["failed"] == r["attempted"]
        for key in ("answer_latency_ms", "post_dial_delay_ms"):
            lat = r[key]
            assert lat["n"] > 0 and 0 <= lat["p50"] <= lat["p95"] <= lat["p99"], (variant, key, lat)
        # The digit is pressed during the greeting: the desk phone rings once the announcement
        # has played, so the post-dial delay is at least that long, and not absurdly more.
        assert result["setup"]["announcement_ms"] * 0.9 <= r["post_dial_delay_ms"]["p50"] < 30000
        assert r["asterisk_cpu_s_per_call"] > 0
    # Where the project's post-dial delay goes: every step measured for the calls that rang,
    # none negative beyond clock jitter, and together the delay less the announcement.
    steps = rows["project"]["post_dial_steps_ms"]
    assert list(steps) == ["digit", "reaction", "announcement", "dial", "invite"], steps
    for name, st in steps.items():
        assert st["n"] == rows["project"]["post_dial_delay_ms"]["n"] and st["p50"] > -20, (name, st)
    over = rows["project"]["pdd_over_announcement_ms"]["p50"]
    assert abs(sum(st["p50"] for st in steps.values()) - over) < 25 + 0.25 * abs(over), (steps, over)
    assert "post_dial_steps_ms" not in rows["baseline"] or not rows["baseline"]["post_dial_steps_ms"]
    assert rows["project"]["controller_cpu_s_per_call"] > 0
    assert rows["project"]["controller_peak_rss_mb"] > 10
    assert "targets (goals, not assertions)" in p.stdout
    if result.get("chart"):
        assert (tmp_path / result["chart"]).stat().st_size > 1000
