"""Injection of routed linears into a Hugging Face causal LM, and removal (spec §7.3, §7.5).

:class:`RoutedModel` owns the routed modules, the gates, the context and the hooks of one model.
``remove()`` puts the original ``nn.Linear`` objects back, so the base model is restored exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hub.core.adapter import LoraAdapter
from hub.core.compat import check_against_base, check_compatible
from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from routing.bank import ExpertBank
from routing.context import GroupWeights, RoutingContext

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
ALL_LINEAR = ATTN + MLP
#: placement names -> leaf module names (Llama / Mistral / Qwen2 / Gemma naming; Mamba in/out).
PLACEMENTS: dict[str, tuple[str, ...]] = {
    "all_linear": ALL_LINEAR,
    "attention": ATTN,
    "attn_in_out": ATTN + ("in_proj", "out_proj"),
    "mlp": MLP,
}


def linear_sites(model: nn.Module, leaves: Iterable[str]) -> list[str]:
    """Module paths of the ``nn.Linear`` layers whose leaf name is in ``leaves`` (lm_head excluded)."""
    want = set(leaves)
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in want and n != "lm_head"]


def base_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Every linear of ``model``: module path -> (out_features, in_features)."""
    return {n: (m.out_features, m.in_features) for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def model_id(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    return str(getattr(cfg, "name_or_path", "") or getattr(cfg, "_name_or_path", "") or "unknown")


def check_experts(model: nn.Module, experts: Sequence[LoraAdapter], names: Sequence[str] | None = None) -> None:
    """One clear error if the experts cannot be mixed on ``model`` (base id, module shapes)."""
    if not experts:
        raise InvalidInputError("experts must hold at least one adapter")
    check_compatible(list(experts), names=names)
    shapes, mid = base_shapes(model), model_id(model)
    for i, ad in enumerate(experts):
        if ad.base_model and mid != "unknown" and ad.base_model != mid:
            label = names[i] if names else f"expert #{i}"
            raise IncompatibleAdaptersError(f"{label} is for base model {ad.base_model!r}, not {mid!r}")
        check_against_base(ad, shapes, mid)


def gate_key(site: str) -> str:
    """ModuleDict-safe name of a site (``model.layers.0.mlp`` -> ``model__layers__0__mlp``)."""
    return site.replace(".", "__")


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


@dataclass
class RoutedModel:
    """A base model with routed linears injected. Call it like the model; ``remove()`` undoes it.

    Attributes:
        model: the HF causal LM (modified in place).
        context: shared gate state and statistics.
        layers: site -> routed linear.
        gates: every gate module, by name (site, ``mlp:<layer>``, ``block:<layer>``).
        preset: the router preset name; ``config`` its config object.
        expert_names: the experts' ids in bank order (the order is part of a trained gate).
    """

    model: nn.Module
    context: RoutingContext
    layers: dict[str, Any]
    gates: nn.ModuleDict
    preset: str = ""
    config: Any = None
    expert_names: list[str] = field(default_factory=list)
    hooks: list[Any] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    router: Any = None  # a request-level router (semantic), when the preset has one

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        gen: Any = self.model.generate  # a transformers GenerationMixin method
        return gen(*args, **kwargs)

    def parameters(self, what: str = "gate") -> list[nn.Parameter]:
        """Parameters of ``gate`` (routers), ``experts`` (the banks' A and B) or ``all`` of both."""
        out: list[nn.Parameter] = []
        if what in ("gate", "all"):
            out += [p for p in self.gates.parameters()]
        if what in ("experts", "all"):
            for lay in self.layers.values():
                out += [lay.bank.a, lay.bank.bt]
        return out

    def set_trainable(self, mode: str) -> None:
        """``gate``, ``experts`` or ``gate+experts``; the base model stays frozen."""
        if mode not in ("gate", "experts", "gate+experts", "none"):
            raise InvalidInputError(f"trainable must be gate, experts, gate+experts or none, got {mode!r}")
        for p in self.model.parameters():
            p.requires_grad_(False)
        for name, p in self.gates.named_parameters():
            tau = name.endswith("log_tau")
            p.requires_grad_("gate" in mode and (not tau or self._learn_tau()))
        for lay in self.layers.values():
            lay.bank.a.requires_grad_("experts" in mode)
            lay.bank.bt.requires_grad_("experts" in mode)

    def _learn_tau(self) -> bool:
        return bool(getattr(self.config, "learn_temperature", True))

    def update_balance_bias(self) -> None:
        """Apply SMoRA's bias rule once (call after each optimizer micro-step)."""
        for g in self.gates.values():
            update = getattr(g, "update_bias", None)
            if callable(update):
                update()

    def set_rows(self, weights: GroupWeights | None, key: str = "*") -> None:
        """Set (or clear) request-level row weights used by every site without its own gate."""
        if weights is None:
            self.context.rows.pop(key, None)
        else:
            self.context.rows[key] = weights

    @property
    def needs_features(self) -> bool:
        """Whether the gates read an external request embedding (config ``features="embedding"``)."""
        return any(getattr(g, "external", False) for g in self.gates.values())

    def set_features(self, features: torch.Tensor | None) -> None:
        """Set (or clear) the (B, D) request embeddings, one row per batch row, for the next calls."""
        if features is not None:
            if features.dim() != 2:
                raise InvalidInputError(f"request features must be (B, D), got {tuple(features.shape)}")
            want = getattr(self.config, "feature_dim", features.shape[1])
            if features.shape[1] != want:
                raise InvalidInputError(f"request features must have {want} columns (the router's embedding_dim "
                                        f"+ lexical_dim), got {features.shape[1]}")
            if not torch.isfinite(features).all():
                raise InvalidInputError("request features contain NaN or Inf")
        self.context.features = features

    def remove(self) -> nn.Module:
        """Restore the original linears, drop hooks; returns the base model."""
        for h in self.hooks:
            h.remove()
        self.hooks.clear()
        for site, lay in self.layers.items():
            lay.unmerge()
            _set_module(self.model, site, lay.base)
        self.layers.clear()
        return self.model


def inject(model: nn.Module, sites: Sequence[str], experts: Sequence[LoraAdapter], *,
           make: Callable[[str, nn.Linear, ExpertBank, RoutingContext], nn.Module],
           context: RoutingContext | None = None, dtype: torch.dtype | None = None) -> RoutedModel:
    """Replace each linear at ``sites`` by ``make(site, linear, bank, context)``.

    The bank of a site stacks each expert's layer for that site (zeros where an expert does not
    adapt it). Expert layers at modules outside ``sites`` are not applied; they are listed in
    ``RoutedModel.dropped``.
    """
    ctx = context or RoutingContext()
    layers: dict[str, Any] = {}
    for site in sites:
        lin = model.get_submodule(site)
        if not isinstance(lin, nn.Linear):
            raise InvalidInputError(f"site {site!r} is not an nn.Linear")
        bank = ExpertBank.from_layers([ad.layers.get(site) for ad in experts], lin.in_features, lin.out_features,
                                      dtype=dtype or lin.weight.dtype, device=lin.weight.device, site=site)
        layer = make(site, lin, bank, ctx)
        _set_module(model, site, layer)
        layers[site] = layer
    dropped = sorted({m for ad in experts for m in ad.layers} - set(sites))
    routed = RoutedModel(model=model, context=ctx, layers=layers, gates=nn.ModuleDict(), dropped=dropped)
    routed.hooks.append(model.register_forward_pre_hook(_prefill_hook(ctx), with_kwargs=True))
    return routed


def _prefill_hook(ctx: RoutingContext) -> Callable[..., None]:
    """Top-level pre-hook: a forward with an empty KV cache starts a new sequence."""

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        # transformers 5 names the KV cache ``cache`` (generate() passes it so); a caller on the deprecated
        # ``past_key_values`` name still continues its sequence
        pkv = kwargs.get("cache", kwargs.get("past_key_values"))
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        am = kwargs.get("attention_mask")
        prefill = pkv is None or int(pkv.get_seq_length()) == 0
        if prefill:
            ctx.new_sequence(am)
        ctx.in_prefill = prefill
        t = ids.shape[1] if ids is not None else None
        ctx.token_mask = am[:, -t:].reshape(-1).bool() if am is not None and t is not None else None

    return hook
