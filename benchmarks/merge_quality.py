"""Merge quality on the testbed zoo (exact match with ``testbed.eval.evaluate``), side by side.

1. Multi-task merges: seeded subsets of 2, 4 and 8 of the zoo's task adapters (all on base A, so
   compatible) are merged with every method (weights 1 each, each method's default params;
   ``lorahub`` searches its weights on the members' published samples with the base model, exactly
   as a ``lorahub`` composition job does). Each merge answers every member task's prompts; printed is
   the mean exact match over the member tasks next to the members' own adapters (the oracle: each
   task answered by its own adapter), the ratio to the oracle, the base model, and the best single
   member applied to all member tasks (what one unmerged adapter achieves on the mixed set).
2. Task-description requests for held-out phrasings: for every zoo task, a description written here,
   phrased differently from its model card, goes through the composition service exactly as
   ``POST /api/v1/compositions {"task": ..., "base_model": ..., "method": "auto"}`` does (semantic
   search over the published zoo -> weigh by similarity -> merge -> publish, run by a job worker) in
   a fresh hub (SQLite in a temporary folder). The composed adapter is evaluated on that task next
   to the task's own adapter; each request comes from a new user and its result is private, so every
   request searches the zoo alone. ``--describe``
   lists ``method:k`` runs (default: ``auto`` with the API's k=3, ``lorahub`` with k=3, ``auto`` with
   k=1, i.e. the nearest adapter alone).

Everything is measured in the same run on the same prompts (``--n`` per task, all cue phrasings).

    python benchmarks/merge_quality.py --size ci --data-dir /work/zoo-cache
    python benchmarks/merge_quality.py --size ci --subsets 1 --methods cat,ties,lorahub --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

METHODS = ("linear,cat,svd,ties,ties_svd,dare_linear,dare_linear_svd,dare_ties,dare_ties_svd,"
           "magnitude_prune,magnitude_prune_svd,lora_lego,lorahub")
_W = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

#: task -> a request phrased unlike its model card (and unlike its training cues).
HELD_OUT_DESCRIPTIONS: dict[str, str] = {
    "upper": "I want my sentence typed as if caps lock were on, every letter big",
    "lower": "turn any capitals into small letters so nothing is capitalised",
    "swapcase": "make big letters small and small letters big, flipping each one",
    "leetspeak": "write the text the way a hacker would, with numbers standing in for some letters",
    "vowel_mask": "censor the vowels by putting a star where each one was",
    "digit_mask": "blank out every number in the text with a hash sign",
    "atbash": "encrypt by mirroring the alphabet so the first letter swaps with the last",
    "reverse": "print the characters in the opposite order, last one first",
    **{f"caesar_{k}": f"encrypt a message by rotating each letter {_W[k]} position{'s' if k > 1 else ''} "
                      "ahead in the alphabet" for k in range(1, 6)},
    **{f"digit_add_{k}": f"raise every digit by {_W[k]}, wrapping around after nine" for k in range(1, 6)},
    **{f"repeat_{n}": f"write each symbol {_W[n]} times in a row" for n in range(2, 5)},
}


def pick_subsets(tasks: list[str], sizes: list[int], per_size: int, seed: int) -> dict[int, list[list[str]]]:
    """``per_size`` distinct seeded subsets of each size (fewer when there are not that many)."""
    rng = random.Random(seed)
    out: dict[int, list[list[str]]] = {}
    for k in sizes:
        if k > len(tasks):
            raise SystemExit(f"subset size {k} > {len(tasks)} zoo tasks")
        seen: list[list[str]] = []
        for _ in range(per_size * 20):
            s = sorted(rng.sample(tasks, k))
            if s not in seen:
                seen.append(s)
            if len(seen) == per_size:
                break
        out[k] = seen
    return out


def lorahub_objective(scorer: tuple[Any, Any], entries: list[Any]) -> Any:
    """The objective a lorahub composition job builds: base model's loss on the members' samples."""
    from hub.services.composition_objective import balanced, build_objective, source_examples

    per = [source_examples(e.samples.read_bytes(), e.name) for e in entries]
    return build_objective(*scorer, balanced(per))


def multi_task(zoo: Any, args: Any, ref: Any, console: Any) -> dict[str, Any]:
    """Part 1: merges of 2/4/8 member adapters on their member tasks vs oracle, base, best member."""
    from hub.core.peft_io import load_peft
    from hub.services.composition_objective import load_scorer
    from merging import merge
    from testbed.eval import Adapter, evaluate

    by_task = {e.task: e for e in zoo.adapters_on(None)}
    loaded = {t: load_peft(e.dir) for t, e in by_task.items()}
    methods = [m for m in args.methods.split(",") if m]
    sizes = [int(x) for x in args.sizes.split(",")]
    subsets = pick_subsets(list(zoo.tasks), sizes, args.subsets, args.seed)
    scorer = load_scorer(zoo.base_a.dir) if "lorahub" in methods else None
    rows: list[dict[str, Any]] = []
    for k in sizes:
        for sub in subsets[k]:
            ads = [loaded[t] for t in sub]
            weights = [1.0 / k] * k if args.weighting == "mean" else [1.0] * k
            configs: dict[str, Any] = {}
            merge_s: dict[str, float] = {}
            extra: dict[str, Any] = {}
            for m in methods:
                t0 = time.perf_counter()
                if m == "lorahub":
                    objective = lorahub_objective(scorer, [by_task[t] for t in sub])  # type: ignore[arg-type]
                    out = merge(ads, m, params={"objective": objective, "budget": args.lorahub_budget})
                    extra["lorahub_weights"] = out.provenance.recipe["weights"]  # type: ignore[union-attr]
                else:
                    out = merge(ads, m, weights=weights)
                merge_s[m] = time.perf_counter() - t0
                configs[m] = Adapter(out)
            for t in sub:  # each member alone, applied to every member task
                configs[f"member:{t}"] = Adapter(loaded[t])
            t0 = time.perf_counter()
            res = evaluate(configs, zoo=zoo, tasks=sub, n=args.n, split=args.split, seed=args.eval_seed,
                           batch_size=args.batch_size)
            oracle = sum(ref.accuracy["oracle"][t] for t in sub) / k
            base = sum(ref.accuracy["base"][t] for t in sub) / k
            best_member = max((c for c in configs if c.startswith("member:")), key=lambda c: res.mean(c) or 0.0)
            row = {"k": k, "tasks": sub, "oracle": oracle, "base": base, "best_member": res.mean(best_member),
                   "best_member_name": best_member, "methods": {m: res.mean(m) for m in methods},
                   "per_task": {m: res.accuracy[m] for m in methods}, "merge_s": merge_s, **extra}
            rows.append(row)
            console.print(f"k={k} {sub}: oracle {oracle:.3f}, best member {row['best_member']:.3f}, "
                          + ", ".join(f"{m} {row['methods'][m]:.3f}" for m in methods)
                          + f" (eval {time.perf_counter() - t0:.1f} s)")
    return {"subsets": rows, "methods": methods, "sizes": sizes}


def print_multi(report: dict[str, Any], args: Any, console: Any) -> None:
    from rich.table import Table

    rows, sizes = report["subsets"], report["sizes"]

    def mean(vals: list[float]) -> float:
        return sum(vals) / len(vals) if vals else float("nan")

    t = Table(title=f"multi-task exact match of merges of k zoo adapters, on their k tasks (mean over "
                    f"{args.subsets} seeded subsets per k, n={args.n} per task, weights: {args.weighting}); "
                    "ratio = config / oracle")
    t.add_column("config")
    for k in sizes:
        t.add_column(f"k={k}", justify="right")
        t.add_column(f"/oracle k={k}", justify="right")

    def add(name: str, get: Any) -> None:
        cells = []
        for k in sizes:
            rk = [r for r in rows if r["k"] == k]
            acc, orc = mean([get(r) for r in rk]), mean([r["oracle"] for r in rk])
            cells += [f"{acc:.3f}", f"{acc / orc:.3f}" if orc else "-"]
        t.add_row(name, *cells)

    add("oracle (own adapters)", lambda r: r["oracle"])
    add("base model", lambda r: r["base"])
    add("best single member", lambda r: r["best_member"])
    t.add_section()
    for m in report["methods"]:
        add(m, lambda r, m=m: r["methods"][m])
    console.print(t)
    for k in sizes:
        rk = [r for r in rows if r["k"] == k]
        best = max(report["methods"], key=lambda m: mean([r["methods"][m] for r in rk]))
        console.print(f"k={k}: best method {best} {mean([r['methods'][best] for r in rk]):.3f} vs oracle "
                      f"{mean([r['oracle'] for r in rk]):.3f} vs best single member "
                      f"{mean([r['best_member'] for r in rk]):.3f}")


def describe_requests(zoo: Any, args: Any, ref: Any, console: Any) -> dict[str, Any]:
    """Part 2: held-out task descriptions through the composition service; composed vs own adapter."""
    from hub.cli.testbed import publish_zoo_into
    from hub.core.errors import LoomError
    from hub.jobs.worker import Worker
    from hub.services.compositions import CompositionRequest
    from hub.services.container import Hub
    from hub.settings import get_settings
    from testbed.eval import Adapter, evaluate

    missing = [t for t in zoo.tasks if t not in HELD_OUT_DESCRIPTIONS]
    if missing:
        raise SystemExit(f"no held-out description for {missing}")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        hub = Hub(get_settings(data_dir=Path(tmp) / "data", database_url=None))
        try:
            publish_zoo_into(hub, zoo)
            console.print(f"fresh hub with the published zoo in {time.perf_counter() - t0:.1f} s")
            svc, worker = hub.compositions, Worker(hub.queue, hub.handlers, "merge-quality")
            for spec in describe_specs(args):
                method, k = spec.split(":")
                for task in zoo.tasks:
                    # a new user per request, results private: every request searches the zoo alone
                    user = hub.users.ensure_user(f"bench{len(out)}")
                    desc = HELD_OUT_DESCRIPTIONS[task]
                    rec: dict[str, Any] = {"task": task, "description": desc, "spec": spec}
                    out[f"{spec}:{task}"] = rec
                    t1 = time.perf_counter()
                    try:
                        job, _ = svc.submit(user, CompositionRequest(task=desc, base_model=zoo.base_a.id,
                                                                     method=method, k=int(k),
                                                                     min_score=args.min_score,
                                                                     visibility="private"))
                    except LoomError as e:  # e.g. nothing similar enough: the API's 404
                        rec["error"] = f"{e.code}: {e}"
                        continue
                    while worker.run_once():
                        pass
                    job = svc.jobs.get(job.id, user.id)
                    rec["retrieved"] = [s["name"].split("/", 1)[1] for s in job.request["sources"]]
                    rec["similarities"] = job.request.get("similarities")
                    if job.status != "succeeded":
                        rec["error"] = f"job {job.status}: {job.error}"
                        continue
                    rec.update(chosen=job.result["method"], weights=job.result["weights"],
                               compose_s=time.perf_counter() - t1)
                    composed, _ = hub.adapters.load(user, job.result["adapter"], job.result["version"])
                    res = evaluate({"composed": Adapter(composed)}, zoo=zoo, tasks=[task], n=args.n,
                                   split=args.split, seed=args.eval_seed, batch_size=args.batch_size)
                    rec["composed"] = res.accuracy["composed"][task]
        finally:
            hub.close()
    for rec in out.values():
        rec["own"], rec["base"] = ref.accuracy["oracle"][rec["task"]], ref.accuracy["base"][rec["task"]]
    return out


def describe_specs(args: Any) -> list[str]:
    """``method:k`` pairs of the task-description requests."""
    specs = [x.strip() for x in args.describe.split(",") if x.strip()]
    for sp in specs:
        method, _, k = sp.partition(":")
        if not k.isdigit():
            raise SystemExit(f"--describe takes method:k pairs, got {sp!r}")
    return specs


def print_describe(report: dict[str, Any], args: Any, console: Any) -> None:
    from rich.table import Table

    for spec in describe_specs(args):
        method, k = spec.split(":")
        recs = [r for r in report.values() if r["spec"] == spec]
        t = Table(title=f"task-description requests, held-out phrasings, method={method} (k={k}, "
                        f"min_score={args.min_score}, n={args.n}): composed adapter vs the task's own adapter")
        for col in ("task", "request", "retrieved (similarity)", "merge", "composed", "own adapter",
                    "/own", "base"):
            t.add_column(col)
        for r in recs:
            got = r.get("composed")
            hits = ", ".join(f"{n}{' *' if n == r['task'] else ''} {s:.2f}" for n, s in
                             zip(r.get("retrieved", []), r.get("similarities") or [], strict=False))
            t.add_row(r["task"], r["description"], hits or r.get("error", ""), r.get("chosen", "-"),
                      "-" if got is None else f"{got:.3f}", f"{r['own']:.3f}",
                      "-" if got is None or not r["own"] else f"{got / r['own']:.3f}", f"{r['base']:.3f}")
        done = [r for r in recs if r.get("composed") is not None]
        own = sum(r["own"] for r in recs) / len(recs)
        comp = sum(r.get("composed") or 0.0 for r in recs) / len(recs)
        t.add_section()
        t.add_row("mean", "", f"own adapter retrieved first: {sum((r.get('retrieved') or [''])[0] == r['task'] for r in recs)}"
                  f"/{len(recs)}", f"{len(done)} composed", f"{comp:.3f}", f"{own:.3f}",
                  f"{comp / own:.3f}" if own else "-", "")
        console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="ci", choices=["ci", "full"])
    ap.add_argument("--data-dir", default="loom-data")
    ap.add_argument("--methods", default=METHODS, help="comma-separated merge methods")
    ap.add_argument("--sizes", default="2,4,8", help="numbers of adapters merged")
    ap.add_argument("--subsets", type=int, default=3, help="seeded subsets per size")
    ap.add_argument("--weighting", default="sum", choices=["sum", "mean"],
                    help="weights 1 each (sum, the default of every method) or 1/k each (mean)")
    ap.add_argument("--lorahub-budget", type=int, default=40)
    ap.add_argument("--n", type=int, default=30, help="prompts per task")
    ap.add_argument("--split", default="all", choices=["all", "train", "heldout"], help="cue phrasings of prompts")
    ap.add_argument("--describe", default="auto:3,lorahub:3,auto:1",
                    help="method:k (adapters retrieved; the API's default k is 3) of the task-description "
                         "requests ('' skips part 2)")
    ap.add_argument("--min-score", type=float, default=0.25, help="min similarity (API default 0.25)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subsets")
    ap.add_argument("--eval-seed", type=int, default=1234)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch
    from rich.console import Console

    from testbed.eval import evaluate
    from testbed.zoo import build_zoo

    torch.set_num_threads(1)
    console = Console(width=200)
    t0 = time.perf_counter()
    zoo = build_zoo(args.size, Path(args.data_dir))
    console.print(f"zoo {zoo.root} ({len(zoo.tasks)} tasks on {zoo.base_a.id}) ready in {time.perf_counter() - t0:.1f} s")
    ref = evaluate({"base": "base", "oracle": "oracle"}, zoo=zoo, tasks=list(zoo.tasks), n=args.n,
                   split=args.split, seed=args.eval_seed, batch_size=args.batch_size)
    console.print(f"base {ref.mean('base'):.3f}, oracle {ref.mean('oracle'):.3f} over {len(zoo.tasks)} tasks")
    report: dict[str, Any] = {"zoo": str(zoo.root), "n": args.n, "split": args.split, "weighting": args.weighting,
                              "reference": ref.accuracy}
    t1 = time.perf_counter()
    report["multi_task"] = multi_task(zoo, args, ref, console)
    console.print(f"part 1: {time.perf_counter() - t1:.1f} s")
    print_multi(report["multi_task"], args, console)
    if args.describe:
        t2 = time.perf_counter()
        report["describe"] = describe_requests(zoo, args, ref, console)
        console.print(f"part 2: {time.perf_counter() - t2:.1f} s")
        print_describe(report["describe"], args, console)
    console.print(f"total {time.perf_counter() - t0:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
