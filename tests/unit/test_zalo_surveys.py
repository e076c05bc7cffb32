"""Satisfaction surveys: CSV import (all or nothing), sent once by ZNS or OA message, answers by
webhook stored against person and office, quiet hours, the monthly report beside phone scores."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo

import aiohttp
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from ivr.cli import main
from ivr.config import routing as rt
from ivr.models.calls import Call
from ivr.models.cases import Case
from ivr.models.zalo import SurveyAnswer, SurveyRecipient, ZaloUser
from ivr.records import db
from ivr.testing import wait_until
from ivr.zalo.service import ZaloService, build
from ivr.zalo.surveys import Surveys, normalize_phone, parse_answer
from ivr.zalo.webhook import PATH
from tests.paths import REPO_ROOT

from .zalo_fake import APP_ID, OA_ID, Clock, FakeZalo, env, ms, post_event, text_event

VN = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
ROUTING = rt.load(REPO_ROOT / "routing.yaml")
CSV = """phone,name,procedure,office,completed_at
0912 345 678,Nguyễn Văn An,Cấp giấy chứng nhận quyền sử dụng đất,Trung tâm Hành chính công tỉnh,2027-03-01 09:30
+84987654321,Trần Thị Bình,Đăng ký khai sinh,UBND xã Vị Thanh,02/03/2027
"""


def quiet_elsewhere() -> str:
    """Quiet hours that do not include now (the CLI uses the real clock)."""
    h = (dt.datetime.now(VN).hour + 3) % 24
    return f"{h:02d}:00-{(h + 1) % 24:02d}:00"


@pytest.fixture
async def world(settings_factory, tmp_path):
    fake = await FakeZalo().start()
    csv_path = tmp_path / "nguoi-dan.csv"
    csv_path.write_text(CSV, encoding="utf-8")

    class W:
        pass

    w = W()
    w.fake, w.csv = fake, csv_path
    w.env = env(fake, TONGDAI_ZALO_QUIET_HOURS=quiet_elsewhere())
    w.settings = settings_factory(**w.env)
    await asyncio.to_thread(db.upgrade, w.settings)
    w.engine = db.engine(w.settings)
    w.sm = async_sessionmaker(w.engine, expire_on_commit=False)
    yield w
    await w.engine.dispose()
    await fake.stop()


async def cli(w, *args, **extra):
    e = dict(w.settings.env)
    e.update(extra)
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=e)


async def recipients(w) -> list[SurveyRecipient]:
    async with w.sm() as s:
        return list((await s.execute(select(SurveyRecipient).order_by(SurveyRecipient.id))).scalars().all())


def test_phone_numbers_and_answers_are_understood():
    assert normalize_phone("0912 345 678") == "84912345678" == normalize_phone("+84 912.345.678")
    for bad in ("12345", "09123abc78", ""):
        with pytest.raises(ValueError):
            normalize_phone(bad)
    assert parse_answer("KS 123456 5 4 3 5 4 cán bộ nhiệt tình") == ("123456", [5, 4, 3, 5, 4], "cán bộ nhiệt tình")
    assert parse_answer("ks 5,4,3,5,4") == (None, [5, 4, 3, 5, 4], None)
    assert parse_answer("KS 54354") == (None, [5, 4, 3, 5, 4], None)
    assert parse_answer("KS 5 4 3 6 4") is None and parse_answer("5 4 3 5 4") is None
    assert parse_answer("KS 5 4 3 5") is None


async def test_import_is_all_or_nothing_and_idempotent(world, tmp_path):
    w = world
    r = await cli(w, "surveys", "import", str(w.csv))
    assert r.exit_code == 0 and "Đã nhập 2" in r.output, r.output
    rows = await recipients(w)
    assert [(x.phone, x.office, x.status) for x in rows] == [
        ("84912345678", "Trung tâm Hành chính công tỉnh", "pending"), ("84987654321", "UBND xã Vị Thanh", "pending")]
    assert rows[0].completed_at == dt.datetime(2027, 3, 1, 9, 30, tzinfo=VN)
    assert len({x.code for x in rows}) == 2 and all(len(x.code) == 6 for x in rows)
    r = await cli(w, "surveys", "import", str(w.csv))
    assert r.exit_code == 0 and "Đã nhập 0" in r.output and "bỏ qua 2" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV.replace("2027-03-01 09:30", "hôm qua") + "abc,X,Y,Z,2027-03-03\n"
                   + "0911111111,Lê C,Thủ tục,UBND,2027-03-04\n", encoding="utf-8")
    r = await cli(w, "surveys", "import", str(bad))
    assert r.exit_code == 1 and "bad.csv:2" in r.output and "bad.csv:4" in r.output and "chưa nhập gì" in r.output
    assert len(await recipients(w)) == 2  # the valid row of the bad file was not written either


async def test_each_person_gets_one_zns_survey(world):
    w = world
    r = await cli(w, "surveys", "import", str(w.csv))
    assert r.exit_code == 0
    extra = {"TONGDAI_ZALO_ZNS_TEMPLATE_ID": "301234"}
    r = await cli(w, "surveys", "send", **extra)
    assert r.exit_code == 0 and "2 tin ZNS" in r.output, r.output
    assert [m["phone"] for m in w.fake.zns] == ["84912345678", "84987654321"]
    rows = await recipients(w)
    first = w.fake.zns[0]
    assert first["template_id"] == "301234" and first["template_data"]["code"] == rows[0].code
    assert first["template_data"]["office"] == "Trung tâm Hành chính công tỉnh" and first["tracking_id"] == f"survey:{rows[0].id}"
    assert [x.status for x in rows] == ["sent", "sent"] and all(x.channel == "zns" for x in rows)
    r = await cli(w, "surveys", "send", **extra)  # again: nobody gets a second survey
    assert r.exit_code == 0 and len(w.fake.zns) == 2


async def test_surveys_respect_quiet_hours(world):
    w = world
    await cli(w, "surveys", "import", str(w.csv))
    s = w.settings
    z = type(s.zalo)(**{**s.zalo.__dict__, "zns_template_id": "301234"})
    clock = Clock(dt.datetime(2027, 3, 10, 23, 15, tzinfo=VN).astimezone(dt.timezone.utc))
    await Surveys(w.engine, z, "Asia/Ho_Chi_Minh").enqueue_pending(clock())
    async with aiohttp.ClientSession() as http:
        _, _, outbox = build(s, w.engine, http, "Asia/Ho_Chi_Minh", clock=clock)
        outbox.quiet = type(outbox.quiet).parse("22:00", "06:00", "Asia/Ho_Chi_Minh")
        assert await outbox.run_once() == 0 and w.fake.zns == []
        assert {x.status for x in await recipients(w)} == {"queued"}
        clock.t = dt.datetime(2027, 3, 11, 6, 0, tzinfo=VN).astimezone(dt.timezone.utc)
        assert await outbox.run_once() == 2 and len(w.fake.zns) == 2


async def test_follower_answers_on_the_oa_and_the_report_shows_it_beside_phone_scores(world):
    w = world
    await cli(w, "surveys", "import", str(w.csv))
    service = ZaloService(w.settings, w.engine, lambda: ROUTING, poll=0.1)
    await service.start()
    url = f"http://127.0.0.1:{service.port}{PATH}"
    try:
        now = dt.datetime.now(dt.timezone.utc)
        # The first person follows the OA and shares their phone number.
        info = {"app_id": APP_ID, "sender": {"id": "fan-1"}, "recipient": {"id": OA_ID}, "event_name": "user_submit_info",
                "timestamp": ms(now), "info": {"name": "Nguyễn Văn An", "phone": "84912345678"}}
        follow = {"oa_id": OA_ID, "follower": {"id": "fan-1"}, "event_name": "follow", "app_id": APP_ID,
                  "timestamp": ms(now - dt.timedelta(seconds=1))}
        for body in (follow, info):
            assert (await post_event(url, body))[0] == 200
        async def follower():
            async with w.sm() as s:
                fan = await s.get(ZaloUser, "fan-1")
            return fan if fan is not None and fan.following and fan.phone else None

        fan = await wait_until(follower, 10, "both events to be processed")
        assert fan.phone == "84912345678" and fan.name == "Nguyễn Văn An"
        r = await cli(w, "surveys", "send")  # no ZNS template: followers get an OA message, others are skipped
        assert r.exit_code == 0 and "1 tin OA" in r.output and "1 người không gửi được" in r.output, r.output
        rows = await recipients(w)
        assert [x.status for x in rows] == ["sent", "skipped"] and "ZNS" in rows[1].reason
        survey = [m for m in w.fake.sent if m["user_id"] == "fan-1"]
        assert len(survey) == 1 and f"KS {rows[0].code}" in survey[0]["text"]
        # The answer arrives as an ordinary text message.
        assert (await post_event(url, text_event("fan-1", "KS 5 4 3 5 4 cán bộ nhiệt tình", now)))[0] == 200
        async def answer():
            async with w.sm() as s:
                return (await s.execute(select(SurveyAnswer))).scalar_one_or_none()

        ans = await wait_until(answer, 10, "the survey answer")
        assert (ans.q_access, ans.q_procedure, ans.q_official, ans.q_result, ans.q_complaints) == (5, 4, 3, 5, 4)
        assert ans.comment == "cán bộ nhiệt tình" and ans.office == "Trung tâm Hành chính công tỉnh"
        async with w.sm() as s:
            assert (await s.execute(select(func.count()).select_from(Case))).scalar_one() == 0  # not a complaint
        await wait_until(lambda: any("Cảm ơn" in m["text"] and rows[0].code in m["text"] for m in w.fake.sent), 10,
                         "the thanks for the answer")
        # A second answer to the same survey is not stored twice.
        assert (await post_event(url, text_event("fan-1", f"KS {rows[0].code} 1 1 1 1 1", now)))[0] == 200
        await wait_until(lambda: any("đã được trả lời" in m["text"] for m in w.fake.sent), 10,
                         "the second answer to be processed (an 'already answered' reply)")
        async with w.sm() as s:
            assert (await s.execute(select(func.count()).select_from(SurveyAnswer))).scalar_one() == 1
    finally:
        await service.stop()
    async with w.sm.begin() as s:
        t = dt.datetime.now(dt.timezone.utc)
        for score in (4, 5):
            s.add(Call(id=f"call-{score}", caller="0909", hotline="1022", started_at=t, agency_name="Sở Nội vụ",
                       disposition="answered", survey_score=score))
    r = await cli(w, "surveys", "report", "--month", dt.datetime.now(VN).strftime("%Y-%m"))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    zalo_line = next(ln for ln in lines if "Trung tâm Hành chính công tỉnh" in ln)
    assert "1 phiếu" in zalo_line and "5.00  4.00  3.00  5.00  4.00" in zalo_line
    phone_line = next(ln for ln in lines if "Sở Nội vụ" in ln)
    assert "2 lượt" in phone_line and "4.50" in phone_line
