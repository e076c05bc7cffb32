"""`tongdai cases …`: complaints (phản ánh, kiến nghị) for staff at the server's shell."""

from __future__ import annotations

import click

from ivr.cli.common import actor as _actor
from ivr.cli.common import fail, load_routing, need_database, settings
from ivr.cli.common import fmt_time as _fmt_time
from ivr.vocab import CaseStatus, Category, CloseReason

# -------------------------------------------------------------------------------------- cases


def _cases_call(fn):
    """Run ``fn(cases, routing, settings)`` against the configured database; CaseError -> exit 1."""
    import asyncio

    from ivr.records import cases as cases_mod
    from ivr.records import db as db_mod

    s = settings()
    r = load_routing(s.routing_path)
    need_database(s)

    async def go():
        engine = db_mod.engine(s)
        try:
            return await fn(cases_mod.Cases(engine, r, speak=_speech(s).warm), r, s)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except cases_mod.CaseError as e:
        fail(str(e))


def _speech(s):
    """The speech cache in Asterisk's sounds directory: a change to a case synthesises what the
    phone look-up will say (here, off any call's path)."""
    from ivr.pbx.asterisk import Layout
    from ivr.pbx.speech import Speech

    layout = Layout.for_settings(s)
    return Speech(layout.host(layout.ast("data/sounds/vi")))


def _caller_shown(case, home_affairs: bool) -> str:
    if case.anonymous and not home_affairs:
        return "ẩn danh"
    return (case.caller or "-") + (" (ẩn danh với cơ quan)" if case.anonymous else "")


@click.group()
def cases() -> None:
    """Phản ánh, kiến nghị: danh sách, xem, phân loại, giao, trả lời, đóng."""


@cases.command("list")
@click.option("--status", type=click.Choice(CaseStatus.values()))
@click.option("--agency", help="Mã cơ quan (được giao hoặc sở hữu nhánh).")
@click.option("--overdue", is_flag=True, help="Chỉ những phản ánh quá hạn.")
@click.option("--inspection", is_flag=True, help="Chỉ những phản ánh chuyển Tổ Kiểm tra đột xuất.")
@click.option("--home-affairs", is_flag=True, help="Xem như Sở Nội vụ (hiện số của người gọi ẩn danh).")
def cases_list(status, agency, overdue, inspection, home_affairs) -> None:
    """Danh sách phản ánh."""
    from ivr.records import cases as cm

    async def go(c, r, s):
        if agency and agency not in r.agencies:
            raise cm.CaseError(f"không có cơ quan mã '{agency}'")
        rows = await c.list(status=status, agency=agency, overdue=overdue, inspection=inspection)
        tz = r.hotline.timezone
        for case in rows:
            flags = ("QUÁ HẠN " if cm.is_overdue(case) else "") + ("[KIỂM TRA] " if case.inspection else "")
            assigned = ",".join(a.agency_code for a in case.assignments) or (case.agency_code or "-")
            click.echo(f"{case.code}  {_fmt_time(case.received_at, tz)}  {cm.STATUS_VI[case.status]:<14} "
                       f"{cm.CATEGORY_VI[case.category]:<20} {assigned:<12} hạn {_fmt_time(case.deadline_at, tz)}  "
                       f"{flags}{_caller_shown(case, home_affairs)}")
        click.echo(f"{len(rows)} phản ánh.")

    _cases_call(go)


@cases.command("show")
@click.argument("code")
@click.option("--home-affairs", is_flag=True, help="Xem như Sở Nội vụ (hiện số của người gọi ẩn danh).")
def cases_show(code, home_affairs) -> None:
    """Chi tiết một phản ánh: diễn biến, bản ghi âm."""
    from ivr.records import cases as cm

    async def go(c, r, s):
        case = await c.get(code)
        tz = r.hotline.timezone
        lines = [
            f"Phản ánh {case.code} — {cm.STATUS_VI[case.status]}"
            + (f" ({cm.REASON_VI[case.closed_reason]})" if case.closed_reason else ""),
            f"  Kênh: {case.channel}; người phản ánh: {_caller_shown(case, home_affairs)}",
            f"  Nhánh: {case.branch_digit or '-'} {case.branch_name or ''}; cơ quan: {case.agency_name or '-'}",
            f"  Loại: {cm.CATEGORY_VI[case.category]}; nhận lúc {_fmt_time(case.received_at, tz)}; "
            f"hạn trả lời {_fmt_time(case.deadline_at, tz)}" + (" — QUÁ HẠN" if cm.is_overdue(case) else ""),
            "  Giao cho: " + (", ".join(f"{a.agency_name} ({a.agency_code})" for a in case.assignments) or "chưa giao"),
        ]
        if case.recording:
            seconds = f" ({case.recording_seconds:.0f} giây)" if case.recording_seconds else ""
            lines.append(f"  Bản ghi âm: {s.home / case.recording}{seconds}")
        if case.summary:
            lines.append(f"  Nội dung: {case.summary}")
        if case.answer:
            lines.append(f"  Trả lời: {case.answer}")
        if case.inspection:
            lines.append(f"  Chuyển Tổ Kiểm tra đột xuất: {case.inspection_reason}")
        lines.append("  Diễn biến:")
        for e in case.history:
            move = f" {e.from_status or ''}→{e.to_status}" if e.to_status else ""
            # A note may span lines (an answer): its next lines are indented deeper than an entry.
            note = f" — {e.note}".replace("\n", "\n          ") if e.note else ""
            lines.append(f"    {_fmt_time(e.at, tz)}  {e.actor}: {e.action}{move}{note}")
        click.echo("\n".join(lines))

    _cases_call(go)


