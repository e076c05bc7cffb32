"""`tongdai run` (what `make run` runs) starts the staff console beside the controller, names its
address in the ``ready:`` line, and stops it with everything else on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from .conftest import HERE, _pick, need

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _free_tcp() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_run_starts_the_console_and_stops_it(tmp_path):
    need(os.geteuid() == 0 or os.environ.get("TONGDAI_ASTERISK") == "native", "the Asterisk sandbox needs root")
    web_port = _free_tcp()
    env = {**os.environ,
           "TONGDAI_HOME": str(tmp_path / "home"), "TONGDAI_SIP_PORT": str(_pick(26060)),
           "TONGDAI_ARI_PORT": str(_pick(29088)), "TONGDAI_AMI_PORT": str(_pick(26038)),
           "TONGDAI_RTP_START": "32000", "TONGDAI_RTP_END": "32499",
           "TONGDAI_WEB_ADDR": f"127.0.0.1:{web_port}", "TONGDAI_PROMPTS": str(HERE / "prompts-test.yaml"),
           "PYTHONUNBUFFERED": "1"}
    env.pop("TONGDAI_DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr", "run", "--grace", "2", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True)  # its own group: Ctrl-C goes to it all
    seen: list[str] = []
    try:
        url = None
        loop = asyncio.get_running_loop()
        end = loop.time() + 300  # the first run builds the instance's prompts
        while url is None and loop.time() < end:
            line = (await asyncio.wait_for(proc.stdout.readline(), max(1.0, end - loop.time()))).decode()
            assert line, "tongdai run exited before ready:\n" + "".join(seen[-40:])
            seen.append(line)
            m = re.match(r"ready: .*bảng điều khiển web (http://\S+)", line)
            if m:
                url = m.group(1)
        assert url == f"http://127.0.0.1:{web_port}/", "".join(seen[-40:])
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "login") as r:
                assert r.status == 200 and "Đăng nhập" in await r.text()
            async with http.get(url + "cases", allow_redirects=False) as r:
                assert r.status == 303
        # The console yields the CPU to the calls: its session as a whole (autogroup), else nice
        # would not count against Asterisk's session (docs/performance.md).
        web = [pid for pid in _children(proc.pid) if b"\0web" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(web) == 1, _children(proc.pid)
        assert os.getpriority(os.PRIO_PROCESS, web[0]) == 10
        assert Path(f"/proc/{web[0]}/autogroup").read_text().strip().endswith("nice 10")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        await asyncio.wait_for(proc.wait(), 90)
        rest = (await proc.stdout.read()).decode()
        assert proc.returncode == 0, "".join(seen[-20:]) + rest
        assert "Đã dừng tổng đài, bảng điều khiển web và Asterisk." in rest
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "login") as r:
                    pass
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
