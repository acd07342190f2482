"""Fixtures for the routing suite: a pico Llama, 4 PEFT adapters with mixed ranks/targets/rsLoRA."""

from __future__ import annotations

import copy

import pytest
import torch

from hub.core.peft_io import load_peft
from tests.helpers import make_peft_adapter, pico_llama

#: (seed, r, alpha, targets, rslora) of each expert; different ranks, one rsLoRA, one missing sites
EXPERT_SPECS = [
    (11, 4, 8, ("q_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"), False),
    (12, 2, 4, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), False),
    (13, 3, 6, ("q_proj", "v_proj", "down_proj"), True),
    (14, 4, 16, ("k_proj", "o_proj", "gate_proj", "up_proj"), False),
]


@pytest.fixture(scope="session")
def base_model():
    """The pico Llama (hidden 32, 2 layers), fp32, eval. Never modify it: deep-copy first."""
    return pico_llama(seed=0)


@pytest.fixture()
def model(base_model):
    return copy.deepcopy(base_model)


@pytest.fixture(scope="session")
def expert_dirs(tmp_path_factory, base_model):
    root = tmp_path_factory.mktemp("experts")
    return [make_peft_adapter(base_model, root / f"e{i}", seed=s, r=r, alpha=a, targets=t, use_rslora=rs)
            for i, (s, r, a, t, rs) in enumerate(EXPERT_SPECS)]


@pytest.fixture(scope="session")
def experts(expert_dirs):
    return [load_peft(d) for d in expert_dirs]


@pytest.fixture(scope="session")
def peft_oracle(base_model, expert_dirs):
    """PEFT model with every expert loaded under names e0..e3 (for per-row mixed batches)."""
    from peft import PeftModel

    pm = PeftModel.from_pretrained(copy.deepcopy(base_model), str(expert_dirs[0]), adapter_name="e0")
    for i, d in enumerate(expert_dirs[1:], start=1):
        pm.load_adapter(str(d), adapter_name=f"e{i}")
    return pm.eval()


@pytest.fixture(scope="session")
def batch():
    """input_ids (2, 8) and an attention mask with the second row left-padded by 3."""
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 64, (2, 8), generator=g)
    am = torch.ones(2, 8, dtype=torch.long)
    am[1, :3] = 0
    ids[1, :3] = 0
    return ids, am


@pytest.fixture(scope="session")
def char_tokenizer():
    """A character-level HF tokenizer built in code (ids < 30 fit the pico vocab of 64), left padding."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{c: 3 + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz=")}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]",
                                   padding_side="left")
