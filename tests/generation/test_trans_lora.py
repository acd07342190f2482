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
    cfg = TransConfig(n_accept=128, max_candidates=512, student_steps=200, student_lr=3e-3,
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


def test_rewrite_sampler_keeps_the_format_and_is_seeded(world):
    """Candidates rewritten by the target base: printable one-line prompts (rarely a blank input, which the
    transfer drops as malformed), up to length_jitter tokens longer than the longest seed input (and some
    are: a student must see inputs longer than 5 seeds show), the seed's instruction kept when
    instruction_rates = (0, 0), the same under the same seed."""
    from generation.trans_lora import answer_confidence
    from generation.trans_samplers import RewriteSampler, well_formed

    cdc, s, t, pm, _source, seeds, _real = world
    smp = RewriteSampler(t, cdc, " | ", 1.0, (0.3, 1.0), 2.0, 4)
    a, b = smp(seeds, 64, random.Random(3)), smp(seeds, 64, random.Random(3))
    assert a == b and a != smp(seeds, 64, random.Random(4))
    longest = max(len(x.split(" | ")[0]) for x in seeds)
    bad = [c for c in a if not well_formed(c, " | ")]
    assert len(bad) <= 4 and all(not c.split(" | ")[0].strip() for c in bad), bad  # only blank inputs fail
    assert all(c.endswith(" | " + w.CUE) and 1 <= len(c.split(" | ")[0]) <= longest + 4 for c in a), a
    assert any(len(c.split(" | ")[0]) > longest for c in a), a
    assert all(c.isprintable() and "\ufffd" not in c for c in a), a
    assert len(set(a)) > 32  # the model writes new inputs, not copies of the 5 seeds
    cues = RewriteSampler(t, cdc, " | ", 1.0, (0.3, 1.0), 2.0, 0, (1.0, 1.0))(seeds, 32, random.Random(3))
    assert sum(not c.endswith(w.CUE) for c in cues) > 16  # instruction tokens rewritten too
    # teacher confidence: the teacher's own greedy answers score higher than wrong answers
    prompts = [w.task_prompt(random.Random(i))[0] for i in range(16)]
    from generation.decode import decode

    good = decode(pm, cdc, [cdc.prompt(p) for p in prompts], max_new_tokens=1)
    conf_good = answer_confidence(pm, cdc, list(zip(prompts, good, strict=True)))
    conf_bad = answer_confidence(pm, cdc, [(p, "#@" + g) for p, g in zip(prompts, good, strict=True)])
    assert conf_good.shape == (16,) and bool((conf_good >= conf_bad).all()) and conf_good.mean() > conf_bad.mean()


def test_samplers_keep_an_instruction_that_comes_first(world):
    """cue_first (the real zoo's "Convert to snake_case: Big Red Apple"): the instruction is kept in front, the
    input after the separator is rewritten (or continued), and well_formed checks that input."""
    from generation.trans_samplers import PrefixSampler, RewriteSampler, split_seed, well_formed

    cdc, _s, t, _pm, _source, seeds, _real = world
    flipped = [f"{w.CUE} | {x.split(' | ')[0]}" for x in seeds]  # "<cue> | <input>"
    inputs = {split_seed(f, " | ", cue_first=True)[0] for f in flipped}
    assert inputs == {x.split(" | ")[0] for x in seeds}
    for smp in (RewriteSampler(t, cdc, " | ", 1.0, (0.3, 1.0), 2.0, 4, cue_first=True),
                PrefixSampler(t, cdc, " | ", 1.0, cue_first=True)):
        got = smp(flipped, 32, random.Random(3))
        assert all(c.startswith(w.CUE + " | ") for c in got), got
        assert len({split_seed(c, " | ", True)[0] for c in got} - inputs) > 8  # new inputs, written by the model
    assert not well_formed(w.CUE + " |  ", " | ", True) and well_formed(w.CUE + " | ab", " | ", True)
    assert well_formed(" | ab", " | ") is False and well_formed(" | ab", " | ", True)  # the input is after the cue


def test_config_refuses_bad_sampler_params():
    for bad in ({"sampler": "llm"}, {"rewrite_rates": (0.8, 0.2)}, {"instruction_rates": [0.1]},
                {"repetition_penalty": 0.5}, {"length_jitter": -1}, {"label_min_p": 1.0}, {"disc_synthetic": 0}):
        with pytest.raises(InvalidInputError):
            TransConfig(**bad)
    assert TransConfig(rewrite_rates=[0.2, 0.4]).rewrite_rates == [0.2, 0.4]
