"""Generation and transfer on the testbed zoo, side by side (exact match with testbed.eval).

Part 1 - a held-out member of a parametric family, described only in words (``caesar_3`` by
default): SG-LoRA and ICM-LoRA generated adapters vs the nearest existing adapter (by description)
vs a linear merge of the top-K (the semantic prior's mean, ``topk_weighted``) and a ``cat`` merge
vs the held-out member's own trained adapter (the oracle) vs the base.
Part 2 - Trans-LoRA: an adapter of base A moved to base B vs the source on A vs B's base vs an
adapter trained on B with real data. Time per phase of every job.

Run:  python benchmarks/generation_bench.py --size ci --data-dir /tmp/gen/data
Descriptions are embedded as the hub embeds them (all-MiniLM-L6-v2 from its PyPI package, offline;
``--embedder hashed`` for a hashed bag of words); pass the same data dir to reuse a built zoo.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from hub.core.adapter import LoraAdapter
    from testbed.entries import AdapterEntry
    from testbed.tasks import Task

FAMILY_TASKS = ("upper", "caesar_1", "caesar_2", "caesar_3", "caesar_4", "caesar_5")


def zoo_tasks(held: Task) -> tuple[str, ...]:
    """The benchmark's zoo: ``upper``, the caesar family and the held-out member's own family."""
    from testbed.tasks import TASKS

    return tuple(dict.fromkeys([*FAMILY_TASKS, *(t.name for t in TASKS.values() if t.family == held.family)]))


def toy_embed(text: str, dim: int = 64) -> torch.Tensor:
    v = torch.zeros(dim)
    for w in text.lower().replace(",", " ").replace(".", " ").split():
        h = int(hashlib.sha256(w.encode()).hexdigest()[:8], 16)
        v += torch.randn(dim, generator=torch.Generator().manual_seed(h))
    return v / v.norm().clamp_min(1e-8)


def member_interpolation(library: list[AdapterEntry], held: Task) -> LoraAdapter | None:
    """Diagnostic: the held-out member's weights as the per-parameter least-squares line through its family's
    members (A and B fitted separately: the zoo trains every LoRA from the same seed, so their A's start alike),
    read at the held-out parameter. What a generator interpolating member weights would produce at best;
    None when the family has fewer than two members in the library."""

    from hub.core.adapter import LoraAdapter
    from hub.core.peft_io import load_peft

    members = [e for e in library if e.family is not None and e.family == held.family]
    if len(members) < 2 or held.param is None:
        return None
    ks = torch.tensor([float(e.param or 0) for e in members])
    w = torch.tensor([1.0, float(held.param)]) @ torch.linalg.pinv(torch.stack([torch.ones_like(ks), ks], 1))
    ads = [load_peft(e.dir) for e in members]
    layers = {m: replace(la, a=sum(float(wi) * ad.layers[m].a for wi, ad in zip(w, ads, strict=True)),
                         b=sum(float(wi) * ad.layers[m].b for wi, ad in zip(w, ads, strict=True)))
              for m, la in ads[0].layers.items()}
    return LoraAdapter(layers, ads[0].spec)


class _Timings(dict):
    def __setitem__(self, key: str, value: float) -> None:
        print(f"  [{value:8.2f}s] {key}", flush=True)
        super().__setitem__(key, value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="ci")
    ap.add_argument("--data-dir", default="loom-data")
    ap.add_argument("--held-out", default="caesar_3")
    ap.add_argument("--transfer-task", default="upper")
    ap.add_argument("--n", type=int, default=50, help="eval examples per task")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--sg-seeds", default="0,1,2",
                    help="SG-LoRA generator seeds (train + sample); rows 'sg_lora' (z = the prior's mean, the "
                         "default) and 'sg_lora, z ~ p(z|c)' (the paper's draw) per seed, their means below the table")
    ap.add_argument("--sg-steps", type=int, default=300)
    ap.add_argument("--icm-steps", type=int, default=1000)
    ap.add_argument("--icm-seeds", default="2024",
                    help="ICM-LoRA generator seeds; rows per seed and condition kind, their means below the table")
    ap.add_argument("--icm-code-shape", action="store_true",
                    help="ICM-LoRA with the released code's single-channel CVAE (fold 1, 8 stages of 4-32 channels; "
                         "the bench's config before fold) instead of ICMConfig's folded default")
    ap.add_argument("--no-icm-description", dest="icm_description", action="store_false",
                    help="skip the ICM-LoRA generator conditioned on description embeddings")
    ap.add_argument("--distil-steps", type=int, default=300)
    ap.add_argument("--n-accept", type=int, default=2048)
    ap.add_argument("--base-steps", type=int, default=None, help="shorter base pre-training (loaded hosts)")
    ap.add_argument("--lora-steps", type=int, default=None, help="shorter zoo LoRA training (loaded hosts)")
    ap.add_argument("--disc-real", type=int, default=0,
                    help="real task prompts for the discriminator (Phase A); 0: the 5 seeds only")
    ap.add_argument("--max-candidates", type=int, default=None, help="synthesis budget (default 4 x n-accept)")
    ap.add_argument("--temperature", type=float, default=1.0, help="synthesis temperature on the target base")
    ap.add_argument("--sampler", default="rewrite", help="trans_lora candidate generator: rewrite or prefix")
    ap.add_argument("--length-jitter", type=int, default=None, help="rewrite sampler: input length +- this")
    ap.add_argument("--instruction-rates", type=float, nargs=2, default=None,
                    help="rewrite sampler: share of instruction tokens T rewrites (low high)")
    ap.add_argument("--no-filter", action="store_true", help="trans_lora ablation: keep every well-formed candidate")
    ap.add_argument("--student-lr", type=float, default=None)
    ap.add_argument("--ceiling", action="store_true",
                    help="also distil from *real* task prompts labelled by the teacher (an upper bound of the "
                         "synthesis, not a method)")
    ap.add_argument("--embedder", choices=["minilm", "hashed"], default="minilm",
                    help="description embeddings: the hub's MiniLM (default) or a hashed bag of words")
    ap.add_argument("--part", choices=["all", "generation", "transfer"], default="all")
    ap.add_argument("--zoo-root", default=None, help="use an already built zoo folder (manifest.json) as is")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from generation.icm_lora import ICMConfig, ICMLoRA, TaskSnapshots
    from generation.sg_lora import Expert, SGConfig, SGLoRA
    from generation.taskvec import TextCodec, task_vector
    from generation.trans_lora import TransConfig, transfer
    from hub.core.peft_io import load_peft
    from hub.core.provenance import ParentRef
    from merging import merge
    from testbed.eval import Adapter, BaseModel, evaluate
    from testbed.models import size_recipe
    from testbed.tasks import get_task
    from testbed.tokenizer import build_tokenizer
    from testbed.train import load_base
    from testbed.zoo import build_zoo, with_steps

    torch.set_num_threads(2)
    timings: dict[str, float] = _Timings()
    t0 = time.perf_counter()
    recipe = None
    if args.base_steps or args.lora_steps:
        rec = size_recipe(args.size)
        recipe = with_steps(rec, args.base_steps or rec.base_a.steps, args.lora_steps or rec.lora.steps)
    if args.zoo_root:
        from testbed.entries import Zoo

        zoo = Zoo.load(args.zoo_root)
    else:
        zoo = build_zoo(args.size, args.data_dir, seed=0, tasks=zoo_tasks(get_task(args.held_out)), recipe=recipe)
    print(f"zoo {zoo.root} ready in {time.perf_counter() - t0:.0f}s", flush=True)
    timings["zoo (build or cache)"] = time.perf_counter() - t0
    codec = TextCodec(build_tokenizer())
    base_a = load_base(zoo.base_a.dir)

    phase_t: dict[str, float] = {}
    # ---- Part 1: generation for a held-out family member --------------------------------
    if args.part in ("all", "generation"):
        held = get_task(args.held_out)
        library = [e for e in zoo.adapters_on() if e.task != held.name]
        t0 = time.perf_counter()
        snaps = {e.task: [load_peft(c.dir) for c in sorted(e.checkpoints, key=lambda c: c.step)] for e in library}
        if args.embedder == "minilm":
            from hub.search.embedder import load_embedder

            minilm = load_embedder()

            def embed(text: str) -> torch.Tensor:
                return torch.from_numpy(minilm.embed([text])[0].copy()).float()
        else:
            embed = toy_embed
        experts = [Expert(e.name, embed(e.description), snaps[e.task], ParentRef(e.name, "1", sha256=e.sha256))
                   for e in library]
        timings["load library"] = time.perf_counter() - t0
        query = embed(held.description)

        sg_rows: dict[str, LoraAdapter] = {}
        for i, seed in enumerate(int(x) for x in args.sg_seeds.split(",")):
            t0 = time.perf_counter()
            gen = SGLoRA.fit(experts, SGConfig(k=args.k, tau=0.05, steps=args.sg_steps, lr=1e-3, seed=seed))
            if i == 0:
                timings["sg_lora: train generator"] = time.perf_counter() - t0
                sg = gen
            t0 = time.perf_counter()
            tag = "" if i == 0 else f" (seed {seed})"
            sg_rows[f"sg_lora{tag}"] = gen.generate(query, seed=seed)[0]  # the default: z = the prior's mean
            if i == 0:
                timings["sg_lora: generate"] = time.perf_counter() - t0
            sg_rows[f"sg_lora, z ~ p(z|c){tag}"] = gen.generate(query, seed=seed, sample=True)[0]  # the paper's
        prior = sg.prior(query)
        topk = sg.topk_weighted(query)

        t0 = time.perf_counter()
        tasks = []
        for e in library:
            prompts = [r["input"] for r in e.sample_rows()]
            tasks.append(TaskSnapshots(e.name, task_vector(base_a, codec, prompts), snaps[e.task],
                                       (ParentRef(e.name, "1", sha256=e.sha256),)))
        timings["icm_lora: task vectors"] = time.perf_counter() - t0
        held_prompts = [e.prompt for e in held.samples(5, 7)]  # the few sample prompts the zoo would publish
        held_vec = task_vector(base_a, codec, held_prompts)
        desc = [TaskSnapshots(t.name, embed(e.description), t.snapshots, t.parents)
                for t, e in zip(tasks, library, strict=True)]
        shape = {"fold": 1, "depth": 8, "channels": (4, 8, 16, 32, 32, 32, 32, 32)} if args.icm_code_shape else {}
        icm_rows: dict[str, LoraAdapter] = {}
        for i, seed in enumerate(int(x) for x in args.icm_seeds.split(",")):
            icm_cfg = ICMConfig(latent=64, steps=args.icm_steps, lr=2e-3, batch=8, seed=seed, **shape)
            tag = "" if i == 0 else f" (seed {seed})"
            t0 = time.perf_counter()
            icm = ICMLoRA.fit(tasks, icm_cfg)
            if i == 0:
                timings["icm_lora: train generator"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            icm_rows[f"icm_lora{tag}"] = icm.generate(held_vec, seed=seed)
            if i == 0:
                timings["icm_lora: generate"] = time.perf_counter() - t0
            icm_rows[f"icm_lora, z = 0{tag}"] = icm.generate(held_vec, seed=seed, sample=False)
            if i == 0:
                icm_seen_gen = icm
            if args.icm_description:  # the same generator conditioned on description embeddings instead
                t0 = time.perf_counter()
                icm_d = ICMLoRA.fit(desc, replace(icm_cfg, condition="description"))
                if i == 0:
                    icm_seen_desc = icm_d
                    timings["icm_lora (description): train generator"] = time.perf_counter() - t0
                icm_rows[f"icm_lora, description condition{tag}"] = icm_d.generate(query, seed=seed)
                icm_rows[f"icm_lora, description condition, z = 0{tag}"] = icm_d.generate(query, seed=seed,
                                                                                          sample=False)

        nearest_name = prior.names[0]
        nearest = next(e for e in library if e.name == nearest_name)
        top = [next(e for e in library if e.name == n) for n in prior.names]
        w = [float(x) for x in prior.weights]
        cat = merge([load_peft(e.dir) for e in top], "cat", weights=w)
        interp = member_interpolation(library, held)
        configs = {
            "base": BaseModel(),
            f"nearest ({nearest.task})": Adapter(nearest.dir),
            f"cat top-{len(top)}": Adapter(cat),
            f"linear top-{len(top)} (topk_weighted)": Adapter(topk),
            **{name: Adapter(ad) for name, ad in sg_rows.items()},
            **{name: Adapter(ad) for name, ad in icm_rows.items()},
            "oracle (trained)": Adapter(zoo.adapter(held.name).dir),
        }
        if interp is not None:
            configs["member interpolation (diagnostic)"] = Adapter(interp)
        t0 = time.perf_counter()
        res1 = evaluate(configs, zoo=zoo, tasks=[held.name], n=args.n, composites=False)
        # the paper's own setting: a task the generator was trained on, regenerated from its training condition
        # (its sample prompts' task vector, its description) and from the task vector of 5 other sample prompts
        seen_task = get_task(nearest.task)
        seen = library.index(nearest)
        fresh_vec = task_vector(base_a, codec, [e.prompt for e in seen_task.examples(5, 13, "train")])
        seen_configs = {f"icm_lora for the seen {seen_task.name} (fresh prompts)":
                        Adapter(icm_seen_gen.generate(fresh_vec, seed=0, sample=False)),
                        f"icm_lora for the seen {seen_task.name} (its sample prompts)":
                        Adapter(icm_seen_gen.generate(tasks[seen].condition, seed=0, sample=False)),
                        f"own adapter ({seen_task.name})": Adapter(nearest.dir)}
        if args.icm_description:
            seen_configs[f"icm_lora, description condition, for the seen {seen_task.name}"] = Adapter(
                icm_seen_desc.generate(desc[seen].condition, seed=0, sample=False))
        res_seen = evaluate(seen_configs, zoo=zoo, tasks=[seen_task.name], n=args.n, composites=False)
        timings["eval part 1"] = time.perf_counter() - t0

    # ---- Part 2: Trans-LoRA base A -> base B ---------------------------------------------
    if args.part in ("all", "transfer"):
        base_b_entry = next(b for b in zoo.bases if b.role == "B")
        base_b = load_base(base_b_entry.dir)
        src = zoo.adapter(args.transfer_task)
        extra = {k: v for k, v in {"length_jitter": args.length_jitter, "student_lr": args.student_lr,
                                   "instruction_rates": tuple(args.instruction_rates) if args.instruction_rates
                                   else None}.items() if v is not None}
        cfg = TransConfig(n_accept=args.n_accept, max_candidates=args.max_candidates or 4 * args.n_accept,
                          student_steps=args.distil_steps, temperature=args.temperature, student_r=8, student_alpha=16,
                          sampler=args.sampler, use_filter=not args.no_filter, seed=0, **extra)
        seeds = [r["input"] for r in src.sample_rows()]
        real = [e.prompt for e in get_task(src.task).examples(args.disc_real, 11, "train")] or None
        t0 = time.perf_counter()
        res = transfer(base_a, load_peft(src.dir), base_b, seeds,
                       source_id=zoo.base_a.id, target_id=base_b_entry.id, codec_s=codec, codec_t=codec, cfg=cfg,
                       parent=ParentRef(src.name, "1", sha256=src.sha256), real=real)
        timings["trans_lora: total"] = time.perf_counter() - t0
        for ph, sec in res.report["seconds"].items():
            phase_t[f"trans_lora: {ph}"] = sec
        disc_label = f"discriminator on {args.disc_real} real prompts" if args.disc_real else "discriminator on the 5 seeds"
        configs2 = {
            "source on A": Adapter(src.dir, base_id=zoo.base_a.id),
            "B base": BaseModel(base_b_entry.id),
            "transferred on B": Adapter(res.adapter, base_id=base_b_entry.id),
            "trained on B (real data)": Adapter(zoo.adapter(args.transfer_task, base_b_entry.id).dir,
                                                base_id=base_b_entry.id),
        }
        if args.ceiling:
            task_obj = get_task(src.task)

            def real_sampler(_seeds: list[str], n: int, rng: object) -> list[str]:
                return [e.prompt for e in task_obj.examples(n, rng.randint(0, 10**9), "train")]  # type: ignore[attr-defined]

            ceil = transfer(base_a, load_peft(src.dir), base_b, seeds, source_id=zoo.base_a.id,
                            target_id=base_b_entry.id, codec_s=codec, codec_t=codec, cfg=cfg, sampler=real_sampler,
                            real=real)
            configs2["distilled from real prompts (ceiling)"] = Adapter(ceil.adapter, base_id=base_b_entry.id)
        res2 = evaluate(configs2, zoo=zoo, tasks=[args.transfer_task], n=args.n, composites=False)

    # ---- print ---------------------------------------------------------------------------
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.part in ("all", "generation"):
        print(f"\n== held-out {held.name} ({args.size} zoo, n={args.n}, {device}; experts: "
              + ", ".join(f"{n} a={a:.2f}" for n, a in zip(prior.names, w, strict=True)) + ")")
        oracle = res1.accuracy["oracle (trained)"][held.name] or 0.0
        nn_acc = res1.accuracy[f"nearest ({nearest.task})"][held.name] or 0.0
        for name in configs:
            a = res1.accuracy[name][held.name] or 0.0
            ratio = f"{a / oracle:5.2f}x oracle" if oracle else "   - "
            vs_nn = f"{a / nn_acc:5.2f}x nearest" if nn_acc else "   -"
            print(f"  {name:42s} {100 * a:5.1f}%   {ratio}   {vs_nn}")
        for kind, rows in (("sg_lora", sg_rows), ("sg_lora, z ~ p(z|c)", sg_rows), ("icm_lora", icm_rows),
                           ("icm_lora, description condition", icm_rows),
                           ("icm_lora, description condition, z = 0", icm_rows)):
            accs = [res1.accuracy[n][held.name] or 0.0 for n in rows if n == kind or n.startswith(f"{kind} (seed")]
            if not accs:
                continue
            print(f"  {kind}: mean over {len(accs)} generator seeds {100 * sum(accs) / len(accs):.1f}% "
                  f"(min {100 * min(accs):.0f}%, max {100 * max(accs):.0f}%)")
        print(f"  seen member, on {seen_task.name}: " + ", ".join(
            f"{name} {100 * (res_seen.accuracy[name][seen_task.name] or 0.0):.1f}%" for name in seen_configs))
    if args.part in ("all", "transfer"):
        t = args.transfer_task
        src_acc = res2.accuracy["source on A"][t] or 0.0
        print(f"\n== Trans-LoRA {t}: {zoo.base_a.id} -> {base_b_entry.id} (n={args.n}, {disc_label}, "
              f"filter {'on' if cfg.use_filter else 'off'}; accepted {res.report['accepted']} of "
              f"{res.report['candidates']} candidates, filled {res.report['filled']}, "
              f"unsure labels dropped {res.report.get('unsure_labels', 0)})")
        for name in configs2:
            a = res2.accuracy[name][t] or 0.0
            print(f"  {name:34s} {100 * a:5.1f}%   {a / src_acc if src_acc else 0:5.2f}x source")
    print("\n== seconds per phase")
    for k, v in {**timings, **phase_t}.items():
        print(f"  {k:42s} {v:8.2f}")
    out: dict = {"timings": {**timings, **phase_t}}
    if args.part in ("all", "generation"):
        print(f"  sg_lora generator: {sg.report['parameters']} params; icm_lora generator: {icm.report['parameters']}")
        out["part1"] = json.loads(res1.to_json())
    if args.part in ("all", "transfer"):
        out["part2"], out["trans_report"] = json.loads(res2.to_json()), res.report
        out["synthetic_sample"] = res.synthetic[:20]
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
