"""`tongdai agencies import --province`: any of the 34 provinces' communes and wards, from the
`vietnam-provinces` package, into routing.yaml with the CSV import's guarantees."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
import socket
import sqlite3
import unicodedata
from dataclasses import replace

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.config import agencies as ag
from ivr.config import provinces as pv
from ivr.config import routing as rt
from ivr.records import db
from tests.conftest import free_port
from tests.paths import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "can-tho-2025.yaml"
CATALOGUE = pv.load_catalogue()


def _copy(tmp_path, name="routing.yaml"):
    p = tmp_path / name
    shutil.copyfile(REPO_ROOT / "routing.yaml", p)
    return p


def _cli(tmp_path, routing_path, *args, env=None):
    e = {"TONGDAI_HOME": str(tmp_path / "home"), "TONGDAI_ROUTING": str(routing_path), **(env or {})}
    return CliRunner().invoke(main, list(args), env=e)


def _import(tmp_path, routing_path, *args, env=None):
    return _cli(tmp_path, routing_path, "agencies", "import", *args, env=env)


def _local(r: rt.Routing) -> dict[str, rt.Agency]:
    return {c: a for c, a in r.agencies.items() if a.kind in ag.LOCAL_UNIT_KINDS}


def _province(code: int) -> pv.Province:
    return next(p for p in CATALOGUE.provinces if p.code == code)


# ------------------------------------------------------------------------------- the package


def test_the_package_carries_the_34_provinces_of_2025():
    assert len(CATALOGUE.provinces) == 34
    assert CATALOGUE.source.startswith("vietnam-provinces ")
    ct = _province(92)
    assert ct.name == "Thành phố Cần Thơ"
    # Every name in one spelling: NFC, single spaces (the package has "Xã  Phú Hữu").
    for p in CATALOGUE.provinces:
        for u in p.units:
            assert u.name == unicodedata.normalize("NFC", u.name) and "  " not in u.name, u
            assert u.kind in ag.COMMUNE_KINDS
            assert u.name.split()[0] == {"commune": "Xã", "ward": "Phường", "special_zone": "Đặc"}[u.kind], u
    codes = [u.code for p in CATALOGUE.provinces for u in p.units]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("query", ["Cần Thơ", "can tho", "Thành phố Cần Thơ", "THANH PHO CAN THO", "TP. Cần Thơ", "92", "092"])
def test_province_names_with_and_without_diacritics_and_prefix(query):
    assert pv.find(CATALOGUE, query).code == 92


@pytest.mark.parametrize("query,code", [("Tỉnh Cao Bằng", 4), ("cao bang", 4), ("ha noi", 1), ("01", 1), ("Hồ Chí Minh", 79),
                                         ("tp ho chi minh", 79), ("Huế", 46), ("dak lak", 66), ("Đắk Lắk", 66)])
def test_other_provinces_by_name_or_code(query, code):
    assert pv.find(CATALOGUE, query).code == code


# ------------------------------------------------------------------------------- Cần Thơ


@pytest.mark.parametrize("query", ["Cần Thơ", "can tho", "Thành phố Cần Thơ", "92"])
def test_can_tho_into_a_copy_of_routing_yaml(tmp_path, query):
    p = _copy(tmp_path)
    res = _import(tmp_path, p, "--province", query)
    assert res.exit_code == 0, res.output
    chk = _cli(tmp_path, p, "check", str(p))
    assert chk.exit_code == 0, chk.output
    r = rt.load(p)
    ct = _province(92)
    for u in ct.units:
        a = r.agencies[u.agency_code]
        assert (a.name, a.kind, a.parent) == (u.name, u.kind, "UBND-HG")
        assert a.station and r.extensions[a.station].agency == u.agency_code
    # Without --replace the file's old districts and communes stay, and the report says so.
    assert r.agencies["DV930"].kind == "district"
    assert f"{ct.name} (92)" in res.output
    # Units the statistics office kept the code of are renamed in place and keep their station.
    assert r.agencies["DV31321"].name == "Phường Vị Thanh" and r.agencies["DV31321"].station == "4102"
    assert "đổi tên DV31321: Phường III → Phường Vị Thanh" in res.output
    before = rt.load(REPO_ROOT / "routing.yaml").agencies
    new = [r.agencies[u.agency_code] for u in ct.units if u.agency_code not in before]
    assert new and all(5001 <= int(a.station) <= 5999 for a in new)


def test_replace_swaps_the_local_units_and_keeps_departments(tmp_path):
    p = _copy(tmp_path)
    old = rt.load(p)
    res = _import(tmp_path, p, "--province", "Cần Thơ", "--replace")
    assert res.exit_code == 0, res.output
    r = rt.load(p)
    assert set(_local(r)) == {u.agency_code for u in _province(92).units}
    gone = set(_local(old)) - set(_local(r))
    assert "DV930" in gone and "DV31318" in gone
    assert f"bỏ {len(gone)}," in res.output and "bỏ DV31318 Phường I (máy 4101)" in res.output
    # Departments, associations and centres, branches and focal points: as they were.
    for code, a in old.agencies.items():
        if a.kind not in ag.LOCAL_UNIT_KINDS:
            assert r.agencies[code] == a
    assert r.branches == old.branches
    assert {n: e for n, e in r.extensions.items() if e.role == "focal"} == {n: e for n, e in old.extensions.items() if e.role == "focal"}
    # Importing the same list again changes nothing.
    before = p.read_bytes()
    again = _import(tmp_path, p, "--province", "can tho", "--replace")
    assert again.exit_code == 0 and "Thêm 0, đổi tên 0, bỏ 0, giữ lại 0" in again.output
    assert p.read_bytes() == before


# ----------------------------------------------------------------------------- all 34 of them


def test_every_province_into_a_scratch_routing_file(tmp_path):
    base = (REPO_ROOT / "routing.yaml").read_text(encoding="utf-8")
    departments = {c: a for c, a in rt.loads(base).agencies.items() if a.kind not in ag.LOCAL_UNIT_KINDS}
    for province in CATALOGUE.provinces:
        p = tmp_path / f"routing-{province.code:02d}.yaml"
        p.write_text(base, encoding="utf-8")
        res = pv.import_province(p, province.name, replace=True, catalogue=CATALOGUE)
        r = res.outcome.routing  # the validated text that was written (rt.load of the file: twice the time)
        assert f"{province.name} ({province.code:02d}): {len(province.units)} units" in p.read_text(encoding="utf-8")
        local = _local(r)
        assert set(local) == {u.agency_code for u in province.units}, province.name
        for u in province.units:
            a = local[u.agency_code]
            assert (a.name, a.kind, a.parent) == (u.name, u.kind, "UBND-HG")
            assert a.station is not None and re.fullmatch(r"[45]\d{3}", a.station)
        assert len({a.station for a in local.values()}) == len(local)
        assert {c: a for c, a in r.agencies.items() if c in departments} == departments
        assert len(res.outcome.added) + len(res.outcome.updated) == len(province.units)


# ----------------------------------------------------------------------------- refusals


def test_unknown_province_exits_2_with_suggestions_and_writes_nothing(tmp_path):
    p = _copy(tmp_path)
    before = p.read_bytes()
    res = _import(tmp_path, p, "--province", "Can Thoo")
    assert res.exit_code == 2
    assert "Can Thoo" in res.output and "Thành phố Cần Thơ (92)" in res.output
    # Hậu Giang is no longer a province: the closest names are offered instead.
    res = _import(tmp_path, p, "--province", "Hậu Giang")
    assert res.exit_code == 2 and "Gần nhất:" in res.output
    res = _import(tmp_path, p, "--province", "99")
    assert res.exit_code == 2 and "Cà Mau (96)" in res.output
    assert p.read_bytes() == before


def test_a_failing_import_leaves_the_file_byte_identical(tmp_path):
    p = _copy(tmp_path)
    before = p.read_bytes()
    # A parent that does not exist: the result would not validate.
    res = _import(tmp_path, p, "--province", "Cần Thơ", "--root", "NOWHERE")
    assert res.exit_code == 1 and "unknown agency 'NOWHERE'" in res.output
    assert p.read_bytes() == before
    # A file already broken elsewhere: the import refuses and leaves it as it was.
    broken = before.replace(b'targets: ["2101", "2102"]', b'targets: ["2101", "2999"]')
    p.write_bytes(broken)
    res = _import(tmp_path, p, "--province", "Cần Thơ", "--replace")
    assert res.exit_code == 1 and "unknown extension '2999'" in res.output
    assert p.read_bytes() == broken
    assert not list(tmp_path.glob(".routing-*")), "no temporary file is left behind"


# ------------------------------------------------------------------ the package's list changes


LANG_SON = 20


def _older_lang_son() -> pv.Catalogue:
    """Lạng Sơn as vietnam-provinces 2025.8.1 had it (its 2025.10.1 renamed wards 6172 and 6187),
    plus four units that a later list dropped."""
    ls = _province(LANG_SON)
    renamed = {6172: "Xã Tân Thanh", 6187: "Phường Hoàng Văn Thụ"}
    units = tuple(replace(u, name=renamed.get(u.code, u.name)) for u in ls.units) + (
        pv.Unit(99901, "Xã Bỏ Đi", "commune"),       # nothing attached: removed
        pv.Unit(99902, "Xã Có Phản Ánh", "commune"),  # an open case: kept
        pv.Unit(99903, "Phường Có Máy", "ward"),     # a desk phone registered on its station: kept
        pv.Unit(99904, "Xã Đã Đóng", "commune"),     # only a closed case: removed
    )
    return pv.Catalogue("vietnam-provinces 2025.8.1 (data of 2025-08-03)", (replace(ls, units=units),))


async def _history(settings, r: rt.Routing):
    """An open case of DV99902, a closed one of DV99904, a registration of DV99903's desk phone."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from ivr.models.presence import RegistrationEvent
    from ivr.records import cases as cm

    engine = db.engine(settings)
    try:
        c = cm.Cases(engine, r)
        open_ = await c.create(cm.NewCase(channel="phone", caller="0909123456", agency_code="DV99902", agency_name="Xã Có Phản Ánh"))
        closed = await c.create(cm.NewCase(channel="phone", caller="0909123457", agency_code="DV99904", agency_name="Xã Đã Đóng"))
        await c.act(closed.code, "close", actor="test", reason="duplicate")
        async with async_sessionmaker(engine).begin() as s:
            s.add(RegistrationEvent(at=dt.datetime.now(dt.timezone.utc), extension=r.agencies["DV99903"].station,
                                    agency_code="DV99903", status="registered", address="127.0.0.1:5070"))
        return open_.code
    finally:
        await engine.dispose()


