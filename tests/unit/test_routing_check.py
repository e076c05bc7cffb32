"""`tongdai check`: the real routing.yaml is valid; each kind of mistake is reported with the
file, the line and the YAML path, all at once, and exit code 1."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.config import routing as rt
from tests.paths import REPO_ROOT

ROUTING = REPO_ROOT / "routing.yaml"
TEXT = ROUTING.read_text(encoding="utf-8")

PLAN = {  # digit -> agency that owns the branch, from the province's plan
    "1": "Sở Nội vụ",
    "2": "Hiệp hội Doanh nghiệp tỉnh Hậu Giang",
    "3": "Sở Tư pháp",
    "4": "Văn phòng Ủy ban nhân dân tỉnh",
    "5": "Sở Nội vụ",
    "6": "Sở Tài chính",
    "7": "Sở Thông tin và Truyền thông",
    "8": "Sở Khoa học và Công nghệ",
}


def line_of(text: str, needle: str) -> int:
    assert text.count(needle) == 1, f"{needle!r} must occur exactly once"
    return text[: text.index(needle)].count("\n") + 1


def run_check(tmp_path: Path, text: str, *args: str):
    p = tmp_path / "routing.yaml"
    p.write_text(text, encoding="utf-8")
    return CliRunner().invoke(main, ["check", str(p), *args], env={"TONGDAI_HOME": str(tmp_path / "home")})


def test_real_routing_follows_the_plan():
    r = rt.load(ROUTING)
    assert r.hotline.number == "1022" and r.hotline.language == "vi"
    assert r.hotline.timezone == "Asia/Ho_Chi_Minh"
    assert [b.digit for b in r.branches] == list("12345678")
    for b in r.branches:
        assert r.agencies[b.agency].name == PLAN[b.digit]
        assert all(t in r.extensions for t in b.targets)
    assert len(r.extensions) >= 100
    # Every district- and commune-level unit of the sourced list is an agency with a station.
    with open(REPO_ROOT / "data/agencies/hau-giang-units.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert len(rows) == 83
    for row in rows:
        a = r.agencies[f"DV{row['gso_code']}"]
        assert a.name == row["name"] and a.station in r.extensions
        if row["parent_gso_code"]:
            assert a.parent == f"DV{row['parent_gso_code']}"
    # The hierarchy is data: a commune's path goes commune -> district -> province.
    assert [a.kind for a in r.agency_path("DV31318")] == ["commune", "district", "province"]


def test_check_ok_prints_summary_and_json(tmp_path):
    res = run_check(tmp_path, TEXT)
    assert res.exit_code == 0, res.output
    assert "hợp lệ" in res.output and "Cải cách thủ tục hành chính" in res.output
    res = run_check(tmp_path, TEXT, "--json")
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data["hotline"]["number"] == "1022"
    assert [b["digit"] for b in data["branches"]] == list("12345678")
    assert data["branches"][3]["targets"] == ["2401", "2402", "2403"]
    assert len(data["extensions"]) >= 100 and len(data["agencies"]) >= 100


BROKEN = [
    # (name, old, new, marker whose line is reported, expected path, message fragment)
    ("duplicate digit", "  - digit: 2\n", "  - digit: 1\n", None, "branches[1].digit", "duplicate digit 1"),
    ("unknown agency", "    agency: STP\n", "    agency: SO-KHONG-CO\n", "SO-KHONG-CO", "branches[2].agency", "unknown agency 'SO-KHONG-CO'"),
    ("unknown extension", 'targets: ["2401", "2402", "2403"]', 'targets: ["2401", "1999", "2403"]', '"1999"', "branches[3].targets[1]", "unknown extension '1999'"),
    ("bad time", '"13:00-17:00"', '"13:00-25:00"', "25:00", "hours.open[1]", "bad time range"),
    ("end before start", '"07:00-11:30"', '"11:30-07:00"', "11:30-07:00", "hours.open[0]", "end must be after"),
    ("unknown key", "    ring_timeout: 20\n    no_answer: complaint\n  - digit: 6", "    ring_timeout: 20\n    ringtone: loud\n    no_answer: complaint\n  - digit: 6", "ringtone", "branches[4].ringtone", "unknown key 'ringtone'"),
    ("digit outside 0-9", "  - digit: 8\n", "  - digit: 12\n", "digit: 12", "branches[7].digit", "not a single digit"),
    ("bad date", "closed_days: []", "closed_days: [2027-02-30]", "2027-02-30", "hours.closed_days[0]", "bad date"),
    ("duplicate extension", '{number: "2102", agency: SNV', '{number: "2101", agency: SNV', None, "extensions[1].number", "duplicate extension number '2101'"),
    ("bad strategy", "    strategy: leastrecent\n", "    strategy: random\n", "random", "branches[6].strategy", "'random' is not one of"),
    ("unknown parent", "kind: commune, parent: DV930,", "kind: commune, parent: DV999,", "DV999", None, "unknown agency 'DV999'"),
    ("recording not a flag", "  enabled: false               # true", "  enabled: sometimes # true", "sometimes", "recording.enabled", "'sometimes' is not one of"),
    ("retention out of range", "  retention_days: 365 ", "  retention_days: 0 ", "retention_days: 0", "recording.retention_days", "out of range"),
    ("unknown recording key", "  announce: true ", "  format: mp3\n  announce: true ", "format: mp3", "recording.format", "unknown key 'format'"),
    ("branch recording not a flag", "    strategy: leastrecent\n", "    strategy: leastrecent\n    recording: off\n", "recording: off", "branches[6].recording", "'off' is not one of"),
]


@pytest.mark.parametrize("name,old,new,marker,path,fragment", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_variant_reports_path_and_line(tmp_path, name, old, new, marker, path, fragment):
    assert old in TEXT
    text = TEXT.replace(old, new, 1)
    res = run_check(tmp_path, text)
    assert res.exit_code == 1, res.output
    if marker is None:
        # the duplicate is reported at the second occurrence
        idx = text.index(new, text.index(new) + 1) if text.count(new) > 1 else text.index(new)
        line = text[:idx].count("\n") + 1
    else:
        line = line_of(text, marker)
    wanted = f"routing.yaml:{line} {path}: " if path else f"routing.yaml:{line} "
    hits = [ln for ln in res.output.splitlines() if ln.startswith(wanted) and fragment in ln]
    assert hits, f"expected a line starting {wanted!r} containing {fragment!r}, got:\n{res.output}"


def test_all_errors_reported_at_once(tmp_path):
    text = TEXT.replace("    agency: STP\n", "    agency: NOPE\n", 1).replace('"13:00-17:00"', '"13:00-25:00"', 1)
    text = text.replace("  - digit: 8\n", "  - digit: x\n", 1)
    res = run_check(tmp_path, text)
    assert res.exit_code == 1
    errors = [ln for ln in res.output.splitlines() if ln.startswith("routing.yaml:")]
    assert len(errors) == 3, res.output
    assert "3 lỗi" in res.output


def test_yaml_syntax_error_and_missing_file(tmp_path):
    res = run_check(tmp_path, "hotline: [\n")
    assert res.exit_code == 1 and "not valid YAML" in res.output
    res = CliRunner().invoke(main, ["check", str(tmp_path / "none.yaml")])
    assert res.exit_code == 1 and "cannot read" in res.output


def test_no_answer_and_fallback_must_name_a_branch():
    text = TEXT.replace("fallback: complaint", "fallback: branch:9", 1)
    with pytest.raises(rt.RoutingError) as e:
        rt.loads(text)
    assert any(p.path == "menu.fallback" and "names no configured branch" in p.message for p in e.value.errors)


def test_parent_cycle_is_refused():
    text = TEXT.replace(
        '{code: UBND-HG, name: "Ủy ban nhân dân tỉnh Hậu Giang", kind: province',
        '{code: UBND-HG, name: "Ủy ban nhân dân tỉnh Hậu Giang", kind: province, parent: SNV', 1)
    with pytest.raises(rt.RoutingError) as e:
        rt.loads(text)
    assert any("its own ancestor" in p.message for p in e.value.errors)


def test_recording_section_and_a_branch_that_is_never_recorded():
    r = rt.load(ROUTING)
    # Shipped off: the operator turns it on (the notice and who may hear recordings are a policy choice).
    assert r.recording == rt.Recording(enabled=False, announce=True, retention_days=365)
    assert not any(r.records(b) for b in r.branches)
    text = TEXT.replace("  enabled: false               # true", "  enabled: true               # true", 1)
    text = text.replace("  retention_days: 365 ", "  retention_days: 90 ", 1)
    text = text.replace("    strategy: leastrecent\n", "    strategy: leastrecent\n    recording: false\n", 1)
    r = rt.loads(text)
    assert r.recording == rt.Recording(enabled=True, announce=True, retention_days=90)
    assert [b.digit for b in r.branches if not r.records(b)] == ["7"]
    assert r.to_json()["recording"] == {"enabled": True, "announce": True, "retention_days": 90}
    assert "Ghi âm cuộc gọi: có (có thông báo cho người gọi; lưu 90 ngày)" in rt.summary(r)
    # Without the section nothing is recorded.
    start = TEXT.index("recording:  ")
    end = TEXT.index("\nbranches:")
    assert rt.loads(TEXT[:start] + TEXT[end:]).recording == rt.Recording()


def _no_answer(text: str, digit: str, action: str) -> str:
    """Set branch ``digit``'s no_answer in the real routing.yaml's text."""
    head, sep, rest = text.partition(f"  - digit: {digit}\n")
    assert sep
    return head + sep + rest.replace("    no_answer: complaint\n", f"    no_answer: {action}\n", 1)


def test_no_answer_loops_are_refused(tmp_path):
    text = _no_answer(_no_answer(TEXT, "1", "branch:2"), "2", "branch:1")
    res = run_check(tmp_path, text)
    assert res.exit_code == 1
    line = line_of(text, "no_answer: branch:2")
    assert f"routing.yaml:{line} branches[0].no_answer: callers nobody answers would go round in a circle: 1 → 2 → 1" \
        in res.output, res.output
    # One error per circle, even with a third branch and the menu's fallback leading into it.
    text = _no_answer(_no_answer(_no_answer(TEXT, "3", "branch:4"), "4", "branch:5"), "5", "branch:3")
    text = _no_answer(text, "6", "branch:3").replace("fallback: complaint", "fallback: branch:4", 1)
    with pytest.raises(rt.RoutingError) as e:
        rt.loads(text)
    assert [(p.path, p.message.split(": ")[1].split(" (")[0]) for p in e.value.errors] == [
        ("branches[2].no_answer", "3 → 4 → 5 → 3")]
    # A chain that ends is fine.
    r = rt.loads(_no_answer(_no_answer(TEXT, "1", "branch:2"), "2", "branch:3"))
    assert r.branch("1").no_answer == "branch:2" and r.branch("3").no_answer == "complaint"


@pytest.mark.parametrize("hours,path", [
    ("days: []", "hours.days"),
    ("open: []", "hours.open"),
])
def test_hours_that_never_open_are_refused(tmp_path, hours, path):
    old = {"hours.days": "days: [mon, tue, wed, thu, fri]", "hours.open": 'open: ["07:00-11:30", "13:00-17:00"]'}[path]
    text = TEXT.replace(old, hours, 1)
    res = run_check(tmp_path, text)
    assert res.exit_code == 1
    assert f"routing.yaml:{line_of(text, '  ' + hours)} {path}: " in res.output
    assert "the hotline would never open" in res.output and "tongdai hours closed" in res.output


def test_hours_open_only_on_swapped_days_is_a_warning(tmp_path):
    text = TEXT.replace("days: [mon, tue, wed, thu, fri]", "days: []", 1).replace(
        "working_days: []", "working_days: [2027-02-20, 2027-02-27]", 1)
    res = run_check(tmp_path, text)
    assert res.exit_code == 0, res.output
    assert f"cảnh báo: routing.yaml:{line_of(text, '  days: []')} hours.days: no regular working day" in res.stderr
    assert "the last on 2027-02-27" in res.stderr
    assert rt.loads(TEXT).warnings == ()
