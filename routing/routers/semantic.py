"""Training-free semantic routing: request embedding vs adapter embeddings (spec §8.2).

Related work: LoraRetriever, https://arxiv.org/abs/2402.09997 . Each adapter is represented by a
unit vector (embedding of its name/description/tags, or the mean embedding of exemplar prompts).
For a request with unit embedding ``e_q``: ``c_i = cos(e_q, e_i)``, candidates
``S = TopK(c, k) ∩ {c_i >= θ}``; if S is empty the request runs on the BASE model. Weights
``softmax(c_S / τ)`` or uniform ``1/|S|``; the mixture is the exact output mixture
``sum_i ω_i s_i B_i A_i x`` applied at every adapted site, constant over the request.
The embedding function is injected (vectors or a callable); routing never imports a search stack.

With exemplar prompts per adapter (its sample data), an adapter's vector is their mean and, with
``nearest = β > 0``, ``c_i = (1 - β) cos(e_q, e_i) + β max_j cos(e_q, x_ij)``: the best single exemplar
counts too, so a phrasing one exemplar shares is not outvoted by the adapter's other phrasings. With
``features="embedding"`` and ``lexical_dim``, queries and exemplars are the embedding plus a hashed bag
of words (:func:`routing.features.request_features`), as the trained gates read them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError
from routing.config import RouterConfig, RouterPreset, check_choice, check_positive
from routing.context import GroupWeights
from routing.model import RoutedModel
from routing.routers._common import per_site

Embed = Callable[[list[str]], torch.Tensor]


@dataclass(frozen=True)
class SemanticConfig(RouterConfig):
    """Attributes: k (adapters per request), threshold (θ on cosine), temperature (τ of the softmax
    in cosine units), weighting (``softmax`` or ``uniform``), nearest (β, weight of the best single
    exemplar's cosine; needs exemplars)."""

    k: int = 1
    threshold: float = 0.3
    temperature: float = 0.05
    weighting: str = "softmax"
    nearest: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("k", self.k)
        if not 0.0 <= self.nearest <= 1.0:
            raise InvalidInputError(f"nearest must be in [0, 1], got {self.nearest}")
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


def text_features(embed: Embed | None, texts: Sequence[str], config: SemanticConfig) -> torch.Tensor:
    """Texts -> (B, d) vectors: the injected embedding, plus the hashed words with ``lexical_dim``."""
    if embed is None:
        raise InvalidInputError("text queries need an embed function; pass vectors instead")
    from routing.features import embed_texts, request_features

    return request_features(embed, texts, config) if config.lexical_dim else embed_texts(embed, texts)


class SemanticRouter:
    """Cosine top-k-with-threshold router over fixed adapter vectors (N, d)."""

    def __init__(self, adapter_vectors: torch.Tensor, config: SemanticConfig, embed: Embed | None = None,
                 exemplars: Sequence[torch.Tensor] | None = None):
        if adapter_vectors.dim() != 2 or adapter_vectors.shape[0] == 0:
            raise InvalidInputError(f"adapter_vectors must be (N, d) with N >= 1, got {tuple(adapter_vectors.shape)}")
        if not torch.isfinite(adapter_vectors).all():
            raise InvalidInputError("adapter_vectors contain NaN or Inf")
        self.vectors = F.normalize(adapter_vectors.float(), dim=-1)  # (N, d)
        self.config = config
        self.embed = embed
        self.exemplars: list[torch.Tensor] | None = None  # per adapter (m_i, d), unit rows
        if exemplars is not None:
            if len(exemplars) != self.vectors.shape[0]:
                raise InvalidInputError(f"need exemplars for each of the {self.vectors.shape[0]} adapters, "
                                        f"got {len(exemplars)}")
            d = self.vectors.shape[1]
            if any(x.dim() != 2 or x.shape[0] == 0 or x.shape[1] != d for x in exemplars):
                raise InvalidInputError(f"exemplars must be (m, {d}) with m >= 1 per adapter")
            self.exemplars = [F.normalize(x.float(), dim=-1) for x in exemplars]
        if config.nearest > 0 and self.exemplars is None:
            raise InvalidInputError("nearest > 0 compares requests with each adapter's exemplars; none were given")

    def _queries(self, queries: torch.Tensor | Sequence[str]) -> torch.Tensor:
        q = queries.float() if isinstance(queries, torch.Tensor) else text_features(self.embed, queries, self.config)
        if q.dim() != 2 or q.shape[1] != self.vectors.shape[1]:
            raise InvalidInputError(f"query vectors must be (B, {self.vectors.shape[1]}), got {tuple(q.shape)}")
        return F.normalize(q, dim=-1)

    def route(self, queries: torch.Tensor | Sequence[str]) -> list[Decision]:
        """One :class:`Decision` per query (text via the injected embed, or (B, d) vectors)."""
        cfg = self.config
        q = self._queries(queries)
        c = q @ self.vectors.t()  # (B, N) cosine
        if cfg.nearest > 0 and self.exemplars is not None:
            best = torch.stack([(q @ x.t()).max(-1).values for x in self.exemplars], dim=-1)  # (B, N)
            c = (1.0 - cfg.nearest) * c + cfg.nearest * best
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
          embed: Embed | None = None, descriptions: Sequence[str] | None = None,
          exemplars: Sequence[Sequence[str]] | None = None) -> RoutedModel:
    """Inject row-weighted linears at every adapted site; ``routed.router`` is the SemanticRouter.

    Adapters are represented by ``adapter_vectors``, else by the mean features of their ``exemplars``
    (sample prompts, one list per expert; also used by ``nearest``), else by their ``descriptions``."""
    ex_vecs: list[torch.Tensor] | None = None
    if exemplars is not None:
        if len(exemplars) != len(experts) or any(not list(x) for x in exemplars):
            raise InvalidInputError(f"need a non-empty list of exemplar prompts per expert ({len(experts)})")
        ex_vecs = [F.normalize(text_features(embed, list(x), config), dim=-1) for x in exemplars]
        if adapter_vectors is None:
            adapter_vectors = torch.stack([x.mean(0) for x in ex_vecs])
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
    routed.router = SemanticRouter(adapter_vectors, config, embed, exemplars=ex_vecs)
    routed.set_trainable("none")
    return routed


def aux_loss(routed: RoutedModel, task_ids: torch.Tensor | None) -> torch.Tensor:
    return torch.zeros(())


PRESET = RouterPreset("semantic", SemanticConfig, build, aux_loss, granularity="request", trainable=False,
                      paper="https://arxiv.org/abs/2402.09997",
                      summary="training-free: request vs adapter embeddings, top-k above a threshold, else base")
