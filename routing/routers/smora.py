"""SMoRA: each rank is an expert (Zhao et al., arXiv 2501.15103).

Paper: https://arxiv.org/abs/2501.15103 . The experts' ranks are concatenated into one LoRA of rank
R per site and split into groups of ``block`` ranks (``block=1``: every rank-1 slice is an expert).
A per-site router gives sigmoid scores per group, plus a non-trainable balancing bias β that enters
both the selection and the values; top-k groups get weights ``k σ'_S / sum σ'_S`` (they sum to k) and
the LoRA term is scaled by ``alpha / k`` instead of ``alpha / r``. β follows the sign rule
``β += u sign(mean(c) - c)`` once per optimizer micro-step (``RoutedModel.update_balance_bias``), not
per forward, so activation checkpointing cannot apply it twice. No aux loss.
Deliberate difference: with several source adapters each keeps its own alpha (``alpha_i / k``)
unless ``alpha`` is set. Ranks padded to a common r (unequal ranks, missing sites) are zero experts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hub.core.adapter import LoraAdapter, LoraLayer, LoraSpec
from hub.core.errors import InvalidInputError
from routing.config import RouterConfig, RouterPreset, check_choice, check_positive
from routing.gates import GateSpec, TokenGate, gate_width
from routing.model import PLACEMENTS, RoutedModel, linear_sites, model_id
from routing.routers._common import per_site, sites_for


@dataclass(frozen=True)
class SmoraConfig(RouterConfig):
    """Attributes: k (active groups per token), block (ranks per group, ``rank_partition``),
    alpha (overrides each expert's alpha), bias_rate (u of the sign rule), placement, trainable."""

    k: int = 8
    block: int = 1
    alpha: float | None = None
    bias_rate: float = 1e-5
    placement: str = "all_linear"
    trainable: str = "gate+experts"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("k", self.k)
        check_positive("block", self.block)
        check_positive("bias_rate", self.bias_rate, allow_zero=True)
        if self.alpha is not None:
            check_positive("alpha", self.alpha)
        check_choice("trainable", self.trainable, ("gate", "gate+experts"))


def build(model: nn.Module, experts: Sequence[LoraAdapter], config: SmoraConfig, *,
          names: Sequence[str] | None = None) -> RoutedModel:
    """Per-site sigmoid top-k router over rank groups; scale alpha/k."""

    def gate_for(site: str, lin: nn.Linear, bank: Any) -> nn.Module:
        if bank.rank % config.block:
            raise InvalidInputError(f"block must divide the rank {bank.rank} at {site}, got {config.block}")
        groups = bank.total_rank // config.block
        if config.k > groups:
            raise InvalidInputError(f"k must be <= the number of rank groups ({groups}) at {site}, got {config.k}")
        with torch.no_grad():  # per-rank scale alpha_i / k (the sum-to-k weights finish the LoRA scale)
            for i, ad in enumerate(experts):
                la = ad.layers.get(site)
                alpha = config.alpha if config.alpha is not None else (la.alpha if la is not None else 0.0)
                bank.set_scale(i, alpha / config.k if la is not None else 0.0)
        spec = GateSpec(score="sigmoid", k=config.k, weights="sum_to_k", balance_bias=True,
                        bias_rate=config.bias_rate)
        return TokenGate(gate_width(lin.in_features, config), groups, spec, external=config.features == "embedding")

    routed = per_site(model, experts, names, sites_for(model, experts, config.placement), gate_for,
                      backend=config.backend, dropout=config.dropout, group_size=lambda bank: config.block)
    routed.set_trainable(config.trainable)
    return routed


def aux_loss(routed: RoutedModel, task_ids: torch.Tensor | None) -> torch.Tensor:
    """SMoRA has no auxiliary loss (balancing is the bias rule)."""
    return torch.zeros(())


def init_adapter(model: nn.Module, r: int = 64, alpha: float = 16.0, placement: str = "all_linear",
                 seed: int = 0) -> LoraAdapter:
    """A fresh LoRA to train SMoRA from scratch: Kaiming-uniform A, zero B (PEFT's default init)."""
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for site in linear_sites(model, PLACEMENTS[placement]):
        lin = model.get_submodule(site)
        assert isinstance(lin, nn.Linear)
        bound = 1.0 / math.sqrt(lin.in_features)
        a = (torch.rand(r, lin.in_features, generator=g) * 2 - 1) * bound
        layers[site] = LoraLayer(a=a, b=torch.zeros(lin.out_features, r), alpha=alpha)
    return LoraAdapter(layers=layers, spec=LoraSpec(base_model=model_id(model)))


PRESET = RouterPreset("smora", SmoraConfig, build, aux_loss, granularity="token",
                      paper="https://arxiv.org/abs/2501.15103",
                      summary="SMoRA: every rank an expert, sigmoid top-k + loss-free bias balancing")
