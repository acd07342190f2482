"""Per-row sampling for continuous batching: each row of one forward keeps its own settings.

A row is greedy (``temperature == 0``: the argmax, as ``generate(do_sample=False)``) or sampled with its
own temperature, nucleus (``top_p``, the rule of transformers' ``TopPLogitsWarper``) and its own
``torch.Generator``. A seeded row draws from a generator seeded with its seed and nothing else, so its
tokens do not depend on which other rows share the batch: the same request with the same seed gives the
same completion, alone or in a full batch.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hub.core.errors import InvalidInputError


@dataclass(frozen=True)
class SamplingParams:
    """One row's sampling settings. ``temperature`` 0 is greedy; ``seed`` None draws a random seed."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 100.0 or self.temperature != self.temperature:
            raise InvalidInputError(f"temperature must be in [0, 100], got {self.temperature}", field="temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidInputError(f"top_p must be in (0, 1], got {self.top_p}", field="top_p")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator | None:
        """The row's own generator (None for a greedy row)."""
        if self.greedy:
            return None
        seed = self.seed if self.seed is not None else secrets.randbits(63)
        return torch.Generator(device=device).manual_seed(int(seed) % (2**63))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf the tokens outside the smallest set whose probability reaches ``top_p`` (1-D logits)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    remove = cum <= (1.0 - top_p)
    remove[-1] = False  # keep at least the most likely token
    return logits.masked_fill(remove.scatter(0, order, remove), float("-inf"))


def sample_rows(logits: torch.Tensor, params: Sequence[SamplingParams],
                generators: Sequence[torch.Generator | None]) -> list[int]:
    """The next token of each row of ``logits`` (B, V) under that row's settings and generator."""
    if logits.shape[0] != len(params) or len(params) != len(generators):
        raise InvalidInputError(f"need one sampling setting and generator per row ({logits.shape[0]})")
    logits = logits.float()
    out = logits.argmax(-1).tolist()  # greedy rows: one argmax for the whole batch
    for r, (p, g) in enumerate(zip(params, generators, strict=True)):
        if p.greedy:
            continue
        row = top_p_filter(logits[r] / p.temperature, p.top_p)
        out[r] = int(torch.multinomial(row.softmax(-1), 1, generator=g)[0])
    return [int(t) for t in out]
