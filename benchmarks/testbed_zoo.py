"""Build the testbed zoo, then measure it: build time, oracle vs base exact match, recognisability.

- Build time: wall seconds per phase and in all, the load average before and after (the CPU may be
  shared), and the CPU seconds spent (this process + its worker processes). ``--fresh`` rebuilds
  into a temporary folder (the cache is not touched); ``--baseline-workers 1`` also builds with one
  process in the same run and prints the speed-up ratio (same weights either way).
- Quality: the eval table (base model = baseline, each task's own adapter = oracle, same prompts),
  with the oracle minus base difference, on all cues and on held-out cues only.
- Recognisability: linear probe on base hidden states pooled over the cue (train cues -> new inputs,
  train cues -> held-out cues), and MiniLM embeddings of the cue: the training-free router (task =
  mean of its description and training cues) and a linear probe, against the description-only match
  as the baseline.

- ``--estimate``: no build; times a few steps of every job of the build and prints the estimated
  wall time on idle cores for 1 and 2 workers (for the full size, which takes too long to build
  just to time it).

    python benchmarks/testbed_zoo.py --size ci --fresh --baseline-workers 1
    python benchmarks/testbed_zoo.py --size full --estimate
    python benchmarks/testbed_zoo.py --size full --data-dir loom-data --json full-eval.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _build(args: argparse.Namespace, data_dir: Path, workers: int | None, console) -> tuple:
    from testbed.commands import rich_progress
    from testbed.zoo import build_zoo

    load0, cpu0, t0 = os.getloadavg()[0], _cpu_s(), time.perf_counter()
    with rich_progress(console) as progress:
        zoo = build_zoo(args.size, data_dir, seed=args.seed, progress=progress, workers=workers)
    wall, cpu, load1 = time.perf_counter() - t0, _cpu_s() - cpu0, os.getloadavg()[0]
    console.print(
        f"build ({workers or 'default'} workers): {wall:.1f} s wall, {cpu:.1f} s CPU, load average "
        f"{load0:.2f} -> {load1:.2f} on {os.cpu_count()} cores; phases: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in zoo.timings.items())
    )
    return zoo, wall


def _estimate(args: argparse.Namespace) -> None:
    from testbed.estimate import estimate_build

    load0 = os.getloadavg()[0]
    est = estimate_build(args.size, workers=(1, 2))
    phases: dict[str, list[float]] = {}
    for key, c in est["jobs"].items():
        kind = key.rsplit(":", 1)[0] if key.startswith("lora") else key
        p = phases.setdefault(kind, [0, 0.0, 0.0])
        p[0] += 1
        p[1] += c["steps"]
        p[2] += c["total_s"] * c.get("threads", 1)
    print(f"estimate for size {args.size!r} from short runs (load average {load0:.2f} -> {os.getloadavg()[0]:.2f}):")
    for kind, (n, steps, sec) in phases.items():
        print(f"  {kind:<10} {n:>3} jobs {int(steps):>6} steps  {sec:7.1f} CPU s")
    print(f"  worker start (imports) {est['worker_start_s']:.1f} CPU s each; total {est['cpu_s']:.1f} CPU s")
    w1, w2 = est["wall_s"][1], est["wall_s"][2]
    print(f"estimated wall on idle cores: 2 workers {w2:.0f} s ({w2 / 60:.1f} min) vs 1 worker {w1:.0f} s "
          f"({w1 / 60:.1f} min): ratio {w2 / w1:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(est, indent=2, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="ci", choices=["ci", "full"])
    ap.add_argument("--data-dir", default="loom-data")
    ap.add_argument("--fresh", action="store_true", help="build into a temporary folder (measures a first build)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--baseline-workers", type=int, default=None, help="also build with this many workers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--estimate", action="store_true", help="estimate the build time from short runs")
    args = ap.parse_args()
    if args.estimate:
        _estimate(args)
        return

    import torch
    from rich.console import Console

    from testbed.eval import BaseModel, Oracle, evaluate
    from testbed.probe import linear_probe, semantic_probe

    torch.set_num_threads(1)
    console = Console()
    tmp = tempfile.TemporaryDirectory(prefix="loom-zoo-") if args.fresh else None
    try:
        data_dir = Path(tmp.name) / "new" if tmp else Path(args.data_dir)
        zoo, wall = _build(args, data_dir, args.workers, console)
        report: dict = {"size": args.size, "timings": zoo.timings, "build_wall_s": wall, "root": str(zoo.root)}
        if args.baseline_workers and tmp:
            _, base_wall = _build(args, Path(tmp.name) / "baseline", args.baseline_workers, console)
            console.print(
                f"build time: {wall:.1f} s ({args.workers or 'default'} workers) vs {base_wall:.1f} s "
                f"({args.baseline_workers} workers): ratio {wall / base_wall:.2f}"
            )
            report["baseline_build_wall_s"] = base_wall
        if args.no_eval:
            return
        configs: dict = {"base": "base", "oracle": "oracle"}
        if len(zoo.bases) > 1:
            b_id = zoo.bases[1].id
            configs |= {f"base {b_id}": BaseModel(b_id), f"oracle {b_id}": Oracle(b_id)}
        for split in ("all", "heldout"):
            t1 = time.perf_counter()
            res = evaluate(configs, zoo=zoo, n=args.n, split=split, composites=False)
            console.print(res.rich_table())
            b, o = res.mean("base"), res.mean("oracle")
            console.print(
                f"[{split} cues] mean exact match: oracle {o:.3f} vs base {b:.3f} "
                f"(oracle - base = {o - b:+.3f}); min oracle task "
                f"{min(v for v in res.accuracy['oracle'].values() if v is not None):.3f}; "
                f"eval {time.perf_counter() - t1:.0f} s"
            )
            report[f"eval_{split}"] = json.loads(res.to_json())
        chance = 1 / len(zoo.tasks)
        probes = {sp: linear_probe(zoo, test_split=sp) for sp in ("train", "heldout")}
        for sp, probe in probes.items():
            console.print(
                f"linear probe on base hidden states over the cue (train cues -> {sp} cues, new inputs), "
                f"{len(zoo.tasks)} tasks: accuracy {probe['accuracy']:.3f} (chance {chance:.3f}), family "
                f"{probe['family_accuracy']:.3f}; top confusions {probe['confusions']}"
            )
        report["probe"] = probes
        for text in ("cue", "prompt"):
            sem = semantic_probe(zoo, text)
            d = sem["description"]
            for kind in ("router", "probe"):
                r = sem[kind]
                console.print(
                    f"MiniLM {kind} on the {text}, held-out cues ({r['n_test']}): accuracy {r['accuracy']:.3f} "
                    f"vs description-only {d['accuracy']:.3f} (ratio {r['accuracy'] / max(d['accuracy'], 1e-9):.2f}); "
                    f"family {r['family_accuracy']:.3f}; confusions {r['confusions']}"
                )
            report[f"semantic_{text}"] = sem
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
    finally:
        if tmp:
            tmp.cleanup()


if __name__ == "__main__":
    main()
