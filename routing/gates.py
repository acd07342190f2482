"""Gate modules: map features to sparse group weights (spec §6, §7.2).

One configurable :class:`TokenGate` covers the scoring/selection/weighting knobs of every trained
preset; :class:`ConstantGate` gives every token the same expert (a plain shared LoRA), and
:class:`SequenceGate` computes one dense weight vector per sequence from pooled features (Wu MoLE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from hub.core.errors import InvalidInputError
from routing.context import GateRecord, GroupWeights, RoutingContext

Score = Literal["linear", "sigmoid"]
WeightRule = Literal["softmax_topk", "renorm_prob", "unit", "prob", "sum_to_k", "dense_softmax"]
WEIGHT_RULES = ("softmax_topk", "renorm_prob", "unit", "prob", "sum_to_k", "dense_softmax")
FEATURES = ("site_input", "embedding")


class GateInputs(Protocol):
    """What :func:`gate_width` reads of a router config (every ``RouterConfig`` has both)."""

    @property
    def features(self) -> str: ...

    @property
    def feature_dim(self) -> int: ...


def gate_width(width: int, config: GateInputs) -> int:
    """Input width of a gate: ``width`` (its site/block features) or the config's request-feature width."""
    return int(config.feature_dim) if config.features == "embedding" else width


