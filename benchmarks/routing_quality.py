"""Routed quality on the testbed zoo: each router preset vs the oracle, and MeteoRA on composite prompts.

1. Mixed stream: every zoo task's prompts, new inputs (exact match, ``testbed.eval.evaluate``), once with
   the training phrasings ("seen") and once with held-out phrasings no adapter or router saw ("unseen");
   "all" weighs the two by how many phrasings of each kind a task has. The oracle
   knows each prompt's task and answers with that task's own adapter; each router preset sees only the
   prompt and routes over ALL the zoo's adapters (one bank, in zoo order). Rows of a batch are routed
   independently (token-level gates per token, semantic per request), so a stream mixed across tasks
   gives the same answers as these per-task batches. Printed: accuracy per preset, the ratio to the
   oracle measured in the same run (goal >= 0.98), and the base model as the floor.
2. Composite prompts (``composite2`` / ``composite3``: two or three tasks chained in one prompt):
   MeteoRA (top-k, temperature for multi-intent; ``sum_to_k``: each chosen expert at full strength;
   ``min_prob`` and ``multi_label``: as many experts as the gate finds asked for; ``mix_intents``: multi-label
   gates also trained on synthetic two-task requests) vs every single adapter
   merged into the base; each MeteoRA setting is also scored on single-task prompts (what it costs there).

Gates are trained with :func:`routing.train.train_router` exactly as the ``router_train`` job does,
on per-task training examples (``train`` cue phrasings, a seed disjoint from the evaluation stream);
``--samples zoo`` uses only the zoo's published samples.jsonl (5 per adapter) instead.

    python benchmarks/routing_quality.py --size ci
    python benchmarks/routing_quality.py --size ci --presets meteora,smora --n 30 --steps 150 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

BOS_MARK, EOS_MARK = "\x02", "\x03"  # stand-ins for <s> and </s> in router training text


def _encoder() -> Any:
    from testbed.train import BOS_ID, EOS_ID

    def encode(text: str) -> list[int]:
        return [BOS_ID if b == 2 else EOS_ID if b == 3 else b for b in text.encode("utf-8")]

    return encode


def training_data(zoo: Any, entries: list[Any], source: str, per_task: int, seed: int) -> list[list[dict]]:
    """Per expert, ``{"input", "output"}`` rows formatted the way the testbed prompts the model."""
    from testbed.tasks import get_task

    data = []
    for e in entries:
        if source == "zoo":
            rows = [(r["input"], r["output"]) for r in e.sample_rows()]
        else:
            rows = [(x.prompt, x.output) for x in get_task(e.task).examples(per_task, seed, "train")]
        data.append([{"input": f"{BOS_MARK}{p}\n", "output": f"{o}{EOS_MARK}"} for p, o in rows])
    return data


def routed_answer(routed: Any, batch_size: int, embed: Any = None) -> Any:
    """A ``generate(prompts) -> answers`` function over a routed model (testbed greedy decoding)."""
    from routing.features import request_features
    from testbed.generate import greedy

    def fn(prompts: list[str]) -> list[str]:
        new = max(len(p.split(" | ")[0].encode()) for p in prompts) * 4 + 4  # as testbed.eval does
        if routed.router is None and not routed.needs_features:
            return greedy(routed, prompts, batch_size=batch_size, max_new_tokens=new)
        out: list[str] = []
        for i in range(0, len(prompts), batch_size):  # request-level router: decide per chunk of rows
            chunk = prompts[i:i + batch_size]
            if routed.router is not None:
                routed.router.apply(routed, chunk)
            else:  # gates reading the request features (features="embedding"), as the server sets them
                routed.set_features(request_features(embed, chunk, routed.config))
            out += greedy(routed, chunk, batch_size=len(chunk), max_new_tokens=new)
        return out

    return fn


def fresh_base(zoo: Any) -> Any:
    """Base A loaded from the zoo, named by its hub id (router checkpoints record the base id)."""
    from testbed.train import load_base

    model = load_base(zoo.base_a.dir).eval()
    model.config.name_or_path = zoo.base_a.id
    return model


def minilm() -> Any:
    """texts -> (N, 384) MiniLM embeddings (the hub's search embedder, offline)."""
    import torch

    from hub.search.embedder import load_embedder

    emb = load_embedder(device="cpu")
    return lambda texts: torch.as_tensor(emb.embed(list(texts)))


def build_preset(zoo: Any, entries: list[Any], experts: list[Any], preset: str, params: dict, steps: int,
                 data: list[list[dict]], seed: int, embed: Any = None, lr: float = 1e-2) -> tuple[Any, dict[str, Any]]:
    """Train (or, for ``semantic``, set up) a router over ``experts`` on a fresh copy of base A."""

    from routing import ROUTERS, build_router
    from routing.checkpoint import load_router
    from routing.train import TrainConfig, train_router
    from testbed.train import PAD_ID

    names = [e.name for e in entries]
    model = fresh_base(zoo)
    t0 = time.perf_counter()
    if not ROUTERS.get(preset).trainable:  # exemplars: the adapter's sample prompts (spec §8.2 #1)
        exemplars = [[r["input"].strip(BOS_MARK).strip() for r in rows] for rows in data]
        routed = build_router(model, experts, preset, params, names=names, exemplars=exemplars, embed=embed)
        return routed, {"train_s": time.perf_counter() - t0}
    tc = TrainConfig(steps=steps, batch_size=16, lr=lr, max_length=160, seed=seed, pad_id=PAD_ID)
    state = train_router(model, experts, preset, params, examples=data, tokenizer=_encoder(), names=names, train=tc,
                         embed=embed)
    routed = load_router(model, experts, state, names=names)
    return routed, {"train_s": time.perf_counter() - t0, "first_loss": state.metrics["first_loss"],
                    "final_loss": state.metrics["final_loss"]}


DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "meteora": {"k": 2}, "mole_llava": {}, "mole_wu": {}, "smora": {}, "lora_mixer": {"k": 2},
    "semantic": {"k": 1},
}
#: the hub setting (``--features embedding``): gates read the request embedding; presets without a supervised
#: gate loss get ``task_ce`` (the experts' own samples are free task labels); hub LoRAs stay frozen (SMoRA);
#: LoRA-Mixer routes every linear the zoo's adapters adapt (its paper placement drops their MLP parts).
#: MeteoRA top-1: with request-level features every token of a row routes alike, and a second expert only
#: blurs the first (ci, lexical features: top-2 0.921 of the oracle, top-1 0.959). Wu MoLE without its balance
#: loss: -sum_i log q_i over a batch of 16 rows and 17 experts punishes every peaked gate (0.344 -> 0.933).
#: LoRA-Mixer top-1 likewise (0.907 -> 0.953). LLaVA-MoLE with its layer routers also routing the experts'
#: attention LoRAs (``routed_attention``): its MLP-only placement drops what the zoo's adapters do in attention
#: (0.321 -> 0.949 of the oracle). SMoRA's gate CE at 5 (its top-8 of 136 rank groups per site, 17 experts of rank 8,
#: must all be the expert's; seen phrasings 0.972 -> 0.994; a per-rank BCE instead of the pooled CE: 0.878).
HUB_PARAMS: dict[str, dict[str, Any]] = {
    "meteora": {"k": 1}, "mole_llava": {"task_ce": 1.0, "routed_attention": True},
    "mole_wu": {"task_ce": 1.0, "balance_coef": 0.0},
    "smora": {"task_ce": 5.0, "trainable": "gate"},
    "lora_mixer": {"task_ce": 1.0, "placement": "all_linear", "k": 1},
    # exemplars and requests as the embedding plus hashed words; the best single exemplar weighs with the mean
    "semantic": {"nearest": 0.5},
}


