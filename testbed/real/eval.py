"""Exact match of the real zoo's adapters (and of the base alone) on their tasks, through the chat template.

Answers are transformers' greedy ``generate`` on the chat-templated request (what Loom serves for a chat
completion), decoded without special tokens, compared with the expected answer after stripping whitespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from hub.core.errors import InvalidInputError
from hub.core.prompts import chat_prompt_ids
from testbed.entries import Zoo
from testbed.real.tasks import get_task


@torch.no_grad()
def greedy_chat(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 32,
                batch_size: int = 16, adapter: str | None = None) -> list[str]:
    """Greedy answers of ``model`` to user messages ``prompts`` (batched, left padded).

    ``adapter``: the PEFT adapter name to use (a PeftModel), None for the model as it is.
    """
    from generation.taskvec import left_pad

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        rows = [chat_prompt_ids(tokenizer, p) for p in prompts[start:start + batch_size]]
        batch = left_pad(rows, pad)
        ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, T)
        width = ids.shape[1]
        kw = {"adapter_names": [adapter] * len(rows)} if adapter is not None else {}
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, **kw)
        out.extend(tokenizer.decode(g[width:], skip_special_tokens=True) for g in gen)
    return out


def evaluate_real(zoo: Zoo, *, tasks: Sequence[str] | None = None, n: int = 50, split: str = "all",
                  seed: int = 1234, base: bool = True, threads: int | None = None) -> dict[str, dict[str, float]]:
    """``{"oracle": {task: accuracy}, "base": {...}}``: each task's own adapter, and the base with none.

    Args:
        tasks: task names (default: every adapter's task). n: examples per task (seeded, disjoint from training).
        split: ``"train"``, ``"heldout"`` or ``"all"`` phrasings. base: also score the base model alone.
        threads: torch threads (default: as set).
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if n < 1:
        raise InvalidInputError(f"n must be >= 1, got {n}")
    entries = {a.task: a for a in zoo.adapters}
    names = list(tasks) if tasks is not None else list(entries)
    for t in names:
        if t not in entries:
            raise InvalidInputError(f"the real zoo has no adapter for task {t!r}")
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        tok = AutoTokenizer.from_pretrained(str(zoo.base_a.dir))
        model = AutoModelForCausalLM.from_pretrained(str(zoo.base_a.dir), dtype=torch.float32).eval()
        data = {t: get_task(t).examples(n, 1_000_003 + seed, split) for t in names}
        res: dict[str, dict[str, float]] = {"oracle": {}, "base": {}} if base else {"oracle": {}}
        if base:
            for t, exs in data.items():
                got = greedy_chat(model, tok, [e.prompt for e in exs])
                res["base"][t] = sum(get_task(t).score(g, e.output) for g, e in zip(got, exs, strict=True)) / n
        peft = PeftModel.from_pretrained(model, str(entries[names[0]].dir), adapter_name=names[0])
        for t in names[1:]:
            peft.load_adapter(str(entries[t].dir), adapter_name=t)
        peft.eval()
        for t, exs in data.items():
            got = greedy_chat(peft, tok, [e.prompt for e in exs], adapter=t)
            res["oracle"][t] = sum(get_task(t).score(g, e.output) for g, e in zip(got, exs, strict=True)) / n
        return res
    finally:
        torch.set_num_threads(old)
