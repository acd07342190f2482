"""Loom's merging engine: offline builders of new adapters from existing ones.

Imports only ``hub.core`` of Loom (an import-linter contract enforces it). The public API::

    from merging import merge, describe_methods, choose_method, METHODS
    merged = merge([a, b], "ties_svd", weights=[1.0, 0.5], params={"density": 0.3}, names=["ns/a@1", "ns/b@2"])
    merged.provenance.recipe  # {"params": {...}, "weights": [...], "report": {...}}

Heavy imports (torch, scikit-learn, cma) happen when a method runs, not at ``import merging``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["METHODS", "choose_method", "config_class", "describe_methods", "merge", "method_names"]


def __getattr__(name: str) -> Any:
    if name in ("METHODS", "merge", "describe_methods", "config_class", "method_names"):
        from merging import registry

        return registry.methods() if name == "METHODS" else getattr(registry, name)
    if name == "choose_method":
        from merging.auto import choose_method

        return choose_method
    raise AttributeError(f"module 'merging' has no attribute {name!r}")