def feature_params(mode: str, lexical_dim: int) -> dict[str, Any]:
    """Router config fields of a ``--features`` mode."""
    if mode == "lexical":
        return {"features": "embedding", "lexical_dim": lexical_dim}
    if mode not in ("site_input", "embedding"):
        raise SystemExit(f"--features: unknown mode {mode!r} (site_input, embedding, lexical)")
    return {"features": mode}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="ci", choices=["ci", "full"])
    ap.add_argument("--data-dir", default="loom-data")
    ap.add_argument("--tasks", default=None, help="comma-separated subset of the zoo's tasks")
    ap.add_argument("--presets", default="meteora,mole_llava,mole_wu,smora,lora_mixer,semantic")
    ap.add_argument("--n", type=int, default=40, help="prompts per task and phrasing kind")
    ap.add_argument("--composite-n", type=int, default=200, help="composite prompts per chain length")
    ap.add_argument("--steps", type=int, default=200, help="gate training steps per preset")
    ap.add_argument("--lr", type=float, default=1e-2, help="gate learning rate")
    ap.add_argument("--per-task", type=int, default=64, help="training examples per task")
    ap.add_argument("--samples", default="task", choices=["task", "zoo"])
    ap.add_argument("--features", default="site_input,embedding",
                    help="gate features of the trained presets: site_input (paper), embedding (MiniLM of the "
                         "request), lexical (MiniLM + hashed words of the request, --lexical-dim buckets)")
    ap.add_argument("--lexical-dim", type=int, default=4096, help="hashed word buckets of the 'lexical' mode")
    ap.add_argument("--params", default=None,
                    help='JSON {preset: {field: value}} merged over the hub settings, e.g. \'{"mole_wu": {"balance_coef": 0}}\'')
    ap.add_argument("--composite-temperature", type=float, default=15.0)
    ap.add_argument("--min-prob", type=float, default=0.25, help="MeteoRA min_prob of the adaptive composite setting")
    ap.add_argument("--mix-intents", type=float, default=0.35,
                    help="MeteoRA multi_label mix_intents: share of synthetic two-task requests in gate training")
    ap.add_argument("--mix-lr", type=float, default=0.1,
                    help="gate learning rate of the mix_intents router (at --lr 3e-2 it needs about 3x the steps)")
    ap.add_argument("--no-composite", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-transfer", action="store_true", help="zoo without base B (a different cache entry)")
    ap.add_argument("--zoo-steps", default=None, help="BASE,LORA: shorter zoo schedules (smoke runs only)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from hub.core.peft_io import load_peft
    from testbed.eval import Adapter, Function, evaluate
    from testbed.zoo import build_zoo

    torch.set_num_threads(1)
    console = Console()
    t0 = time.perf_counter()
    recipe = None
    if args.zoo_steps:
        from testbed.models import size_recipe
        from testbed.zoo import with_steps

        b, lo = (int(x) for x in args.zoo_steps.split(","))
        recipe = with_steps(size_recipe(args.size), b, lo)
    zoo = build_zoo(args.size, Path(args.data_dir), tasks=args.tasks.split(",") if args.tasks else None,
                    transfer=not args.no_transfer, recipe=recipe)
    console.print(f"zoo {zoo.root} ({len(zoo.tasks)} tasks) ready in {time.perf_counter() - t0:.1f} s")
    entries = zoo.adapters_on(None)
    experts = [load_peft(e.dir) for e in entries]
    data = training_data(zoo, entries, args.samples, args.per_task, 7_000 + args.seed)
    from routing import ROUTERS

    embed = minilm()
    hub_params = {k: dict(v) for k, v in HUB_PARAMS.items()}
    for k, v in (json.loads(args.params) if args.params else {}).items():
        hub_params.setdefault(k, {}).update(v)
    presets: list[str] = []
    configs: dict[str, Any] = {"base": "base", "oracle": "oracle"}
    info: dict[str, Any] = {}
    for preset in [p for p in args.presets.split(",") if p]:
        modes = args.features.split(",") if ROUTERS.get(preset).trainable else (
            ["-", "lexical"] if "lexical" in args.features.split(",") else ["-"])
        for mode in modes:
            p = preset if mode in ("-", "site_input") else f"{preset}+{mode[:3]}"
            params = {**DEFAULT_PARAMS.get(preset, {}), **(feature_params(mode, args.lexical_dim) if mode != "-" else {}),
                      **(hub_params.get(preset, {}) if mode in ("embedding", "lexical") else {})}
            routed, meta = build_preset(zoo, entries, experts, preset, params, args.steps, data, args.seed, embed, args.lr)
            info[p] = meta
            presets.append(p)
            console.print(f"{p}: ready in {meta['train_s']:.1f} s" + (
                f" (loss {meta['first_loss']:.3f} -> {meta['final_loss']:.3f})" if "final_loss" in meta else ""))
            configs[p] = Function(routed_answer(routed, args.batch_size, embed))
    t1 = time.perf_counter()
    res = {split: evaluate(configs, zoo=zoo, tasks=list(zoo.tasks), n=args.n, split=split,
                           batch_size=args.batch_size) for split in ("train", "heldout")}
    console.print(f"mixed-stream eval (seen and unseen phrasings): {time.perf_counter() - t1:.1f} s")
    from testbed.tasks import get_task

    def per_task(name: str) -> dict[str, dict[str, float]]:
        """seen / unseen / all (weighted by how many phrasings of each kind the task has) per task."""
        out: dict[str, dict[str, float]] = {}
        for tk in zoo.tasks:
            seen, unseen = res["train"].accuracy[name][tk] or 0.0, res["heldout"].accuracy[name][tk] or 0.0
            task = get_task(tk)
            n_s, n_u = len(task.all_cues("train")), len(task.all_cues("heldout"))
            out[tk] = {"seen": seen, "unseen": unseen, "all": (n_s * seen + n_u * unseen) / (n_s + n_u)}
        return out

    scores = {name: per_task(name) for name in ["base", "oracle", *presets]}

    def mean(name: str, kind: str) -> float:
        return sum(v[kind] for v in scores[name].values()) / len(scores[name])

    t = Table(title=f"routed accuracy over {len(entries)} experts vs the oracle (n={args.n} per task and "
                    f"phrasing kind, {len(zoo.tasks)} tasks); seen = the training phrasings on new inputs, "
                    f"unseen = phrasings no adapter or router saw")
    for col in ("config", "seen", "/ oracle", "unseen", "/ oracle", "all", "/ oracle", "min task (all)",
                "goal >= 0.98 (seen / all)"):
        t.add_column(col)
    kinds = ("seen", "unseen", "all")
    oracle = {k: mean("oracle", k) for k in kinds}
    report: dict[str, Any] = {"zoo": str(zoo.root), "tasks": list(zoo.tasks), "n": args.n, "steps": args.steps,
                              "oracle": oracle, "base": {k: mean("base", k) for k in kinds}, "presets": {},
                              "train": info}
    for name in ["base", "oracle", *presets]:
        m = {k: mean(name, k) for k in kinds}
        ratio = {k: m[k] / oracle[k] if oracle[k] else float("nan") for k in kinds}
        worst = min(scores[name], key=lambda tk: scores[name][tk]["all"])
        goal = "" if name in ("base", "oracle") else " / ".join(
            "yes" if ratio[k] >= 0.98 else "no" for k in ("seen", "all"))
        t.add_row(name, *(x for k in kinds for x in (f"{m[k]:.3f}", f"{ratio[k]:.3f}")),
                  f"{worst} {scores[name][worst]['all']:.2f}", goal)
        if name in presets:
            report["presets"][name] = {"mean": m, "ratio_to_oracle": ratio, "per_task": scores[name]}
    console.print(t)

    if not args.no_composite:
        from routing.checkpoint import load_router
        from routing.train import TrainConfig, train_router
        from testbed.train import PAD_ID

        names = [e.name for e in entries]
        feats = args.features.split(",")[-1]  # the last feature mode asked for (default: embedding)
        def train_meteora(lr: float = args.lr, **extra: Any) -> Any:
            return train_router(fresh_base(zoo), experts, "meteora",
                                {"k": 2, **feature_params(feats, args.lexical_dim), **extra}, examples=data,
                                tokenizer=_encoder(), names=names, embed=embed,
                                train=TrainConfig(steps=args.steps, batch_size=16, lr=lr, max_length=160,
                                                  seed=args.seed, pad_id=PAD_ID))

        state, multi = train_meteora(), train_meteora(multi_label=True)
        mixed = train_meteora(args.mix_lr, multi_label=True, mix_intents=args.mix_intents)
        comp_cfgs: dict[str, Any] = {}
        hot = args.composite_temperature
        settings: list[tuple[Any, dict[str, Any], str]] = [
            (state, {"k": k, "temperature": temp, "sum_to_k": sum_k, "min_prob": min_p},
             f"k={k} T={temp:g}" + (" sum_to_k" if sum_k else "") + (f" min_prob={min_p:g}" if min_p else ""))
            for k, temp, sum_k, min_p in ((2, hot, False, 0.0), (3, hot, False, 0.0), (2, 1.0, False, 0.0),
                                          (2, hot, True, 0.0), (3, hot, True, 0.0),
                                          (2, hot, True, args.min_prob), (3, hot, True, args.min_prob))]
        settings += [(multi, {"k": k}, f"k={k} multi_label") for k in (2, 3)]
        settings += [(mixed, {"k": k}, f"k={k} multi_label mix_intents={args.mix_intents:g}") for k in (2, 3)]
        for st0, over, label in settings:
            st = type(st0)(**{**vars(st0), "config": {**st0.config, **over}})
            comp_cfgs[f"meteora({feats}) {label}"] = Function(routed_answer(
                load_router(fresh_base(zoo), experts, st, names=names), args.batch_size, embed))
        singles = {f"single {e.task}": Adapter(e) for e in entries}
        t2 = time.perf_counter()
        comp = evaluate({**comp_cfgs, **singles, "base": "base"}, zoo=zoo, tasks=["composite2", "composite3"],
                        n=args.composite_n, batch_size=args.batch_size)
        # the same MeteoRA settings on single-task prompts (seen phrasings): what a multi-intent setting costs
        solo = evaluate(comp_cfgs, zoo=zoo, tasks=list(zoo.tasks), n=args.n, split="train",
                        batch_size=args.batch_size)
        console.print(f"composite eval: {time.perf_counter() - t2:.1f} s")
        ct = Table(title="composite prompts: MeteoRA vs every single adapter (and the same MeteoRA settings on "
                         "single-task prompts, seen phrasings, / oracle)")
        for col in ("config", "composite2", "composite3", "mean", "single tasks / oracle"):
            ct.add_column(col)

        def cm(c: str) -> float:
            return comp.mean(c, True) or 0.0

        for c in sorted(comp.accuracy, key=lambda c: -cm(c)):
            a = comp.accuracy[c]
            ct.add_row(c, f"{a['composite2'] or 0:.3f}", f"{a['composite3'] or 0:.3f}", f"{cm(c):.3f}",
                       f"{(solo.mean(c) or 0.0) / oracle['seen']:.3f}" if c in comp_cfgs else "")
        console.print(ct)
        best = max((c for c in comp.accuracy if c.startswith("single")), key=cm)
        for c in comp_cfgs:
            console.print(f"{c}: {cm(c):.3f} vs best single adapter ({best}) {cm(best):.3f}: ratio "
                          f"{cm(c) / max(cm(best), 1e-9):.2f} -> "
                          f"{'beats' if cm(c) > cm(best) else 'does NOT beat'} every single adapter")
        report["composite"] = {c: comp.accuracy[c] for c in comp.accuracy}
        report["composite_settings_on_single_tasks"] = {c: solo.mean(c) for c in comp_cfgs}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
