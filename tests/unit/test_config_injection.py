"""No text from routing.yaml or an agencies CSV reaches Asterisk's configuration as syntax.

`check`, `render`, `apply` and `agencies import` refuse the same names and languages with the
same `file:line path: reason`; the renderer refuses on its own whatever it did not validate; and
a property test feeds arbitrary text into every name field and the language, renders, and reads
the files back with a strict reader of Asterisk's format (tests/asterisk_conf.py): the sections
and keys never change.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shutil
import unicodedata
from pathlib import Path
from unittest import mock

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ivr.cli import main
from ivr.config import credentials as sec_mod
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.dialplan import render as rd
from ivr.pbx.asterisk import Layout
from tests.asterisk_conf import ConfError, parse
from tests.paths import REPO_ROOT

TEXT = (REPO_ROOT / "routing.yaml").read_text(encoding="utf-8")
BRANCH_NAME = 'name: "Công tác chỉ đạo điều hành"'  # branches[0]
AGENCY = '{code: SNV, name: "Sở Nội vụ", kind: department'
FOCAL = '{number: "2101", agency: SNV, name: "Đầu mối nhánh 1 — Sở Nội vụ"}'

# (id, old, new, expected path, message fragment): each payload once through YAML.
INJECTIONS = [
    ("language payload", "language: vi", 'language: "vi\\nexten => 666,1,System(touch /tmp/pwned)"',
     "hotline.language", "is not one of: vi"),
    ("language path", "language: vi", 'language: "../../../../etc"', "hotline.language", "is not one of: vi"),
    ("line break in agency name", AGENCY, '{code: SNV, name: "Sở Nội vụ\\n[evil](phone-endpoint)", kind: department',
     "agencies[2].name", "line break (U+000A)"),
    ("CR in agency name", AGENCY, '{code: SNV, name: "Sở Nội vụ\\rx", kind: department', "agencies[2].name", "U+000D"),
    ("U+2028 in agency name", AGENCY, '{code: SNV, name: "Sở\\u2028Nội vụ", kind: department', "agencies[2].name", "U+2028"),
    ("NEL in agency kind", AGENCY, '{code: SNV, name: "Sở Nội vụ", kind: "depart\\Nment"', "agencies[2].kind", "U+0085"),
    ("block scalar name", FOCAL, '{number: "2101", agency: SNV, name: "Đầu mối\\n\\ntype = endpoint"}',
     "extensions[0].name", "line break"),
    ("NUL in extension name", FOCAL, '{number: "2101", agency: SNV, name: "Đầu\\0mối"}', "extensions[0].name", "U+0000"),
    ("ESC in extension name", FOCAL, '{number: "2101", agency: SNV, name: "Đầu\\emối"}', "extensions[0].name", "U+001B"),
    ("BEL in branch name", BRANCH_NAME, 'name: "Công tác\\a"', "branches[0].name", "U+0007"),
    ("bidi override", BRANCH_NAME, 'name: "Công tác\\u202e"', "branches[0].name", "U+202E"),
    ("semicolon", FOCAL, '{number: "2101", agency: SNV, name: "Đầu mối; Sở Nội vụ"}', "extensions[0].name",
     "';', which starts a comment"),
    ("block comment", AGENCY, '{code: SNV, name: "Sở ;-- Nội vụ", kind: department', "agencies[2].name", "';'"),
    ("quote", FOCAL, '{number: "2101", agency: SNV, name: "Đầu \\"mối\\" <9999>"}', "extensions[0].name", "'\"'"),
    ("backslash", FOCAL, '{number: "2101", agency: SNV, name: "Đầu mối \\\\"}', "extensions[0].name", "escape character"),
    ("megabyte name", FOCAL, '{number: "2101", agency: SNV, name: "' + "x" * 1_000_000 + '"}', "extensions[0].name",
     "longer than 120 characters"),
]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "routing.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def _env(tmp_path: Path, routing: Path) -> dict:
    return {"TONGDAI_HOME": str(tmp_path / "home"), "TONGDAI_ROUTING": str(routing), "TONGDAI_ASTERISK": "sandbox"}


def _line(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


@pytest.mark.parametrize("name,old,new,path,fragment", INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_check_render_and_apply_refuse_the_same_way(tmp_path, name, old, new, path, fragment):
    assert TEXT.count(old) == 1
    text = TEXT.replace(old, new, 1)
    routing = _write(tmp_path, text)
    wanted = f"routing.yaml:{_line(text, new)} {path}: "
    out = tmp_path / "etc"
    for args in (["check", str(routing)], ["render", "--out", str(out)], ["apply", "--dry-run"]):
        res = CliRunner().invoke(main, args, env=_env(tmp_path, routing))
        assert res.exit_code == 1, (args, res.output[-2000:])
        hits = [ln for ln in res.output.splitlines() if ln.startswith(wanted) and fragment in ln]
        assert hits, f"{args}: expected {wanted!r} with {fragment!r}, got:\n{res.output[-2000:]}"
        assert len(hits[0]) < 400  # the value is shown cut short, escaped: one line
        assert "Traceback" not in res.output
    assert not out.exists()  # render wrote nothing


def _import(tmp_path: Path, csv_text: str):
    routing = tmp_path / "routing.yaml"
    shutil.copyfile(REPO_ROOT / "routing.yaml", routing)
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(csv_text, encoding="utf-8")
    before = routing.read_bytes()
    res = CliRunner().invoke(main, ["agencies", "import", str(csv_file)], env=_env(tmp_path, routing))
    assert routing.read_bytes() == before  # nothing written
    return res


@pytest.mark.parametrize("cell,line,fragment", [
    ('"Phường Một\n[9999](phone-endpoint)"', 3, "name: 'Phường Một\\n[9999](phone-endpoint)' contains a line break"),
    ("Phường\x0bMột", 3, "line break (U+000B)"),  # str.splitlines() would have made two rows of it
    ("Phường\u2028DV39002,Evil,commune,DV939", 3, "line break (U+2028)"),
    ("Phường; Một", 3, "';', which starts a comment"),
    ("Phường\x1b[31mMột", 3, "control character (U+001B)"),
    ("x" * 5000, 3, "longer than 120 characters"),
])
def test_agencies_import_refuses_what_check_refuses_with_the_csv_line(tmp_path, cell, line, fragment):
    res = _import(tmp_path, "# a comment\ncode,name,kind,parent\n"
                            f"DV39001,{cell},commune,DV930\nDV39003,Phường Ba,commune,DV930\n")
    assert res.exit_code == 1, res.output
    assert any(f"list.csv:{line} name: " in ln and fragment in ln for ln in res.output.splitlines()), res.output
    assert "chưa ghi gì" in res.output and "Traceback" not in res.output


def test_agencies_import_reports_lines_after_a_quoted_line_break(tmp_path):
    res = _import(tmp_path, 'code,name,kind,parent\nDV39001,"Một\nHai",commune,DV930\nDV39002,Ba,"commune\x07",DV930\n')
    assert res.exit_code == 1
    assert "list.csv:2 name:" in res.output and "list.csv:4 kind:" in res.output, res.output


def _cp1258(text: str) -> bytes:
    """Text as Excel saves "CSV" on a Vietnamese Windows: code page 1258, whose tone marks are
    combining characters after a precomposed base letter (ơ, â, ă…)."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        base, *marks = unicodedata.normalize("NFD", ch)
        candidates = (unicodedata.normalize("NFC", base + "".join(p[:k])) + "".join(p[k:])
                      for p in itertools.permutations(marks) for k in range(len(marks), -1, -1))
        for c in candidates:
            try:
                out.append(c.encode("cp1258"))
                break
            except UnicodeEncodeError:
                continue
        else:
            raise AssertionError(ch)
    return b"".join(out)


