"""Meta-tests of the code's structure: no import cycles, every error code has a status, every job kind a handler."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ("hub", "merging", "routing", "generation", "testbed")
#: error classes that never cross our HTTP boundary (the client raises it for a server's 5xx)
CLIENT_SIDE_CODES = {"server_error", "unreachable"}


def import_cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), imports inside functions included."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return cycles


def test_no_import_cycles_among_our_modules():
    import grimp

    cycles = import_cycles(grimp.build_graph(*OURS, include_external_packages=False))
    assert cycles == [], "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    class Graph:
        modules = {"a", "b", "c"}
        edges = {"a": {"b"}, "b": {"a"}, "c": {"a"}}

        def find_modules_directly_imported_by(self, m):
            return self.edges[m]

    assert import_cycles(Graph()) == [["a", "b"]]


def _error_codes() -> dict[str, str]:
    """``code`` of every exception class in our packages (by AST: nothing is imported), -> where it is."""
    out: dict[str, str] = {}
    for pkg in OURS:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef):
                    continue
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                            and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == "code"
                            and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
                        out[stmt.value.value] = f"{path.relative_to(ROOT)}:{node.name}"
    return out


def test_every_error_code_maps_to_one_http_status():
    from hub.api.errors import STATUS_BY_CODE

    codes = _error_codes()
    assert "not_found" in codes and "context_length_exceeded" in codes  # the scan sees the tree
    missing = {c: where for c, where in codes.items() if c not in STATUS_BY_CODE and c not in CLIENT_SIDE_CODES}
    assert not missing, f"error codes without an HTTP status in hub.api.errors.STATUS_BY_CODE: {missing}"
    assert all(400 <= s < 600 for s in STATUS_BY_CODE.values())


def test_an_unmapped_error_code_is_a_500_not_a_silent_4xx():
    from hub.api.errors import status_for
    from hub.core.errors import LoomError

    class Unmapped(LoomError):
        code = "no_such_code"

    assert status_for(Unmapped("x")) == 500


def _submitted_kinds() -> dict[str, str]:
    """Job kinds every service submits: the first argument of each ``*.jobs.submit(...)`` call in hub/services."""
    out: dict[str, str] = {}
    for path in (ROOT / "hub" / "services").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "submit"
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "jobs" and node.args):
                arg = node.args[0]
                kind = arg.value if isinstance(arg, ast.Constant) else getattr(importlib.import_module(module), arg.id)
                out[kind] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return out


def test_every_job_kind_has_a_handler(tmp_path):
    from hub.services.container import Hub
    from hub.settings import get_settings

    kinds = _submitted_kinds()
    assert {"compose", "router_train", "hf_sync"} <= set(kinds)  # the scan sees the services
    with Hub(get_settings(data_dir=tmp_path / "data")) as hub:
        handled = set(hub.handlers)
    assert set(kinds) <= handled, {k: w for k, w in kinds.items() if k not in handled}
    assert handled <= set(kinds), f"handlers of kinds nothing submits: {handled - set(kinds)}"


def test_test_folders_mirror_our_packages():
    """Each folder of tests/ is named after the package or module it tests (tests/inference ->
    hub/services/inference, tests/router_training -> hub/services/router_training.py, tests/real -> testbed/real,
    tests/web -> web/), so a newcomer finds a module's tests by its name."""
    root = Path(__file__).resolve().parent.parent
    ours = {p.stem for top in ("hub", "merging", "routing", "generation", "testbed")
            for p in (root / top).rglob("*") if p.name != "__init__.py" and "__pycache__" not in p.parts
            and (p.suffix == ".py" or (p / "__init__.py").is_file())}
    ours |= {"hub", "merging", "routing", "generation", "testbed", "web"}
    folders = [p.name for p in (root / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert folders and not [f for f in folders if f not in ours], sorted(f for f in folders if f not in ours)
