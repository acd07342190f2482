"""Loom's routing engine: inference-time mixtures of LoRA experts.

Imports only ``hub.core`` of Loom (plus torch/transformers). Heavy modules load on first use::

    from routing import ROUTERS, build_router
    routed = build_router(model, [ad1, ad2, ad3], "meteora", {"k": 2})
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ROUTERS": "routing.presets",
    "RouterConfig": "routing.config",
    "RouterPreset": "routing.config",
    "build_router": "routing.presets",
    "make_config": "routing.presets",
    "RoutedModel": "routing.model",
    "RoutedLoRALinear": "routing.layer",
    "ExpertBank": "routing.bank",
    "RoutingContext": "routing.context",
    "GroupWeights": "routing.context",
    "train_router": "routing.train",
    "save_router": "routing.checkpoint",
    "load_router": "routing.checkpoint",
    "MixedAdapterModel": "routing.batching",
    "GenerationResult": "routing.batching",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'routing' has no attribute {name!r}")
