"""Throughput of routed / mixed-adapter inference vs the base model and PEFT, in one run.

Prints, for a testbed-sized and a larger random-weight Llama (built in code, no downloads), prefill
and decode tokens/s of:
  (a)  the base model
  (b)  one adapter for the whole batch, unmerged (Loom fold path) and merged into the weights
  (c)  N (default 8) different adapters in one batch (Loom mixed batching, BGMV-style)
  (d)  MeteoRA top-2 of 16 experts (each token backend)
next to PEFT's single adapter and PEFT's ``adapter_names`` mixed batch, with ratios; and the cold
load time of one adapter from disk (``load_peft`` + copy into the slot bank).

    python benchmarks/routing_bench.py                 # both sizes
    python benchmarks/routing_bench.py --sizes small --repeats 2
Uses CUDA when available.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

SIZES = {
    "small": dict(vocab_size=259, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=4),
    "large": dict(vocab_size=8192, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                  num_attention_heads=16, num_key_value_heads=8),
}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_model(size: str, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(max_position_embeddings=512, **SIZES[size])
    cfg.name_or_path = f"bench/{size}-llama"
    return LlamaForCausalLM(cfg).eval().to(device)


def make_adapters(model, n: int, r: int, folder: Path) -> list[Path]:
    from hub.core.adapter import LoraAdapter, LoraLayer, LoraSpec
    from hub.core.peft_io import save_peft
    from routing.model import linear_sites

    dirs = []
    for i in range(n):
        g = torch.Generator().manual_seed(100 + i)
        layers = {}
        for site in linear_sites(model, TARGETS):
            lin = model.get_submodule(site)
            layers[site] = LoraLayer(torch.randn(r, lin.in_features, generator=g) * 0.02,
                                     torch.randn(lin.out_features, r, generator=g) * 0.02, alpha=2.0 * r)
        ad = LoraAdapter(layers, LoraSpec(base_model=model.config.name_or_path))
        dirs.append(save_peft(ad, folder / f"a{i}"))
    return dirs


def decode_bytes(model, n_adapters: int, rank: int, batch: int, seq: int) -> dict[str, float]:
    """Bytes one decode step must read (fp32): every linear weight incl. ``lm_head``, the KV cache of
    ``batch`` rows of ``seq`` tokens, and ``n_adapters`` distinct rank-``rank`` LoRAs on ``TARGETS``.

    A decode step of a small batch is bound by reading weights (one token per row: every base weight is
    used by ``batch`` tokens, each row's own adapter by one), so ``base / (base + adapters)`` estimates
    the best mixed-batch decode throughput against the base model, whatever the kernels (roofline;
    fixed per-step costs such as attention and Python bring a measured ratio closer to 1).
    """
    from torch import nn

    from routing.model import linear_sites

    el = next(model.parameters()).element_size()
    lin = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    cfg = model.config
    kv_dim = cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    kv = cfg.num_hidden_layers * batch * seq * 2 * kv_dim
    ad = sum(rank * (model.get_submodule(s).in_features + model.get_submodule(s).out_features)
             for s in linear_sites(model, TARGETS))
    base_b, ad_b = el * (lin + kv), el * n_adapters * ad
    return {"base_mb": base_b / 2**20, "adapters_mb": ad_b / 2**20, "ceiling": base_b / (base_b + ad_b)}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def clock(device: str, kind: str) -> Callable[[], float]:
    """CPU time of this process on a shared CPU box (robust to other jobs), wall time on CUDA."""
    return time.process_time if kind == "cpu" and device == "cpu" else time.perf_counter


@torch.no_grad()
def measure(call: Callable[..., object], ids: torch.Tensor, steps: int, device: str, now: Callable[[], float],
            ) -> tuple[float, float]:
    """Seconds of one prefill (no cache) and of ``steps`` greedy decode steps after a cached prefill."""
    sync(device)
    t0 = now()
    call(input_ids=ids, use_cache=False)
    sync(device)
    t1 = now()
    out = call(input_ids=ids, use_cache=True)
    cache, nxt = out.cache, out.logits[:, -1:].argmax(-1)
    sync(device)
    t2 = now()
    for _ in range(steps):
        out = call(input_ids=nxt, cache=cache, use_cache=True)
        cache, nxt = out.cache, out.logits[:, -1:].argmax(-1)
    sync(device)
    return t1 - t0, now() - t2


def bench_size(size: str, args: argparse.Namespace, device: str) -> dict[str, dict[str, float]]:
    from peft import PeftModel

    from hub.core.peft_io import load_peft
    from routing import build_router
    from routing.batching import MixedAdapterModel

    base = build_model(size, device)
    tmp = Path(tempfile.mkdtemp(prefix="routing-bench-"))
    dirs = make_adapters(base.cpu(), 16, args.rank, tmp)
    base.to(device)
    b, t = args.batch, args.prompt
    ids = torch.randint(3, base.config.vocab_size, (b, t), generator=torch.Generator().manual_seed(0)).to(device)
    print(f"[{size}] {SIZES[size]}  batch {b} x prompt {t}, {args.decode} decode steps, rank {args.rank}, "
          f"N={args.mixed} adapters in (c), "
          f"device {device}, threads {torch.get_num_threads()}, clock {args.clock}", flush=True)
    res: dict[str, dict[str, float]] = {}
    res["bytes"] = decode_bytes(base, args.mixed, args.rank, b, t + args.decode // 2)

    # cold load: load_peft from disk + copy into the slot bank (wall clock: includes file I/O)
    eng = MixedAdapterModel(copy.deepcopy(base), capacity=16)
    loads = []
    for i, d in enumerate(dirs):
        t0 = time.perf_counter()
        eng.load_adapter(f"a{i}", load_peft(d))
        sync(device)
        loads.append(time.perf_counter() - t0)
    res["cold_load_ms"] = {"median": 1000 * statistics.median(loads), "max": 1000 * max(loads)}
    print(f"  cold adapter load (load_peft + bank): median {res['cold_load_ms']['median']:.1f} ms, "
          f"max {res['cold_load_ms']['max']:.1f} ms", flush=True)
    merged = MixedAdapterModel(copy.deepcopy(base), capacity=1)
    merged.load_adapter("a0", load_peft(dirs[0]))
    merged.merge("a0")

    pm = PeftModel.from_pretrained(copy.deepcopy(base), str(dirs[0]), adapter_name="a0")
    for i in range(1, args.mixed):
        pm.load_adapter(str(dirs[i]), adapter_name=f"a{i}")
    pm.eval()
    pm.set_adapter("a0")

    routed = build_router(copy.deepcopy(base), [load_peft(d) for d in dirs], "meteora", {"k": 2})
    for mod in list(routed.layers.values()) + list(routed.gates.values()):
        mod.to(device)

    def meteora(backend: str) -> Callable[..., object]:
        def call(**kw: object) -> object:
            for lay in routed.layers.values():
                lay.backend = backend
            return routed(**kw)
        return call

    one = ["a0"] * b
    eight = [f"a{i % args.mixed}" for i in range(b)]
    configs: list[tuple[str, Callable[..., object]]] = [
        ("(a) base", base),
        ("(b) one adapter, Loom unmerged", lambda **kw: eng(adapters=one, **kw)),
        ("(b) one adapter, Loom merged", lambda **kw: merged(adapters=one, **kw)),
        ("(b) one adapter, PEFT", lambda **kw: pm(**kw)),
        ("(c) N adapters mixed, Loom", lambda **kw: eng(adapters=eight, **kw)),
        ("(c) N adapters mixed, PEFT", lambda **kw: pm(adapter_names=eight, **kw)),
    ] + [(f"(d) MeteoRA top-2 of 16, {be}", meteora(be)) for be in args.backends.split(",")]
    now = clock(device, args.clock)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in configs}
    for rnd in range(args.repeats + 1):  # round-robin so drifting load hits every config alike
        for name, call in configs:
            s = measure(call, ids, args.decode, device, now)
            if rnd:  # round 0 is the warm-up
                samples[name].append(s)
    for name, ss in samples.items():
        pre = statistics.median(x for x, _ in ss)
        dec = statistics.median(y for _, y in ss)
        res[name] = {"prefill": b * t / pre, "decode": b * args.decode / dec}
        print(f"  {name:<34} prefill {res[name]['prefill']:>10.0f} tok/s   decode {res[name]['decode']:>8.0f} tok/s",
              flush=True)
    return res


def report(size: str, res: dict[str, dict[str, float]]) -> None:
    base = res["(a) base"]
    print(f"\n[{size}] ratios (prefill / decode):")

    def ratio(name: str, ref: dict[str, float], label: str) -> None:
        r = res[name]
        print(f"  {name:<34} vs {label:<18} {r['prefill'] / ref['prefill']:>6.2f}x / {r['decode'] / ref['decode']:>6.2f}x")

    for name in res:
        if name.startswith("(") and name != "(a) base":
            ratio(name, base, "base")
    ratio("(c) N adapters mixed, Loom", res["(c) N adapters mixed, PEFT"], "PEFT mixed batch")
    ratio("(a) base", res["(c) N adapters mixed, PEFT"], "PEFT mixed batch")
    print("  (the base-vs-PEFT line is the ceiling of any LoRA path against PEFT's mixed batch)")
    ratio("(b) one adapter, Loom unmerged", res["(b) one adapter, PEFT"], "PEFT one adapter")
    by = res["bytes"]
    mixed = res["(c) N adapters mixed, Loom"]["decode"] / base["decode"]
    print(f"  a decode step reads {by['base_mb']:.1f} MB of base weights and KV cache; the mixed batch's distinct "
          f"adapters add {by['adapters_mb']:.1f} MB;\n  if a step were all weight reads, mixed decode could reach "
          f"{by['ceiling']:.2f}x base (a roofline estimate); Loom's mixed decode is {mixed:.2f}x")
    print(f"  cold load median {res['cold_load_ms']['median']:.1f} ms (goal <= 100 ms)\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,large")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--mixed", type=int, default=8, help="distinct adapters in the mixed batch (c), <= 16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="auto,gather,grouped")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is robust on a shared box)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="CPU: process time or wall time")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {}
    for size in args.sizes.split(","):
        out[size] = bench_size(size, args, device)
        report(size, out[size])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
