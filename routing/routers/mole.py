"""Two methods called "MoLE" (spec §3), registered as ``mole_llava`` and ``mole_wu``.

``mole_llava`` -- LLaVA-MoLE, Chen et al., https://arxiv.org/abs/2401.16160 : LoRA experts on the
MLP (gate/up/down), ONE router per decoder layer reading the MLP input (linear with bias), top-1 with
unit weight (the released inference's dense soft mix is ``dense=True``). Straight-through
``onehot - sg(p) + p`` is on by default so the router learns from the task loss (the released code
only uses it in the balance loss). Balance loss ``sum_e P_e f_e`` without the factor N. Optionally
one expert's attention LoRA is applied to every token (the paper's shared attention LoRA), or, with
``routed_attention``, each layer's router is read at the layer's input and also picks the attention
LoRA of the chosen expert (frozen hub experts adapt attention too; the MLP-only placement drops it).

``mole_wu`` -- MoLE, Wu et al., ICLR 2024, https://arxiv.org/abs/2404.13628 : one gate per
decoder block, per SEQUENCE: dense ``softmax(ε/τ)`` with learnable τ over the experts, where ε is
a linear map of the L2-normalised block input mean-pooled over real tokens (the paper flattens
concatenated expert outputs; pooling is our choice for variable length). Computed once at prefill
and reused while decoding. Balance loss ``-sum_i log q_i`` (×0.5). ``mask`` restricts inference to
some experts and renormalises (Wu's inference mode 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError
from routing import losses
from routing.config import RouterConfig, RouterPreset, check_positive
from routing.gates import ConstantGate, GateSpec, SequenceGate, TokenGate, features_for, gate_width
from routing.model import ATTN, MLP, RoutedModel, gate_key
from routing.routers._common import block_of, per_site, sites_for


@dataclass(frozen=True)
class MoleLlavaConfig(RouterConfig):
    """Attributes: dense (soft mix of all experts instead of top-1 unit weight), straight_through,
    balance_coef (w_bal of the Switch-style loss without N), attention_expert (index of the expert
    whose attention LoRA applies to all tokens, or None), routed_attention (each layer's router, read
    at the layer input, also routes the experts' attention LoRAs), trainable."""

    dense: bool = False
    straight_through: bool = True
    balance_coef: float = 0.01
    attention_expert: int | None = None
    routed_attention: bool = False
    trainable: str = "gate"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("balance_coef", self.balance_coef, allow_zero=True)
        if self.routed_attention and self.attention_expert is not None:
            raise InvalidInputError("routed_attention routes the attention LoRAs; attention_expert (one shared "
                                    "attention LoRA) cannot be set with it")
        if self.trainable not in ("gate", "gate+experts"):
            raise InvalidInputError(f"trainable must be gate or gate+experts, got {self.trainable!r}")


def build_llava(model: nn.Module, experts: Sequence[LoraAdapter], config: MoleLlavaConfig, *,
                names: Sequence[str] | None = None) -> RoutedModel:
    n = len(experts)
    if config.attention_expert is not None and not 0 <= config.attention_expert < n:
        raise InvalidInputError(f"attention_expert must be in [0, {n}), got {config.attention_expert}")
    with_attn = config.attention_expert is not None or config.routed_attention
    leaves = MLP + (ATTN if with_attn else ())
    sites = [s for s in sites_for(model, experts, "all_linear") if s.rsplit(".", 1)[-1] in leaves]
    spec = GateSpec(bias=True, k=n if config.dense else 1, weights="prob" if config.dense else "unit",
                    straight_through=config.straight_through and not config.dense)
    prefix = "layer" if config.routed_attention else "mlp"  # the record / shared-weights key of a block's router

    def gate_for(site: str, lin: nn.Linear, bank: Any) -> nn.Module | None:
        if site.rsplit(".", 1)[-1] in ATTN and not config.routed_attention:
            return ConstantGate(config.attention_expert or 0)
        return None

    def shared(site: str) -> str | None:
        return f"{prefix}:{block_of(site)}" if config.routed_attention or site.rsplit(".", 1)[-1] in MLP else None

    routed = per_site(model, experts, names, sites, gate_for, backend=config.backend, dropout=config.dropout,
                      shared_key=shared)
    routed_blocks = {block_of(s) for s in sites if config.routed_attention or s.rsplit(".", 1)[-1] in MLP}
    for block in sorted(routed_blocks):
        # the router reads the MLP input (paper), or the layer input when it also routes attention
        reads = block if config.routed_attention else block + ".mlp"
        gate = TokenGate(gate_width(_hidden(model), config), n, spec, external=config.features == "embedding")
        routed.gates[gate_key(reads)] = gate
        routed.hooks.append(model.get_submodule(reads).register_forward_pre_hook(
            _token_hook(routed, gate, f"{prefix}:{block}"), with_kwargs=True))
    routed.set_trainable(config.trainable)
    return routed


def _hidden(model: nn.Module) -> int:
    cfg: Any = getattr(model, "config", None)
    return int(cfg.hidden_size)


def _token_hook(routed: RoutedModel, gate: TokenGate, key: str) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = args[0] if args else kwargs["hidden_states"]
        rec = gate(features_for(gate, routed.context, x))  # (B*T, d|D) -> weights shared by the block's sites
        routed.context.shared[key] = rec.weights
        routed.context.record(key, rec)
    return hook


def aux_llava(routed: RoutedModel, task_ids: torch.Tensor | None) -> torch.Tensor:
    recs = {k: v for k, v in routed.context.records.items() if k.startswith(("mlp:", "layer:"))}
    return routed.config.balance_coef * losses.switch_balance(recs, routed.context.token_mask, n_factor=False)


@dataclass(frozen=True)
class MoleWuConfig(RouterConfig):
    """Attributes: temperature (initial τ), learn_temperature, placement of the block's linears,
    balance_coef (α of ``-sum log q``), mask (expert indices allowed at inference, or None = all)."""

    temperature: float = 1.0
    learn_temperature: bool = True
    placement: str = "all_linear"
    balance_coef: float = 0.5
    mask: tuple[int, ...] | None = None
    trainable: str = "gate"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("temperature", self.temperature)
        check_positive("balance_coef", self.balance_coef, allow_zero=True)
        if self.mask is not None and (not self.mask or any(not isinstance(i, int) or i < 0 for i in self.mask)):
            raise InvalidInputError(f"mask must be a non-empty list of expert indices, got {self.mask!r}")
        if self.trainable != "gate":
            raise InvalidInputError(f"trainable must be gate for mole_wu, got {self.trainable!r}")


def build_wu(model: nn.Module, experts: Sequence[LoraAdapter], config: MoleWuConfig, *,
             names: Sequence[str] | None = None) -> RoutedModel:
    n = len(experts)
    if config.mask is not None and max(config.mask) >= n:
        raise InvalidInputError(f"mask indices must be < {n} (number of experts), got {list(config.mask)}")
    sites = sites_for(model, experts, config.placement)
    routed = per_site(model, experts, names, sites, lambda s, lin, bank: None, backend=config.backend,
                      dropout=config.dropout, row_key=lambda s: f"block:{block_of(s)}")
    for block in sorted({block_of(s) for s in sites}):
        gate = SequenceGate(gate_width(_hidden(model), config), n, config.temperature, config.learn_temperature,
                            external=config.features == "embedding")
        if config.mask is not None:
            gate.allowed.zero_()
            gate.allowed[list(config.mask)] = 1.0
        routed.gates[gate_key(block)] = gate
        layer = model.get_submodule(block)
        routed.hooks.append(layer.register_forward_pre_hook(_block_hook(routed, gate, f"block:{block}"),
                                                            with_kwargs=True))
    routed.set_trainable(config.trainable)
    return routed


def _block_hook(routed: RoutedModel, gate: SequenceGate, key: str) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ctx = routed.context
        if key in ctx.sequence_rows:
            return  # computed at prefill; reused at every decode step
        if not ctx.in_prefill:
            raise InvalidInputError("sequence-level gate missing while decoding; start with a prefill")
        h = args[0] if args else kwargs["hidden_states"]  # (B, T, d)
        am = ctx.attention_mask
        m = (am[:, -h.shape[1]:] if am is not None else torch.ones(h.shape[:2], device=h.device)).to(h.dtype)
        pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)  # (B, d)
        rec = gate(features_for(gate, ctx, pooled))  # (B, d), or the request embedding (B, D)
        ctx.sequence_rows[key] = rec.weights
        ctx.record(key, rec)
    return hook


def aux_wu(routed: RoutedModel, task_ids: torch.Tensor | None) -> torch.Tensor:
    return routed.config.balance_coef * losses.wu_balance(routed.context.records)


LLAVA = RouterPreset("mole_llava", MoleLlavaConfig, build_llava, aux_llava, granularity="token",
                     paper="https://arxiv.org/abs/2401.16160",
                     summary="LLaVA-MoLE: MLP experts, one top-1 router per layer, Switch balance")
WU = RouterPreset("mole_wu", MoleWuConfig, build_wu, aux_wu, granularity="sequence",
                  paper="https://arxiv.org/abs/2404.13628",
                  summary="MoLE (Wu et al.): per-block, per-sequence dense softmax gate over frozen LoRAs")
