"""Continuous batching of one router preset's rows: :class:`RoutedRows`, the :class:`~routing.continuous.RowModel`
of a :class:`~routing.model.RoutedModel`.

Rows of one router artifact share the forwards of its routed copy of the base in a
:class:`~routing.continuous.ContinuousBatch` (the same padded cache, joins and leaves as plain adapter rows).
What a preset keeps per request lives in the row's :attr:`~routing.continuous.Row.state` and is put back in
batch order before every forward, so it follows its row through joins and leaves:

* ``features`` -- the request embedding read by gates built with ``features="embedding"``
  (:meth:`RoutedModel.set_features`), one (D,) vector per row;
* ``request`` -- the semantic preset's per-request mixture (its :class:`~routing.routers.semantic.Decision`
  as (1, k) row weights; an empty decision is the base model, weight 0);
* ``sequence`` -- weights a sequence-level gate computed at the row's prefill: Wu MoLE's per-block gate
  (``RoutingContext.sequence_rows``, pooled over the prompt by the block hook of ``routing.routers.mole``).
  A decode step puts the running rows' saved weights back in ``sequence_rows`` (the prefill hook only clears
  them on an empty cache, i.e. at a join's own prefill, which computes the joiners' weights alone).

Token-level presets (MeteoRA, SMoRA, LoRA-Mixer, LLaVA-MoLE) route every token from its own hidden state, so a
row's routing does not depend on the other rows; they keep no per-row state beyond the gate statistics that
each answer reports (per-site mean gate weights over the row's forwards, as :func:`generate_routed` reports
them). Every preset of :data:`BATCHED` is checked token for token against :func:`generate_routed` (one request
alone) in ``tests/routing/test_routed_batch.py``; a preset outside it runs one request at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from hub.core.errors import InvalidInputError
from routing.batching import routed_adapters
from routing.context import GroupWeights
from routing.continuous import Row
from routing.model import RoutedModel

#: presets whose per-row state is known and kept per row (see the module docstring)
BATCHED = frozenset({"meteora", "mole_llava", "mole_wu", "smora", "lora_mixer", "semantic"})

_serial = itertools.count()


def batchable(routed: RoutedModel) -> bool:
    """Whether ``routed``'s rows may share forwards (its preset is in :data:`BATCHED`, and its base is one
    continuous batching serves: :func:`routing.continuous.supports`)."""
    from routing.continuous import supports

    return routed.preset in BATCHED and supports(routed.model)


class RoutedRows:
    """The rows of one routed model in a :class:`~routing.continuous.ContinuousBatch`.

    Args:
        routed: the router preset injected into its own copy of the base.
        embed: texts -> (B, D) embeddings, for :meth:`inputs` (gates that read the request embedding; the
            semantic preset uses its router's own embed function).
    """

    def __init__(self, routed: RoutedModel, embed: Callable[[list[str]], torch.Tensor] | None = None) -> None:
        if not batchable(routed):
            raise InvalidInputError(f"router preset {routed.preset!r} is not batched per row; "
                                    f"batched presets: {sorted(BATCHED)}")
        self.routed, self.model, self.embed = routed, routed.model, embed
        self.device = next(routed.model.parameters()).device
        self._key: tuple[int, ...] | None = None  # the rows of the last decode step (their inputs are reused)

    def inputs(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Each request's routing inputs from its text (a :attr:`Row.state` to start from): its features and
        the semantic preset's decision. Call it outside the batch loop (it embeds the texts)."""
        routed = self.routed
        states: list[dict[str, Any]] = [{} for _ in texts]
        if routed.router is not None:  # the semantic preset: a per-request mixture
            for st, d in zip(states, routed.router.route(list(texts)), strict=True):
                st["request"] = routed.router.row_weights([d], self.device)
        elif routed.needs_features:
            from routing.features import request_features

            if self.embed is None:
                raise InvalidInputError("this router's gates read a request embedding; no embed function was given")
            feats = request_features(self.embed, list(texts), routed.config)
            for i, st in enumerate(states):
                st["features"] = feats[i]
        return states

    # -- the RowModel protocol ------------------------------------------------------------------
    def begin(self, rows: Sequence[Row], prefill: bool) -> None:
        routed, ctx = self.routed, self.routed.context
        key = tuple(r.state.setdefault("serial", next(_serial)) for r in rows)
        ctx.collect = True
        ctx.clear_records()
        if not prefill and key == self._key:
            return  # the same rows as the last step: their inputs are set (same objects: the gather cache holds)
        self._key = None if prefill else key
        if routed.needs_features:
            feats = [r.state.get("features") for r in rows]
            if any(f is None for f in feats):
                raise InvalidInputError("this router's gates read a request embedding; a row has none "
                                        "(build its state with RoutedRows.inputs)")
            routed.set_features(torch.stack([f for f in feats if f is not None]).to(self.device))
        if routed.router is not None:
            reqs = [r.state.get("request") for r in rows]
            if any(w is None for w in reqs):
                raise InvalidInputError("the semantic router's rows need their decision "
                                        "(build their state with RoutedRows.inputs)")
            routed.set_rows(_cat([w for w in reqs if w is not None]))
        if not prefill:
            seq = [r.state.get("sequence", {}) for r in rows]
            ctx.sequence_rows = {k: _cat([s[k] for s in seq]) for k in seq[0]}

    def end(self, rows: Sequence[Row], prefill: bool, tokens: torch.Tensor) -> None:
        ctx = self.routed.context
        if prefill:
            for k, w in ctx.sequence_rows.items():
                for i, r in enumerate(rows):
                    r.state.setdefault("sequence", {})[k] = GroupWeights(w.idx[i:i + 1], w.val[i:i + 1], w.level)
        # gate statistics, vectorised: records of one kind (level, groups, k) are stacked, one masked mean each
        kinds: dict[tuple[str, int, int], list[tuple[str, Any]]] = {}
        for site, recs in ctx.records.items():
            for rec in recs:
                w = rec.weights
                g = rec.logits.shape[1] if rec.logits is not None else int(w.idx.max()) + 1
                kinds.setdefault((w.level, g, w.idx.shape[1]), []).append((site, rec))
        for (level, g, _), items in kinds.items():
            sites = tuple(site for site, _ in items)
            idx = torch.stack([rec.weights.idx for _, rec in items])  # (S, M, k)
            val = torch.stack([rec.weights.val.detach().float() for _, rec in items])
            dense = val.new_zeros((*idx.shape[:2], g)).scatter_add_(2, idx, val)  # (S, M, G)
            if level == "token":
                m = tokens.to(dense.device, dense.dtype)[None, ..., None]  # (1, B, T, 1)
                dense = (dense.view(len(sites), len(rows), -1, g) * m).sum(2) / m.sum(2).clamp_min(1.0)
            means = dense.transpose(0, 1).cpu()  # (B, S, G)
            for i, r in enumerate(rows):
                if r.finish_reason is not None:  # a hole of the batch: its answer is out already
                    continue
                acc = r.state.setdefault("gates", {})
                tot, n = acc.get(sites, (0.0, 0))
                acc[sites] = (means[i] + tot, n + 1)
        ctx.clear_records()
        ctx.collect = False

    def report(self, row: Row) -> tuple[dict[str, float], dict[str, list[float]] | None]:
        """The adapters the row used and its per-site mean gate weights (as :func:`generate_routed` reports)."""
        sums: dict[str, tuple[torch.Tensor, int]] = {}  # site -> (sum of its per-forward means, forwards)
        for sites, (tot, n) in row.state.get("gates", {}).items():
            for j, site in enumerate(sites):
                prev, m = sums.get(site, (torch.zeros(0), 0))
                width = max(prev.shape[0], tot.shape[1])
                sums[site] = (F.pad(prev, (0, width - prev.shape[0])) + F.pad(tot[j], (0, width - tot.shape[1])), m + n)
        gates = {site: (tot / n).tolist() for site, (tot, n) in sums.items()}
        req = row.state.get("request") if self.routed.router is not None else None
        return routed_adapters(self.routed, None if req is None else (req.idx[0], req.val[0]), gates), gates


def _cat(ws: Sequence[GroupWeights]) -> GroupWeights:
    """Stack one-row weights into (B, k) weights (k the widest; shorter rows padded with weight 0)."""
    k = max(w.idx.shape[1] for w in ws)
    idx = torch.cat([F.pad(w.idx, (0, k - w.idx.shape[1])) for w in ws])
    val = torch.cat([F.pad(w.val, (0, k - w.val.shape[1])) for w in ws])
    return GroupWeights(idx, val, level=ws[0].level)
