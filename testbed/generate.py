"""Batched greedy generation with left padding and a KV cache (the testbed's decoding)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from testbed.train import EOS_ID, PAD_ID, fixed_threads, prompt_ids


@torch.no_grad()
def greedy(
    model: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 40,
    batch_size: int = 64,
    **forward_kwargs: Any,
) -> list[str]:
    """Greedy answers of ``model`` to ``prompts`` (text up to ``</s>``), batched, left padded.

    ``forward_kwargs`` go to every forward call (e.g. PEFT's ``adapter_names``; a list there is
    sliced per batch like the prompts).
    """
    out: list[str] = []
    with fixed_threads():
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            kw = {
                k: (v[start : start + batch_size] if isinstance(v, list) else v)
                for k, v in forward_kwargs.items()
            }
            out.extend(_greedy_batch(model, chunk, max_new_tokens, kw))
    return out


def _greedy_batch(model: Any, prompts: list[str], max_new: int, kw: dict[str, Any]) -> list[str]:
    rows = [prompt_ids(p) for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
    res = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kw)
    past = res.past_key_values
    nxt = res.logits[:, -1].argmax(-1)  # (B,)
    gen = torch.full((len(rows), max_new), PAD_ID, dtype=torch.long)
    done = torch.zeros(len(rows), dtype=torch.bool)
    last_pos = pos[:, -1]
    for t in range(max_new):
        nxt = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
        gen[:, t] = nxt
        done |= nxt == EOS_ID
        if bool(done.all()) or t == max_new - 1:
            break
        mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
        last_pos = last_pos + 1
        res = model(
            input_ids=nxt[:, None],
            attention_mask=mask,
            position_ids=last_pos[:, None],
            past_key_values=past,
            use_cache=True,
            **kw,
        )
        past = res.past_key_values
        nxt = res.logits[:, -1].argmax(-1)
    texts = []
    for row in gen.tolist():
        toks = []
        for t in row:
            if t in (EOS_ID, PAD_ID):
                break
            toks.append(t)
        texts.append(bytes(b for b in toks if b < 256).decode("utf-8", errors="replace"))
    return texts
