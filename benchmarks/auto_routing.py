"""``model: auto`` as served: how often the hub's semantic router picks the prompt's own adapter.

The ci (or full) zoo is published into a fresh hub (SQLite, in a temporary folder); every zoo task's
evaluation prompts (train and held-out cue phrasings, ``testbed.tasks``) go through
``InferenceService.auto`` -- the exact decision ``POST /v1/completions {"model": "auto"}`` makes -- with
adapters represented by their card embedding only, and by card + mean embedding of their published sample
prompts (``LOOM_SEMANTIC_ROUTER_EXEMPLARS``, the default). Printed: top-1 routing accuracy per split, side by
side, and the ratio. Routing to the own adapter is what lets ``auto`` reach the oracle's exact match.

    python benchmarks/auto_routing.py --size ci --n 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="ci", choices=["ci", "full"])
    ap.add_argument("--data-dir", default="loom-data", help="where the zoo is cached")
    ap.add_argument("--n", type=int, default=30, help="prompts per task and split")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from hub.cli.testbed import publish_zoo_into
    from hub.services.container import Hub, inference_service
    from hub.settings import get_settings
    from testbed.tasks import get_task
    from testbed.zoo import build_zoo

    console = Console()
    zoo = build_zoo(args.size, Path(args.data_dir))
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = get_settings(data_dir=Path(tmp), semantic_router_threshold=-1.0,
                                inference_default_base=zoo.base_a.id)
        hub = Hub(settings)
        try:
            publish_zoo_into(hub, zoo)
            for mode in (False, True):
                settings.semantic_router_exemplars = mode
                svc = inference_service(hub, "cpu")
                label = "card + exemplars" if mode else "card only"
                results[label] = {}
                t0 = time.perf_counter()
                for split in ("train", "heldout"):
                    hits = total = 0
                    for e in zoo.adapters_on(zoo.base_a.id):
                        for ex in get_task(e.task).examples(args.n, args.seed, split):
                            plan = svc.resolve(None, "auto", None, ex.prompt)  # the default base: zoo.base_a
                            top = max(plan.mixture, key=lambda k: plan.mixture[k]) if plan.mixture else ""
                            hits += top.split("@")[0] == e.name
                            total += 1
                    results[label][split] = hits / total
                results[label]["ms_per_request"] = 1000 * (time.perf_counter() - t0) / (2 * total)
                svc.close()
        finally:
            hub.close()
    t = Table(title=f"model=auto picks the prompt's own adapter ({len(zoo.tasks)} tasks, n={args.n} per split)")
    for col in ("adapter vectors", "train cues", "held-out cues", "ms / request"):
        t.add_column(col)
    for label, r in results.items():
        t.add_row(label, f"{r['train']:.3f}", f"{r['heldout']:.3f}", f"{r['ms_per_request']:.1f}")
    console.print(t)
    a, b = results["card only"], results["card + exemplars"]
    console.print(f"exemplars vs card only: train {b['train'] / max(a['train'], 1e-9):.2f}x, "
                  f"held-out {b['heldout'] / max(a['heldout'], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
