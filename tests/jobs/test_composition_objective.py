"""The lorahub objective of composition jobs scores prompts exactly as the hub serves and the zoo trains them."""

from __future__ import annotations

import pytest
import torch

from hub.core.errors import InvalidInputError
from hub.services.composition_objective import (
    ServedPrompts,
    balanced,
    build_objective,
    source_examples,
)

ROWS = [{"input": "abc | shout this", "output": "ABC"}, {"input": "x1y | hide the numbers", "output": "x#y"}]


def test_served_prompts_add_bos_once_and_the_newline_once():
    from testbed.tokenizer import build_tokenizer
    from testbed.train import BOS_ID, SEP_ID, prompt_ids

    served = ServedPrompts(build_tokenizer())
    assert served("ab | x")["input_ids"] == prompt_ids("ab | x") == [BOS_ID, *b"ab | x", SEP_ID]
    assert served("ab | x\n")["input_ids"] == prompt_ids("ab | x")  # a prompt that has its newline keeps one
    assert served("AB", add_special_tokens=False)["input_ids"] == list(b"AB")  # answers get no BOS
    assert served.eos_token_id == 258 and served.pad_token_id == 256


def test_objective_equals_the_testbed_training_loss_of_the_base():
    """The zero adapter's objective is the base's answer-only CE in the zoo's training format."""
    from merging import merge
    from testbed.tokenizer import build_tokenizer
    from testbed.train import encode_batch
    from tests.helpers import byte_llama
    from tests.merging.builders import rand_adapter

    model = byte_llama(seed=2)
    objective = build_objective(model, build_tokenizer(), ROWS)
    with torch.no_grad():
        expected = float(model(**encode_batch([(r["input"], r["output"]) for r in ROWS])).loss)
    shapes = {"model.layers.0.self_attn.q_proj": (32, 32)}
    zero = merge([rand_adapter(1, shapes=shapes)], "cat", weights=[0.0])
    assert objective(zero) == pytest.approx(expected, rel=1e-5)


def test_examples_are_balanced_and_missing_samples_are_named():
    a = [{"input": f"a{i}", "output": "x"} for i in range(5)]
    b = [{"input": f"b{i}", "output": "y"} for i in range(3)]
    assert [r["input"] for r in balanced([a, b])] == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert len(balanced([a, b], limit=4)) == 4
    assert source_examples(b'{"input": "q", "output": "r"}\n', "ns/x@1") == [{"input": "q", "output": "r"}]
    with pytest.raises(InvalidInputError, match="ns/x@1 has no sample data"):
        source_examples(b"", "ns/x@1")
