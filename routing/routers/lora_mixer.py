"""LoRA-Mixer: experts routed into the attention in/out projections (Li et al., arXiv 2507.00029).

Paper: https://arxiv.org/abs/2507.00029 . Per routed projection (q, k, v, o; Mamba ``in_proj`` /
``out_proj``) a linear router, ``p = softmax(z / τ)``, hard top-k selection with soft renormalised
weights ``p_S / sum p_S`` ("hard-soft"). ``straight_through`` backpropagates through the full p.
Loss ``α sum_i p̄_i f̄_i + λ_H mean H(p_t)`` with a SIGNED ``entropy_coef`` (λ_H > 0 makes each token's
routing peaky; the paper's printed sign contradicts its prose, spec §5(d)). The fusion F_route is
undefined in the paper; we use the weighted sum. No official code exists; treat as a reconstruction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hub.core.adapter import LoraAdapter
from routing import losses
from routing.config import RouterConfig, RouterPreset, check_choice, check_positive
from routing.gates import GateSpec, TokenGate, gate_width
from routing.model import RoutedModel
from routing.routers._common import per_site, sites_for


@dataclass(frozen=True)
class LoraMixerConfig(RouterConfig):
    """Attributes: k, temperature (τ), straight_through, balance_coef (α), entropy_coef (signed λ_H),
    placement (``attn_in_out``), trainable (``gate`` = plug-and-play with frozen hub LoRAs)."""

    k: int = 2
    temperature: float = 1.0
    straight_through: bool = False
    balance_coef: float = 0.01
    entropy_coef: float = 0.01
    placement: str = "attn_in_out"
    trainable: str = "gate"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("k", self.k)
        check_positive("temperature", self.temperature)
        check_positive("balance_coef", self.balance_coef, allow_zero=True)
        check_choice("trainable", self.trainable, ("gate", "gate+experts"))


def build(model: nn.Module, experts: Sequence[LoraAdapter], config: LoraMixerConfig, *,
          names: Sequence[str] | None = None) -> RoutedModel:
    n = len(experts)
    spec = GateSpec(k=min(config.k, n), weights="renorm_prob", temperature=config.temperature,
                    straight_through=config.straight_through)
    routed = per_site(model, experts, names, sites_for(model, experts, config.placement),
                      lambda site, lin, bank: TokenGate(gate_width(lin.in_features, config), n, spec, external=config.features == "embedding"),
                      backend=config.backend, dropout=config.dropout)
    routed.set_trainable(config.trainable)
    return routed


def aux_loss(routed: RoutedModel, task_ids: torch.Tensor | None) -> torch.Tensor:
    """``balance_coef * sum p̄ f̄ + entropy_coef * mean H(p_t)`` over real tokens."""
    ctx, cfg = routed.context, routed.config
    bal = losses.switch_balance(ctx.records, ctx.token_mask, n_factor=False)
    return cfg.balance_coef * bal + cfg.entropy_coef * losses.entropy(ctx.records, ctx.token_mask)


PRESET = RouterPreset("lora_mixer", LoraMixerConfig, build, aux_loss, granularity="token",
                      paper="https://arxiv.org/abs/2507.00029",
                      summary="LoRA-Mixer: hard-soft top-k experts on attention in/out projections")
