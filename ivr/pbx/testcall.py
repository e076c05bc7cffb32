"""`tongdai call`: one real test call through SIPp against the running system.

The call comes in as from the telco trunk, presses the digits, talks, and the result is read back
from the call log. Unless told otherwise, a desk phone of the chosen branch is simulated by a
SIPp phone that registers with that extension's credentials (only if no phone of the branch is
registered already, so real phones are never displaced).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import socket
import tempfile
import zoneinfo
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from ivr.config import credentials as secrets_mod
from ivr.config.routing import Routing
from ivr.config.settings import Settings
from ivr.pbx import sipp
from ivr.pbx.asterisk import Layout, PbxError
from ivr.records import db


class TestCallError(Exception):
    pass


def _ports(start: int) -> tuple[int, int, int]:
    port = start
    while port < 65000:
        ok = True
        for p in range(port, port + 8):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    try:
                        s.bind(("127.0.0.1", p))
                    except OSError:
                        ok = False
        if ok:
            return port, port + 2, port + 6
        port += 10
    raise TestCallError("no free local ports for SIPp")


def _registered(layout: Layout, ext: str) -> bool:
    try:
        return "Contact:" in layout.rx(f"pjsip show aor {ext}") and f"{ext}/sip:" in layout.rx(f"pjsip show aor {ext}")
    except PbxError:
        return False


async def run(s: Settings, r: Routing, *, digits: str, hotline: str, caller: str, talk: float,
              simulate_desk: bool) -> tuple[list[str], bool]:
    """Place the call; return the lines to print and whether a desk phone answered.

    SIPp's message traces are removed after a good call and kept (their folder is printed)
    after a bad one.
    """
    work = Path(tempfile.mkdtemp(prefix="tongdai-call-"))
    try:
        lines, ok = await _run(s, r, digits=digits, hotline=hotline, caller=caller, talk=talk,
                               simulate_desk=simulate_desk, work=work)
    except BaseException:  # the error is what gets printed; no folder to point at
        shutil.rmtree(work, ignore_errors=True)
        raise
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        lines.append(f"Nhật ký SIP (SIPp) của cuộc gọi thử được giữ lại tại: {work}")
    return lines, ok


async def _run(s: Settings, r: Routing, *, digits: str, hotline: str, caller: str, talk: float,
               simulate_desk: bool, work: Path) -> tuple[list[str], bool]:
    layout = Layout.for_settings(s)
    if not layout.running():
        raise TestCallError("Asterisk không chạy: hãy chạy `make run` ở một cửa sổ khác trước")
    branch = r.branch(digits[:1]) if digits else None
    sec = secrets_mod.load(s.secrets_path, list(r.extensions))
    lines: list[str] = []
    desk = None
    started = dt.datetime.now(dt.timezone.utc)
    if simulate_desk and branch and not any(_registered(layout, t) for t in branch.targets):
        ext = branch.targets[0]
        p = _ports(46000)
        desk = sipp.DeskPhone(server_host=s.bind, server_port=s.sip_port, user=ext, password=sec.sip_password(ext),
                              mode="answer", local_port=p[0], media_port=p[1], control_port=p[2],
                              hangup_after_ms=int(talk * 1000), trace_dir=work)
        await desk.start()
        await desk.wait_registered()
        lines.append(f"Giả lập điện thoại bàn {ext} ({r.extensions[ext].name}), tự gác máy sau {talk:g} giây.")
    try:
        p = _ports(47000)
        lines.append(f"Gọi {hotline} từ {caller}, bấm {digits or '(không bấm)'}…")
        result = await sipp.call(server_host=s.bind, server_port=s.sip_port, to=hotline, from_user=caller,
                                 digits=digits or None, digits_at_ms=1500, hold_ms=int((talk + 60) * 1000),
                                 wait_for_bye_ms=int((talk + 60) * 1000), local_port=p[0], media_port=p[1],
                                 control_port=p[2], timeout=talk + 90, trace_dir=work)
    finally:
        if desk:
            await desk.stop()
    lines.append(f"SIP: {result.final_status or 'không trả lời'}; ai gác máy: {result.hung_up_by or '-'}")
    call = await _last_call(s, caller, started)
    if call is None:
        lines.append("Không thấy cuộc gọi trong nhật ký — bộ điều khiển có đang chạy không (`make run`)?")
        return lines, False
    tz = zoneinfo.ZoneInfo(r.hotline.timezone)
    lines.append(f"Cuộc gọi {call.id} lúc {call.started_at.astimezone(tz):%H:%M:%S %d/%m/%Y}")
    if call.branch_digit:
        lines.append(f"  Nhánh {call.branch_digit}: {call.branch_name} — {call.agency_name}")
    lines.append(f"  Người nghe: {call.answered_by or '-'}; kết quả: {call.disposition}; "
                 f"chờ {call.wait_s or 0:.1f} giây, đàm thoại {call.talk_s or 0:.1f} giây")
    if call.disposition == "closed":
        lines.append("  Tổng đài đang ngoài giờ làm việc (hoặc bị đóng). Để thử ngoài giờ: "
                     "`tongdai hours open --until HH:MM`, thử xong: `tongdai hours auto`.")
    if call.case_code:
        lines.append(f"  Đã ghi nhận phản ánh mã {call.case_code} (xem: `tongdai cases show {call.case_code}`).")
    return lines, call.disposition == "answered"


async def _last_call(s: Settings, caller: str, since: dt.datetime):
    from ivr.models import Call

    engine = db.engine(s)
    try:
        sm = async_sessionmaker(engine)
        for _ in range(50):
            async with sm() as session:
                row = (await session.execute(
                    select(Call).where(Call.caller == caller, Call.started_at >= since - dt.timedelta(seconds=2))
                    .order_by(Call.started_at.desc()).limit(1))).scalar_one_or_none()
            if row is not None and row.disposition != "in_progress":
                return row
            await asyncio.sleep(0.2)
        return row
    finally:
        await engine.dispose()
