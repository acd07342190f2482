"""The router presets are one explicit list in ``routing.presets``: every preset module's constants
are in it, and the registry is full whichever module is imported first."""

from __future__ import annotations

import importlib
import pkgutil

import routing.routers
from routing.config import RouterPreset
from routing.presets import PRESETS, ROUTERS
from tests.helpers import fresh_python


def test_every_preset_module_constant_is_listed_once():
    found = set()
    for info in pkgutil.iter_modules(routing.routers.__path__):
        mod = importlib.import_module(f"routing.routers.{info.name}")
        assert "routing.presets" not in open(mod.__file__, encoding="utf-8").read(), info.name
        found |= {v.name for v in vars(mod).values() if isinstance(v, RouterPreset)}
    names = [p.name for p in PRESETS]
    assert len(names) == len(set(names)) and set(names) == found
    assert ROUTERS.names() == sorted(names)
    assert all(ROUTERS.entry(p.name).paper == p.paper and p.paper and p.summary for p in PRESETS)


def test_the_registry_is_full_whichever_module_is_imported_first():
    """``routing.presets`` (or the checkpoint loader) imported directly, with no ``import routing.routers``."""
    code = (
        "from routing.checkpoint import load_router\n"
        "from routing.presets import ROUTERS\n"
        "print(','.join(ROUTERS.names()))\n"
    )
    assert fresh_python(code).strip().split(",") == ROUTERS.names()