def test_agencies_import_of_a_windows_1258_csv_says_what_to_do(tmp_path):
    routing = tmp_path / "routing.yaml"
    shutil.copyfile(REPO_ROOT / "routing.yaml", routing)
    csv_file = tmp_path / "excel.csv"
    data = _cp1258("code,name,kind,parent\nDV39001,Phường Một,commune,DV930\n")
    assert data.decode("cp1258") != data.decode("utf-8", "replace")
    csv_file.write_bytes(data)
    res = CliRunner().invoke(main, ["agencies", "import", str(csv_file)], env=_env(tmp_path, routing))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "excel.csv:2: not UTF-8 text" in res.output and "CSV UTF-8" in res.output


@pytest.mark.parametrize("content,fragment", [
    (None, "cannot read: No such file or directory"),
    ("", "would make routing.yaml invalid"),  # an empty file is a start: the result is checked
    ("hotline: [\n", "not valid YAML"),
    ("- just\n- a list\n", "not a routing file"),
    ("[" * 20000 + "]" * 20000, "nested too deeply"),
])
def test_agencies_import_into_a_missing_empty_or_broken_routing_file(tmp_path, content, fragment):
    routing = tmp_path / "routing.yaml"
    if content is not None:
        routing.write_text(content, encoding="utf-8")
    res = CliRunner().invoke(main, ["agencies", "import", str(REPO_ROOT / "data/agencies/hau-giang-units.csv")],
                             env=_env(tmp_path, routing))
    assert res.exit_code == 1 and fragment in res.output and "Traceback" not in res.output, res.output
    assert (routing.read_text(encoding="utf-8") if content is not None else None) == content


