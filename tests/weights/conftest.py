"""Fixtures of the base-weights tests: the fake Hugging Face Hub, registry Hubs, and a tiny base on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hf_sync.fixtures import TOKEN, fake_hub, hf_env  # noqa: F401
from tests.services.fixtures import *  # noqa: F403


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> tuple[object, Path]:
    """A byte-tokenizer Llama (random, seeded) and its save_pretrained folder with the testbed tokenizer."""
    from tests.helpers import byte_llama, save_byte_base

    root = tmp_path_factory.mktemp("weights_base")
    return byte_llama(seed=3), save_byte_base(root / "base", seed=3)


def served_greedy(hub, model_id: str, prompt: str, max_tokens: int = 8) -> list[int]:
    """Token ids Loom's inference service answers ``prompt`` with on base ``model_id`` (greedy)."""
    from hub.services.container import inference_service
    from hub.services.inference import CompletionRequest

    svc = inference_service(hub, "cpu")
    try:
        res = svc.complete(None, CompletionRequest(model=model_id, prompts=[prompt], max_tokens=max_tokens,
                                                   temperature=0.0))
    finally:
        svc.close()
    return res.choices[0].tokens


def hf_greedy(model, tokenizer, prompt: str, max_tokens: int = 8) -> list[int]:
    """transformers' greedy ``generate`` on ``tokenizer(prompt)``: the new token ids (up to and with EOS)."""
    import torch

    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()
