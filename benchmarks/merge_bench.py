"""Merge benchmark: time and peak memory of every Loom merge method next to ``peft.add_weighted_adapter``.

Inputs: ``--adapters`` (8) random LoRAs of rank ``--rank`` (16) on ``q_proj`` and ``v_proj`` of a
Llama-7B-shaped model (hidden 4096, ``--layers`` 32), float32. Both engines merge the *same*
tensors in the same run, one method at a time: Loom through ``merging.merge`` and PEFT through
``PeftModel.add_weighted_adapter`` under the same combination type. Printed side by side with the
ratios Loom / PEFT, plus the relative difference of the first module's delta between the two
(~0 where both compute the same thing; large for PEFT's factor-space ``linear``/``ties``/``dare``,
which add cross terms) and Loom's relative error against the exact weighted sum where that is the
method's definition (cat, linear, svd).

PEFT needs a model: a ``LlamaConfig`` 7B model is built on the meta device (no memory), and only the
32 x 2 targeted linears get zero-stride placeholder weights (a single 0 expanded to 4096 x 4096, no
memory), which is all ``add_weighted_adapter`` reads of the base; every LoRA tensor is real.

CPU runs use one thread unless ``OMP_NUM_THREADS`` says otherwise (on a loaded 2-core machine,
OpenMP spin-waiting made a 2048 x 128 QR 100x slower with 2 threads than with 1).

Peak memory is the growth over the run of one merge: CUDA ``max_memory_allocated`` on a GPU, the
process's peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``) on the CPU.

    python benchmarks/merge_bench.py                                  # everything (slow on CPU)
    python benchmarks/merge_bench.py --layers 2 --methods cat,linear,svd,ties_svd
    python benchmarks/merge_bench.py --device cuda --svd-solver randomized
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # shared CPUs: oversubscribed OpenMP threads are 10-100x slower

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.core.adapter import LoraAdapter, LoraLayer, LoraSpec  # noqa: E402
from merging import merge, method_names  # noqa: E402

PEFT_TYPES = {
    "svd", "linear", "cat", "ties", "ties_svd", "dare_ties", "dare_linear", "dare_ties_svd", "dare_linear_svd",
    "magnitude_prune", "magnitude_prune_svd",
}
DENSITY = {"ties": 0.2, "ties_svd": 0.2, "magnitude_prune": 0.2, "magnitude_prune_svd": 0.2,
           "dare_linear": 0.1, "dare_ties": 0.1, "dare_linear_svd": 0.1, "dare_ties_svd": 0.1}
EXACT_SUM = {"cat", "linear"}  # methods whose definition is the exact weighted sum


def module_paths(layers: int) -> list[str]:
    return [f"model.layers.{i}.self_attn.{p}" for i in range(layers) for p in ("q_proj", "v_proj")]


def build_inputs(n: int, rank: int, layers: int, hidden: int, device: str) -> list[LoraAdapter]:
    """``n`` random rank-``rank`` adapters (alpha 2r) on q_proj and v_proj of every layer."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        ls = {
            m: LoraLayer(
                a=(torch.randn(rank, hidden, generator=g) / hidden**0.5).to(device),
                b=(torch.randn(hidden, rank, generator=g) * 0.01).to(device),
                alpha=2.0 * rank,
            )
            for m in module_paths(layers)
        }
        out.append(LoraAdapter(layers=ls, spec=LoraSpec(base_model="bench/llama-7b-shaped")))
        del i
    return out


def build_peft(adapters: list[LoraAdapter], layers: int, hidden: int, device: str) -> Any:
    """A 7B-shaped Llama on meta with placeholder q/v weights, holding the same LoRAs in PEFT."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=11008, num_hidden_layers=layers,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    zero = torch.zeros((), device=device)
    for i in range(layers):
        attn = model.model.layers[i].self_attn
        for name in ("q_proj", "v_proj"):
            getattr(attn, name).weight = torch.nn.Parameter(zero.expand(hidden, hidden), requires_grad=False)
    rank = adapters[0].r
    lcfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    pm = get_peft_model(model, lcfg, adapter_name="a0")
    for i in range(1, len(adapters)):
        pm.add_adapter(f"a{i}", copy.deepcopy(lcfg))
    mods = dict(pm.base_model.model.named_modules())
    with torch.no_grad():
        for i, ad in enumerate(adapters):
            for m, la in ad.layers.items():
                mods[m].lora_A[f"a{i}"].weight.copy_(la.a)
                mods[m].lora_B[f"a{i}"].weight.copy_(la.b)
    return pm


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(fn: Callable[[], Any], device: str) -> tuple[float, float, Any]:
    """(seconds, peak extra MiB, result) of one call."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _rss_kb("VmRSS") * 1024
    t0 = time.perf_counter()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else _rss_kb("VmHWM") * 1024
    return seconds, max(0.0, (peak - base) / 2**20), result


