"""Build the real zoo (SmolLM2-135M-Instruct + one LoRA per real task), then measure it.

- Build time: wall seconds (dequantization + training, the first ``loom demo --real`` start), the load
  average before and after (the CPU may be shared), CPU seconds of this process and its workers, and each
  adapter's own training seconds. ``--fresh`` builds into a new temporary data directory.
- Quality: exact match per task of the base model alone (the baseline) and of the task's own adapter, on
  the task's training phrasings with new inputs and on held-out phrasings no adapter saw, through the chat
  template (what ``/v1/chat/completions`` serves).

    python benchmarks/real_zoo.py --fresh --n 30
    python benchmarks/real_zoo.py --data-dir loom-data --json real.json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("loom-data"))
    ap.add_argument("--fresh", action="store_true", help="build into a new temporary data directory")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--tasks", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--n", type=int, default=30, help="examples per task and phrasing split")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the evaluation")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from rich.console import Console

    from testbed.commands import rich_progress
    from testbed.real.eval import evaluate_real
    from testbed.real.zoo import build_real_zoo

    console = Console()
    data_dir = Path(tempfile.mkdtemp(prefix="loom-real-")) if args.fresh else args.data_dir
    tasks = args.tasks.split(",") if args.tasks else None
    load0, cpu0, t0 = os.getloadavg()[0], _cpu_s(), time.perf_counter()
    with rich_progress(console) as progress:
        zoo = build_real_zoo(data_dir, progress=progress, tasks=tasks, workers=args.workers)
    wall, cpu, load1 = time.perf_counter() - t0, _cpu_s() - cpu0, os.getloadavg()[0]
    manifest = json.loads((zoo.root / "manifest.json").read_text())
    console.print(f"build: {wall:.0f} s wall ({wall / 60:.1f} min), {cpu:.0f} s CPU, load average {load0:.1f} -> "
                  f"{load1:.1f} on {os.cpu_count()} cores, {manifest['workers']} workers; "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in zoo.timings.items()))
    out: dict = {"build_wall_s": wall, "build_cpu_s": cpu, "load": [load0, load1], "timings": zoo.timings,
                 "adapters": {a["task"]: {k: a[k] for k in ("steps", "train_seconds", "final_loss")}
                              for a in manifest["adapters"]}}
    if not args.no_eval:
        t1 = time.perf_counter()
        seen = evaluate_real(zoo, n=args.n, split="train", threads=args.threads)
        unseen = evaluate_real(zoo, n=args.n, split="heldout", base=False, threads=args.threads)
        out["eval_s"] = time.perf_counter() - t1
        out["accuracy"] = {"base": seen["base"], "own": seen["oracle"], "own_unseen_phrasings": unseen["oracle"]}
        rows = ["| task | base | own adapter | own adapter, unseen phrasings | train s (steps) |", "|---|---|---|---|---|"]
        for t in seen["oracle"]:
            a = out["adapters"][t]
            rows.append(f"| `{t}` | {seen['base'][t]:.0%} | **{seen['oracle'][t]:.0%}** | {unseen['oracle'][t]:.0%} | "
                        f"{a['train_seconds']:.0f} ({a['steps']}) |")
        mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
        rows.append(f"| mean | {mean(seen['base']):.0%} | **{mean(seen['oracle']):.0%}** | "
                    f"{mean(unseen['oracle']):.0%} | |")
        console.print("\n".join(rows), markup=False, highlight=False)
        console.print(f"eval: {out['eval_s']:.0f} s, n={args.n} per task and split")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
