"""The package layout the README describes: `backends` never imports `pipeline`, the subpackages of `pipeline`
import each other without cycles (function-level imports included), each module says its job in a docstring."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("data", "training", "conversion", "spiking", "hardware", "io", "reports")


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in `path` (top level and inside functions)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _group(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pipeline" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in SUBPACKAGES else None


def _subpackage_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {g: set() for g in SUBPACKAGES}
    for group in SUBPACKAGES:
        for path in (ROOT / "pipeline" / group).rglob("*.py"):
            edges[group] |= {g for m in _imports(path) if (g := _group(m)) and g != group}
    return edges


def test_backends_never_import_pipeline():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "backends").rglob("*.py")
                 if any(m == "pipeline" or m.startswith("pipeline.") for m in _imports(p))]
    assert offenders == []


def test_no_import_cycles_between_subpackages():
    edges = _subpackage_graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(path + [node, nxt])}"
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for group in SUBPACKAGES:
        if group not in state:
            visit(group, [])
    assert "reports" not in set().union(*(edges[g] for g in SUBPACKAGES if g != "reports"))


def test_every_module_has_a_docstring():
    missing = [str(p.relative_to(ROOT)) for top in ("pipeline", "backends") for p in (ROOT / top).rglob("*.py")
               if p.name != "py.typed" and not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []
