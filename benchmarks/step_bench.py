"""One decode step of the continuous batch, in one process, on the serving bench's tiny base (hidden 256, 4
layers; ``--shape smollm2``: SmolLM2-135M's shapes, hidden 576, 30 layers, random weights), 12 rank-8 adapters on
every linear, one adapter per row:

1. the KV cache: ``routing.continuous`` prefills into :class:`~routing.continuous.GrowingLayer` caches (keys and
   values are views of buffers with spare columns, a step writes its column in place) vs transformers'
   ``DynamicLayer`` (concatenates the whole cache at every step): ms per step at several cached lengths, the
   ratio, and whether the greedy tokens are the same;
2. the adapter rows: CPU ms per step of the bare base (no adapter), of adapter rows unchanged since the last
   step (gathered weights reused), of one row's adapter changed (a join into a hole: that row's weights are
   gathered into the cached copies in place) and of every row gathered again, as ratios to the bare base;
3. churn: one row leaves and one joins (its prompt prefilled) at every step, with leaving rows kept as holes
   that the joiner fills in place vs compacted at once (an index select of the cache and a regather), on the
   bare base and with adapter rows.

    python benchmarks/step_bench.py --rows 16 --prompts 32 128 512 --steps 100
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--prompts", type=int, nargs="+", default=[32, 128, 512], help="prompt lengths (tokens)")
    ap.add_argument("--steps", type=int, default=100, help="decode steps timed per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shape", choices=["tiny", "smollm2"], default="tiny",
                    help="the serving bench's tiny base, or SmolLM2-135M's shape (random weights, 49152 vocabulary)")
    args = ap.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import routing.continuous as rc
    from routing.batching import MixedAdapterModel
    from tests.helpers import make_peft_adapter

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    longest = max(args.prompts) + args.steps + 8
    if args.shape == "tiny":
        cfg = LlamaConfig(vocab_size=259, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=longest,
                          bos_token_id=257, eos_token_id=258, pad_token_id=256)
    else:  # SmolLM2-135M: the same layer shapes, random weights (the step's cost does not depend on them)
        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                          num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=max(longest, 2048),
                          bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        folders = [make_peft_adapter(model, Path(tmp) / f"a{i}", seed=i, r=8, alpha=8, base_id="unknown",
                                     targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj")) for i in range(12)]
        mixed = MixedAdapterModel(model)
        for i, folder in enumerate(folders):
            mixed.load_adapter(f"a{i}", folder)
    growing = rc._growing_cache

    def run(in_place: bool, plen: int) -> tuple[float, list[list[int]]]:
        rc._growing_cache = growing if in_place else (lambda m: None)  # None: the model's own DynamicCache
        rng = random.Random(plen)
        rows = [rc.Row([rng.randrange(0, 250) for _ in range(plen)], {f"a{rng.randrange(12)}": 1.0},
                       args.steps + 2) for _ in range(args.rows)]
        batch = rc.ContinuousBatch(mixed, 256)
        batch.add(rows)
        batch.step()
        t = time.perf_counter()
        for _ in range(args.steps):
            batch.step()
        return (time.perf_counter() - t) / args.steps * 1000, [r.tokens for r in rows]

    print(f"{args.rows} rows, {args.steps} decode steps per run, best of {args.repeats}, torch threads "
          f"{args.threads}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'prompt':>7s} {'DynamicLayer':>13s} {'in place':>9s} {'ratio':>6s}  same tokens")
    for plen in args.prompts:
        times: dict[bool, list[float]] = {False: [], True: []}
        toks = {}
        for _ in range(args.repeats):
            for in_place in (False, True):
                ms, toks[in_place] = run(in_place, plen)
                times[in_place].append(ms)
        old, new = min(times[False]), min(times[True])
        print(f"{plen:7d} {old:10.2f} ms {new:6.2f} ms {old / new:5.2f}x  {toks[False] == toks[True]}")
    rc._growing_cache = growing

    def rows_cost(mode: str) -> float:
        rng = random.Random(1)
        rows = [rc.Row([rng.randrange(0, 250) for _ in range(32)],
                       {} if mode == "bare" else {f"a{rng.randrange(12)}": 1.0}, args.steps + 2)
                for _ in range(args.rows)]
        batch = rc.ContinuousBatch(mixed, 256)
        batch.add(rows)
        batch.step()
        t = time.process_time()
        for i in range(args.steps):
            if mode == "one changed":  # as after a join into a hole: one row's adapter differs
                rows[i % len(rows)].mixture = {f"a{rng.randrange(12)}": 1.0}
            elif mode == "all regathered":  # no previous weights to compare with: every row gathered again
                mixed.context.rows.pop("*", None)
                batch.runner._step = None
            batch.step()
        return (time.process_time() - t) / args.steps * 1000

    modes = ("bare", "unchanged", "one changed", "all regathered")
    cost = {m: min(rows_cost(m) for _ in range(args.repeats)) for m in modes}
    print("\nCPU ms per step, 32-token prompts: " + ", ".join(f"{m} {v:.2f}" for m, v in cost.items())
          + "; adapter rows / bare base (throughput): "
          + ", ".join(f"{m} {cost['bare'] / cost[m]:.2f}x" for m in modes[1:]))

    def churn_cost(adapters: bool, compact_at: float) -> float:
        """One row leaves and one joins (prompt prefilled) at every step; CPU ms per step, prefills included."""
        rng = random.Random(2)

        def row(n: int) -> rc.Row:
            return rc.Row([rng.randrange(0, 250) for _ in range(32)],
                          {f"a{rng.randrange(12)}": 1.0} if adapters else {}, n)

        batch = rc.ContinuousBatch(mixed, 256)
        batch.compact_at = compact_at
        batch.add([row(i + 2) for i in range(args.rows)])  # row i leaves after step i + 1
        t = time.process_time()
        for _ in range(args.steps):
            done = batch.step()
            batch.add([row(args.rows + 1) for _ in done])
        return (time.process_time() - t) / args.steps * 1000

    churn = {(ad, c): min(churn_cost(ad, c) for _ in range(args.repeats)) for ad in (False, True) for c in (0.0, 0.25)}
    print(f"\nCPU ms per step when a row leaves and one joins at every step ({args.rows} rows, 32-token prompts):")
    print(f"{'':10s} {'compact at once':>16s} {'holes':>8s} {'ratio':>6s}")
    for ad in (False, True):
        old, new = churn[(ad, 0.0)], churn[(ad, 0.25)]
        print(f"{'adapters' if ad else 'bare':10s} {old:13.2f} ms {new:5.2f} ms {old / new:5.2f}x")
    print(f"adapter rows / bare base under churn (throughput): compact at once "
          f"{churn[(False, 0.0)] / churn[(True, 0.0)]:.2f}x, holes {churn[(False, 0.25)] / churn[(True, 0.25)]:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
