"""The package's shape (docs/architecture.md): a few rooms, no import cycles, no repository paths."""

from __future__ import annotations

import ast
from pathlib import Path

import ivr

PKG = Path(ivr.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules imported at run time (imports under ``if TYPE_CHECKING:`` do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    me = _module_name(path)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in modules and m != me}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    modules = set(files)
    return {m: _runtime_imports(p, modules) for m, p in files.items()}


def test_no_import_cycles():
    graph = _graph()
    # A package's __init__ importing its own submodules is how a package is assembled, not a
    # cycle between rooms: an edge into a parent package from its child is ignored.
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not m.startswith(d + ".")}
    seen: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if seen.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in seen:
                visit(d)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_a_few_rooms():
    top = [p.name for p in PKG.glob("*.py")]
    subpackages = [p.name for p in PKG.iterdir() if (p / "__init__.py").exists()]
    assert len(top) <= 8, top
    assert len(subpackages) >= 4, subpackages


def test_no_repository_paths():
    """Runtime files are package data: the package never climbs to the repository root (only
    settings.checkout_root() may, to give a checkout its default data directory)."""
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if "parents[" in p.read_text(encoding="utf-8") and p.name != "settings.py"]
    assert not offenders


def test_call_steps_never_reach_the_dispatcher():
    """The call steps get a narrow context; they do not import or reach into the dispatcher."""
    steps = ["prompt", "menu", "route", "bridge", "complaint", "survey", "lookup"]
    graph = _graph()
    for s in steps:
        assert "ivr.call.dispatcher" not in graph[f"ivr.call.{s}"], s
        assert "session.ctl" not in (PKG / "call" / f"{s}.py").read_text(encoding="utf-8"), s


def test_every_module_imports():
    """Moving modules must not leave an import behind: import each one (the bench's too)."""
    import importlib
    import pkgutil

    import bench

    names = [m.name for m in pkgutil.walk_packages(ivr.__path__, "ivr.") if not m.name.endswith("__main__")]
    names += [m.name for m in pkgutil.walk_packages(bench.__path__, "bench.")]
    for name in names:
        importlib.import_module(name)
    assert "ivr.call.flow" in names and "bench.capacity" in names


def test_migrations_have_one_head():
    """Branches that each add a migration must be chained when they merge: one head, no fork."""
    import importlib.resources

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(importlib.resources.files("ivr.migrations")))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert len(heads) == 1, heads
