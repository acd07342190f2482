"""``lora_lego``: merge by clustering rank-wise Minimal Semantic Units (LoRA-LEGO, ICLR 2025).

LoRA-LEGO (Zhao et al., ICLR 2025): https://arxiv.org/abs/2409.16167

Per module (spec merging.md §3.3): every input rank *j* of adapter *i* is a rank-1 unit ("MSU")
``u = [a; b]`` (row j of A, column j of B) after folding the user weight and the LoRA scaling
(balanced, sign on A). The pooled MSUs of all adapters (P = sum r_i) are sorted into a canonical
order (so the order of ranks and of adapters cannot matter) and clustered with scikit-learn's
k-means (k-means++ seeding from ``seed``, ``n_init`` restarts). Each cluster's mean of the *raw*
MSUs becomes one rank of the output (rank k). Dual reweighting:

* parameter reweighting ("norm decay" fix): a centroid is rescaled to its cluster's mean norm
  (L2 of the whole MSU by default, or L-inf); the factor is >= 1 and 1 for collinear clusters;
* output reweighting ("variance expansion"): the delta is multiplied by ``sqrt(r_ref / k)`` with
  ``r_ref`` the mean (or max) input rank, folded as ``sqrt`` into A and B.

``k = sum r_i`` with output reweighting off reproduces ``cat`` exactly (all clusters are
singletons). ``k="auto"`` chooses, per module, the smallest k whose k-means inertia is at most
``auto_tol`` of the features' total sum of squares (binary search; inertia decreases with k).

Choices beyond the paper (whose section 4 could not be read; see spec §9): the weights and
scalings are folded first (the public reimplementation clusters raw factors), the canonical sort,
an optional ``canonical`` gauge fix of each MSU (``|a| = |b|``, sign fixed by b's largest entry),
and ``features="halves_l2"`` (cluster on per-half normalised MSUs) as an option. Factor-space
methods are not invariant to ``(A, B) -> (G A, B G^-1)``; that is inherent to the method.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hub.core.adapter import LoraAdapter, LoraLayer
from hub.core.errors import InvalidInputError
from hub.core.provenance import Provenance
from merging.config import MethodConfig, check_range, param
from merging.factors import fold, merged_spec, modules_of, present, summarize, unit_layer
from merging.spec import MergeMethod


@dataclass(frozen=True)
class LoraLegoConfig(MethodConfig):
    """LoRA-LEGO params (spec §8.1 defaults)."""

    k: int | str | None = param(None, "output rank per module: an int, 'auto', or null = the largest input rank")
    features: str = param("raw", "k-means features: 'raw' MSUs or 'halves_l2' (each half L2-normalised)")
    canonical: bool = param(False, "gauge-fix each MSU (|a| = |b|, sign by b's largest entry) first")
    param_reweight: bool = param(True, "rescale each centroid to its cluster's mean norm")
    norm: str = param("l2", "norm of the parameter reweighting: 'l2' or 'linf'")
    output_reweight: bool = param(True, "scale the delta by sqrt(r_ref / k)")
    r_ref: str = param("mean", "reference rank of the output reweighting: 'mean' or 'max' input rank")
    n_init: int = param(10, "k-means restarts (best inertia kept)")
    max_iter: int = param(100, "k-means iterations per restart")
    auto_tol: float = param(0.05, "k='auto': largest inertia / total sum of squares accepted")
    seed: int = param(0, "k-means seed")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.k, str) and self.k != "auto":
            raise InvalidInputError(f"k must be a positive integer, 'auto' or null, got {self.k!r}", field="k")
        if isinstance(self.k, int):
            check_range("k", self.k, 1)
        for name, value, allowed in (
            ("features", self.features, ("raw", "halves_l2")),
            ("norm", self.norm, ("l2", "linf")),
            ("r_ref", self.r_ref, ("mean", "max")),
        ):
            if value not in allowed:
                raise InvalidInputError(f"{name} must be one of {allowed}, got {value!r}", field=name)
        check_range("n_init", self.n_init, 1)
        check_range("max_iter", self.max_iter, 1)
        check_range("auto_tol", self.auto_tol, 0.0, 1.0, lo_open=True, hi_open=True)
        check_range("seed", self.seed, 0)


def _canonicalize(pool: np.ndarray, d_in: int) -> np.ndarray:
    """Per MSU: balance |a| = |b| and make b's largest-magnitude entry positive (b a^T unchanged)."""
    a, b = pool[:, :d_in], pool[:, d_in:]
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    c = np.where((na > 0) & (nb > 0), np.sqrt(nb / np.where(na > 0, na, 1.0)), 1.0)
    a, b = a * c[:, None], b / c[:, None]
    flip = np.sign(b[np.arange(len(b)), np.abs(b).argmax(axis=1)])
    flip[flip == 0] = 1.0
    return np.concatenate([a * flip[:, None], b * flip[:, None]], axis=1)


def _features(pool: np.ndarray, d_in: int, kind: str) -> np.ndarray:
    if kind == "raw":
        return pool
    a, b = pool[:, :d_in], pool[:, d_in:]
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    return np.concatenate([a / np.where(na > 0, na, 1.0), b / np.where(nb > 0, nb, 1.0)], axis=1)