async def test_reimport_reports_renamed_and_removed_and_keeps_units_in_use(tmp_path, db_settings):
    s = db_settings
    await asyncio.to_thread(db.upgrade, s)
    p = _copy(tmp_path)
    # An operator imported the older list; cases were received and phones installed since.
    await asyncio.to_thread(pv.import_province, p, "Lạng Sơn", replace=True, catalogue=_older_lang_son())
    r = rt.load(p)
    case_code = await _history(s, r)

    env = {"TONGDAI_DATABASE_URL": s.database_url, "TONGDAI_HOME": str(s.home)}
    res = await asyncio.to_thread(_import, tmp_path, p, "--province", "Lạng Sơn", "--replace", env=env)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "đổi tên 2," in out and "bỏ 2," in out and "giữ lại 2;" in out
    assert "đổi tên DV06172: Xã Tân Thanh → Xã Hoàng Văn Thụ" in out
    assert "đổi tên DV06187: Phường Hoàng Văn Thụ → Phường Kỳ Lừa" in out
    assert "bỏ DV99901 Xã Bỏ Đi" in out and "bỏ DV99904 Xã Đã Đóng" in out
    assert f"giữ lại DV99902 Xã Có Phản Ánh: không còn trong danh sách nhưng 1 open case(s): {case_code}" in out
    assert "giữ lại DV99903 Phường Có Máy" in out and "desk phone registered on" in out
    r2 = rt.load(p)
    assert "DV99901" not in r2.agencies and "DV99904" not in r2.agencies
    assert r2.agencies["DV99902"].station == r.agencies["DV99902"].station
    assert r2.agencies["DV06172"].station == r.agencies["DV06172"].station  # renamed, same desk phone
    # The kept units are flagged in the file itself, on their own line.
    lines = {ln.split(",")[0].split()[-1]: ln for ln in p.read_text(encoding="utf-8").splitlines() if "{code: DV999" in ln}
    assert set(lines) == {"DV99902", "DV99903"}
    assert all("# kept, not in the imported list:" in ln for ln in lines.values())
    assert case_code in lines["DV99902"]


