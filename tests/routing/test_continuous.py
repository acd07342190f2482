"""Continuous batching (routing.continuous) against transformers + PEFT, and per-row sampling."""

from __future__ import annotations

import pytest
import torch

from routing.batching import MixedAdapterModel
from routing.continuous import ContinuousBatch, Row
from routing.sampling import SamplingParams, sample_rows, top_p_filter
from tests.helpers import byte_llama, make_peft_adapter

EOS = frozenset({258})


def sharp_llama():
    """The byte Llama with q/k scaled up: sharp attention makes its tokens depend on positions and masks
    (the random tiny model's near-uniform attention would hide a wrong position id)."""
    model = byte_llama()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.mul_(4.0)
    return model


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("cb")
    model = sharp_llama()
    return {name: make_peft_adapter(model, root / name, seed=30 + i, r=4, targets=("q_proj", "v_proj", "down_proj"),
                                    base_id="unknown")
            for i, name in enumerate(["a", "b"])}


@pytest.fixture(scope="module")
def mixed(adapters):
    m = MixedAdapterModel(sharp_llama())
    for name, folder in adapters.items():
        m.load_adapter(name, folder)
    return m


def ids(text: str) -> list[int]:
    return [257, *text.encode()]


def peft_greedy(adapter_dir, prompt: list[int], n: int) -> list[int]:
    from peft import PeftModel

    model = sharp_llama()
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    x = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                             eos_token_id=258, pad_token_id=256)
    new = out[0, len(prompt):].tolist()
    return new[: new.index(258)] if 258 in new else new


def run(batch: ContinuousBatch, schedule: dict[int, list[Row]]) -> int:
    """Add ``schedule[step]`` before each step until every row finished; returns the steps run."""
    step = 0
    while batch.rows or any(k >= step for k in schedule):
        batch.add(schedule.get(step, []))
        batch.step()
        step += 1
    return step


def test_rows_join_mid_generation_and_match_peft(mixed, adapters):
    """Rows with different adapters, lengths and arrival steps give PEFT's greedy tokens, each alone."""
    specs = [("a", "the quick brown fox", 20, 0), (None, "hi", 14, 0), ("b", "a somewhat longer prompt here", 9, 3),
             ("a", "joins late", 12, 7)]
    rows = [Row(ids(p), {ad: 1.0} if ad else {}, n, stop_ids=EOS) for ad, p, n, _ in specs]
    batch = ContinuousBatch(mixed, 256)
    sizes = []
    step = 0
    while batch.rows or step <= 7:
        batch.add([r for r, s in zip(rows, specs, strict=True) if s[3] == step])
        sizes.append(len(batch.rows))
        batch.step()
        step += 1
    assert max(sizes) >= 3  # rows of different adapters shared forwards
    for r, (ad, p, n, _) in zip(rows, specs, strict=True):
        assert r.tokens == peft_greedy(adapters[ad] if ad else None, ids(p), n), (ad, p)
        assert r.finish_reason in ("length", "stop")
    assert batch.cache is None and batch.mask is None  # everything left


def test_cache_is_trimmed_when_the_long_row_leaves(mixed):
    batch = ContinuousBatch(mixed, 256)
    long = Row(ids("x" * 40), {"a": 1.0}, 2, stop_ids=EOS)
    short = Row(ids("y"), {}, 30, stop_ids=EOS)
    batch.add([long, short])
    assert batch.mask is not None and batch.mask.shape[1] == 41
    while long.finish_reason is None:
        batch.step()
    batch.step()
    assert batch.rows == [short]
    assert batch.mask.shape[1] == 2 + len(short.tokens) - 1  # only the short row's real tokens are kept
    k = batch.cache.layers[0].keys
    assert k.shape[0] == 1 and k.shape[2] == batch.mask.shape[1]


