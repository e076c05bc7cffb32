"""`tongdai status`: is the hotline up, who is calling, which desk phones can be reached, is
there room for the recordings.

Asks the running controller over its control socket; when no controller runs, asks Asterisk
directly over AMI and the database for when each phone was last seen. The recordings' disk is
looked at here, whoever answers: this command runs on the same machine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
from zoneinfo import ZoneInfo

from ivr import control
from ivr.config import credentials as secrets_mod
from ivr.config import routing as rt
from ivr.config.settings import Settings

STATE_VI = {
    "answering": "đang trả lời", "greeting": "lời chào", "menu": "đang chọn", "dialing": "đang đổ chuông",
    "queue": "đang chờ trong hàng đợi",
    "bridged": "đang đàm thoại", "complaint": "ghi âm phản ánh", "survey": "khảo sát", "ended": "kết thúc",
}


# A conversation recorded as 8 kHz 16-bit WAV (ivr.call.recording.FORMAT): 16 000 bytes a second.
MB_PER_HOUR = 16000 * 3600 / 2**20


async def gather(settings: Settings, routing: rt.Routing) -> dict:
    """The status as a JSON-able dict (the same shape whether or not the controller runs)."""
    st = await _gather(settings, routing)
    st["recordings_disk"] = recordings_disk(settings)
    return st


def recordings_disk(settings: Settings) -> dict:
    """Free space where recordings are written, and whether it is below the warning threshold
    (TONGDAI_RECORDINGS_MIN_FREE_MB)."""
    where = settings.home / "recordings"
    while not where.exists() and where != where.parent:
        where = where.parent  # not made yet: the disk it will be on
    usage = shutil.disk_usage(where)
    free_mb = usage.free // 2**20
    return {"path": str(where), "free_mb": free_mb, "total_mb": usage.total // 2**20,
            "min_free_mb": settings.recordings_min_free_mb, "hours_left": round(free_mb / MB_PER_HOUR, 1),
            "low": free_mb < settings.recordings_min_free_mb}


async def _gather(settings: Settings, routing: rt.Routing) -> dict:
    try:
        st = await control.request(settings.home, "GET", "/status")
        st["source"] = "controller"
        return st
    except ConnectionError as e:
        why = str(e)
    st = {"source": "ami", "controller": {"running": False, "why": why}, "ari": {"connected": False},
          "ami": {"connected": False}, "asterisk": {"version": None}, "calls": [], "phones": {}}
    from ivr.pbx.presence import Presence

    sec = secrets_mod.load(settings.secrets_path, list(routing.extensions))
    history: dict = {}
    try:
        from ivr.records import db
        from ivr.records.calllog import last_presence

        path = db.sqlite_path(settings.database_url)
        if path is not None and not path.startswith("file:") and not os.path.isfile(path):
            raise FileNotFoundError(path)  # reading would create it, empty
        engine = db.engine(settings)
        try:
            history = await asyncio.wait_for(last_presence(engine), 5)
        finally:
            await engine.dispose()
    except Exception:
        history = {}
    pres = Presence(settings.bind, settings.ami_port, sec.ami_user, sec.ami_password, lambda: routing, None)
    try:
        await pres.start(history)
        if await pres.wait_ready(3):
            st["ami"]["connected"] = True
            st["asterisk"]["version"] = pres.asterisk_version
            st["phones"] = pres.status()
        else:
            st["phones"] = {ext: {"status": s, "since": at.isoformat(), "device_state": None, "address": None,
                                  "last_seen": at.isoformat() if up and s != "registered" else None}
                            for ext, (s, at, up) in history.items()}
    finally:
        pres.close()
    return st


def render(st: dict, routing: rt.Routing, tz: str) -> str:
    """The status for a person, in Vietnamese."""
    zone = ZoneInfo(tz)

    def local(iso: str | None) -> str:
        if not iso:
            return "—"
        return dt.datetime.fromisoformat(iso).astimezone(zone).strftime("%d/%m %H:%M")

    out = []
    disk = st.get("recordings_disk")
    if disk and disk["low"]:
        out.append(f"CẢNH BÁO: ổ lưu bản ghi âm ({disk['path']}) chỉ còn {disk['free_mb']} MB trống, dưới ngưỡng "
                   f"{disk['min_free_mb']} MB (TONGDAI_RECORDINGS_MIN_FREE_MB): dọn bớt (`tongdai recordings prune`) "
                   "hoặc thêm dung lượng, kẻo cuộc gọi không được ghi âm.")
    ctl = st.get("controller", {})
    if st.get("source") == "controller":
        out.append(f"Bộ điều khiển: đang chạy (PID {ctl.get('pid')}, từ {local(ctl.get('started_at'))})"
                   + ("" if ctl.get("accepting") else ", đang dừng — không nhận cuộc gọi mới"))
    else:
        out.append("Bộ điều khiển: KHÔNG chạy")
    ver = st.get("asterisk", {}).get("version")
    out.append(f"Asterisk: {'đang chạy, phiên bản ' + ver if ver else 'KHÔNG liên lạc được'}")
    out.append(f"ARI: {'đã kết nối' if st['ari']['connected'] else 'chưa kết nối'} · "
               f"AMI: {'đã kết nối' if st['ami']['connected'] else 'chưa kết nối'}")
    calls = st.get("calls", [])
    out.append(f"Cuộc gọi đang diễn ra: {len(calls)}")
    for c in calls:
        branch = f"nhánh {c['branch']}" if c.get("branch") else "chưa chọn nhánh"
        out.append(f"  {c['caller']:<14} {branch:<16} {STATE_VI.get(c['state'], c['state']):<16} {c['duration_s']:.0f} giây")
    queues = st.get("queues") or {}
    if queues:
        out.append("Đang chờ trong hàng đợi: " + ", ".join(f"nhánh {b}: {n}" for b, n in sorted(queues.items())))
    callbacks = st.get("callbacks") or {}
    if callbacks:
        out.append("Chờ gọi lại (giữ chỗ trong hàng đợi): "
                   + ", ".join(f"nhánh {b}: {n}" for b, n in sorted(callbacks.items())))
    phones = st.get("phones", {})
    up = sum(1 for p in phones.values() if p.get("status") == "registered")
    out.append(f"Máy bàn đã đăng ký: {up}/{len(routing.extensions)}")
    by_agency: dict[str, list[str]] = {}
    for ext in routing.extensions.values():
        by_agency.setdefault(ext.agency, []).append(ext.number)
    for code, exts in by_agency.items():
        agency = routing.agencies.get(code)
        parts = []
        for n in sorted(exts):
            p = phones.get(n) or {}
            if p.get("status") == "registered":
                parts.append(f"{n} ✓ (từ {local(p.get('since'))})")
            elif p.get("status") == "unreachable":  # registered, but no answer to qualify (unplugged?)
                parts.append(f"{n} ✗ không phản hồi (lần cuối {local(p.get('last_seen'))})")
            elif p.get("last_seen"):
                parts.append(f"{n} ✗ (lần cuối {local(p.get('last_seen'))})")
            else:
                parts.append(f"{n} ✗ (chưa đăng ký lần nào)")
        out.append(f"  {agency.name if agency else code}: " + ", ".join(parts))
    if disk:
        out.append(f"Ổ lưu bản ghi âm: còn {disk['free_mb']} MB trống (khoảng {disk['hours_left']:g} giờ đàm thoại; "
                   f"cảnh báo dưới {disk['min_free_mb']} MB)")
    return "\n".join(out)