def features_for(gate: nn.Module, ctx: RoutingContext, x: torch.Tensor) -> torch.Tensor:
    """What ``gate`` reads for input ``x`` (B, T, d) or (M, d): ``x`` itself as (M, d), or -- for a gate
    built with ``external=True`` -- the request embedding of each row repeated over its tokens (M, D)."""
    if not getattr(gate, "external", False):
        return x.reshape(-1, x.shape[-1])
    f = ctx.features
    if f is None:
        raise InvalidInputError("this router's gates read a request embedding (features='embedding'); "
                                "set one per row with RoutedModel.set_features(...) before the forward")
    rows = f.shape[0]
    m = x.reshape(-1, x.shape[-1]).shape[0]
    if m % rows:
        raise InvalidInputError(f"request features have {rows} rows but the input has {m} tokens")
    return f.to(x.device).repeat_interleave(m // rows, dim=0)


@dataclass(frozen=True)
class GateSpec:
    """The knobs of a token gate.

    Attributes:
        score: ``linear`` logits ``W u (+b)``, or ``sigmoid`` scores plus a balancing bias (SMoRA).
        bias: a learned bias in the linear map (LLaVA-MoLE).
        k: groups selected per token; ``k >= n_groups`` or ``weights="dense_softmax"`` selects all.
        weights: how the selected groups are weighted (see spec §6).
        temperature: divides logits (MeteoRA ``T`` applies to the top-k logits only).
        straight_through: forward weights ``w``, backward through the full softmax ``p``.
        min_prob: of the top-k, keep only groups whose probability (``softmax(z)``; with sigmoid scores
            each group's own ``sigmoid(z)``) is at least this, the first always: a token whose gate is sure
            of one group gets one, a request naming several tasks up to k.
        balance_bias: keep a non-trainable per-group selection bias updated by the sign rule.
        bias_rate: ``u`` of the sign rule.
    """

    score: Score = "linear"
    bias: bool = False
    k: int = 2
    weights: WeightRule = "softmax_topk"
    temperature: float = 1.0
    straight_through: bool = False
    min_prob: float = 0.0
    balance_bias: bool = False
    bias_rate: float = 1e-5

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidInputError(f"k must be >= 1, got {self.k}")
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise InvalidInputError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.min_prob < 1.0:
            raise InvalidInputError(f"min_prob must be in [0, 1), got {self.min_prob}")
        if self.weights not in WEIGHT_RULES:
            raise InvalidInputError(f"weights must be one of {WEIGHT_RULES}, got {self.weights!r}")
        if self.min_prob and self.weights not in ("softmax_topk", "sum_to_k"):
            raise InvalidInputError(f"min_prob selects among top-k weighted softmax_topk or sum_to_k, not "
                                    f"{self.weights!r}")
        if self.score == "sigmoid" and self.weights != "sum_to_k":
            raise InvalidInputError("sigmoid scores use weights='sum_to_k'")


class TokenGate(nn.Module):
    """Per-token gate over ``groups`` groups reading features of size ``in_features``."""

    beta: torch.Tensor
    load: torch.Tensor

    def __init__(self, in_features: int, groups: int, spec: GateSpec, external: bool = False) -> None:
        super().__init__()
        self.external = external  # reads RoutingContext.features instead of the site input
        self.spec = spec
        self.groups = groups
        self.proj = nn.Linear(in_features, groups, bias=spec.bias)
        self.register_buffer("beta", torch.zeros(groups))
        self.register_buffer("load", torch.zeros(groups))
        self.fixed_logits: torch.Tensor | None = None  # (G,) to force a choice (tests, overrides)

    def force(self, logits: torch.Tensor | None) -> None:
        """Use these (G,) logits for every token (None restores the learned gate)."""
        self.fixed_logits = None if logits is None else logits.detach().float()

    def forward(self, u: torch.Tensor) -> GateRecord:
        """``u`` (M, in) -> :class:`GateRecord` with (M, k) weights and (M, G) logits/probs."""
        spec, g = self.spec, self.groups
        if self.fixed_logits is not None:
            z = self.fixed_logits.to(u.device).expand(u.shape[0], g)  # (M, G)
        else:
            z = self.proj(u.to(self.proj.weight.dtype)).float()  # (M, G)
        k = min(spec.k, g)
        n: int | torch.Tensor = k  # groups kept per token (sum_to_k scales by it); (M, 1) with min_prob
        if spec.score == "sigmoid":
            s = torch.sigmoid(z) + self.beta  # (M, G); the bias enters selection and value (SMoRA)
            top, idx = s.topk(k, dim=-1)  # (M, k)
            if spec.min_prob > 0:  # multi-label selection: groups whose own score is at least min_prob
                keep = torch.sigmoid(z).gather(1, idx) >= spec.min_prob
                keep[:, 0] = True
                top = top * keep
                n = keep.sum(-1, keepdim=True)
            val = n * top / top.sum(-1, keepdim=True)
            if self.training and spec.balance_bias:
                with torch.no_grad():
                    self.load += torch.bincount(idx.reshape(-1), minlength=g).to(self.load)
            return GateRecord(GroupWeights(idx, val), logits=z, probs=torch.sigmoid(z))
        if spec.weights == "dense_softmax" or k == g and spec.weights in ("prob", "renorm_prob"):
            pt = torch.softmax(z / spec.temperature, dim=-1)
            idx = torch.arange(g, device=z.device).expand(z.shape[0], g)
            return GateRecord(GroupWeights(idx, pt), logits=z)
        top, idx = z.topk(k, dim=-1)  # (M, k)
        rec = GateRecord(GroupWeights(idx, top), logits=z)  # probs = softmax(z), lazily
        if spec.min_prob > 0:
            probs = rec.probs
            assert probs is not None
            keep = probs.gather(1, idx) >= spec.min_prob  # (M, k); the first choice always stays
            keep[:, 0] = True
            top = top.masked_fill(~keep, float("-inf"))  # dropped groups get weight 0
            n = keep.sum(-1, keepdim=True)  # (M, 1)
        if spec.weights == "softmax_topk":
            val = torch.softmax(top / spec.temperature, dim=-1)
        elif spec.weights == "renorm_prob":
            ps = torch.softmax(z / spec.temperature, dim=-1).gather(1, idx)
            val = ps / ps.sum(-1, keepdim=True)
        elif spec.weights == "unit":
            val = torch.ones_like(top)
        elif spec.weights == "prob":
            probs = rec.probs
            assert probs is not None
            val = probs.gather(1, idx)
        else:  # sum_to_k over linear logits: the top-k softmax scaled so the weights add up to the groups kept
            val = n * torch.softmax(top / spec.temperature, dim=-1)
        rec.weights = GroupWeights(idx, val)
        if spec.straight_through:  # value w, gradient of p, over all groups
            p = rec.probs
            assert p is not None
            dense = rec.weights.dense(g) + p - p.detach()  # (M, G)
            rec.weights = GroupWeights(torch.arange(g, device=z.device).expand(z.shape[0], g), dense)
        return rec

    @torch.no_grad()
    def update_bias(self) -> None:
        """SMoRA's sign rule ``beta += u * sign(mean(c) - c)``; call once per optimizer micro-step."""
        if self.spec.balance_bias and self.load.sum() > 0:
            self.beta += self.spec.bias_rate * torch.sign(self.load.mean() - self.load)
        self.load.zero_()


class ConstantGate(nn.Module):
    """Every token uses group ``index`` with weight 1 (a plain LoRA shared by all tokens)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, u: torch.Tensor) -> GateRecord:
        m = u.shape[0]
        idx = torch.full((m, 1), self.index, dtype=torch.long, device=u.device)
        return GateRecord(GroupWeights(idx, torch.ones(m, 1, device=u.device)))


class SequenceGate(nn.Module):
    """Wu MoLE's gate: dense ``softmax(ε/τ)`` per sequence from L2-normalised pooled features.

    ``mask`` (optional, experts allowed at inference) renormalises the weights over the allowed
    experts: ``g'_i = g_i m_i / sum_j g_j m_j`` (Wu's inference mode 2).
    """

    allowed: torch.Tensor

    def __init__(self, in_features: int, groups: int, temperature: float = 1.0, learn_temperature: bool = True,
                 external: bool = False):
        super().__init__()
        self.external = external  # reads RoutingContext.features instead of the pooled block input
        self.groups = groups
        self.proj = nn.Linear(in_features, groups, bias=False)
        self.log_tau = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learn_temperature)
        self.register_buffer("allowed", torch.ones(groups))  # 1 = allowed, 0 = masked out
        self.fixed_logits: torch.Tensor | None = None

    def force(self, logits: torch.Tensor | None) -> None:
        self.fixed_logits = None if logits is None else logits.detach().float()

    def forward(self, pooled: torch.Tensor) -> GateRecord:
        """``pooled`` (B, d) -> row weights (B, G)."""
        if self.fixed_logits is not None:
            z = self.fixed_logits.to(pooled.device).expand(pooled.shape[0], self.groups)
        else:
            z = self.proj(F.normalize(pooled.to(self.proj.weight.dtype), dim=-1)).float()  # (B, G)
        p = torch.softmax(z / self.log_tau.exp(), dim=-1)
        g = p * self.allowed
        g = g / g.sum(-1, keepdim=True).clamp_min(1e-30)
        idx = torch.arange(self.groups, device=z.device).expand(z.shape[0], self.groups)
        return GateRecord(GroupWeights(idx, g, level="row"), logits=z, probs=p)
