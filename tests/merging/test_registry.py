"""The method registry is one explicit list: every method module's constants are in it, and nothing
depends on which module was imported first."""

from __future__ import annotations

import importlib
import pkgutil

import merging.methods
from merging.methods import ALL
from merging.registry import method_names, methods
from merging.spec import MergeMethod
from tests.helpers import fresh_python


def _defined_in_modules() -> dict[str, MergeMethod]:
    found: dict[str, MergeMethod] = {}
    for info in pkgutil.iter_modules(merging.methods.__path__):
        mod = importlib.import_module(f"merging.methods.{info.name}")
        for value in vars(mod).values():
            if isinstance(value, MergeMethod) and value.fn.__module__ == mod.__name__:
                found[value.name] = value
    return found


def test_every_method_module_constant_is_listed_once():
    names = [m.name for m in ALL]
    assert len(names) == len(set(names)), names
    assert set(names) == set(_defined_in_modules())
    assert method_names() == sorted(names)
    assert all(methods().get(m.name) is m for m in ALL)


def test_method_modules_import_nothing_from_the_registry():
    for info in pkgutil.iter_modules(merging.methods.__path__):
        mod = importlib.import_module(f"merging.methods.{info.name}")
        assert "merging.registry" not in open(mod.__file__, encoding="utf-8").read(), info.name


def test_the_methods_do_not_depend_on_import_order():
    """A worker that imports one method module first still sees every method."""
    code = (
        "import merging.methods.ties\n"
        "from merging import method_names\n"
        "print(','.join(method_names()))\n"
    )
    assert fresh_python(code).strip().split(",") == method_names()
