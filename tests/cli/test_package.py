"""The shape of ``hub/cli/``: every command module is in the static list, no private names cross modules,
no module is large, and importing any of it stays light (``loom --help`` is fast)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import typer

import hub.cli

PACKAGE = Path(hub.cli.__file__).parent
HELPERS = {"__init__", "__main__", "common", "errors", "jobwatch"}  # modules that hold no commands
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def test_every_command_module_is_in_the_static_list():
    listed = [sub for sub, _ in hub.cli.COMMANDS]
    for name in sorted(set(MODULES) - HELPERS):
        module = importlib.import_module(f"hub.cli.{name}")
        assert isinstance(getattr(module, "app", None), typer.Typer), f"hub.cli.{name} has no typer app"
        assert listed.count(module.app) == 1, f"hub.cli.{name}.app is not listed once in hub.cli.COMMANDS"
    assert len(listed) == len(set(MODULES) - HELPERS)


def test_no_private_names_cross_modules():
    bad = []
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = set()  # local names bound to our modules: `from hub.cli import common`, `import hub.x as y`
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("hub", "testbed"):
                bad += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_")]
                modules |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                modules |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("hub")}
        bad += [f"{path.name}: {n.value.id}.{n.attr}" for n in ast.walk(tree)
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in modules
                and n.attr.startswith("_") and not n.attr.startswith("__")]
    assert bad == []


def test_modules_are_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(sizes.values()) <= 400, sizes


def test_importing_the_whole_cli_stays_light():
    heavy = ("torch", "transformers", "faiss", "sentence_transformers", "peft", "sqlalchemy", "fastapi", "uvicorn",
             "hub.services", "hub.db")
    code = (f"import importlib, sys\nfor m in {[m for m in MODULES if m != '__main__']!r}:\n"
            "    importlib.import_module('hub.cli.' + m if m != '__init__' else 'hub.cli')\n"
            "import hub.client_hf\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_dash_m_runs_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "hub.cli", "router", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "presets" in out.stdout