def test_a_row_that_leaves_is_a_hole_that_the_next_joiner_fills_in_place(mixed, adapters):
    """In a batch of five, a finished row keeps its position (no copy of the cache, no compaction); a joiner
    takes it by writing its prompt cache into that row, a longer joiner widens the cache first; every row
    still equals PEFT's greedy tokens alone. A quarter of the batch empty is compacted at the next step."""
    specs = [("a", "first row", 3), ("b", "second", 24), (None, "third one", 24), ("a", "fourth", 24),
             ("b", "fifth", 24)]
    rows = [Row(ids(p), {ad: 1.0} if ad else {}, n) for ad, p, n in specs]
    batch = ContinuousBatch(mixed, 256)
    batch.add(rows)
    while rows[0].finish_reason is None:
        batch.step()
    layer = batch.cache.layers[0]
    assert batch.holes == [0] and len(batch) == 4 and batch.compactions == 0 and rows[0] not in batch.rows
    batch.step()  # the hole rides along: the cache is written in place
    ptr, width = layer.keys.data_ptr(), batch.mask.shape[1]
    short = Row(ids("join"), {"b": 1.0}, 10)
    batch.add([short])
    assert batch.slots[0] is short and batch.holes == [] and layer.keys.data_ptr() == ptr
    assert batch.mask.shape[1] == width and batch.mask[0].sum() == len(short.prompt_ids)
    rows[3].cancel()
    batch.step()  # the cancelled row leaves before the forward: a hole, one of five
    assert batch.holes == [3] and batch.compactions == 0
    long = Row(ids("a much longer prompt than anything cached so far, to widen the cache" * 2), {"a": 1.0}, 6)
    batch.add([long])
    assert batch.slots[3] is long and batch.mask.shape[1] == len(long.prompt_ids)
    while len(batch) > 3:
        batch.step()
    assert len(batch.holes) >= 2 and batch.compactions == 0
    batch.step()  # two of five (or more) empty: compacted before the forward
    assert batch.compactions == 1 and batch.holes == [] and len(batch.slots) == len(batch)
    run(batch, {})
    for r in [*rows[:3], rows[4], short, long]:
        ad = next(iter(r.mixture), None)
        assert r.tokens == peft_greedy(adapters[ad] if ad else None, r.prompt_ids, r.max_new_tokens)
    assert rows[3].finish_reason == "cancelled" and batch.cache is None
    every = [*rows, short, long]  # no stop ids: each token but the last was the input of one decode step
    assert batch.tokens_useful == sum(len(r.prompt_ids) + len(r.tokens) - 1 for r in every)
    assert batch.tokens_computed > batch.tokens_useful  # holes and the joiners' left padding


def test_joiners_of_very_different_prompt_lengths_prefill_apart(mixed, adapters):
    """On the CPU, joiners share a prefill only when their prompts are within ``prefill_pad`` tokens of the
    longest of their group; with ``prefill_pad=None`` all share one. The tokens are PEFT's either way."""
    def joiners():
        return [Row(ids("x" * 40), {"a": 1.0}, 4), Row(ids("tiny"), {}, 4), Row(ids("y" * 36), {"b": 1.0}, 4)]

    batch = ContinuousBatch(mixed, 256)
    assert batch.prefill_pad == 16
    first = joiners()
    heads: list[tuple[int, ...]] = []  # the prefill computes the logits of each row's last position only
    hook = mixed.model.lm_head.register_forward_hook(lambda mod, args, out: heads.append(tuple(args[0].shape[:2])))
    try:
        batch.add(first)
    finally:
        hook.remove()
    assert heads == [(2, 1), (1, 1)]
    assert batch.forwards == 2 and batch.tokens_computed == 41 * 2 + 5  # 37 tokens padded to 41, "tiny" alone
    together = ContinuousBatch(mixed, 256)
    together.prefill_pad = None
    second = joiners()
    together.add(second)
    assert together.forwards == 1 and together.tokens_computed == 41 * 3
    run(batch, {})
    run(together, {})
    for r, q in zip(first, second, strict=True):
        ad = next(iter(r.mixture), None)
        assert r.tokens == q.tokens == peft_greedy(adapters[ad] if ad else None, r.prompt_ids, 4)


