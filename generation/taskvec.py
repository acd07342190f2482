"""Task vectors from a base model's hidden states, and the text codec the generators use.

:class:`TextCodec` turns prompts and answers into token ids the way the hub's causal-LM adapters are
trained: ``<bos> prompt <suffix>`` then ``answer <eos>`` (the testbed's format with suffix ``"\\n"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hub.core.errors import InvalidInputError


@dataclass(frozen=True)
class TextCodec:
    """Token ids for prompts and answers from a Hugging Face tokenizer."""

    tokenizer: Any
    suffix: str = "\n"

    @property
    def pad_id(self) -> int:
        pid = self.tokenizer.pad_token_id
        return int(pid if pid is not None else self.tokenizer.eos_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def prompt(self, text: str) -> list[int]:
        """``text`` + suffix as the tokenizer encodes it (with the BOS it adds, if any), as Loom serves prompts."""
        return list(self.tokenizer.encode(text + self.suffix))

    def raw(self, text: str) -> list[int]:
        """``text`` with no suffix (a prefix to continue), with the tokenizer's own special tokens."""
        return list(self.tokenizer.encode(text))

    def answer(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) + [self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        out: list[int] = []
        for t in ids:
            if t in (self.eos_id, self.pad_id):
                break
            out.append(int(t))
        return str(self.tokenizer.decode(out, skip_special_tokens=True))


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``, ``attention_mask`` and ``position_ids`` (B, T)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r):] = 1
    return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}


@torch.no_grad()
def task_vector(model: Any, codec: TextCodec, prompts: Sequence[str], layer: int = -1) -> torch.Tensor:
    """Mean hidden state of ``layer`` at the last prompt position over ``prompts``, shape (hidden,).

    This is ICM-LoRA's task vector taken from the *base* model (the paper's in-context framing);
    the released code uses the fine-tuned model instead.

    Raises:
        InvalidInputError: no prompts (a task vector needs the task's sample examples).
    """
    if not prompts:
        raise InvalidInputError("a task vector needs at least one sample prompt; the task has no sample data")
    batch = left_pad([codec.prompt(p) for p in prompts], codec.pad_id)
    out = model(**batch, output_hidden_states=True)
    h = out.hidden_states[layer][:, -1, :]  # (B, hidden)
    return h.float().mean(0)