def test_check_refuses_huge_deep_and_binary_files(tmp_path):
    res = CliRunner().invoke(main, ["check", "/dev/zero"])
    assert res.exit_code == 1 and "larger than 4 MiB" in res.output
    deep = _write(tmp_path, "a: " + "[" * 20000 + "]" * 20000 + "\n")
    res = CliRunner().invoke(main, ["check", str(deep)])
    assert res.exit_code == 1 and "nested too deeply" in res.output
    nul = _write(tmp_path, TEXT.replace("language: vi", "language: v\x00i"))
    res = CliRunner().invoke(main, ["check", str(nul)])
    assert res.exit_code == 1 and f"routing.yaml:{_line(TEXT, 'language: vi')}: not valid YAML: character U+0000" in res.output
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(TEXT.replace("Sở Nội vụ", "S\xe1 N\xf4i v\xf5", 1).encode("utf-8").replace(b"S\xc3\xa1", b"S\xe1", 1))
    res = CliRunner().invoke(main, ["check", str(latin)])
    assert res.exit_code == 1 and "not UTF-8 text" in res.output and "Traceback" not in res.output


def test_language_accepts_the_closed_list_only():
    assert rt.loads(TEXT).hotline.language == "vi"
    for bad in ("en", "VI", "vi_VN", "vi;", ""):
        with pytest.raises(rt.RoutingError) as e:
            rt.loads(TEXT.replace("language: vi", f"language: {json.dumps(bad)}"))
        assert [p.path for p in e.value.errors] == ["hotline.language"], bad


# ------------------------------------------------------------------ the renderer on its own

SMALL = {  # a small routing: every name field once, rendered in milliseconds
    "version": 1,
    "hotline": {"number": "1022", "language": "vi", "timezone": "Asia/Ho_Chi_Minh"},
    "branches": [
        {"digit": 1, "name": "Công tác chỉ đạo điều hành", "agency": "SNV", "targets": ["2101"]},
        {"digit": 2, "name": "Tư pháp", "agency": "STP", "targets": ["3002"], "no_answer": "branch:1"},
    ],
    "extensions": [{"number": "2101", "agency": "SNV", "name": "Đầu mối nhánh 1"}],
    "agencies": [
        {"code": "UBND", "name": "Ủy ban nhân dân tỉnh", "kind": "province"},
        {"code": "SNV", "name": "Sở Nội vụ", "kind": "department", "parent": "UBND", "station": "3001"},
        {"code": "STP", "name": "Sở Tư pháp", "kind": "department", "parent": "UBND", "station": "3002"},
    ],
}
# (where in SMALL, path in errors, the station or extension whose callerid shows it)
FIELDS = [
    (("agencies", 1, "name"), "agencies[1].name", "3001"),
    (("agencies", 1, "kind"), "agencies[1].kind", None),
    (("extensions", 0, "name"), "extensions[0].name", "2101"),
    (("branches", 0, "name"), "branches[0].name", None),
    (("hotline", "language"), "hotline.language", None),
]
SYNTAX = "\n\r\x0b\x0c\x1c\x85\u2028\u2029\x00\x07\x08\x1b\t\u200b\u202e;\\\"<>[]()=>#,$ {}-—!+ăâđêôơưỏÁ"
INJECTED_LINES = ["[evil]", "[3001](phone-endpoint)", "exten => 666,1,System(id)", "#include /etc/passwd",
                  "type = endpoint", ";--", "--;", "same => n,Hangup()"]
