"""Training-free semantic routing: request embedding vs adapter embeddings (spec §8.2).

Related work: LoraRetriever, https://arxiv.org/abs/2402.09997 . Each adapter is represented by a
unit vector (embedding of its name/description/tags, or the mean embedding of exemplar prompts).
For a request with unit embedding ``e_q``: ``c_i = cos(e_q, e_i)``, candidates
``S = TopK(c, k) ∩ {c_i >= θ}``; if S is empty the request runs on the BASE model. Weights
``softmax(c_S / τ)`` or uniform ``1/|S|``; the mixture is the exact output mixture
``sum_i ω_i s_i B_i A_i x`` applied at every adapted site, constant over the request.
The embedding function is injected (vectors or a callable); routing never imports a search stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError
from routing.context import GroupWeights
from routing.model import RoutedModel
from routing.presets import ROUTERS, RouterConfig, RouterPreset, check_choice, check_positive
from routing.routers._common import per_site

Embed = Callable[[list[str]], torch.Tensor]


@dataclass(frozen=True)
class SemanticConfig(RouterConfig):
    """Attributes: k (adapters per request), threshold (θ on cosine), temperature (τ of the softmax
    in cosine units), weighting (``softmax`` or ``uniform``)."""

    k: int = 1
    threshold: float = 0.3
    temperature: float = 0.05
    weighting: str = "softmax"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("k", self.k)
        check_positive("temperature", self.temperature)
        if not -1.0 <= self.threshold <= 1.0:
            raise InvalidInputError(f"threshold must be in [-1, 1], got {self.threshold}")
        check_choice("weighting", self.weighting, ("softmax", "uniform"))


@dataclass(frozen=True)
class Decision:
    """One request's routing: chosen expert indices and weights (empty = base model) + all scores."""

    indices: tuple[int, ...]
    weights: tuple[float, ...]
    scores: tuple[float, ...] = field(repr=False, default=())

    @property
    def base(self) -> bool:
        return not self.indices

    def mixture(self, names: Sequence[str]) -> dict[str, float]:
        """``{adapter name: weight}`` for :meth:`routing.batching.MixedAdapterModel.generate` ({} = base)."""
        return {names[i]: w for i, w in zip(self.indices, self.weights, strict=True)}


class SemanticRouter:
    """Cosine top-k-with-threshold router over fixed adapter vectors (N, d)."""

    def __init__(self, adapter_vectors: torch.Tensor, config: SemanticConfig, embed: Embed | None = None):
        if adapter_vectors.dim() != 2 or adapter_vectors.shape[0] == 0:
            raise InvalidInputError(f"adapter_vectors must be (N, d) with N >= 1, got {tuple(adapter_vectors.shape)}")
        if not torch.isfinite(adapter_vectors).all():
            raise InvalidInputError("adapter_vectors contain NaN or Inf")
        self.vectors = F.normalize(adapter_vectors.float(), dim=-1)  # (N, d)
        self.config = config
        self.embed = embed

    def _queries(self, queries: torch.Tensor | Sequence[str]) -> torch.Tensor:
        if isinstance(queries, torch.Tensor):
            q = queries.float()
        else:
            if self.embed is None:
                raise InvalidInputError("text queries need an embed function; pass vectors instead")
            q = torch.as_tensor(self.embed(list(queries))).float()
        if q.dim() != 2 or q.shape[1] != self.vectors.shape[1]:
            raise InvalidInputError(f"query vectors must be (B, {self.vectors.shape[1]}), got {tuple(q.shape)}")
        return F.normalize(q, dim=-1)

    def route(self, queries: torch.Tensor | Sequence[str]) -> list[Decision]:
        """One :class:`Decision` per query (text via the injected embed, or (B, d) vectors)."""
        cfg = self.config
        c = self._queries(queries) @ self.vectors.t()  # (B, N) cosine
        k = min(cfg.k, c.shape[1])
        top, idx = c.topk(k, dim=-1)  # (B, k)
        out = []
        for row in range(c.shape[0]):
            keep = top[row] >= cfg.threshold
            sel, sc = idx[row][keep], top[row][keep]
            if sel.numel() == 0:
                out.append(Decision((), (), tuple(c[row].tolist())))
                continue
            w = torch.softmax(sc / cfg.temperature, -1) if cfg.weighting == "softmax" else \
                torch.full_like(sc, 1.0 / sc.numel())
            out.append(Decision(tuple(sel.tolist()), tuple(w.tolist()), tuple(c[row].tolist())))
        return out

    @staticmethod
    def row_weights(decisions: Sequence[Decision], device: torch.device | str | None = None) -> GroupWeights:
        """Decisions -> (B, k) row weights; base rows get weight 0 (an exact zero delta)."""
        k = max([len(d.indices) for d in decisions] + [1])
        idx = torch.zeros(len(decisions), k, dtype=torch.long)
        val = torch.zeros(len(decisions), k)
        for r, d in enumerate(decisions):
            idx[r, : len(d.indices)] = torch.tensor(d.indices, dtype=torch.long)
            val[r, : len(d.weights)] = torch.tensor(d.weights)
        return GroupWeights(idx.to(device), val.to(device), level="row")

    def apply(self, routed: RoutedModel, queries: torch.Tensor | Sequence[str]) -> list[Decision]:
        """Route ``queries`` (one per batch row) and set the model's row weights for the next calls."""
        decisions = self.route(queries)
        dev = next(iter(routed.layers.values())).bank.a.device
        routed.set_rows(self.row_weights(decisions, dev))
        return decisions


def build(model: nn.Module, experts: Sequence[LoraAdapter], config: SemanticConfig, *,
          names: Sequence[str] | None = None, adapter_vectors: torch.Tensor | None = None,
          embed: Embed | None = None, descriptions: Sequence[str] | None = None) -> RoutedModel:
    """Inject row-weighted linears at every adapted site; ``routed.router`` is the SemanticRouter."""
    if adapter_vectors is None:
        if embed is None or descriptions is None:
            raise InvalidInputError("semantic routing needs adapter_vectors, or descriptions and an embed function")
        if len(descriptions) != len(experts):
            raise InvalidInputError(f"need one description per expert ({len(experts)}), got {len(descriptions)}")
        adapter_vectors = torch.as_tensor(embed(list(descriptions)))
    if adapter_vectors.shape[0] != len(experts):
        raise InvalidInputError(f"need one adapter vector per expert ({len(experts)}), got {adapter_vectors.shape[0]}")
    sites = [s for s, m in model.named_modules() if isinstance(m, nn.Linear)
             and any(s in ad.layers for ad in experts)]
    routed = per_site(model, experts, names, sites, lambda s, lin, bank: None, backend=config.backend,
                      dropout=config.dropout)
    routed.router = SemanticRouter(adapter_vectors, config, embed)
    routed.set_trainable("none")
    return routed


def aux_loss(routed: RoutedModel, task_ids: torch.Tensor | None) -> torch.Tensor:
    return torch.zeros(())


ROUTERS.register("semantic", paper="https://arxiv.org/abs/2402.09997",
                 summary="training-free: request vs adapter embeddings, top-k above a threshold, else base")(
    RouterPreset("semantic", SemanticConfig, build, aux_loss, granularity="request", trainable=False)
)
