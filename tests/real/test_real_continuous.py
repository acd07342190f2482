"""Continuous batching on the real model: rows of different adapters (and the base) that join a running batch
mid-generation, through the inference service, give exactly transformers + PEFT's greedy tokens, each alone."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import torch

from tests.real.conftest import REAL_TASKS

PROMPTS = ("Convert to snake_case: Big Red Apple\n", "Sentiment of: I loved every minute of it.\n",
           "Write one sentence about the sea.\n")


def peft_greedy(real_zoo, prompt: str, task: str | None, n: int) -> list[int]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(real_zoo.base_a.dir))
    model = AutoModelForCausalLM.from_pretrained(str(real_zoo.base_a.dir), dtype=torch.float32).eval()
    if task is not None:
        entry = next(e for e in real_zoo.adapters if e.task == task)
        model = PeftModel.from_pretrained(model, str(entry.dir)).eval()
    x = torch.tensor([tok(prompt)["input_ids"]])
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    new = out[0, x.shape[1]:].tolist()
    return new[: new.index(tok.eos_token_id)] if tok.eos_token_id in new else new


def test_rows_joining_mid_generation_equal_peft(real_zoo, real_demo):
    from hub.services.container import inference_service
    from hub.services.inference import CompletionRequest

    _, hub = real_demo
    models = [f"smol/{REAL_TASKS[0]}", f"smol/{REAL_TASKS[1]}", real_zoo.base_a.id]
    tasks = [REAL_TASKS[0], REAL_TASKS[1], None]
    lengths = (24, 10, 16)
    svc = inference_service(hub, "cpu")
    try:
        for m in models:  # loaded before the first row starts: the rows that join spend its 24 steps joining, not
            svc.resolve(None, m, None)  # loading an adapter (once, beside the browser tests, they came too late)
        out: dict[int, list[int]] = {}

        def call(i: int) -> None:
            res = svc.complete(None, CompletionRequest(model=models[i], prompts=[PROMPTS[i]], max_tokens=lengths[i],
                                                       temperature=0.0))
            out[i] = res.choices[0].tokens

        threads = [threading.Thread(target=call, args=(i,)) for i in (1, 2)]

        async def first_row() -> Any:
            events = await svc.astream(None, CompletionRequest(model=models[0], prompts=[PROMPTS[0]],
                                                               max_tokens=lengths[0], temperature=0.0))
            await anext(events)  # the first row is generating: the others join its batch now
            for t in threads:
                t.start()
            return [ev async for ev in events][-1]

        res0 = asyncio.run(first_row())
        for t in threads:
            t.join()
        out[0] = res0.choices[0].tokens
        batcher = svc.engine(real_zoo.base_a.id).batcher
        assert max(batcher.batch_sizes) >= 2, batcher.batch_sizes  # they did share decode steps
    finally:
        svc.close()
    for i in range(3):
        assert out[i] == peft_greedy(real_zoo, PROMPTS[i], tasks[i], lengths[i]), models[i]
