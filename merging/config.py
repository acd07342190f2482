"""Typed, frozen method configs built from JSON-able params and validated where built.

Every merge method has one frozen dataclass subclassing :class:`MethodConfig`. Fields are declared
with :func:`param` (a default and one line of documentation); ``__post_init__`` validates values and
raises :class:`hub.core.errors.InvalidInputError` naming the field and the value. ``from_params``
turns a JSON dict (the HTTP API's ``params``) into a config: unknown keys are refused with the
list of valid ones, and values are coerced to the field's declared type.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, TypeVar, get_args, get_origin

from hub.core.errors import InvalidInputError

C = TypeVar("C", bound="MethodConfig")


def param(default: Any = MISSING, doc: str = "", *, json: bool = True) -> Any:
    """Declare a config field with a default and a one-line doc; ``json=False`` for callables."""
    meta = {"doc": doc, "json": json}
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise InvalidInputError naming ``name``."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in get_args(tp):
            try:
                return _coerce(name, value, arm)
            except InvalidInputError:
                continue
        raise InvalidInputError(f"{name} must be {_type_name(tp)}, got {value!r}", field=name)
    if origin is Literal:
        if value in get_args(tp) and not isinstance(value, bool):
            return value
        raise InvalidInputError(f"{name} must be one of {_type_name(tp)}, got {value!r}", field=name)
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, list | tuple):
            (inner, *_rest) = get_args(tp)
            return tuple(_coerce(f"{name}[{i}]", v, inner) for i, v in enumerate(value))
    else:  # callables and other non-JSON types: accepted as given
        return value
    raise InvalidInputError(f"{name} must be {_type_name(tp)}, got {value!r}", field=name)


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method config. ``weights``: one per input adapter (default 1 each)."""

    weights: tuple[float, ...] | None = param(None, "one weight per input adapter (may be negative)")

    def __post_init__(self) -> None:
        if self.weights is not None:
            for i, w in enumerate(self.weights):
                if not isinstance(w, int | float) or isinstance(w, bool) or not math.isfinite(w):
                    raise InvalidInputError(f"weights[{i}] must be a finite number, got {w!r}", field="weights")

    def weights_for(self, n: int) -> list[float]:
        """The weights as floats for ``n`` adapters (1.0 each when not given).

        Raises:
            InvalidInputError: a different number of weights than adapters.
        """
        if self.weights is None:
            return [1.0] * n
        if len(self.weights) != n:
            raise InvalidInputError(
                f"weights has {len(self.weights)} entries but {n} adapters were given", field="weights"
            )
        return [float(w) for w in self.weights]

    @classmethod
    def param_names(cls) -> list[str]:
        """The params this config accepts (``weights`` is passed separately).

        Non-JSON params (a callable objective) are accepted from Python callers but never recorded.
        """
        return [f.name for f in fields(cls) if f.name != "weights"]

    @classmethod
    def from_params(cls: type[C], params: Mapping[str, Any] | None, weights: Sequence[float] | None = None) -> C:
        """Build the config from a params dict (JSON-able, plus callables for non-JSON fields).

        Raises:
            InvalidInputError: an unknown param (listing the valid ones) or an invalid value.
        """
        if params is not None and not isinstance(params, Mapping):
            raise InvalidInputError(f"params must be an object, got {params!r}", field="params")
        params = dict(params or {})
        valid = cls.param_names()
        unknown = sorted(k for k in params if k not in valid)
        if unknown:
            raise InvalidInputError(
                f"unknown param(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid) or '(none)'}",
                field=unknown[0],
            )
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {k: _coerce(k, v, hints[k]) for k, v in params.items()}
        if weights is not None:
            kwargs["weights"] = _coerce("weights", list(weights), hints["weights"])
        try:
            return cls(**kwargs)
        except TypeError as e:  # a required non-JSON field missing
            raise InvalidInputError(f"{cls.__name__}: {e}") from None

    def to_params(self) -> dict[str, Any]:
        """The JSON-able params (all of them, defaults included): the recipe's ``params``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "weights" or not f.metadata.get("json", True):
                continue
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One dict per JSON param: name, type, default, doc."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in fields(cls):
            if f.name == "weights":
                continue
            default = None if f.default is MISSING else f.default
            rows.append(
                {
                    "name": f.name,
                    "type": _type_name(hints[f.name]),
                    "default": default,
                    "required": f.default is MISSING,
                    "json": f.metadata.get("json", True),
                    "doc": f.metadata.get("doc", ""),
                }
            )
        return rows


# -- validators used by the method configs -------------------------------------------------------


def check_range(
    name: str, value: float, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise InvalidInputError ("density must be in (0, 1], got 1.5") unless lo <= value <= hi."""
    bad = (
        not math.isfinite(value)
        or (lo is not None and (value <= lo if lo_open else value < lo))
        or (hi is not None and (value >= hi if hi_open else value > hi))
    )
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise InvalidInputError(f"{name} must be in {left}{lo_s}, {hi_s}{right}, got {value!r}", field=name)
