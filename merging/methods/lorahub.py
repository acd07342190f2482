"""``lorahub``: few-shot, gradient-free search of the weights of candidate adapters (LoraHub).

LoraHub (Huang et al., COLM 2024): https://arxiv.org/abs/2307.13269

CMA-ES (the ``cma`` package, seeded) minimises ``objective(merged(w)) + l1 * mean|w|`` over
``w`` in ``[-bounds, bounds]^N``, starting at ``w = 0`` (the base model), with ``budget``
objective evaluations; the best evaluated ``w`` wins. The objective is a Python callable
``objective(adapter: LoraAdapter) -> float`` (not JSON): the composition service builds it from a
task's few-shot examples with :func:`merging.objectives.lm_loss_objective`.

``composition="delta"`` (default, a deliberate difference from the paper): ``w`` weighs the true
deltas and the result is exactly ``cat`` with the found weights, so the recipe records them and
``merge(adapters, "cat", weights=recipe["weights"])`` reproduces the adapter. This avoids the
paper's cross terms and its ``w ~ -w`` symmetry. ``composition="factor"`` is the paper's
``A = sum w_i A_i``, ``B = sum w_i B_i`` (same ranks required; each scaling is split evenly
between A and B first).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hub.core.adapter import LoraAdapter, LoraLayer
from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from hub.core.provenance import Provenance
from merging.config import MethodConfig, check_range, param
from merging.factors import merged_spec, unit_layer
from merging.methods.cat import CatConfig, cat
from merging.spec import MergeMethod

Objective = Callable[[LoraAdapter], float]


@dataclass(frozen=True)
class LoraHubConfig(MethodConfig):
    """LoraHub params; ``objective`` is required and is never recorded in the recipe."""

    objective: Objective | None = param(None, "loss callable objective(adapter) -> float (Python only)", json=False)
    budget: int = param(40, "number of objective evaluations")
    bounds: float = param(1.5, "each weight is searched in [-bounds, bounds]")
    l1: float = param(0.05, "L1 penalty on the mean absolute weight")
    sigma0: float = param(0.5, "initial CMA-ES step size")
    composition: str = param("delta", "'delta' (exact, reproducible as cat) or 'factor' (the paper's)")
    seed: int = param(0, "CMA-ES seed")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weights is not None:
            raise InvalidInputError("lorahub searches the weights; do not pass weights", field="weights")
        if self.objective is None or not callable(self.objective):
            raise InvalidInputError(
                "lorahub needs params['objective']: a callable objective(adapter) -> float "
                "(the composition service builds it from the task's examples)", field="objective",
            )
        check_range("budget", self.budget, 2)
        check_range("bounds", self.bounds, 0.0, lo_open=True)
        check_range("l1", self.l1, 0.0)
        check_range("sigma0", self.sigma0, 0.0, lo_open=True)
        check_range("seed", self.seed, 0)
        if self.composition not in ("delta", "factor"):
            raise InvalidInputError(
                f"composition must be 'delta' or 'factor', got {self.composition!r}", field="composition"
            )


def compose_factors(adapters: Sequence[LoraAdapter], weights: Sequence[float]) -> LoraAdapter:
    """The paper's composition: ``A = sum w_i A^_i``, ``B = sum w_i B^_i`` (runtime scaling 1).

    Each adapter's scaling ``s_i`` is split evenly first (``A^ = sqrt(s) A``, ``B^ = sqrt(s) B``),
    which is the paper's formula when all scalings are equal and stays meaningful when they differ.

    Raises:
        IncompatibleAdaptersError: different module sets or ranks.
    """
    first = adapters[0]
    if any(set(ad.layers) != set(first.layers) for ad in adapters):
        raise IncompatibleAdaptersError("lorahub composition='factor' needs the same modules in every adapter")
    layers: dict[str, LoraLayer] = {}
    for module, ref in first.layers.items():
        group = [ad.layers[module] for ad in adapters]
        if any(la.rank != ref.rank for la in group):
            raise IncompatibleAdaptersError(
                f"lorahub composition='factor' needs the same rank in every adapter (module {module!r})"
            )
        zero_a, zero_b = torch.zeros(ref.a.shape), torch.zeros(ref.b.shape)  # sum()'s start: exact, and a Tensor
        a = sum((w * math.sqrt(la.scaling) * la.a.float() for w, la in zip(weights, group, strict=True)), zero_a)
        b = sum((w * math.sqrt(la.scaling) * la.b.float() for w, la in zip(weights, group, strict=True)), zero_b)
        layers[module] = unit_layer(a, b, first.dtype)
    return LoraAdapter(layers=layers, spec=merged_spec(adapters))


def _compose(adapters: Sequence[LoraAdapter], w: Sequence[float], composition: str) -> LoraAdapter:
    if composition == "factor":
        return compose_factors(adapters, w)
    return cat(adapters, CatConfig(weights=tuple(float(x) for x in w)))


def lorahub(adapters: Sequence[LoraAdapter], config: LoraHubConfig) -> LoraAdapter:
    """Search the adapters' weights with CMA-ES on a few-shot loss plus an L1 penalty."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cma warns that matplotlib is missing
        import cma

    n = len(adapters)
    objective = config.objective
    assert objective is not None  # checked in the config
    dim = max(n, 2)  # CMA-ES needs 2 dimensions; a lone adapter gets an ignored dummy one
    evaluations: list[tuple[float, list[float]]] = []

    def loss(x: np.ndarray) -> float:
        w = [float(v) for v in np.clip(x[:n], -config.bounds, config.bounds)]
        value = float(objective(_compose(adapters, w, config.composition)))
        if not math.isfinite(value):
            value = 1e30
        total = value + config.l1 * sum(abs(v) for v in w) / n
        evaluations.append((total, w))
        return total

    opts: dict[str, Any] = {
        "bounds": [[-config.bounds] * dim, [config.bounds] * dim],
        "maxfevals": config.budget,
        "seed": config.seed + 1,  # cma treats seed 0 as "random"
        "verbose": -9,
        "tolfun": 0.0,
        "tolx": 0.0,
    }
    es = cma.CMAEvolutionStrategy([0.0] * dim, config.sigma0, opts)
    while len(evaluations) < config.budget and not es.stop():
        xs = es.ask()
        left = config.budget - len(evaluations)
        values = [loss(np.asarray(x)) for x in xs[:left]]
        if len(values) < len(xs):  # budget spent mid-generation
            break
        es.tell(xs, values)
    best_loss, best_w = min(evaluations, key=lambda t: t[0])
    result = _compose(adapters, best_w, config.composition)
    report: dict[str, Any] = {
        "weights": best_w,
        "best_loss": best_loss,
        "evaluations": len(evaluations),
        "composition": config.composition,
        "equivalent": {"method": "cat", "weights": best_w} if config.composition == "delta" else None,
    }
    return result.with_provenance(Provenance.create("report", report))


LORAHUB = MergeMethod("lorahub", lorahub, LoraHubConfig, paper="https://arxiv.org/abs/2307.13269")