def test_units_with_focal_points_branches_or_children_are_kept(tmp_path):
    p = _copy(tmp_path)
    text = p.read_text(encoding="utf-8")
    # A commune with a focal-point phone, a district owning a branch, and a centre under a commune.
    text = text.replace('  - {number: "2802", agency: SKHCN',
                        '  - {number: "2803", agency: DV31318, name: "Đầu mối phường I"}\n  - {number: "2802", agency: SKHCN', 1)
    text = text.replace('    agency: SKHCN\n    targets: ["2801", "2802"]', '    agency: DV935\n    targets: ["2801", "2802"]', 1)
    text = text.replace("\nagencies:\n", '\nagencies:\n  - {code: TTX, name: "Trung tâm xã", kind: center, parent: DV31336}\n', 1)
    p.write_text(text, encoding="utf-8")
    assert rt.load(p)
    res = _import(tmp_path, p, "--province", "Cần Thơ", "--replace")
    assert res.exit_code == 0, res.output
    r = rt.load(p)
    assert "giữ lại DV31318 Phường I" in res.output and "focal-point phone 2803" in res.output
    assert "giữ lại DV935" in res.output and "owns branch 8" in res.output
    assert "giữ lại DV31336" in res.output and "parent of TTX" in res.output
    # Its district stays too, since a commune that stays is under it.
    assert "giữ lại DV930" in res.output and "parent of DV31318" in res.output
    assert r.agencies["DV31336"].parent == "DV930"