TEXTS = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(SYNTAX) | st.characters(), max_size=40),
    st.builds(lambda a, sep, line, b: a + sep + line + b, st.text(max_size=8),
              st.sampled_from(["\n", "\r\n", "\r", "\x0b", "\u2028", "\x85", "\n\n", ";", "\\\n"]),
              st.sampled_from(INJECTED_LINES), st.text(max_size=8)),
    st.integers(100, 20_000).map(lambda n: "x" * n),
    st.sampled_from(["vi", " vi ", "Sở Nội vụ", "A (B), C - D", "Phòng 1/2 & 3"]),
)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Settings, secrets and the rendered files' structure of SMALL."""
    home = tmp_path_factory.mktemp("home")
    s = Settings.from_env({"TONGDAI_HOME": str(home), "TONGDAI_ASTERISK": "sandbox", "PATH": "/usr/bin:/bin"})
    r = rt.loads(yaml.safe_dump(SMALL, allow_unicode=True))
    sec = sec_mod.load(s.secrets_path, list(r.extensions))
    layout = Layout.for_settings(s)
    shapes = {n: parse(t).shape() for n, t in rd.render(r, s, sec, layout).items()}
    return s, sec, layout, r, shapes


def _assert_structure_kept(files: dict[str, str], shapes: dict) -> dict:
    confs = {n: parse(t) for n, t in files.items()}  # ConfError: not even Asterisk's format
    assert {n: c.shape() for n, c in confs.items()} == shapes
    return confs


def _set(doc: dict, where: tuple, value: str) -> dict:
    doc = json.loads(json.dumps(doc))
    target = doc
    for k in where[:-1]:
        target = target[k]
    target[where[-1]] = value
    return doc


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=TEXTS)
def test_any_text_in_a_name_or_the_language_is_refused_or_stays_a_value(small, field, value):
    """Through routing.yaml: refused for that very field, or rendered with the sections and keys
    of every file unchanged and the name intact inside its value."""
    s, sec, layout, _, shapes = small
    where, path, ext = field
    text = yaml.safe_dump(_set(SMALL, where, value), allow_unicode=True, width=1 << 30)
    written = yaml.safe_load(text)  # what the file says (PyYAML folds a raw NEL it wrote into a space)
    for k in where:
        written = written[k]
    try:
        r = rt.loads(text)
    except rt.RoutingError as e:
        assert [p.path for p in e.errors] == [path], e.errors
        return
    files = rd.render(r, s, sec, layout)
    confs = _assert_structure_kept(files, shapes)
    kept = str(written).strip()
    assert "\n" not in kept and ";" not in kept
    if ext is not None:
        assert confs["pjsip.conf"].section(ext, "phone-endpoint").get("callerid") == [f'"{kept}" <{ext}>']
    if path == "hotline.language":
        assert confs["asterisk.conf"].section("options").get("defaultlanguage") == [kept]


