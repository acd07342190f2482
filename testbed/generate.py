"""The testbed's greedy answers: its prompt format and byte tokenizer over the one decoder.

Decoding itself (batched, left padded, KV cache) is :func:`generation.decode.decode_ids`, the
same loop the generation package uses; this module only turns prompts into ids and ids into text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from generation.decode import decode_ids
from testbed.train import EOS_ID, PAD_ID, fixed_threads, prompt_ids


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
    with fixed_threads():
        rows = decode_ids(model, [prompt_ids(p) for p in prompts], pad_id=PAD_ID, stop_ids=(EOS_ID,),
                          max_new_tokens=max_new_tokens, batch_size=batch_size, **forward_kwargs)
    return [bytes(b for b in row if b < 256).decode("utf-8", errors="replace") for row in rows]
