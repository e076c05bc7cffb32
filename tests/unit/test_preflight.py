"""Before Asterisk starts: a leftover of this data directory is stopped, and a port held by
anything else is refused with the process that holds it and the command that frees it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from ivr.pbx import preflight
from ivr.pbx.asterisk import Layout, PbxError

from ..conftest import free_port


def fake_asterisk(conf: str) -> subprocess.Popen:
    """A process whose command line is an Asterisk's running ``conf`` (it only sleeps).

    Returned once its command line shows: until the exec, /proc still shows the test's own,
    and preflight (rightly) would not take it for an Asterisk."""
    import time

    proc = subprocess.Popen(["asterisk", "-c", "import time; time.sleep(60)", "-f", "-n", "-C", conf],
                            executable=sys.executable)
    deadline = time.monotonic() + 10
    while conf not in preflight.command_line(proc.pid):
        assert time.monotonic() < deadline, f"the fake Asterisk (PID {proc.pid}) never showed its command line"
        time.sleep(0.01)  # polling /proc; bounded by the deadline above
    return proc


@pytest.fixture
def native(settings_factory):
    def make(**env):
        ports = {"TONGDAI_SIP_PORT": str(free_port()), "TONGDAI_ARI_PORT": str(free_port(socket.SOCK_STREAM)),
                 "TONGDAI_AMI_PORT": str(free_port(socket.SOCK_STREAM))}
        return Layout.for_settings(settings_factory(TONGDAI_ASTERISK="native", TONGDAI_ASTERISK_BIN="/bin/true",
                                                    **{**ports, **env}))
    return make


def test_a_leftover_of_this_instance_is_stopped_and_said(native):
    layout = native()
    left = fake_asterisk(layout.ast("etc") + "/asterisk.conf")
    other = fake_asterisk("/srv/tongdai/someone-else/etc/asterisk.conf")
    said: list[str] = []
    try:
        assert preflight.leftovers(layout) == [left.pid]
        preflight.before_start(layout, replace=True, say=said.append)
        assert left.wait(5) is not None
        assert other.poll() is None  # not this instance's: never touched
        assert len(said) == 1 and f"PID {left.pid}" in said[0]
    finally:
        for p in (left, other):
            p.kill()
            p.wait()


def test_sandbox_start_keeps_the_running_instance(native):
    layout = native()
    running = fake_asterisk(layout.ast("etc") + "/asterisk.conf")
    layout.settings.home.mkdir(parents=True, exist_ok=True)
    layout.pid_file.write_text(f"{running.pid}\n")
    said: list[str] = []
    try:
        preflight.before_start(layout, replace=False, say=said.append)
        assert running.poll() is None and said == []
        assert layout.pid() == running.pid
    finally:
        running.kill()
        running.wait()


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_a_port_held_by_another_process_is_refused_naming_it(native, kind):
    layout = native()
    s = layout.settings
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    port = s.sip_port if kind == "udp" else s.ami_port
    try:
        sock.bind(("127.0.0.1", port))
        if kind == "tcp":
            sock.listen()
        assert [h.pid for h in preflight.holders(port)] == [os.getpid()]
        with pytest.raises(PbxError) as e:
            preflight.before_start(layout, replace=True, say=lambda m: None)
        text = str(e.value)
        assert f"PID {os.getpid()}" in text and f"kill {os.getpid()}" in text and str(port) in text
        assert ("TONGDAI_SIP_PORT" if kind == "udp" else "TONGDAI_AMI_PORT") in text
    finally:
        sock.close()
    assert preflight.holders(port) == []
    preflight.before_start(layout, replace=True, say=lambda m: None)  # free now: nothing to say
