"""What a request's ``model`` (and ``merged_adapters``) means: which base, which adapters, what weights.

Accepted forms (spec ecosystem §4.3):

* ``<base-id>`` — a registered base model, no adapter;
* ``ns/name`` or ``ns/name@3`` — an adapter (latest or a version), on the base it was trained for;
* ``<base-id>:ns/name[@3]`` — the same, with the base named (SGLang style); another base is a 422;
* a registry artifact of kind ``router`` — its experts, routed by its preset
  (see :mod:`hub.services.inference.routers`);
* ``auto`` or ``<base-id>:auto`` — the semantic router: the prompt's embedding against the base's
  adapters, top-k above a threshold, else the base model;
* an explicit mixture in the extension field ``merged_adapters`` (LoRAX style): ``{"ids": [...],
  "weights": [...], "merge_strategy": "linear"}`` with ``model`` naming the base (or ``auto``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.core.errors import (
    IncompatibleAdaptersError,
    InvalidInputError,
    NotFoundError,
    UnsupportedFeatureError,
)

if TYPE_CHECKING:  # pragma: no cover
    from hub.core.adapter import LoraAdapter

AUTO = "auto"
MAX_MIXTURE = 16
STRATEGIES = ("linear", "ties", "dare_linear", "dare_ties")


@dataclass(frozen=True)
class MergedAdapters:
    """The LoRAX-style ``merged_adapters`` extension: ids, weights and a merge strategy.

    ``linear`` is served on the fly as the exact output mixture ``sum_i w_i s_i B_i A_i x`` (equal to a
    linear merge of the deltas). Weights default to ``1/n`` each.
    """

    ids: tuple[str, ...]
    weights: tuple[float, ...]
    merge_strategy: str = "linear"

    @classmethod
    def parse(cls, raw: Any) -> MergedAdapters:
        """Validate the JSON field. Raises InvalidInputError / UnsupportedFeatureError naming the field."""
        if not isinstance(raw, dict):
            raise InvalidInputError("merged_adapters must be an object {ids, weights, merge_strategy}",
                                    field="merged_adapters")
        unknown = sorted(set(raw) - {"ids", "weights", "merge_strategy", "density", "majority_sign_method"})
        if unknown:
            raise InvalidInputError(f"merged_adapters has unknown field(s) {unknown}", field="merged_adapters")
        ids = raw.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise InvalidInputError("merged_adapters.ids must be a non-empty list of adapter ids",
                                    field="merged_adapters.ids")
        if len(ids) > MAX_MIXTURE or len(set(ids)) != len(ids):
            raise InvalidInputError(f"merged_adapters.ids must hold 1-{MAX_MIXTURE} distinct ids, got {ids}",
                                    field="merged_adapters.ids")
        weights = raw.get("weights")
        if weights is None:
            weights = [1.0 / len(ids)] * len(ids)
        if (not isinstance(weights, list) or len(weights) != len(ids)
                or not all(isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w)
                           for w in weights)):
            raise InvalidInputError(f"merged_adapters.weights must be {len(ids)} finite numbers, got {weights!r}",
                                    field="merged_adapters.weights")
        strategy = raw.get("merge_strategy", "linear")
        if strategy not in STRATEGIES:
            raise InvalidInputError(f"merged_adapters.merge_strategy must be one of {list(STRATEGIES)}, got "
                                    f"{strategy!r}", field="merged_adapters.merge_strategy")
        if strategy != "linear":
            raise UnsupportedFeatureError(
                f"merge_strategy {strategy!r} is not applied per request; only 'linear' is. Build a {strategy} "
                "merge with `loom compose` and serve the published adapter", field="merged_adapters.merge_strategy")
        return cls(tuple(ids), tuple(float(w) for w in weights), strategy)


@dataclass
class Plan:
    """A resolved request.

    Attributes:
        base_id: the served base model. base_row: its registry row.
        mixture: adapter key (``ns/name@version``) -> weight ({} = the base model).
        adapters: key -> LoraAdapter of every mixture key.
        route: ``base``, ``adapter``, ``mixture``, ``auto`` or ``router``.
        scores: for ``auto``, adapter key -> cosine of every candidate considered.
        router: for ``router``, the router artifact key; ``state`` its RouterState.
    """

    base_id: str
    base_row: Any
    mixture: dict[str, float] = field(default_factory=dict)
    adapters: dict[str, LoraAdapter] = field(default_factory=dict)
    route: str = "base"
    scores: dict[str, float] | None = None
    router: str | None = None
    state: Any = None


def split_model(model: str) -> tuple[str | None, str]:
    """``"base:rest"`` -> ("base", "rest"); no colon -> (None, model). Adapter ids never hold ':'."""
    if not isinstance(model, str) or not model.strip():
        raise InvalidInputError("model must be a non-empty string", field="model")
    model = model.strip()
    if ":" in model:
        base, _, rest = model.rpartition(":")
        if not base or not rest:
            raise InvalidInputError(f"model must be '<base>:<adapter>', got {model!r}", field="model")
        return base, rest
    return None, model


def check_base(adapter_key: str, adapter_base: str | None, base_id: str) -> None:
    """An adapter trained for another base is a clear 422."""
    if adapter_base and adapter_base != base_id:
        raise IncompatibleAdaptersError(
            f"adapter {adapter_key} is for base model {adapter_base!r}, not {base_id!r}",
            adapter=adapter_key, adapter_base=adapter_base, base=base_id)


def unknown_model(model: str, available: list[str]) -> NotFoundError:
    """The 404 for an unknown ``model``, listing what is available."""
    shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
    return NotFoundError(f"model {model!r} does not exist; available: {shown or '(none)'} "
                         f"(or 'auto', '<base>:<adapter>', 'ns/name@version')", model=model,
                         available=available[:100])