MODEL_FIELDS = {
    "agency name": lambda r, v: dataclasses.replace(r, agencies={**r.agencies, "SNV": dataclasses.replace(r.agencies["SNV"], name=v)},
                                                    extensions={**r.extensions, "3001": dataclasses.replace(r.extensions["3001"], name=v)}),
    "extension name": lambda r, v: dataclasses.replace(r, extensions={**r.extensions, "2101": dataclasses.replace(r.extensions["2101"], name=v)}),
    "language": lambda r, v: dataclasses.replace(r, hotline=dataclasses.replace(r.hotline, language=v)),
    "hotline number": lambda r, v: dataclasses.replace(r, hotline=dataclasses.replace(r.hotline, number=v)),
}


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(MODEL_FIELDS)), value=TEXTS)
def test_the_renderers_gate_alone_keeps_the_structure(small, field, value):
    """A Routing altered in code skips routing.yaml's checks; with the renderer's re-check of the
    model switched off too, its last gate (every interpolated value) still keeps the structure."""
    s, sec, layout, r, shapes = small
    bad = MODEL_FIELDS[field](r, value)
    with mock.patch.object(rt, "unsafe_texts", return_value=[]):
        try:
            files = rd.render(bad, s, sec, layout)
        except rd.UnsafeValue:
            return
    _assert_structure_kept(files, shapes)


@pytest.mark.parametrize("field", sorted(MODEL_FIELDS))
def test_the_renderer_refuses_a_routing_it_did_not_validate(small, field):
    s, sec, layout, r, _ = small
    bad = MODEL_FIELDS[field](r, "x\n[evil]")
    assert rt.unsafe_texts(bad)
    with pytest.raises(rd.UnsafeValue, match=r"^routing: .*'x\\n\[evil\]'"):
        rd.render(bad, s, sec, layout)
    with mock.patch.object(rt, "unsafe_texts", return_value=[]), pytest.raises(rd.UnsafeValue, match=r"\.conf: 'x\\n\[evil\]'"):
        rd.render(bad, s, sec, layout)
    assert rt.unsafe_texts(r) == []


def test_the_gate_covers_settings_and_secrets_too(small, tmp_path):
    s, sec, layout, r, _ = small
    env = dict(s.env, TONGDAI_TRUNK_MATCH="127.0.0.1\n[evil]")
    with pytest.raises(rd.UnsafeValue, match=r"^pjsip\.conf: '127\.0\.0\.1\\n\[evil\]' contains a line break"):
        rd.render(r, Settings.from_env(env), sec, layout)
    forged = sec_mod.Secrets(sec.path, {**sec.data, "ari": {"user": "tongdai", "password": "pw; [evil]"}})
    with pytest.raises(rd.UnsafeValue, match=r"^ari\.conf: "):
        rd.render(r, s, forged, layout)


@pytest.mark.parametrize("text,error", [
    ("[a]\nx = 1\n[b]\n", None),
    ("x = 1\n", "a setting before any section"),
    ("[a]\nx = 1\r\n", "U+000D"),
    ("[a]\nx = \x00\n", "U+0000"),
    ("[a]\ncallerid = \"a ;-- b\" <1>\n[b]\n", "never closed"),
    ("[a]\ncallerid = \"a --; b\" <1>\n", "closes no block comment"),
    ("[a]\nx = " + "y" * 9000 + "\n", "Asterisk would split it"),
    ("[a]\njust words\n", "no '='"),
    ("[a\n", "bad section header"),
    ("#exec id\n#foo bar\n", "unknown directive"),
    ("[a]\nx y = 1\n", "bad key"),
])
def test_the_strict_reader_refuses_what_asterisk_would_misread(text, error):
    if error is None:
        assert parse(text).shape() == ((), (("a", None, ("x",)), ("b", None, ())))
        return
    with pytest.raises(ConfError, match=re.escape(error)):
        parse(text)


def test_the_strict_reader_strips_comments_as_asterisk_does():
    conf = parse("; top\n[a](!,tmpl) ; c\ncallerid = \"A\\; B\" <1> ; tail\n;-- block\n[hidden]\n--; y = 2\n#tryinclude x.conf\n")
    a = conf.section("a", "!,tmpl")
    assert a.items == [("callerid", '"A; B" <1>'), ("y", "2")]
    assert conf.directives == [("tryinclude", "x.conf")] and [s.name for s in conf.sections] == ["a"]
    # A semicolon in a value cuts it, as Asterisk reads it: why names may not hold one.
    assert parse('[a]\ncallerid = "A; B" <1>\n').section("a").get("callerid") == ['"A']
