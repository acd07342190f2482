"""The one greedy (or sampled) decoder with a KV cache, and adapter merging, for generation and the testbed.

:func:`decode_ids` continues left-padded token rows with the Cache API (``use_cache=True`` at the
prefill, then the returned ``cache`` fed back with one new token per row). :func:`decode` is the
generation package's text wrapper over a :class:`TextCodec`; ``testbed.generate.greedy`` is the
testbed's (its byte tokenizer and prompt format).
"""

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
    return {n: (int(m.out_features), int(m.in_features))
            for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


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
def decode_ids(model: Any, rows: Sequence[Sequence[int]], *, pad_id: int, stop_ids: Sequence[int],
               max_new_tokens: int, temperature: float = 0.0, generator: torch.Generator | None = None,
               batch_size: int = 64, **forward_kwargs: Any) -> list[list[int]]:
    """Continue each token row; greedy when ``temperature == 0``, else sampled with ``generator``.

    Rows are decoded ``batch_size`` at a time, left padded with ``pad_id``. A row stops at ``pad_id``
    or any of ``stop_ids``; the ids before it are returned (at most ``max_new_tokens``).

    Args:
        model: a causal LM (transformers, a PEFT model, or anything called like one).
        rows: the prompts' token ids.
        forward_kwargs: passed to every forward call (e.g. PEFT's ``adapter_names``); a list value is
            sliced per batch like the rows.

    Returns:
        The generated ids of each row, in order.
    """
    stop_set = {pad_id, *stop_ids}
    stops = torch.tensor(sorted(stop_set), dtype=torch.long)
    out: list[list[int]] = []
    for start in range(0, len(rows), batch_size):
        kw = {k: (v[start:start + batch_size] if isinstance(v, list) else v) for k, v in forward_kwargs.items()}
        gen = _decode_batch(model, rows[start:start + batch_size], pad_id, stops, max_new_tokens, temperature,
                            generator, kw)
        for row in gen.tolist():
            keep: list[int] = []
            for i in row:
                if i in stop_set:
                    break
                keep.append(i)
            out.append(keep)
    return out


def _decode_batch(model: Any, rows: Sequence[Sequence[int]], pad_id: int, stops: torch.Tensor, max_new: int,
                  temperature: float, generator: torch.Generator | None, kw: dict[str, Any]) -> torch.Tensor:
    """(B, max_new) generated ids of one batch, ``pad_id`` after a row stopped."""
    batch = left_pad(rows, pad_id)
    mask, pos = batch["attention_mask"], batch["position_ids"]  # (B, T)
    res = model(**batch, use_cache=True, **kw)  # the model builds its own Cache (DynamicCache for its layers)
    cache = res.cache
    gen = torch.full((len(rows), max_new), pad_id, dtype=torch.long)
    done = torch.zeros(len(rows), dtype=torch.bool)
    last = pos[:, -1]  # (B,)
    for t in range(max_new):
        logits = res.logits[:, -1].float()  # (B, V)
        if temperature > 0:
            nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
        else:
            nxt = logits.argmax(-1)  # (B,)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        gen[:, t] = nxt
        done |= torch.isin(nxt, stops)
        if bool(done.all()) or t == max_new - 1:
            break
        mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)  # (B, T + t + 1)
        last = last + 1
        res = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None], cache=cache,
                    use_cache=True, **kw)
        cache = res.cache
    return gen


def decode(model: Any, codec: TextCodec, rows: Sequence[Sequence[int]], *, max_new_tokens: int,
           temperature: float = 0.0, generator: torch.Generator | None = None, stop_ids: Sequence[int] = (),
           batch_size: int = 64) -> list[str]:
    """:func:`decode_ids` with ``codec``'s pad and EOS, each row's new ids decoded to text."""
    ids = decode_ids(model, rows, pad_id=codec.pad_id, stop_ids=(codec.eos_id, *stop_ids),
                     max_new_tokens=max_new_tokens, temperature=temperature, generator=generator,
                     batch_size=batch_size)
    return [codec.decode(row) for row in ids]
