"""Batched decoding (greedy or sampled) and adapter merging for the generation package."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from generation.taskvec import TextCodec, left_pad
from hub.core.adapter import LoraAdapter
from hub.core.compat import check_against_base


def linear_shapes(model: Any) -> dict[str, tuple[int, int]]:
    """Module path -> (out, in) of every ``nn.Linear`` of ``model``."""
    return {n: tuple(m.weight.shape) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def merged(model: Any, adapter: LoraAdapter, base_id: str) -> Any:
    """A copy of ``model`` with ``adapter``'s deltas added to its weights (checked against the base)."""
    check_against_base(adapter, linear_shapes(model), base_id)
    out = copy.deepcopy(model).eval()
    mods = dict(out.named_modules())
    with torch.no_grad():
        for path, delta in adapter.deltas().items():
            mods[path].weight += delta.to(mods[path].weight.dtype)  # (out, in)
    return out


@torch.no_grad()
def decode(model: Any, codec: TextCodec, rows: Sequence[Sequence[int]], *, max_new_tokens: int,
           temperature: float = 0.0, generator: torch.Generator | None = None, stop_ids: Sequence[int] = (),
           batch_size: int = 64) -> list[str]:
    """Continue each token row; greedy when ``temperature == 0``, else sampled with ``generator``.

    Decoding of a row stops at EOS, pad or any of ``stop_ids``; the text before it is returned.
    """
    stops = {codec.eos_id, codec.pad_id, *stop_ids}
    texts: list[str] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = left_pad(chunk, codec.pad_id)
        mask, pos = batch["attention_mask"], batch["position_ids"]
        res = model(**batch, use_cache=True)
        past = res.past_key_values
        gen = torch.full((len(chunk), max_new_tokens), codec.pad_id, dtype=torch.long)
        done = torch.zeros(len(chunk), dtype=torch.bool)
        last = pos[:, -1]
        for t in range(max_new_tokens):
            logits = res.logits[:, -1].float()  # (B, V)
            if temperature > 0:
                nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
            else:
                nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, codec.pad_id), nxt)
            gen[:, t] = nxt
            done |= torch.tensor([int(i) in stops for i in nxt.tolist()])
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones((len(chunk), 1), dtype=torch.long)], dim=1)
            last = last + 1
            res = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None],
                        past_key_values=past, use_cache=True)
            past = res.past_key_values
        for row in gen.tolist():
            keep: list[int] = []
            for i in row:
                if i in stops:
                    break
                keep.append(i)
            texts.append(codec.decode(keep))
    return texts
