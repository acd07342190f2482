"""Build the testbed zoo, then measure it: oracle vs base exact match, held-out cues, recognisability.

Prints the build wall time per phase, the eval table (base model = baseline, each task's own adapter
= oracle, measured in the same run on the same prompts) with the oracle/base ratio, and how well
task prompts can be told apart (linear probe on base hidden states; MiniLM cue-to-description match).

    python benchmarks/testbed_zoo.py --size ci
    python benchmarks/testbed_zoo.py --size full --data-dir loom-data --json full-eval.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="ci", choices=["ci", "full"])
    ap.add_argument("--data-dir", default="loom-data")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from rich.console import Console

    from testbed.commands import build_with_progress
    from testbed.eval import BaseModel, Oracle, evaluate
    from testbed.probe import embedding_match, linear_probe

    console = Console()
    t0 = time.perf_counter()
    zoo = build_with_progress(args.size, Path(args.data_dir), console=console)
    console.print(
        f"build or reuse: {time.perf_counter() - t0:.1f} s wall; phases (first build): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in zoo.timings.items())
        + f"; total {sum(zoo.timings.values()):.0f} s"
    )
    report: dict = {"size": args.size, "timings": zoo.timings, "root": str(zoo.root)}
    configs: dict = {"base": "base", "oracle": "oracle"}
    if len(zoo.bases) > 1:
        b_id = zoo.bases[1].id
        configs |= {f"base {b_id}": BaseModel(b_id), f"oracle {b_id}": Oracle(b_id)}
    for split in ("all", "heldout"):
        t1 = time.perf_counter()
        res = evaluate(configs, zoo=zoo, n=args.n, split=split)
        console.print(res.rich_table())
        b, o = res.mean("base"), res.mean("oracle")
        console.print(
            f"[{split} cues] mean exact match: oracle {o:.3f} vs base {b:.3f} "
            f"(oracle - base = {o - b:+.3f}); min oracle task "
            f"{min(v for v in res.accuracy['oracle'].values() if v is not None):.3f}; "
            f"eval {time.perf_counter() - t1:.0f} s"
        )
        report[f"eval_{split}"] = json.loads(res.to_json())
    probes = {sp: linear_probe(zoo, test_split=sp) for sp in ("train", "heldout")}
    for sp, probe in probes.items():
        console.print(
            f"linear probe on base hidden states (train cues -> {sp} cues, new inputs), {len(zoo.tasks)} tasks: "
            f"accuracy {probe['accuracy']:.3f} (chance {1 / len(zoo.tasks):.3f}), family "
            f"{probe['family_accuracy']:.3f}; top confusions {probe['confusions']}"
        )
    emb = embedding_match(zoo)
    console.print(
        f"MiniLM held-out cue -> description: accuracy {emb['accuracy']:.3f}, family "
        f"{emb['family_accuracy']:.3f} over {emb['n']} cues"
    )
    report |= {"probe": probes, "embedding_match": emb}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
