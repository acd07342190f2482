"""What a router preset is: the config base class every preset extends and the :class:`RouterPreset` bundle.

A preset module under ``routing/routers/`` defines its config (a frozen :class:`RouterConfig`
subclass), a ``build(model, experts, config, **extras) -> RoutedModel`` function, an
``aux_loss(routed, task_ids) -> Tensor`` function (spec §7.2, §7.6) and one ``PRESET`` constant
bundling them with the paper link. It imports nothing back from the registry: ``routing.presets``
lists every preset module explicitly and builds :data:`routing.presets.ROUTERS` from them.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hub.core.errors import InvalidInputError
from hub.core.params import check_param_types
from routing.gates import FEATURES
from routing.layer import BACKENDS
from routing.model import PLACEMENTS, RoutedModel


@dataclass(frozen=True)
class RouterConfig:
    """Fields every preset has. Subclasses add their own and validate in ``__post_init__``.

    Attributes:
        backend: LoRA backend of the routed linears (``auto``, ``dense``, ``gather``, ``grouped``, ``fold``).
        dropout: LoRA-branch input dropout during training.
        features: what the trained gates read (spec §7.2): ``site_input`` (each preset's paper setting:
            the site input, MLP input or pooled block input) or ``embedding`` (an external sentence
            embedding of the request, set with ``RoutedModel.set_features``; constant over a sequence, so
            the gate sees the task even at tokens that come before the prompt's cue). Training-free
            presets ignore it.
        embedding_dim: width of the external embedding (384 for all-MiniLM-L6-v2).
        lexical_dim: with ``features="embedding"``, also append a hashed bag of the request's words and
            word pairs in this many buckets (scikit-learn's ``HashingVectorizer``, L2-normalised; see
            :func:`routing.features.request_features`). A sentence embedding blurs requests that differ in
            one number or word ("caesar shift by 2" / "by 4"); the bag keeps them apart. 0: embedding only.
        task_ce: coefficient of a supervised cross-entropy of every gate's logits to the example's expert
            (MeteoRA's aux loss, offered to every trained preset because a hub's experts come with their own
            sample data, i.e. free task labels); 0 keeps each paper's losses. Rank groups (SMoRA) are pooled
            per expert by their mean.
    """

    backend: str = "auto"
    dropout: float = 0.0
    features: str = "site_input"
    embedding_dim: int = 384
    lexical_dim: int = 0
    task_ce: float = 0.0

    @property
    def feature_dim(self) -> int:
        """Width of the request features the gates read (``features="embedding"``): embedding + lexical."""
        return self.embedding_dim + self.lexical_dim

    def __post_init__(self) -> None:
        check_param_types(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if self.backend not in BACKENDS:
            raise InvalidInputError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidInputError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.features not in FEATURES:
            raise InvalidInputError(f"features must be one of {list(FEATURES)}, got {self.features!r}")
        if not self.task_ce >= 0:
            raise InvalidInputError(f"task_ce must be >= 0, got {self.task_ce}")
        if self.embedding_dim < 1:
            raise InvalidInputError(f"embedding_dim must be >= 1, got {self.embedding_dim}")
        if self.lexical_dim < 0:
            raise InvalidInputError(f"lexical_dim must be >= 0, got {self.lexical_dim}")
        if self.lexical_dim and self.features != "embedding":
            raise InvalidInputError("lexical_dim needs features='embedding' (the gates read request features)")
        placement = getattr(self, "placement", None)
        if placement is not None and placement not in PLACEMENTS:
            raise InvalidInputError(f"placement must be one of {sorted(PLACEMENTS)}, got {placement!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Any:
        """Build from a JSON-like dict; unknown fields and bad values raise InvalidInputError."""
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidInputError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        for k, v in list(data.items()):
            if isinstance(v, list) and "tuple" in str(hints.get(k, "")):
                data[k] = tuple(v)
        try:
            return cls(**data)
        except TypeError as e:
            raise InvalidInputError(f"invalid {cls.__name__}: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> Any:
        return cls.from_dict(json.loads(text))


def check_choice(field: str, value: object, choices: Sequence[object]) -> None:
    """Raise InvalidInputError naming ``field`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InvalidInputError(f"{field} must be one of {list(choices)}, got {value!r}")


def check_positive(field: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise InvalidInputError naming ``field`` unless ``value > 0`` (``>= 0`` with ``allow_zero``)."""
    if not (value >= 0 if allow_zero else value > 0):
        raise InvalidInputError(f"{field} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


BuildFn = Callable[..., RoutedModel]
AuxFn = Callable[[RoutedModel, "torch.Tensor | None"], torch.Tensor]


@dataclass(frozen=True)
class RouterPreset:
    """A registered router preset.

    Attributes:
        name: registry name.
        config_cls: its frozen config dataclass (a :class:`RouterConfig`).
        build: ``build(model, experts, config, *, names=None, **extras) -> RoutedModel``.
        aux_loss: ``aux_loss(routed, task_ids) -> scalar`` from the gate records (0 if none).
        granularity: ``token``, ``sequence`` or ``request``.
        trainable: whether :func:`routing.train.train_router` applies.
        uses_task_labels: the aux loss needs the expert index of each example.
        paper: link to the paper the preset follows (shown in the docs and the API).
        summary: one line on what it computes.
    """

    name: str
    config_cls: type
    build: BuildFn
    aux_loss: AuxFn
    granularity: str
    trainable: bool = True
    uses_task_labels: bool = False
    paper: str | None = None
    summary: str = ""
