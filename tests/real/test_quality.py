"""The real-base scorer of ``benchmarks/real_quality.py`` (:mod:`testbed.real.quality`): an adapter merged by
``with_adapter`` answers exactly as PEFT's ``generate`` with that adapter, the base weights come back bit for bit,
exact match agrees with :func:`testbed.real.eval.evaluate_real`, and ``finished_zoo`` reads the adapters of a
build still running (complete ones at the zoo recipe's steps only)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.real.conftest import REAL_TASKS


@pytest.fixture(scope="module")
def scorer(real_zoo):
    from testbed.real.quality import RealScorer

    return RealScorer.load(real_zoo.base_a.dir, real_zoo.base_a.id, batch_size=4)


def test_merged_adapter_answers_as_peft_generate_and_weights_come_back(real_zoo, scorer):
    from peft import PeftModel

    from hub.core.peft_io import load_peft
    from testbed.real.eval import greedy_chat
    from testbed.real.quality import eval_set

    task = REAL_TASKS[0]
    prompts = [e.prompt for e in eval_set([task], 6, "all")[task]]
    before = {k: v.clone() for k, v in scorer.model.state_dict().items()}
    base_answers = scorer.answers(prompts, max_new_tokens=12)
    with scorer.with_adapter(load_peft(real_zoo.adapter(task).dir)):
        merged = scorer.answers(prompts, max_new_tokens=12)
    after = scorer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert scorer.answers(prompts, max_new_tokens=12) == base_answers

    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(real_zoo.base_a.dir), dtype=torch.float32).eval()
    peft = PeftModel.from_pretrained(base, str(real_zoo.adapter(task).dir), adapter_name=task).eval()
    expected = greedy_chat(peft, scorer.tokenizer, prompts, max_new_tokens=12, batch_size=4, adapter=task)
    assert merged == expected
    assert merged != base_answers  # the adapter changes what the model says


def test_accuracy_agrees_with_evaluate_real(real_zoo, scorer):
    from hub.core.peft_io import load_peft
    from testbed.real.eval import evaluate_real
    from testbed.real.quality import eval_set

    n = 6
    ref = evaluate_real(real_zoo, n=n, split="train")
    for task in REAL_TASKS:
        own = scorer.adapter_accuracy(load_peft(real_zoo.adapter(task).dir), eval_set([task], n, "train"))
        assert own[task] == ref["oracle"][task]
    assert scorer.adapter_accuracy(None, eval_set(list(REAL_TASKS), n, "train")) == ref["base"]


def test_finished_zoo_reads_complete_adapters_of_a_running_build(real_zoo, tmp_path):
    from testbed.real.base import smollm2_gguf
    from testbed.real.quality import finished_zoo
    from testbed.real.zoo import RECIPE, TRAIN_FACTS, real_zoo_hash

    data = tmp_path / "data"
    conv = data / "weights" / "gguf"
    conv.mkdir(parents=True)
    (conv / real_zoo.base_a.dir.name).symlink_to(real_zoo.base_a.dir)  # the conversion, shared
    from hub.weights.gguf import file_sha256

    root = data / "testbed" / f"real-{real_zoo_hash(RECIPE, 0, file_sha256(smollm2_gguf()))}" / "adapters"
    done, stale = REAL_TASKS
    for task, steps in ((done, RECIPE.steps_for(done)), (stale, 4)):
        shutil.copytree(real_zoo.adapter(task).dir, root / task)
        (root / task / TRAIN_FACTS).write_text(json.dumps({"steps": steps, "final_loss": 0.1, "seconds": 1.0}))
    shutil.copytree(real_zoo.adapter(done).dir, root / ".title_case.partial-1")  # a staging folder is ignored
    zoo = finished_zoo(data)
    assert zoo.tasks == (done,)
    assert zoo.adapters[0].name == f"smol/{done}" and zoo.adapters[0].dir == root / done
    assert zoo.base_a.dir.resolve() == real_zoo.base_a.dir.resolve()