def peft_delta(pm: Any, adapter: str, module: str) -> torch.Tensor:
    return dict(pm.base_model.model.named_modules())[module].get_delta_weight(adapter).double()


def rel(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x - y).norm() / y.norm().clamp_min(1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapters", type=int, default=8)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--methods", default="", help="comma-separated; default: every method but lorahub")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--svd-solver", default="full", choices=["full", "randomized"],
                    help="Loom's solver for the dense methods (PEFT always uses a full SVD)")
    ap.add_argument("--no-peft", action="store_true", help="skip the PEFT baseline")
    ap.add_argument("--skip-peft", default="", help="comma-separated methods to run in Loom only")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import peft
    import transformers

    methods = [m for m in args.methods.split(",") if m] or [m for m in method_names() if m != "lorahub"]
    n_mod = 2 * args.layers
    print(f"# merge_bench: {args.adapters} adapters, rank {args.rank}, {args.layers} layers x (q_proj, v_proj) "
          f"{args.hidden}x{args.hidden} = {n_mod} modules, float32, device {args.device}")
    print(f"# torch {torch.__version__}, peft {peft.__version__}, transformers {transformers.__version__}, "
          f"python {platform.python_version()}, {platform.machine()}, torch threads {torch.get_num_threads()}"
          + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""))
    print("# PEFT baseline: LlamaConfig 7B-shaped model on the meta device; the targeted q/v linears get "
          "zero-stride placeholder weights (no memory). LoRA tensors are real and identical for both.")
    print(f"# Loom dense methods use svd_solver={args.svd_solver}; PEFT uses torch.linalg.svd (full).")
    adapters = build_inputs(args.adapters, args.rank, args.layers, args.hidden, args.device)
    pm = None if args.no_peft else build_peft(adapters, args.layers, args.hidden, args.device)
    first = module_paths(args.layers)[0]
    weights = [1.0] * args.adapters
    exact = sum(w * ad.layers[first].delta(torch.float64) for w, ad in zip(weights, adapters, strict=True))
    head = (f"{'method':<20}{'loom s':>9}{'peft s':>9}{'time x':>9}{'loom MiB':>10}{'peft MiB':>10}"
            f"{'mem x':>9}{'out r':>7}{'vs peft':>10}{'vs exact':>10}")
    print(head)
    print("-" * len(head))
    names = [f"a{i}" for i in range(args.adapters)]
    for k, method in enumerate(methods):
        params: dict[str, Any] = {}
        if method in DENSITY:
            params["density"] = DENSITY[method]
        if method in DENSITY or method.endswith("svd"):
            if method != "svd":
                params["svd_solver"] = args.svd_solver
        ls, lm, out = measure(lambda: merge(adapters, method, weights=weights, params=params), args.device)  # noqa: B023
        ours = out.layers[first].delta(torch.float64)
        r_out = out.layers[first].rank
        vs_exact = f"{rel(ours, exact):.1e}" if method in EXACT_SUM else "-"
        del out
        ps = pmem = None
        vs_peft = "-"
        if pm is not None and method in PEFT_TYPES and method not in args.skip_peft.split(","):
            kw = {k2: v for k2, v in params.items() if k2 == "density"}
            new = f"m{k}"
            ps, pmem, _ = measure(lambda: pm.add_weighted_adapter(names, weights, new, combination_type=method, **kw),  # noqa: B023
                                  args.device)
            if not method.startswith("dare"):  # PEFT's DARE mask comes from the global RNG
                vs_peft = f"{rel(ours, peft_delta(pm, new, first)):.1e}"
            pm.delete_adapter(new)
        ratio_t = f"{ls / ps:.2f}" if ps else "-"
        ratio_m = f"{lm / pmem:.2f}" if pmem and pmem >= 1.0 else "-"  # under 1 MiB: below RSS resolution
        print(f"{method:<20}{ls:>9.2f}{(f'{ps:.2f}' if ps is not None else '-'):>9}{ratio_t:>9}{lm:>10.0f}"
              f"{(f'{pmem:.0f}' if pmem is not None else '-'):>10}{ratio_m:>9}{r_out:>7}{vs_peft:>10}{vs_exact:>10}",
              flush=True)
        gc.collect()
    print("# time x / mem x: Loom / PEFT (below 1 = Loom faster / smaller). vs peft: relative difference of the "
          "first module's delta (large by design for PEFT's factor-space linear/ties/magnitude_prune); vs exact: "
          "Loom's error against the exact weighted sum.")


if __name__ == "__main__":
    main()
