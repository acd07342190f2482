"""The few-shot LM-loss objective on a pico Llama with the byte tokenizer, against PEFT as the oracle."""

from __future__ import annotations

import copy

import pytest
import torch

from hub.core import load_peft
from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from merging import merge
from merging.objectives import lm_loss_objective
from tests.helpers import make_peft_adapter
from tests.merging.builders import rand_adapter

EXAMPLES = [
    {"input": "2+2=", "output": "4"},
    {"input": "3+4=", "output": "7"},
    {"input": "max(1,9)=", "output": "9"},
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from testbed.tokenizer import VOCAB_SIZE, build_tokenizer
    from tests.helpers import pico_llama

    model = pico_llama(seed=3, vocab=VOCAB_SIZE)
    tok = build_tokenizer()
    root = tmp_path_factory.mktemp("objective")
    dirs = [make_peft_adapter(model, root / f"c{i}", seed=40 + i, alpha=16) for i in range(3)]
    return model, tok, dirs


def reference_loss(model, tok, examples, adapter_dir=None) -> float:
    """Token-mean CE on the outputs computed example by example, with PEFT applying the adapter."""
    from peft import PeftModel

    m = PeftModel.from_pretrained(copy.deepcopy(model), str(adapter_dir)).eval() if adapter_dir else model
    total, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            prompt = tok(ex["input"])["input_ids"]
            answer = tok(ex["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids = torch.tensor([prompt + answer])
            logits = m(input_ids=ids).logits[0]
            for j, t in enumerate(answer):
                total += float(torch.nn.functional.cross_entropy(logits[len(prompt) + j - 1][None], torch.tensor([t])))
                count += 1
    return total / count


def test_objective_equals_peft_loss_and_leaves_the_model_untouched(world):
    model, tok, dirs = world
    before = {k: v.clone() for k, v in model.state_dict().items()}
    objective = lm_loss_objective(model, tok, EXAMPLES, batch_size=2)
    ad = load_peft(dirs[0])
    assert objective(ad) == pytest.approx(reference_loss(model, tok, EXAMPLES, dirs[0]), rel=1e-4)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    zero = merge([ad], "cat", weights=[0.0])  # a zero delta gives the base model's loss
    assert objective(zero) == pytest.approx(reference_loss(model, tok, EXAMPLES), rel=1e-4)


def test_objective_refuses_bad_examples_and_foreign_adapters(world):
    model, tok, _ = world
    with pytest.raises(InvalidInputError, match="at least one example"):
        lm_loss_objective(model, tok, [])
    with pytest.raises(InvalidInputError, match=r"examples\[1\]"):
        lm_loss_objective(model, tok, [EXAMPLES[0], {"input": "x"}])
    objective = lm_loss_objective(model, tok, EXAMPLES)
    foreign = rand_adapter(1, shapes={"model.layers.0.self_attn.q_proj": (12, 16)})
    with pytest.raises(IncompatibleAdaptersError, match="q_proj"):
        objective(foreign)
    before = model.model.layers[0].self_attn.q_proj.weight.clone()
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, before)


def test_lorahub_with_the_lm_objective_beats_the_base_model(world):
    """End to end: the search over 3 candidates finds weights with a lower few-shot loss than w = 0."""
    model, tok, dirs = world
    cands = [load_peft(d) for d in dirs]
    objective = lm_loss_objective(model, tok, EXAMPLES)
    base_loss = objective(merge([cands[0]], "cat", weights=[0.0]))
    out = merge(cands, "lorahub", params={"objective": objective, "budget": 30, "l1": 0.0})
    best = out.provenance.recipe["report"]["best_loss"]
    assert best < base_loss - 1e-3
    assert objective(out) == pytest.approx(best, rel=1e-6)  # the reported loss is the result's loss
