"""Loom's shared adapter type. Depends on torch and safetensors only.

The names below are loaded lazily (PEP 562), so ``import hub.core.errors`` does not import torch:
the CLI and the API client stay fast to start.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LoraAdapter": "hub.core.adapter",
    "LoraLayer": "hub.core.adapter",
    "LoraSpec": "hub.core.adapter",
    "check_against_base": "hub.core.compat",
    "check_compatible": "hub.core.compat",
    "LoomError": "hub.core.errors",
    "load_peft": "hub.core.peft_io",
    "save_peft": "hub.core.peft_io",
    "ParentRef": "hub.core.provenance",
    "Provenance": "hub.core.provenance",
    "Registry": "hub.core.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hub.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
