"""Auxiliary routing losses computed from collected gate records (spec §7.6).

All take the records of one forward (``RoutingContext.records``) and an optional (M,) bool mask of
real tokens; padding never counts. Each returns a scalar averaged over gate sites.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from routing.context import GateRecord


def _valid(rec: GateRecord, mask: torch.Tensor | None) -> torch.Tensor:
    m = rec.probs.shape[0] if rec.probs is not None else rec.weights.idx.shape[0]
    if mask is None or mask.shape[0] != m:
        return torch.ones(m, dtype=torch.bool, device=rec.weights.idx.device)
    return mask.to(rec.weights.idx.device)


def _records(records: dict[str, list[GateRecord]]) -> Iterable[GateRecord]:
    for recs in records.values():
        yield from recs


def _mean(terms: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(terms).mean() if terms else torch.zeros(())


def switch_balance(records: dict[str, list[GateRecord]], mask: torch.Tensor | None = None, *,
                   n_factor: bool = True) -> torch.Tensor:
    """Switch/GShard balance ``N * sum_i f_i P_i`` (``n_factor=False``: LLaVA-MoLE's form without N).

    ``f_i``: fraction of (token, slot) selections that picked i (hard, no gradient);
    ``P_i``: mean probability of i over real tokens. Uniform -> 1 (1/N), collapsed -> N (1).
    """
    terms = []
    for rec in _records(records):
        if rec.probs is None:
            continue
        v = _valid(rec, mask)
        p = rec.probs[v]  # (M', G)
        g = p.shape[1]
        idx = rec.weights.idx[v]
        if idx.shape[1] == g and rec.weights.val.shape[1] == g:  # dense / straight-through: hard top-1
            idx = rec.weights.val[v].argmax(-1, keepdim=True)
        f = torch.bincount(idx.reshape(-1), minlength=g).float() / max(idx.numel(), 1)  # (G,)
        terms.append((g if n_factor else 1.0) * (f.to(p) * p.mean(0)).sum())
    return _mean(terms)


def wu_balance(records: dict[str, list[GateRecord]], mask: torch.Tensor | None = None) -> torch.Tensor:
    """Wu MoLE's ``-sum_i log q_i`` with ``q_i`` the gate probability averaged over gates and batch.

    Uniform -> N log N; grows as the gates collapse. (Wu's released code detaches it; this does not.)
    """
    qs = []
    for rec in _records(records):
        if rec.probs is not None:
            qs.append(rec.probs[_valid(rec, mask) if rec.weights.level == "token" else slice(None)].mean(0))
    if not qs:
        return torch.zeros(())
    q = torch.stack(qs).mean(0)  # (G,)
    return -torch.log(q.clamp_min(1e-12)).sum()


def supervised_ce(records: dict[str, list[GateRecord]], labels: torch.Tensor,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """MeteoRA's gate CE ``-log softmax(z_t)[y_t]`` over real tokens, averaged over gate sites.

    ``labels``: (M,) long expert index per token (-100 = ignore).
    """
    terms = []
    for rec in _records(records):
        if rec.logits is None:
            continue
        v = _valid(rec, mask) & (labels.to(rec.logits.device) >= 0)
        if v.any():
            terms.append(torch.nn.functional.cross_entropy(rec.logits[v].float(), labels[v].to(rec.logits.device)))
    return _mean(terms)


def supervised_bce(records: dict[str, list[GateRecord]], labels: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-label form of MeteoRA's gate loss: ``BCE(sigmoid(z_t), onehot(y_t))`` over real tokens, averaged
    over gate sites: each expert's score answers "does this request ask for my task?" on its own, so a request
    naming two tasks can switch two experts on. ``labels``: (M,) long expert index per token (-100 = ignore),
    or (M, N) multi-hot float targets (a row of zeros = ignore)."""
    terms = []
    for rec in _records(records):
        if rec.logits is None:
            continue
        y = labels.to(rec.logits.device)
        v = _valid(rec, mask) & ((y.sum(-1) > 0) if y.dim() == 2 else (y >= 0))
        if v.any():
            z = rec.logits[v].float()
            target = y[v].float() if y.dim() == 2 else torch.nn.functional.one_hot(y[v].long(), z.shape[1]).float()
            terms.append(torch.nn.functional.binary_cross_entropy_with_logits(z, target))
    return _mean(terms)


def expert_ce(records: dict[str, list[GateRecord]], task_ids: torch.Tensor, experts: int,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of every gate's logits to the example's expert, for token-level (M = B*T) and row-level
    (M = B) records alike; logits over rank groups (G = experts * g) are pooled per expert by their mean, so
    the loss raises every rank of the example's expert together (a top-k over ranks then picks that expert's
    ranks, i.e. the expert itself; logsumexp pooling raised mainly its best rank)."""
    terms = []
    rows = task_ids.shape[0]
    for rec in _records(records):
        z = rec.logits
        if z is None or z.shape[1] % experts:
            continue
        z = z.float()
        if z.shape[1] != experts:
            z = z.view(z.shape[0], experts, -1).mean(-1)  # (M, N)
        y = task_ids.to(z.device).long()
        if z.shape[0] != rows:  # token level
            y = token_labels(y, z.shape[0] // rows)
            v = _valid(rec, mask)
            z, y = z[v], y[v]
        if y.numel():
            terms.append(torch.nn.functional.cross_entropy(z, y))
    return _mean(terms)


def entropy(records: dict[str, list[GateRecord]], mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-token routing entropy ``H(p_t)``; one-hot -> 0, uniform -> log N."""
    terms = []
    for rec in _records(records):
        if rec.probs is None:
            continue
        p = rec.probs[_valid(rec, mask)]
        terms.append(-(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean())
    return _mean(terms)


def token_labels(task_ids: torch.Tensor, tokens_per_row: int) -> torch.Tensor:
    """(B,) expert index per example -> (B*T,) per-token labels (every token, prompt and response); (B, N)
    multi-hot targets -> (B*T, N)."""
    if task_ids.dim() == 2:
        return task_ids.float().repeat_interleave(tokens_per_row, dim=0)
    return task_ids.long().repeat_interleave(tokens_per_row)
