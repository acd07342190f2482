"""Helpers shared by the preset modules (site selection, per-site gated layers)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from torch import nn

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError
from routing.bank import ExpertBank
from routing.context import RoutingContext
from routing.layer import RoutedLoRALinear
from routing.model import PLACEMENTS, RoutedModel, check_experts, gate_key, inject, linear_sites

_LAYER_RE = re.compile(r"^(?P<block>.*\.layers\.(?P<i>\d+))\.")


def block_of(site: str) -> str:
    """``model.layers.3.mlp.up_proj`` -> ``model.layers.3``."""
    m = _LAYER_RE.match(site)
    if not m:
        raise InvalidInputError(f"cannot find the decoder layer of site {site!r}")
    return m["block"]


def sites_for(model: nn.Module, experts: Sequence[LoraAdapter], placement: str) -> list[str]:
    """Sites of ``placement`` that at least one expert adapts (others would only add zeros)."""
    adapted = {m for ad in experts for m in ad.layers}
    sites = [s for s in linear_sites(model, PLACEMENTS[placement]) if s in adapted]
    if not sites:
        raise InvalidInputError(f"no expert adapts a {placement} module of this model")
    return sites


def per_site(model: nn.Module, experts: Sequence[LoraAdapter], names: Sequence[str] | None, sites: list[str],
             gate_for: Callable[[str, nn.Linear, ExpertBank], nn.Module | None], *, backend: str,
             dropout: float, group_size: Callable[[ExpertBank], int | None] = lambda bank: None,
             row_key: Callable[[str], str | None] = lambda site: None,
             shared_key: Callable[[str], str | None] = lambda site: None) -> RoutedModel:
    """Check the experts, inject a :class:`RoutedLoRALinear` at each site; register per-site gates."""
    check_experts(model, experts, names)
    gates: dict[str, nn.Module] = {}

    def make(site: str, lin: nn.Linear, bank: ExpertBank, ctx: RoutingContext) -> RoutedLoRALinear:
        gate = gate_for(site, lin, bank)
        if gate is not None:
            gates[gate_key(site)] = gate
        return RoutedLoRALinear(lin, bank, site=site, context=ctx, gate=gate, group_size=group_size(bank),
                                gate_key=shared_key(site), row_key=row_key(site), backend=backend,
                                dropout=dropout)

    routed = inject(model, sites, experts, make=make)
    for k, g in gates.items():
        routed.gates[k] = g
    return routed
