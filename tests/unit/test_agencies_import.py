"""`tongdai agencies import`: merge a province's list into routing.yaml without losing the rest."""

from __future__ import annotations

import shutil

from click.testing import CliRunner

from ivr.cli import main
from ivr.config import routing as rt
from tests.paths import REPO_ROOT


def _copy(tmp_path):
    p = tmp_path / "routing.yaml"
    shutil.copyfile(REPO_ROOT / "routing.yaml", p)
    return p


def _run(tmp_path, routing_path, *args):
    env = {"TONGDAI_HOME": str(tmp_path / "home"), "TONGDAI_ROUTING": str(routing_path)}
    return CliRunner().invoke(main, ["agencies", "import", *args], env=env)


def test_merge_assigns_numbers_under_the_plan(tmp_path):
    p = _copy(tmp_path)
    before = p.read_text(encoding="utf-8")
    csv = tmp_path / "more.csv"
    csv.write_text(
        "# a new ward after a merger, and a renamed commune\n"
        "code,name,kind,parent,station\n"
        "DV939,Thành phố Mới,district,UBND-HG,\n"
        "DV39001,Phường Một,commune,DV939,\n"
        "DV31318,Phường Một Vị Thanh,commune,DV930,\n"
        "SXX,Sở Mới,department,UBND-HG,\n",
        encoding="utf-8",
    )
    res = _run(tmp_path, p, str(csv))
    assert res.exit_code == 0, res.output
    assert "thêm 3, cập nhật 1" in res.output
    r = rt.load(p)
    assert r.agencies["DV939"].station == "4900"
    assert r.agencies["DV39001"].station == "4901"
    assert r.agencies["SXX"].station == "3023"  # next free 3nnn
    assert r.agencies["DV31318"].name == "Phường Một Vị Thanh" and r.agencies["DV31318"].station == "4101"
    after = p.read_text(encoding="utf-8")
    # Everything outside the agencies block is kept byte for byte (comments included).
    assert after.split("agencies:\n")[0] == before.split("agencies:\n")[0]


def test_invalid_import_writes_nothing(tmp_path):
    p = _copy(tmp_path)
    before = p.read_bytes()
    csv = tmp_path / "bad.csv"
    csv.write_text("code,name,kind,parent\nSNV,Sở Nội vụ,department,NOWHERE\n", encoding="utf-8")
    res = _run(tmp_path, p, str(csv))
    assert res.exit_code == 1 and "unknown agency 'NOWHERE'" in res.output
    assert p.read_bytes() == before
    csv.write_text("code,name\nX,Y\n", encoding="utf-8")
    res = _run(tmp_path, p, str(csv))
    assert res.exit_code == 1 and "missing column" in res.output
    # --replace with a list lacking the branches' agencies is refused, nothing written
    csv.write_text("gso_code,name,kind,parent_gso_code\n930,Thành phố Vị Thanh,district,\n", encoding="utf-8")
    res = _run(tmp_path, p, "--replace", str(csv))
    assert res.exit_code == 1 and "unknown agency" in res.output
    assert p.read_bytes() == before


def test_reimporting_the_sourced_list_changes_nothing_but_the_note(tmp_path):
    p = _copy(tmp_path)
    res = _run(tmp_path, p, str(REPO_ROOT / "data/agencies/hau-giang-units.csv"))
    assert res.exit_code == 0, res.output
    assert rt.load(p).agencies == rt.load(REPO_ROOT / "routing.yaml").agencies


def test_import_into_an_empty_routing_file_is_refused_cleanly(tmp_path):
    # An empty routing.yaml composes to no node at all: the import used to crash on it.
    p = tmp_path / "routing.yaml"
    p.write_text("# nothing yet\n", encoding="utf-8")
    csv = tmp_path / "list.csv"
    csv.write_text("code,name,kind,parent\nUBND-HG,UBND tỉnh,province,\n", encoding="utf-8")
    res = _run(tmp_path, p, str(csv))
    assert res.exit_code == 1 and "would make routing.yaml invalid" in res.output, res.output
    assert p.read_text(encoding="utf-8") == "# nothing yet\n"