def _canonical_order(feats: np.ndarray) -> np.ndarray:
    """Row order sorted lexicographically, so the order of ranks and adapters cannot matter.

    Sorting on the first 8 columns decides almost always; ties there fall back to every column.
    """
    head = feats[:, :8]
    order = np.lexsort(head.T[::-1])
    if len(order) > 1 and np.all(head[order][1:] == head[order][:-1], axis=1).any():
        order = np.lexsort(feats.T[::-1])
    return order


def _span_coordinates(feats: np.ndarray) -> np.ndarray:
    """Coordinates of the P rows in an orthonormal basis of their span (P x min(P, D)).

    An orthogonal change of basis keeps every distance, so k-means gives the same clusters, but
    on P-dimensional points instead of (in + out)-dimensional ones (4096 + 4096 for a 7B model).
    """
    if feats.shape[1] <= feats.shape[0]:
        return feats
    r = torch.linalg.qr(torch.from_numpy(np.ascontiguousarray(feats.T)), mode="r").R  # (P, P)
    return r.T.numpy()


def _kmeans(feats: np.ndarray, k: int, cfg: LoraLegoConfig) -> tuple[np.ndarray, float]:
    """Labels and inertia of k-means on ``feats`` (P, D), already in canonical order."""
    if k >= len(feats):
        return np.arange(len(feats)), 0.0
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, init="k-means++", n_init=cfg.n_init, max_iter=cfg.max_iter, random_state=cfg.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer distinct points than clusters" on duplicate MSUs
        labels = km.fit_predict(feats)
    return labels, float(km.inertia_)


def _auto_k(feats: np.ndarray, cfg: LoraLegoConfig) -> tuple[int, np.ndarray]:
    """Smallest k with inertia <= auto_tol * total sum of squares (binary search over [1, P])."""
    total = float(((feats - feats.mean(0)) ** 2).sum())
    lo, hi = 1, len(feats)
    best = np.arange(len(feats))
    if total == 0.0:
        return 1, np.zeros(len(feats), dtype=int)
    while lo < hi:
        mid = (lo + hi) // 2
        labels, inertia = _kmeans(feats, mid, cfg)
        if inertia <= cfg.auto_tol * total:
            hi, best = mid, labels
        else:
            lo = mid + 1
    if lo == len(feats):
        best = np.arange(len(feats))
    return lo, best


def _merge_module(here: list, cfg: LoraLegoConfig) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    folded = [fold(p.layer, p.weight, torch.float64) for p in here]
    d_in = here[0].layer.in_features
    pool = np.concatenate(
        [np.concatenate([a.cpu().numpy(), b.T.cpu().numpy()], axis=1) for a, b in folded], axis=0
    )  # (P, in + out): one MSU per row
    if cfg.canonical:
        pool = _canonicalize(pool, d_in)
    feats = _features(pool, d_in, cfg.features)
    order = _canonical_order(feats)
    pool, feats = pool[order], _span_coordinates(feats[order])
    ranks = [p.layer.rank for p in here]
    if cfg.k == "auto":
        k, labels = _auto_k(feats, cfg)
    else:
        k = min(int(cfg.k) if cfg.k is not None else max(ranks), len(pool))
        labels, _ = _kmeans(feats, k, cfg)
    cents, factors = [], []
    for c in sorted(set(labels.tolist()), key=lambda c: int(np.argmax(labels == c))):
        members = pool[labels == c]  # (n_c, in + out)
        mu = members.mean(0)
        factor = 1.0
        if cfg.param_reweight:
            ord_ = 2 if cfg.norm == "l2" else np.inf
            mu_norm = float(np.linalg.norm(mu, ord=ord_))
            if mu_norm > 0:
                factor = float(np.linalg.norm(members, ord=ord_, axis=1).mean()) / mu_norm
        cents.append(mu * factor)
        factors.append(factor)
    cent = np.stack(cents)  # (k', in + out)
    k_out = len(cent)
    gamma = 1.0
    if cfg.output_reweight:
        r_ref = sum(ranks) / len(ranks) if cfg.r_ref == "mean" else max(ranks)
        gamma = math.sqrt(r_ref / k_out)
    root = math.sqrt(gamma)
    device = here[0].layer.a.device  # clustering runs on the CPU; the result goes back to the inputs' device
    a = torch.from_numpy(cent[:, :d_in] * root).to(device)  # (k, in)
    b = torch.from_numpy(np.ascontiguousarray(cent[:, d_in:].T) * root).to(device)  # (out, k)
    return a, b, {"k": k_out, "gamma": gamma, "max_factor": max(factors)}


def lora_lego(adapters: Sequence[LoraAdapter], config: LoraLegoConfig) -> LoraAdapter:
    """Cluster the pooled rank-1 units of all adapters with k-means; centroids form the rank-k LoRA."""
    weights = config.weights_for(len(adapters))
    dtype = adapters[0].dtype
    layers: dict[str, LoraLayer] = {}
    gammas, factors = [], []
    for module in modules_of(adapters):
        a, b, info = _merge_module(present(adapters, weights, module), config)
        layers[module] = unit_layer(a, b, dtype)
        gammas.append(info["gamma"])
        factors.append(info["max_factor"])
    report = summarize([la.rank for la in layers.values()])
    report.update({"gamma_min": round(min(gammas), 6), "max_param_factor": round(max(factors), 6)})
    return LoraAdapter(layers=layers, spec=merged_spec(adapters), provenance=Provenance.create("report", report))


LORA_LEGO = MergeMethod("lora_lego", lora_lego, LoraLegoConfig, paper="https://arxiv.org/abs/2409.16167")
