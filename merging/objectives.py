"""Objectives for weight-searching methods (``lorahub``): few-shot LM loss of a base model + adapter.

:func:`lm_loss_objective` turns (a transformers causal LM, its tokenizer, a few
``{"input", "output"}`` examples) into ``objective(adapter) -> float``: the mean next-token
cross-entropy on the *output* tokens (input tokens are masked), with the adapter's deltas added to
the base weights for the call and removed after it. Tokenisation happens once; each call costs one
forward pass per batch. transformers is not imported here: the model and tokenizer are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from hub.core.adapter import LoraAdapter
from hub.core.errors import IncompatibleAdaptersError, InvalidInputError

IGNORE = -100


def _encode(tokenizer: Any, examples: Sequence[Mapping[str, str]], max_length: int) -> list[tuple[list[int], list[int]]]:
    rows = []
    eos = getattr(tokenizer, "eos_token_id", None)
    for i, ex in enumerate(examples):
        if not isinstance(ex, Mapping) or not isinstance(ex.get("input"), str) or not isinstance(ex.get("output"), str):
            raise InvalidInputError(f"examples[{i}] must be an object with string 'input' and 'output'")
        prompt = list(tokenizer(ex["input"])["input_ids"])
        answer = list(tokenizer(ex["output"], add_special_tokens=False)["input_ids"])
        if eos is not None:
            answer.append(int(eos))
        if not answer:
            raise InvalidInputError(f"examples[{i}]: output has no tokens")
        ids = (prompt + answer)[-max_length:]
        labels = ([IGNORE] * len(prompt) + answer)[-max_length:]
        rows.append((ids, labels))
    return rows


def _batches(
    rows: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(chunk), width), IGNORE, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)  # (B, T)
        for r, (x, y) in enumerate(chunk):
            ids[r, : len(x)] = torch.tensor(x)
            labels[r, : len(y)] = torch.tensor(y)
            mask[r, : len(x)] = 1
        yield ids, labels, mask


def lm_loss_objective(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Mapping[str, str]],
    *,
    batch_size: int = 8,
    max_length: int = 512,
) -> Callable[[LoraAdapter], float]:
    """Build ``objective(adapter) -> float``: mean CE on the examples' output tokens.

    Args:
        model: a transformers causal LM (``model(input_ids, attention_mask).logits``), base weights.
        tokenizer: its tokenizer (callable returning ``input_ids``; ``eos_token_id`` is appended).
        examples: few-shot ``{"input": ..., "output": ...}`` pairs.

    Raises:
        InvalidInputError: no examples, or a malformed one.
        IncompatibleAdaptersError (when called): an adapter module missing from the model or of
            another shape.
    """
    if not examples:
        raise InvalidInputError("lm_loss_objective needs at least one example")
    rows = _encode(tokenizer, examples, max_length)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = int(pad_id) if pad_id is not None else 0
    batches = list(_batches(rows, batch_size, pad_id))
    modules = dict(model.named_modules())

    def objective(adapter: LoraAdapter) -> float:
        saved: dict[str, torch.Tensor] = {}
        try:
            with torch.no_grad():
                for name, layer in adapter.layers.items():
                    mod = modules.get(name)
                    weight = getattr(mod, "weight", None)
                    if weight is None or tuple(weight.shape) != (layer.out_features, layer.in_features):
                        raise IncompatibleAdaptersError(
                            f"module {name!r} is not a linear layer of shape "
                            f"{(layer.out_features, layer.in_features)} in the model"
                        )
                    saved[name] = weight.detach().clone()
                    weight.add_(layer.delta(torch.float32).to(weight.device, weight.dtype))
                total, count = 0.0, 0
                device = next(model.parameters()).device
                for ids, labels, mask in batches:
                    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # (B, T, V)
                    shift_logits = logits[:, :-1].float()  # (B, T-1, V)
                    shift_labels = labels[:, 1:].to(device)  # (B, T-1)
                    loss = torch.nn.functional.cross_entropy(
                        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                        ignore_index=IGNORE, reduction="sum",
                    )
                    total += float(loss)
                    count += int((shift_labels != IGNORE).sum())
                return total / max(count, 1)
        finally:
            with torch.no_grad():
                for name, orig in saved.items():
                    modules[name].weight.copy_(orig)

    return objective
