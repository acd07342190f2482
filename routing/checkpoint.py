"""Router checkpoints: safetensors tensors + a JSON manifest, never pickle (spec §7.7).

A folder holds ``router.safetensors`` (``gate.<name>.<param>`` for every gate, and
``bank.<site>.a`` / ``bank.<site>.bt`` / ``bank.<site>.scale`` when the experts were trained) and
``router.json`` (format, preset, config, the expert ids IN ORDER with their content hashes, base model id
and revision, per-site rank layout). Loading refuses a different adapter set or order, a different
base model, or experts whose weights changed: MeteoRA's failure mode is a silent misroute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hub.core.adapter import LoraAdapter
from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from hub.core.files import ROUTER_MANIFEST, ROUTER_TENSORS
from hub.core.safetensors_check import check_safetensors_header
from routing.model import RoutedModel, model_id

FORMAT = "loom-router/1"
TENSORS = ROUTER_TENSORS
MANIFEST = ROUTER_MANIFEST


@dataclass
class RouterState:
    """A trained router, independent of any live model.

    Attributes:
        preset / config: the preset name and its config as a JSON dict.
        expert_ids: adapter ids in bank order; ``expert_hashes``: their content hashes.
        base_model / base_revision: the base the gates were trained on.
        tensors: ``gate.*`` and (when experts were trained) ``bank.*`` tensors.
        sites: site -> {"ranks": [...], "scales": [...]} rank layout.
        metrics: training summary (steps, final losses ...).
    """

    preset: str
    config: dict[str, Any]
    expert_ids: list[str]
    base_model: str
    tensors: dict[str, torch.Tensor]
    expert_hashes: list[str] = field(default_factory=list)
    base_revision: str | None = None
    sites: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "preset": self.preset, "config": self.config, "expert_ids": self.expert_ids,
                "expert_hashes": self.expert_hashes, "base_model": self.base_model,
                "base_revision": self.base_revision, "sites": self.sites, "metrics": self.metrics}

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``router.safetensors`` and ``router.json`` into ``folder``."""
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}, str(d / TENSORS),
                  metadata={"format": FORMAT})
        (d / MANIFEST).write_text(json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n")
        return d

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> RouterState:
        """Read a router folder (header checked before tensors are read).

        Raises:
            InvalidInputError: missing files, bad JSON, unknown format.
        """
        d = Path(folder)
        if not (d / MANIFEST).is_file() or not (d / TENSORS).is_file():
            raise InvalidInputError(f"{d} is not a router folder (needs {MANIFEST} and {TENSORS})")
        try:
            man = json.loads((d / MANIFEST).read_text())
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{MANIFEST} is not valid JSON: {e}") from None
        if not isinstance(man, dict) or man.get("format") != FORMAT:
            raise InvalidInputError(f"{MANIFEST}: format must be {FORMAT!r}")
        check_safetensors_header(d / TENSORS)
        tensors = load_file(str(d / TENSORS), device="cpu")
        try:
            return cls(preset=man["preset"], config=man["config"], expert_ids=list(man["expert_ids"]),
                       base_model=man["base_model"], tensors=tensors, expert_hashes=list(man.get("expert_hashes", [])),
                       base_revision=man.get("base_revision"), sites=man.get("sites", {}),
                       metrics=man.get("metrics", {}))
        except KeyError as e:
            raise InvalidInputError(f"{MANIFEST} lacks field {e}") from None


def router_state(routed: RoutedModel, experts: Sequence[LoraAdapter] | None = None, *,
                 with_experts: bool | None = None, metrics: dict[str, Any] | None = None) -> RouterState:
    """Snapshot the gates (and the banks when they are trainable) of ``routed``."""
    tensors = {f"gate.{k}": v.detach().clone() for k, v in routed.gates.state_dict().items()
               if not k.endswith(".load")}
    if with_experts is None:
        with_experts = any(lay.bank.a.requires_grad for lay in routed.layers.values())
    sites = {}
    for site, lay in routed.layers.items():
        sites[site] = {"ranks": list(lay.bank.ranks), "scales": [float(s) for s in lay.bank.scale]}
        if with_experts:
            for part in ("a", "bt", "scale"):
                tensors[f"bank.{site}.{part}"] = getattr(lay.bank, part).detach().clone()
    return RouterState(preset=routed.preset, config=routed.config.to_dict(), expert_ids=list(routed.expert_names),
                       base_model=model_id(routed.model), tensors=tensors,
                       expert_hashes=[e.content_hash() for e in experts] if experts is not None else [],
                       base_revision=getattr(routed.model.config, "_commit_hash", None), sites=sites,
                       metrics=dict(metrics or {}))


def check_state(state: RouterState, model: nn.Module, experts: Sequence[LoraAdapter], names: Sequence[str]) -> None:
    """Refuse a router trained for another base, another adapter set/order, or changed adapters.

    Raises:
        IncompatibleAdaptersError: naming what differs.
    """
    if list(names) != state.expert_ids:
        raise IncompatibleAdaptersError(
            f"router was trained with experts {state.expert_ids} in this order; got {list(names)}",
            expected=state.expert_ids, got=list(names))
    mid = model_id(model)
    if state.base_model not in ("unknown", mid):
        raise IncompatibleAdaptersError(f"router was trained on base model {state.base_model!r}, not {mid!r}")
    if state.expert_hashes:
        for name, ad, h in zip(names, experts, state.expert_hashes, strict=True):
            if ad.content_hash() != h:
                raise IncompatibleAdaptersError(f"expert {name!r} changed since the router was trained")


def load_state(routed: RoutedModel, state: RouterState) -> None:
    """Copy gate (and bank) tensors of ``state`` into a router built with the same preset/config."""
    gate_sd = {k[len("gate."):]: v for k, v in state.tensors.items() if k.startswith("gate.")}
    own = routed.gates.state_dict()
    missing = sorted(k for k in own if k not in gate_sd and not k.endswith(".load"))
    extra = sorted(set(gate_sd) - set(own))
    if missing or extra:
        raise IncompatibleAdaptersError(f"router tensors do not fit this model (missing {missing[:3]}, "
                                        f"unexpected {extra[:3]})")
    routed.gates.load_state_dict(gate_sd, strict=False)
    with torch.no_grad():
        for site, lay in routed.layers.items():
            for part in ("a", "bt", "scale"):
                t = state.tensors.get(f"bank.{site}.{part}")
                if t is not None:
                    getattr(lay.bank, part).copy_(t)
            lay.bank.scales = [float(v) for v in lay.bank.scale.tolist()]


def save_router(routed: RoutedModel, folder: str | os.PathLike[str], experts: Sequence[LoraAdapter] | None = None,
                **kw: Any) -> Path:
    """``router_state(routed, experts, ...)`` saved to ``folder``."""
    return router_state(routed, experts, **kw).save(folder)


def load_router(model: nn.Module, experts: Sequence[LoraAdapter], source: str | os.PathLike[str] | RouterState, *,
                names: Sequence[str], **extras: Any) -> RoutedModel:
    """Rebuild a trained router on ``model`` over ``experts`` (which must match, in order).

    Raises:
        IncompatibleAdaptersError: different adapter set/order, base, or changed adapters.
        InvalidInputError: an unreadable checkpoint.
    """
    from routing.presets import build_router

    state = source if isinstance(source, RouterState) else RouterState.load(source)
    check_state(state, model, experts, names)
    routed = build_router(model, experts, state.preset, state.config, names=names, **extras)
    load_state(routed, state)
    return routed