def _case_action(action: str, code: str, by: str | None, **kw) -> None:
    from ivr.records import cases as cm

    async def go(c, r, s):
        case = await c.act(code, action, actor=_actor(by), **kw)
        click.echo(f"Phản ánh {case.code}: {cm.STATUS_VI[case.status]}.")
        if action == "answer" and case.channel == "zalo":
            click.echo("Câu trả lời đã được xếp hàng gửi cho người dân qua Zalo (`tongdai zalo outbox`).")
        if action == "answer":
            if _speech(s).ready(case.answer):
                click.echo("Đã tạo bản đọc câu trả lời cho người dân tra cứu qua điện thoại (phím 0).")
            else:
                click.echo("Chưa tạo được bản đọc câu trả lời (espeak-ng, sox?); cuộc gọi tra cứu đầu tiên sẽ tạo lại.",
                           err=True)

    _cases_call(go)


_by = click.option("--by", help="Người thực hiện (mặc định: tên đăng nhập).")
_note = click.option("--note", help="Ghi chú.")


@cases.command("classify")
@click.argument("code")
@click.option("--category", required=True, type=click.Choice(Category.values()))
@_note
@_by
def cases_classify(code, category, note, by) -> None:
    """Phân loại (tính lại hạn trả lời theo loại)."""
    _case_action("classify", code, by, category=category, note=note)


@cases.command("assign")
@click.argument("code")
@click.option("--agency", "agencies", multiple=True, required=True, help="Mã cơ quan; lặp lại để giao nhiều cơ quan.")
@_note
@_by
def cases_assign(code, agencies, note, by) -> None:
    """Giao cho một hoặc nhiều cơ quan xử lý."""
    _case_action("assign", code, by, agencies=list(agencies), note=note)


@cases.command("start")
@click.argument("code")
@_note
@_by
def cases_start(code, note, by) -> None:
    """Bắt đầu xử lý."""
    _case_action("start", code, by, note=note)


@cases.command("answer")
@click.argument("code")
@click.option("--text", required=True, help="Nội dung trả lời.")
@_by
def cases_answer(code, text, by) -> None:
    """Trả lời phản ánh."""
    _case_action("answer", code, by, text=text)


@cases.command("close")
@click.argument("code")
@click.option("--reason", required=True, type=click.Choice(CloseReason.values()))
@_note
@_by
def cases_close(code, reason, note, by) -> None:
    """Đóng phản ánh."""
    _case_action("close", code, by, reason=reason, note=note)


@cases.command("reopen")
@click.argument("code")
@click.option("--note", required=True, help="Lý do mở lại.")
@_by
def cases_reopen(code, note, by) -> None:
    """Mở lại phản ánh đã trả lời hoặc đã đóng."""
    _case_action("reopen", code, by, note=note)


@cases.command("note")
@click.argument("code")
@click.option("--text", required=True, help="Nội dung ghi chú.")
@_by
def cases_note(code, text, by) -> None:
    """Thêm ghi chú vào diễn biến (không đổi trạng thái)."""

    async def go(c, r, s):
        case = await c.note(code, actor=_actor(by), text=text)
        click.echo(f"Phản ánh {case.code}: đã thêm ghi chú.")

    _cases_call(go)


@cases.command("flag-inspection")
@click.argument("code")
@click.option("--reason", required=True, help="Vì sao cần Tổ Kiểm tra đột xuất xem xét.")
@_by
def cases_flag(code, reason, by) -> None:
    """Chuyển phản ánh cho Tổ Kiểm tra đột xuất."""

    async def go(c, r, s):
        case = await c.flag_inspection(code, actor=_actor(by), reason=reason)
        click.echo(f"Phản ánh {case.code}: đã chuyển Tổ Kiểm tra đột xuất.")

    _cases_call(go)


COMMANDS = [cases]
