"""Type checks for configs built from JSON parameters (API bodies, ``--param key=value`` on the CLI)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hub.core.errors import InvalidInputError


def check_param_types(cls: Any, values: Mapping[str, Any]) -> None:
    """Refuse ``values`` whose JSON type does not fit the ``bool``/``int``/``float`` fields of dataclass ``cls``.

    JSON params arrive untyped: ``"yes"`` is not a bool, ``"0.5"`` not a float, ``2.0`` not an int, and
    ``true`` is not a number. Fields of other types are left to the config's own checks.

    Raises:
        InvalidInputError: the first field whose value has the wrong type, named with what it must be.
    """
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        v, kind = values[f.name], f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if kind == "bool" and not isinstance(v, bool):
            raise InvalidInputError(f"{f.name} must be true or false, got {v!r}")
        if kind in ("int", "float") and (isinstance(v, bool) or not isinstance(v, int | float) or
                                         kind == "int" and not isinstance(v, int)):
            raise InvalidInputError(f"{f.name} must be {'an integer' if kind == 'int' else 'a number'}, got {v!r}")
