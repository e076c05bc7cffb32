"""`tongdai surveys …` and `tongdai zalo …`: satisfaction surveys and the Zalo OA, for staff.

Messages are Vietnamese.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from pathlib import Path

import click

from ivr.cli.common import fail as _fail
from ivr.cli.common import need_database
from ivr.config.settings import Settings


def _context():
    from ivr.config import routing as rt

    s = Settings.from_env()
    try:
        r = rt.load(s.routing_path)
    except rt.RoutingError as e:
        _fail(f"{s.routing_path}: {len(e.errors)} lỗi — chạy `tongdai check`")
    return s, r


def _run(fn):
    """Run ``fn(settings, routing, engine)`` against the configured database."""
    from ivr.records import db

    s, r = _context()
    need_database(s)

    async def go():
        engine = db.engine(s)
        try:
            return await fn(s, r, engine)
        finally:
            await engine.dispose()

    from ivr.zalo.surveys import SurveyError

    try:
        return asyncio.run(go())
    except SurveyError as e:
        _fail(str(e))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _local(t: dt.datetime | None, tz: str) -> str:
    return t.astimezone(zoneinfo.ZoneInfo(tz)).strftime("%d/%m/%Y %H:%M") if t else "-"


# ----------------------------------------------------------------------------------- surveys


@click.group()
def surveys() -> None:
    """Khảo sát sự hài lòng (kiểu SIPAS) qua Zalo: nhập danh sách, gửi, báo cáo."""


@surveys.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def surveys_import(csv_file: Path) -> None:
    """Nhập người đã làm thủ tục: cột phone,name,procedure,office,completed_at."""
    from ivr.zalo.surveys import Surveys

    async def go(s, r, engine):
        rep = await Surveys(engine, s.zalo, r.hotline.timezone).import_csv(csv_file, _now())
        if rep.errors:
            for e in rep.errors:
                click.echo(e, err=True)
            _fail(f"{len(rep.errors)} dòng không hợp lệ — chưa nhập gì.")
        click.echo(f"Đã nhập {rep.added} người; bỏ qua {rep.skipped} dòng đã có.")

    _run(go)


@surveys.command("send")
def surveys_send() -> None:
    """Gửi phiếu khảo sát (mỗi người một lần) cho những người chưa được gửi."""
    import aiohttp
    from sqlalchemy import func, select

    from ivr.models.zalo import SurveyRecipient
    from ivr.zalo.service import build
    from ivr.zalo.surveys import Surveys

    async def go(s, r, engine):
        if s.zalo is None:
            _fail("Zalo chưa được cấu hình (TONGDAI_ZALO_APP_ID): không gửi được khảo sát.")
        counts = await Surveys(engine, s.zalo, r.hotline.timezone).enqueue_pending(_now())
        click.echo(f"Xếp hàng: {counts['zns']} tin ZNS, {counts['cs']} tin OA; "
                   f"{counts['skipped']} người không gửi được (xem `tongdai surveys list`).")
        async with aiohttp.ClientSession() as session:
            _, _, outbox = build(s, engine, session, r.hotline.timezone)
            if outbox.quiet.contains(_now()):
                click.echo(f"Đang trong giờ yên lặng {outbox.quiet.label()}: phiếu sẽ được gửi khi hết giờ "
                           "(khi `tongdai serve` đang chạy, hoặc chạy lại lệnh này).")
            while await outbox.run_once(("survey",)):
                pass
        async with engine.connect() as c:
            rows = (await c.execute(select(SurveyRecipient.status, func.count()).group_by(SurveyRecipient.status))).all()
        click.echo("Trạng thái: " + ", ".join(f"{st} {n}" for st, n in sorted(rows)))

    _run(go)


@surveys.command("list")
@click.option("--status", type=click.Choice(["pending", "queued", "sent", "failed", "skipped", "answered"]))
def surveys_list(status: str | None) -> None:
    """Danh sách người được khảo sát và trạng thái phiếu."""
    from sqlalchemy import select

    from ivr.models.zalo import SurveyRecipient

    async def go(s, r, engine):
        q = select(SurveyRecipient).order_by(SurveyRecipient.id)
        if status:
            q = q.where(SurveyRecipient.status == status)
        async with engine.connect() as c:
            rows = (await c.execute(q)).all()
        for x in rows:
            click.echo(f"KS {x.code}  {x.phone}  {x.name}  {x.office}  {x.status}"
                       + (f" ({x.channel})" if x.channel else "") + (f" — {x.reason}" if x.reason else ""))
        click.echo(f"{len(rows)} người.")

    _run(go)


@surveys.command("report")
@click.option("--month", default=lambda: dt.date.today().strftime("%Y-%m"), help="Tháng YYYY-MM (mặc định: tháng này).")
def surveys_report(month: str) -> None:
    """Báo cáo tháng: điểm khảo sát qua Zalo theo nơi giải quyết, bên cạnh điểm đánh giá qua điện thoại."""
    from ivr.records.report import Month, ReportError
    from ivr.zalo.surveys import QUESTIONS, Surveys

    try:
        Month.parse(month, "UTC")  # a bad month is a bad argument: exit 2, before any work
    except ReportError as e:
        _fail(str(e), 2)

    async def go(s, r, engine):
        rep = await Surveys(engine, s.zalo, r.hotline.timezone).report(month)
        click.echo(f"Khảo sát sự hài lòng tháng {month}")
        click.echo("1) Qua Zalo (điểm trung bình 1–5): " + "; ".join(f"({i}) {t}" for i, (_, t) in enumerate(QUESTIONS, 1)))
        for row in rep["zalo"]:
            scores = "  ".join("-" if v is None else f"{v:.2f}" for v in row["scores"])
            sent = rep["sent"].get(row["office"], 0)
            click.echo(f"   {row['office']:<40} {row['answers']:>4} phiếu (gửi {sent})   {scores}")
        if not rep["zalo"]:
            click.echo("   (chưa có phiếu trả lời)")
        click.echo("2) Qua điện thoại, sau cuộc gọi (điểm trung bình 1–5):")
        for row in rep["phone"]:
            click.echo(f"   {row['agency']:<40} {row['answers']:>4} lượt   {row['score']:.2f}")
        if not rep["phone"]:
            click.echo("   (chưa có lượt đánh giá)")

    _run(go)


# -------------------------------------------------------------------------------------- zalo


@click.group()
def zalo() -> None:
    """Zalo OA "Phản ánh về thủ tục hành chính Hậu Giang": trạng thái, hàng đợi gửi tin."""


@zalo.command("status")
def zalo_status() -> None:
    """Cấu hình, access token (chỉ hạn dùng), hàng đợi gửi tin."""
    from sqlalchemy import func, select

    from ivr.models.zalo import OutboxItem, ZaloEvent
    from ivr.zalo.tokens import TokenStore
    from ivr.zalo.webhook import PATH

    if Settings.from_env().zalo is None:  # nothing to show, and no database needed to say so
        click.echo("Zalo: TẮT (đặt TONGDAI_ZALO_APP_ID để bật).")
        return

    async def go(s, r, engine):
        z = s.zalo
        host, port = s.web_addr
        click.echo(f"Zalo: BẬT, ứng dụng {z.app_id}" + (f", OA {z.oa_id}" if z.oa_id else ""))
        click.echo(f"  Webhook: http://{host}:{port}{PATH} (đưa ra ngoài qua HTTPS, khai báo trong Zalo for Developers)")
        store = TokenStore(z.token_path)
        t = store.load()
        click.echo(f"  Access token: {'hết hạn lúc ' + _local(t.expires_at, r.hotline.timezone) if t else 'chưa có'}")
        if store.problem():
            click.echo(f"cảnh báo: {store.problem()}", err=True)
        click.echo(f"  Giờ yên lặng: {z.quiet_start}–{z.quiet_end}; mẫu ZNS khảo sát: {z.zns_template_id or 'chưa đặt'}")
        async with engine.connect() as c:
            ob = (await c.execute(select(OutboxItem.status, func.count()).group_by(OutboxItem.status))).all()
            ev = (await c.execute(select(ZaloEvent.status, func.count()).group_by(ZaloEvent.status))).all()
        click.echo("  Hàng đợi gửi: " + (", ".join(f"{a} {n}" for a, n in sorted(ob)) or "trống"))
        click.echo("  Sự kiện đã nhận: " + (", ".join(f"{a} {n}" for a, n in sorted(ev)) or "chưa có"))

    _run(go)


@zalo.command("outbox")
@click.option("--status", type=click.Choice(["pending", "sending", "sent", "failed"]))
@click.option("--limit", default=50, show_default=True)
def zalo_outbox(status: str | None, limit: int) -> None:
    """Các tin gửi qua Zalo: trạng thái, số lần thử, lý do chờ hoặc thất bại."""
    from sqlalchemy import select

    from ivr.models.zalo import OutboxItem

    async def go(s, r, engine):
        q = select(OutboxItem).order_by(OutboxItem.id.desc()).limit(limit)
        if status:
            q = q.where(OutboxItem.status == status)
        async with engine.connect() as c:
            rows = (await c.execute(q)).all()
        tz = r.hotline.timezone
        for x in rows:
            about = f"phản ánh {x.case_code}" if x.case_code else (f"khảo sát #{x.survey_id}" if x.survey_id else "")
            when = _local(x.sent_at or x.failed_at or x.next_attempt_at, tz)
            click.echo(f"#{x.id} {x.kind:<10} {about:<18} {x.status:<8} thử {x.attempts}  {when}"
                       + (f" — {x.reason}" if x.reason else ""))
        click.echo(f"{len(rows)} tin.")

    _run(go)


COMMANDS = [surveys, zalo]
