"""The router preset registry: every preset listed in one place, and :func:`build_router`.

A preset is registered under a snake_case name in :data:`ROUTERS` with its paper link. It bundles
a frozen, validated config class, a ``build(model, experts, config, **extras) -> RoutedModel``
function and an ``aux_loss(routed, task_ids) -> Tensor`` function (spec §7.2, §7.6); see
:mod:`routing.config`. This module imports each preset module and lists its constants in
:data:`PRESETS` (mergekit's registry style): which presets exist does not depend on import order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError
from hub.core.registry import Registry
from routing.config import RouterConfig, RouterPreset
from routing.model import RoutedModel
from routing.routers import lora_mixer, meteora, mole, semantic, smora

__all__ = ["PRESETS", "ROUTERS", "RouterConfig", "RouterPreset", "build_router", "make_config"]


#: Every router preset, listed once; each preset module defines its ``RouterPreset`` constant(s) and
#: imports nothing from here. To add a preset, write its module and add its constant here.
PRESETS: tuple[RouterPreset, ...] = (
    meteora.PRESET,
    mole.LLAVA,
    mole.WU,
    smora.PRESET,
    lora_mixer.PRESET,
    semantic.PRESET,
)


def _registry(presets: Sequence[RouterPreset]) -> Registry[RouterPreset]:
    reg: Registry[RouterPreset] = Registry("router")
    for p in presets:
        reg.register(p.name, paper=p.paper, summary=p.summary)(p)
    return reg


#: Every router preset by name (granularity, config class, build and aux-loss functions).
ROUTERS: Registry[RouterPreset] = _registry(PRESETS)


def make_config(preset: str, config: Any = None) -> Any:
    """``config`` (None, a dict, or the preset's config object) -> the preset's config object."""
    p = ROUTERS.get(preset)
    cls: Any = p.config_cls
    if config is None or isinstance(config, Mapping):
        return cls.from_dict(config)
    if not isinstance(config, p.config_cls):
        raise InvalidInputError(f"config for {preset!r} must be a {p.config_cls.__name__} or a dict")
    return config


def build_router(model: nn.Module, experts: Sequence[LoraAdapter], preset: str, config: Any = None, *,
                 names: Sequence[str] | None = None, **extras: Any) -> RoutedModel:
    """Inject preset ``preset`` into ``model`` over ``experts`` (bank order = list order).

    Raises:
        UnknownNameError: no such preset. InvalidInputError / IncompatibleAdaptersError: bad config
        or adapters that cannot be mixed on this model.
    """
    p = ROUTERS.get(preset)
    cfg = make_config(preset, config)
    routed = p.build(model, list(experts), cfg, names=list(names) if names else None, **extras)
    routed.preset, routed.config = preset, cfg
    routed.expert_names = list(names) if names else [f"expert_{i}" for i in range(len(experts))]
    return routed
