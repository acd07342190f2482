"""Gate weights as they travel through a routed model, and the context object that collects them.

Routed linears never return tuples (MeteoRA's forked modeling file does): gate statistics go into a
:class:`RoutingContext` shared by every routed module of one model, and aux losses are computed
from it after the forward (spec §7.6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import torch

Level = Literal["token", "row"]


@dataclass
class GroupWeights:
    """Sparse weights over groups (adapters or rank blocks).

    Attributes:
        idx: (M, k) long, the selected groups. M is tokens (B*T) for ``level="token"`` or rows (B)
            for ``level="row"`` (constant over a sequence).
        val: (M, k) float, the weight of each selected group (zero weights are allowed).
        level: ``token`` or ``row``.
        single: ``(group, weight)`` when every row uses the same single group (enables a fast path).
        unit: every weight is known to be 1.0 (set by whoever built ``val`` in Python; False = not known).
        prev, changed: row weights that differ from ``prev`` (same shape) only in rows ``changed`` (a (c,)
            long tensor; :attr:`delta` are their weights): a layer holding state gathered for ``prev`` may
            update those rows in place instead of gathering every row again (a continuous batch's join into a
            hole).
        moves: with ``changed``, those rows as ``(row, group)`` pairs when each is one group at weight 1
            (the common join: a layer copies those rows without building index tensors).
        key: what the weights were built from, for their builder to recognise them (None: not recorded).
    """

    idx: torch.Tensor
    val: torch.Tensor
    level: Level = "token"
    single: tuple[int, float] | None = None  # every row uses one group with this weight (row level)
    unit: bool = False
    prev: GroupWeights | None = None
    changed: torch.Tensor | None = None
    moves: tuple[tuple[int, int], ...] | None = None
    key: object = None

    @cached_property
    def delta(self) -> GroupWeights:
        """The weights of the ``changed`` rows (built once, read by every layer)."""
        assert self.changed is not None
        return GroupWeights(self.idx.index_select(0, self.changed), self.val.index_select(0, self.changed),
                            self.level, unit=self.unit)

    def dense(self, groups: int) -> torch.Tensor:
        """(M, G) dense weights (duplicates add)."""
        out = torch.zeros(self.idx.shape[0], groups, dtype=self.val.dtype, device=self.val.device)
        return out.scatter_add(1, self.idx, self.val)

    def mask(self, groups: int) -> torch.Tensor:
        """(M, G) bool: which groups are selected (a selected group may still have weight 0)."""
        out = torch.zeros(self.idx.shape[0], groups, dtype=torch.bool, device=self.idx.device)
        return out.scatter(1, self.idx, True)


class GateRecord:
    """What one gate computed in one forward: logits/probs over all groups plus the selection.

    ``probs`` defaults to ``softmax(logits)``, computed only when someone reads it (aux losses).
    """

    def __init__(self, weights: GroupWeights, logits: torch.Tensor | None = None,
                 probs: torch.Tensor | None = None) -> None:
        self.weights, self.logits, self._probs = weights, logits, probs

    @property
    def probs(self) -> torch.Tensor | None:
        if self._probs is None and self.logits is not None:
            self._probs = torch.softmax(self.logits.float(), dim=-1)  # (M, G)
        return self._probs


@dataclass
class RoutingContext:
    """Shared state of one routed model.

    Attributes:
        collect: keep a :class:`GateRecord` per gate name for aux losses / inspection.
        records: gate name -> list of records (one per forward since the last :meth:`clear_records`).
        shared: key -> token weights computed by a shared gate in this forward (e.g. one per MLP block).
        rows: key -> row weights constant over a sequence (sequence-level gates, request routing,
            mixed-adapter batching). ``"*"`` applies to every site without a key of its own.
        attention_mask: (B, T) mask of the current prefill, for pooling and aux-loss masking.
        token_mask: (B*T,) bool mask of the last forward's real tokens (None: all real).
        features: (B, D) an external embedding of each row's request, read by gates built with
            ``features="embedding"`` (spec §7.2 knob ``features``); constant over the sequence.
    """

    collect: bool = False
    records: dict[str, list[GateRecord]] = field(default_factory=dict)
    shared: dict[str, GroupWeights] = field(default_factory=dict)
    rows: dict[str, GroupWeights] = field(default_factory=dict)
    sequence_rows: dict[str, GroupWeights] = field(default_factory=dict)
    attention_mask: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None
    in_prefill: bool = True
    features: torch.Tensor | None = None

    def record(self, name: str, rec: GateRecord) -> None:
        if self.collect:
            self.records.setdefault(name, []).append(rec)

    def clear_records(self) -> None:
        self.records.clear()

    def new_sequence(self, attention_mask: torch.Tensor | None) -> None:
        """Forget sequence-level gates: called at every prefill (empty KV cache)."""
        self.sequence_rows.clear()
        self.attention_mask = attention_mask
        self.in_prefill = True

    def row_weights(self, key: str | None) -> GroupWeights | None:
        """Row weights for ``key``: sequence-level first, then request-level, then ``"*"``."""
        if key is not None:
            if key in self.sequence_rows:
                return self.sequence_rows[key]
            if key in self.rows:
                return self.rows[key]
        return self.rows.get("*")
