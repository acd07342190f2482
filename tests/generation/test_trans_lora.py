"""Trans-LoRA on a tiny world: a transfer raises the target base's accuracy far above its base."""

from __future__ import annotations

import random

import pytest
import torch

from generation.trans_lora import PHASES, TransConfig, _to_adapter, transfer
from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from tests.generation import transfer_world as w


@pytest.fixture(scope="module")
def world():
    cdc = w.codec()
    s, t = w.bases()
    pm = w.train_source(s, cdc, steps=200)
    source = _to_adapter(pm, w.S_ID)
    rng = random.Random(5)
    seeds = [w.task_prompt(rng)[0] for _ in range(5)]
    real = [w.task_prompt(rng)[0] for _ in range(64)]  # D, still there when the discriminator is trained
    return cdc, s, t, pm, source, seeds, real


def test_transfer_raises_target_accuracy(world):
    cdc, s, t, pm, source, seeds, real = world
    src_acc, t_base = w.accuracy(pm, cdc), w.accuracy(t, cdc)
    assert src_acc >= 0.75 and t_base <= 0.2  # the world is what the test needs
    seen: dict[str, float] = {}
    cfg = TransConfig(n_accept=128, max_candidates=512, disc_steps=60, student_steps=200, student_lr=3e-3,
                      student_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    res = transfer(s, source, t, seeds, source_id=w.S_ID, target_id=w.T_ID, codec_s=cdc, codec_t=cdc, cfg=cfg,
                   sampler=w.TemplateSampler(0.5), progress=lambda ph, f, _m: seen.__setitem__(ph, f), real=real)
    assert set(seen) == set(PHASES) and all(seen[p] == pytest.approx(1.0) for p in PHASES)
    assert set(res.report["seconds"]) == set(PHASES)
    assert res.adapter.base_model == w.T_ID and res.adapter.provenance.method == "trans_lora"
    from generation.decode import merged

    student_acc = w.accuracy(merged(t, res.adapter, w.T_ID), cdc)
    assert student_acc >= 0.55 and student_acc >= t_base + 0.45, (student_acc, t_base, src_acc, res.report)
    assert student_acc >= src_acc - 0.2
    # the kept synthetic prompts are at least as often well-formed as the sampler's (q = 0.5)
    good = sum(p.split(" | ")[0].isalnum() for p, _ in res.synthetic) / len(res.synthetic)
    assert good >= 0.5, (good, res.report)


def test_bad_input(world):
    cdc, s, t, _pm, source, seeds, _real = world
    kw = dict(codec_s=cdc, codec_t=cdc, cfg=TransConfig(n_accept=4))
    with pytest.raises(InvalidInputError, match="sample examples"):
        transfer(s, source, t, [], source_id=w.S_ID, target_id=w.T_ID, **kw)
    with pytest.raises(IncompatibleAdaptersError, match="not the source base"):
        transfer(s, source, t, seeds, source_id="other/base", target_id=w.T_ID, **kw)
    with pytest.raises(IncompatibleAdaptersError, match="does not exist|is \\("):
        transfer(t, source.with_spec(base_model=w.T_ID), s, seeds, source_id=w.T_ID, target_id=w.S_ID, **kw)
    with pytest.raises(InvalidInputError, match="threshold"):
        TransConfig(threshold=2.0)
    assert torch.get_num_threads() == 1
