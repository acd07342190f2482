"""What a merge method is: a pure function and its metadata, bundled in a :class:`MergeMethod`.

A method module under ``merging/methods/`` defines its config class, its function
``(adapters, config) -> LoraAdapter`` and one :class:`MergeMethod` constant per method name::

    def ties(adapters, config): ...
    TIES = MergeMethod("ties", ties, TiesConfig, paper="https://arxiv.org/abs/2306.01708")

It imports nothing from the registry. ``merging.methods.ALL`` lists every constant, the one place
that does (mergekit's registry style), and :mod:`merging.registry` builds ``METHODS`` from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.core.adapter import LoraAdapter
    from merging.config import MethodConfig

#: ``(adapters, config) -> LoraAdapter``: the signature of every merge method.
MergeFn = Callable[[Sequence["LoraAdapter"], Any], "LoraAdapter"]


@dataclass(frozen=True)
class MergeMethod:
    """One merge method.

    Attributes:
        name: snake_case registry name (the API's ``method``).
        fn: the pure function ``(adapters, config) -> LoraAdapter``; no I/O.
        config: its frozen :class:`merging.config.MethodConfig` subclass.
        paper: link to the paper or PR it follows.
        version: bumped when its output changes for the same inputs (recorded in provenance).
        summary: one line for the docs; default: the first line of ``fn``'s docstring.
    """

    name: str
    fn: MergeFn
    config: type[MethodConfig]
    paper: str | None
    version: str = "1"
    summary: str = ""
