"""Task vectors from a base model's hidden states, and the text codec the generators use.

:class:`TextCodec` turns prompts and answers into token ids the way Loom trains and serves adapters on the
base (:mod:`hub.core.prompts`): the tokenizer's chat template when it has one (SmolLM2-135M-Instruct; the
testbed's tiny bases, whose template writes ``<s>prompt\\n``), else ``tokenizer(prompt + suffix)``; then
``answer <eos>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hub.core.errors import InvalidInputError
from hub.core.prompts import PROMPT_SUFFIX, answer_ids, prompt_ids


@dataclass(frozen=True)
class TextCodec:
    """Token ids for prompts and answers from a Hugging Face tokenizer.

    Attributes:
        suffix: what follows a prompt in the completion format (a base without a chat template).
        chat: True/False force the chat template / the completion format; None: the template when the
            tokenizer has one (as Loom serves the base).
    """

    tokenizer: Any
    suffix: str = PROMPT_SUFFIX
    chat: bool | None = None

    @property
    def pad_id(self) -> int:
        pid = self.tokenizer.pad_token_id
        return int(pid if pid is not None else self.tokenizer.eos_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def prompt(self, text: str) -> list[int]:
        """The ids of the request ``text`` as Loom gives it to the base (:func:`hub.core.prompts.prompt_ids`)."""
        return prompt_ids(self.tokenizer, text, chat=self.chat, suffix=self.suffix)

    def raw(self, text: str) -> list[int]:
        """``text`` with no suffix (a prefix to continue), with the tokenizer's own special tokens."""
        return list(self.tokenizer.encode(text))

    def answer(self, text: str) -> list[int]:
        """The answer's ids (no special tokens), then EOS."""
        return answer_ids(self.tokenizer, text)

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