def test_without_a_database_nothing_is_created_and_an_unreadable_one_keeps_everything(tmp_path):
    p = _copy(tmp_path)
    res = _import(tmp_path, p, "--province", "Cần Thơ", "--replace")
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "home" / "tongdai.db").exists(), "the import must not create a database"
    # An SQLite file nobody migrated: no tables, so no cases.
    home = tmp_path / "home2"
    home.mkdir()
    sqlite3.connect(home / "tongdai.db").close()
    q = _copy(tmp_path, "q.yaml")
    res = _import(tmp_path, q, "--province", "Cần Thơ", "--replace", env={"TONGDAI_HOME": str(home)})
    assert res.exit_code == 0 and "giữ lại 0" in res.output, res.output
    # A database that cannot be reached: nothing is removed, every unit that would go is flagged.
    u = _copy(tmp_path, "u.yaml")
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port(socket.SOCK_STREAM)}/none"
    res = _import(tmp_path, u, "--province", "Cần Thơ", "--replace", env={"TONGDAI_DATABASE_URL": url})
    assert res.exit_code == 0, res.output
    assert "bỏ 0," in res.output and "database not readable" in res.output
    assert rt.load(u).agencies["DV930"].kind == "district"


def test_spooled_cases_count_as_open(tmp_path):
    from ivr.records import cases as cm

    p = _copy(tmp_path)
    cm.spool_case(tmp_path / "home", "123456", cm.NewCase(channel="phone", caller="0909", agency_code="DV31318",
                                                          agency_name="Phường I"), dt.datetime.now(dt.timezone.utc))
    res = _import(tmp_path, p, "--province", "Cần Thơ", "--replace")
    assert res.exit_code == 0, res.output
    assert "giữ lại DV31318 Phường I" in res.output and "spooled case 123456" in res.output
    assert "DV31318" in rt.load(p).agencies


# ----------------------------------------------------------------------------- the example


def test_the_can_tho_example_checks_and_is_what_the_commands_generate(tmp_path):
    chk = _cli(tmp_path, EXAMPLE, "check", str(EXAMPLE))
    assert chk.exit_code == 0, chk.output
    # Complete: Asterisk's configuration renders from it, every station a desk phone.
    out = _cli(tmp_path, EXAMPLE, "render", "--out", str(tmp_path / "conf"))
    assert out.exit_code == 0, out.output
    pjsip = (tmp_path / "conf" / "pjsip.conf").read_text(encoding="utf-8")
    r = rt.load(EXAMPLE)
    assert all(f"[{n}]" in pjsip for n in r.extensions)
    local = _local(r)
    assert len(local) == 103 and {a.kind for a in local.values()} == {"commune", "ward"}
    assert sum(a.kind == "ward" for a in local.values()) == 31
    assert all(a.parent == "UBND-CT" and 5001 <= int(a.station) <= 5103 for a in local.values())
    assert r.branches[6].agency == "SKHCN"  # IT went to Science and Technology in 2025
    # Regenerate it from its own non-agency sections, as its header says.
    text = EXAMPLE.read_text(encoding="utf-8")
    p = tmp_path / "can-tho.yaml"
    p.write_text(ag.splice(text, "agencies", "agencies: []\n"), encoding="utf-8")
    res = _import(tmp_path, p, str(REPO_ROOT / "data/agencies/can-tho-departments.csv"))
    assert res.exit_code == 0, res.output
    res = _import(tmp_path, p, "--province", "Cần Thơ", "--replace", "--root", "UBND-CT")
    assert res.exit_code == 0, res.output
    made = rt.load(p)
    assert {c: a for c, a in made.agencies.items() if c not in local} == {c: a for c, a in r.agencies.items() if c not in local}
    made_with = re.search(r"units from (vietnam-provinces \S+)", text).group(1)  # its agencies note
    if CATALOGUE.source.startswith(made_with + " "):
        assert made.agencies == r.agencies, "regenerate examples/can-tho-2025.yaml with the commands in its header"
    else:
        # A newer list: the example still loads and updating it is the operator's usual re-import.
        assert set(_local(made)) == {u.agency_code for u in _province(92).units}