def test_a_decode_step_writes_the_cache_in_place(mixed):
    """Between joins and leaves, a step appends its column into the layer's buffer: no copy of the cache."""
    batch = ContinuousBatch(mixed, 256)
    rows = [Row(ids("in place"), {"a": 1.0}, 20), Row(ids("two rows"), {}, 20)]
    batch.add(rows)
    batch.step()  # the first append after the prefill may move the cache into a buffer with spare columns
    layer = batch.cache.layers[0]
    ptr, width = layer.keys.data_ptr(), layer.keys.shape[2]
    for i in range(1, 6):
        batch.step()
        assert layer.keys.data_ptr() == ptr and layer.values.shape[2] == width + i
        assert batch.cache.layers[0] is layer


def test_two_temperatures_in_one_pass_and_seeded_rows_reproducible(mixed, adapters):
    prompt = ids("sampling test")
    alone = Row(prompt, {"b": 1.0}, 16, SamplingParams(0.9, 0.95, seed=7), EOS)
    run(ContinuousBatch(mixed, 256), {0: [alone]})
    greedy = Row(prompt, {"a": 1.0}, 16, SamplingParams(0.0), EOS)
    seeded = Row(prompt, {"b": 1.0}, 16, SamplingParams(0.9, 0.95, seed=7), EOS)
    other = Row(ids("noise"), {}, 10, SamplingParams(1.5, 1.0, seed=1), EOS)
    batch = ContinuousBatch(mixed, 256)
    batch.add([other])
    batch.step()
    batch.add([greedy, seeded])
    assert len(batch.rows) == 3  # greedy and two sampled temperatures in one forward
    run(batch, {})
    assert seeded.tokens == alone.tokens  # the seed alone decides a sampled row's tokens
    assert greedy.tokens == peft_greedy(adapters["a"], prompt, 16)
    different = Row(prompt, {"b": 1.0}, 16, SamplingParams(0.9, 0.95, seed=8), EOS)
    run(ContinuousBatch(mixed, 256), {0: [different]})
    assert different.tokens != alone.tokens


def test_on_token_false_and_cancel_end_rows_at_the_next_step(mixed):
    seen: list[int] = []

    def upto3(t: int) -> bool:
        seen.append(t)
        return len(seen) < 3  # e.g. a stop string completed by the third token

    stopped = Row(ids("stop me"), {}, 30, stop_ids=EOS, on_token=upto3)
    victim = Row(ids("cancel me"), {"a": 1.0}, 30, stop_ids=EOS)
    keeper = Row(ids("keep me"), {"b": 1.0}, 30, stop_ids=frozenset())
    batch = ContinuousBatch(mixed, 256)
    batch.add([stopped, victim, keeper])
    batch.step()
    victim.cancel()
    before = len(victim.tokens)
    forwards = batch.forwards
    widths: list[int] = []
    hook = mixed.model.register_forward_pre_hook(lambda mod, a, kw: widths.append(kw["input_ids"].shape[0]),
                                                 with_kwargs=True)
    try:
        gone = batch.step()
    finally:
        hook.remove()
    assert victim in gone and victim.finish_reason == "cancelled" and len(victim.tokens) == before
    assert batch.forwards == forwards + 1 and widths == [2]  # the cancelled row was not computed
    assert victim not in batch.rows
    batch.step()
    assert stopped.finish_reason == "stop" and stopped.tokens == seen and len(seen) == 3
    assert batch.rows == [keeper]
    run(batch, {})
    assert keeper.finish_reason == "length" and len(keeper.tokens) == 30


def test_per_row_sampling_rules():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    # nucleus: the smallest set reaching top_p (token 1 holds ~64%, tokens 1 and 3 ~88%)
    kept = torch.isfinite(top_p_filter(logits[0], 0.8)).nonzero().flatten().tolist()
    assert kept == [1, 3]
    assert torch.isfinite(top_p_filter(logits[0], 0.01)).sum() == 1
    params = [SamplingParams(0.0), SamplingParams(1.0, 0.01, seed=3)]
    gens = [p.generator() for p in params]
    assert sample_rows(logits, params, gens) == [1, 0]  # greedy argmax; top_p tiny = the most likely
    draws = [sample_rows(logits[:1], [SamplingParams(2.0, seed=5)], [SamplingParams(2.0, seed=5).generator()])
             for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(1.0, 0.0)
