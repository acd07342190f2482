"""The build's parts: the pre-training corpus, per-task steps, the job scheduler (one or two processes)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from hub.core.errors import InvalidInputError
from testbed.jobs import Job, default_workers, run_jobs
from testbed.models import LoraRecipe, size_recipe
from testbed.tasks import TASKS, get_task, tasks_for
from testbed.train import PRETRAIN_ALPHABET, answer_loss, encode_batch, pretrain_pairs, swap_maps
from testbed.zoo import build_zoo, with_steps


@pytest.mark.parametrize("size", ["ci", "full"])
def test_pretraining_corpus_covers_every_output_byte_and_the_zoos_prompt_lengths(size):
    """A LoRA cannot teach the frozen, tied embeddings a new byte, nor the base a longer prompt."""
    rec = size_recipe(size).base_a
    rng = random.Random(0)
    pairs = [p for _ in range(125) for p in pretrain_pairs(rec, rng, rec.batch)]
    seen = {c for _, y in pairs for c in y}
    for t in tasks_for(size):
        outs = {c for e in t.examples(200, 0, "all") for c in e.output}
        assert outs <= seen, (t.name, outs - seen)
    assert set(PRETRAIN_ALPHABET) <= seen
    width = lambda ps: sorted(encode_batch([p]).get("input_ids").shape[1] for p in ps)  # noqa: E731
    zoo_widths = width([(e.prompt, e.output) for t in tasks_for(size) for e in t.examples(20, 0, "all")])
    pre_widths = width(pairs[::5])
    assert pre_widths[int(0.95 * len(pre_widths))] >= zoo_widths[int(0.9 * len(zoo_widths))]
    # nor a longer answer: past the longest it pre-trained on, the base does not stop (repeat_4 of 6 chars,
    # 24 long, ended with an extra character 10 times in 24)
    longest = max(len(y) for _, y in pairs)
    assert all(len(e.output) <= longest for t in tasks_for(size) for e in t.examples(200, 0, "all"))


def test_swap_ops_are_fixed_involutions_that_no_zoo_task_matches():
    maps = swap_maps(8)
    assert maps == swap_maps(8) and len({tuple(sorted(m.items())) for m in maps}) == 8
    for m in maps:
        assert all(m[m[c]] == c and m[c] != c for c in m)
    x = "".join(PRETRAIN_ALPHABET)
    for t in TASKS.values():
        assert all(t.fn(x) != "".join(m.get(c, c) for c in x) for m in maps), t.name


def test_lora_steps_per_task_and_bad_values():
    rec = LoraRecipe(steps=80, positional_steps=300, task_steps=(("digit_mask", 120),))
    assert rec.steps_for(get_task("digit_mask")) == 120
    assert rec.steps_for(get_task("upper")) == 80
    assert rec.steps_for(get_task("reverse")) == 300
    with pytest.raises(InvalidInputError, match="task_steps"):
        LoraRecipe(task_steps=(("upper", 0),))
    with pytest.raises(InvalidInputError, match="steps"):
        LoraRecipe(steps=0)
    assert size_recipe("ci").lora.steps_for(get_task("upper")) >= 1


def test_worker_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOOM_TESTBED_WORKERS", "3")
    assert default_workers() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("LOOM_TESTBED_WORKERS", bad)
        with pytest.raises(InvalidInputError, match="LOOM_TESTBED_WORKERS"):
            default_workers()
    monkeypatch.delenv("LOOM_TESTBED_WORKERS")
    assert 1 <= default_workers() <= 4


def _count(n: int, tag: str, progress=None) -> str:
    for i in range(n):
        if progress:
            progress(i + 1, n)
    return tag


def test_scheduler_respects_dependencies_and_reports_progress_per_phase():
    jobs = [
        Job("a", "first", 3, _count, (3, "a")),
        Job("b", "second", 2, _count, (2, "b"), after=("a",)),
        Job("c", "second", 4, _count, (4, "c"), after=("a",)),
    ]
    seen: list[tuple[str, int, int]] = []
    results, timings = run_jobs(jobs, 1, lambda *a: seen.append(a))
    assert results == {"a": "a", "b": "b", "c": "c"} and set(timings) == {"first", "second"}
    assert seen[-1] == ("second", 6, 6) and ("first", 3, 3) in seen
    assert all(d <= n for _, d, n in seen)
    with pytest.raises(InvalidInputError):
        run_jobs(jobs, 0)
    with pytest.raises(InvalidInputError):
        run_jobs([jobs[0], jobs[0]], 1)


def test_two_worker_processes_build_the_same_bytes_as_one(tmp_path):
    rec = with_steps(size_recipe("ci"), base_steps=8, lora_steps=4)
    # base A pre-trains on two threads (holding both workers): still the same bytes either way
    rec = replace(rec, base_a=replace(rec.base_a, threads=2), lora=replace(rec.lora, task_steps=(("upper", 6),)))
    kw = dict(seed=1, tasks=["upper", "lower"], recipe=rec)
    phases: set[str] = set()
    one = build_zoo("ci", tmp_path / "one", workers=1, **kw)
    two = build_zoo("ci", tmp_path / "two", workers=2, progress=lambda p, d, n: phases.add(p), **kw)
    assert one.recipe_hash == two.recipe_hash
    assert [(a.task, a.base_id, a.sha256) for a in one.adapters] == [
        (a.task, a.base_id, a.sha256) for a in two.adapters
    ]
    for b1, b2 in zip(one.bases, two.bases, strict=True):
        assert (b1.dir / "model.safetensors").read_bytes() == (b2.dir / "model.safetensors").read_bytes()
    assert phases == {
        "pre-train loom-testbed/llama-ci",
        "pre-train loom-testbed/qwen2-ci",
        "train LoRAs on loom-testbed/llama-ci",
        "train LoRAs on loom-testbed/qwen2-ci",
    }
    assert two.timings["build wall"] > 0


def test_answer_loss_equals_the_models_own_loss():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(size_recipe("ci").base_b.config())
    batch = encode_batch([("hello | shout this", "HELLO"), ("a1 | caesar shift by 1", "b1"), ("x | y", "xyzxyz")])
    torch.testing.assert_close(answer_loss(model, batch), model(**batch).loss)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False))
    torch.testing.assert_close(answer_loss(peft, batch), peft(**batch).loss)


def test_simulated_schedule_matches_hand_computed_walls():
    from testbed.jobs import simulate

    jobs = [
        Job("base:A", "p", 1, _count, (1, "a")),
        Job("base:B", "p", 1, _count, (1, "b")),
        *(Job(f"lora:A:{i}", "l", 1, _count, (1, "x"), after=("base:A",)) for i in range(3)),
        Job("lora:B:0", "l", 1, _count, (1, "y"), after=("base:B",)),
    ]
    secs = {"base:A": 10, "base:B": 4, "lora:A:0": 3, "lora:A:1": 3, "lora:A:2": 3, "lora:B:0": 2}
    assert simulate(jobs, secs, 1) == 25
    # worker 1: A (0-10), A:0 (10-13), A:2 (13-16); worker 2: B (0-4), B:0 (4-6), waits, A:1 (10-13)
    assert simulate(jobs, secs, 2) == 16
    with pytest.raises(InvalidInputError):
        simulate([Job("x", "p", 1, _count, (1, "x"), after=("nope",))], {"x": 1}, 1)
    # base A on two threads (6 s on 2 cores) holds both workers: B waits; on one worker it takes 12 s
    two = [replace(jobs[0], threads=2), *jobs[1:]]
    secs2 = {**secs, "base:A": 6}
    # A (0-6) on both; then B (6-10), A:2 (10-13) | A:0 (6-9), A:1 (9-12), B:0 (12-14)
    assert simulate(two, secs2, 2) == 14
    assert simulate(two, secs2, 1) == 12 + 4 + 9 + 2


def test_two_thread_job_holds_both_workers_and_one_worker_jobs_fill_in(tmp_path):
    jobs = [
        Job("wide", "p", 1, _count, (1, "w"), threads=2),
        Job("n1", "p", 1, _count, (1, "1")),
        Job("n2", "p", 1, _count, (1, "2"), after=("wide",)),
    ]
    from testbed.jobs import _startable

    # nothing running: the wide job takes both workers, the one-worker job must wait
    assert [j.key for j in _startable(jobs, lambda a: False, 2, 2)] == ["wide"]
    # one worker free: the wide job does not fit, the one-worker job fills in
    assert [j.key for j in _startable(jobs, lambda a: False, 1, 2)] == ["n1"]
    # a single worker build runs it anyway (its threads share the one core)
    assert [j.key for j in _startable(jobs, lambda a: False, 1, 1)] == ["wide"]
    results, _ = run_jobs(jobs, 2)
    assert results == {"wide": "w", "n1": "1", "n2": "2"}


def test_a_lora_recipe_change_reuses_the_pretrained_base(tmp_path):
    """Bases depend only on their recipe, the seed and the trainer: a zoo whose LoRA recipe changed copies them
    from a cached zoo instead of pre-training again (the same bytes); a changed base recipe trains anew."""
    import json

    kw = dict(seed=3, tasks=["lower"], transfer=False, workers=1)
    z1 = build_zoo("ci", tmp_path, recipe=with_steps(size_recipe("ci"), base_steps=8, lora_steps=4), **kw)
    z2 = build_zoo("ci", tmp_path, recipe=with_steps(size_recipe("ci"), base_steps=8, lora_steps=5), **kw)
    z3 = build_zoo("ci", tmp_path, recipe=with_steps(size_recipe("ci"), base_steps=9, lora_steps=4), **kw)
    assert len({z1.root, z2.root, z3.root}) == 3

    def manifest_base(z):
        return json.loads((z.root / "manifest.json").read_text())["bases"][0]

    weights = [(z.base_a.dir / "model.safetensors").read_bytes() for z in (z1, z2, z3)]
    assert manifest_base(z1)["reused_from"] is None
    assert manifest_base(z2)["reused_from"] == str(z1.base_a.dir) and weights[1] == weights[0]
    assert manifest_base(z3)["reused_from"] is None and weights[2] != weights[0]
