"""A tiny transfer world: two random-init bases of different families sharing the testbed's byte
tokenizer, a one-token task ("is there a digit": y / n), a source LoRA trained on it, and a template sampler
that emits well-formed task prompts with probability q and malformed ones otherwise (spec 6.6)."""

from __future__ import annotations

import random
import string

import torch

from generation.decode import decode
from generation.taskvec import TextCodec

CUE = "any digit?"
S_ID, T_ID = "loom-test/src-llama", "loom-test/tgt-qwen2"


def task_prompt(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(3, 6)
    x = [rng.choice(string.ascii_lowercase) for _ in range(n)]
    if rng.random() < 0.5:
        x[rng.randrange(n)] = rng.choice(string.digits)
    text = "".join(x)
    return f"{text} | {CUE}", "y" if any(c.isdigit() for c in text) else "n"


def bases():
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from testbed.tokenizer import VOCAB_SIZE

    common = dict(vocab_size=VOCAB_SIZE, max_position_embeddings=64, pad_token_id=256, bos_token_id=257,
                  eos_token_id=258)
    torch.manual_seed(0)
    s = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, **common)).eval()
    torch.manual_seed(1)
    t = Qwen2ForCausalLM(Qwen2Config(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, use_sliding_window=False, **common)).eval()
    return s, t


def codec() -> TextCodec:
    from testbed.tokenizer import build_tokenizer

    return TextCodec(build_tokenizer())


def train_source(model, cdc: TextCodec, steps: int = 150, seed: int = 0):
    """A rank-8 LoRA on every linear layer of ``model`` trained on the task; returns the PEFT model."""
    from generation.taskvec import left_pad
    from generation.trans_lora import _peft, _train

    pm = _peft(model, 8, 16, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), seed)
    rng = random.Random(seed)

    def batches(_s):
        rows = [task_prompt(rng) for _ in range(32)]
        enc = [(cdc.prompt(p), cdc.answer(a)) for p, a in rows]
        width = max(len(p) + len(a) for p, a in enc)
        b = left_pad([p + a for p, a in enc], cdc.pad_id)
        lab = torch.full((len(enc), width), -100, dtype=torch.long)
        for i, (_, a) in enumerate(enc):
            lab[i, width - len(a):] = torch.tensor(a)
        b["labels"] = lab
        return b

    _train(pm, steps, 3e-3, batches, lambda m, b: m(**b).loss)
    return pm


def accuracy(model, cdc: TextCodec, n: int = 100, seed: int = 99) -> float:
    rng = random.Random(seed)
    rows = [task_prompt(rng) for _ in range(n)]
    outs = decode(model, cdc, [cdc.prompt(p) for p, _ in rows], max_new_tokens=3)
    return sum(o.strip() == a for o, (_, a) in zip(outs, rows, strict=True)) / n


class TemplateSampler:
    """Well-formed task prompts with probability ``q``; otherwise malformed (digits, wrong cue, too long)."""

    def __init__(self, q: float = 0.5) -> None:
        self.q = q

    def __call__(self, seeds, n, rng):
        out = []
        for _ in range(n):
            if rng.random() < self.q:
                out.append(task_prompt(rng)[0])
            else:
                x = "".join(rng.choice("#@!%&*") for _ in range(rng.randint(8, 14)))
                out.append(f"{x} | {CUE}")
        return out
