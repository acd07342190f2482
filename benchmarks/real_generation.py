"""Part 3 of ``benchmarks/real_quality.py``: SG-LoRA and ICM-LoRA on the real zoo's held-out family members.

For each held-out member (``first_words_3``, ``repeat_word_3``: the zoo marks them ``held_out``), the library
is every other adapter of the real zoo except the held-out members (one snapshot each: the zoo keeps the final
adapter only). Each member is described in words (its model card's description, embedded by the hub's
MiniLM, as the hub embeds descriptions). Compared, exact match on the member's own task (all phrasings): the
base; the nearest adapter by description; ``cat`` and linear (``topk_weighted``, the SG prior's mean) of the
prior's top-k; SG-LoRA (the prior mean latent, the hub's default); ICM-LoRA conditioned on description
embeddings (``condition=description``, ``z = 0``); the per-parameter line through the family's members at
the held-out parameter (a diagnostic); the member's own trained adapter (the oracle).

Run through ``python benchmarks/real_quality.py --parts generation``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any


def generation_part(zoo: Any, scorer: Any, args: Any, log: Any) -> dict[str, Any]:
    """SG-LoRA / ICM-LoRA for each held-out member vs nearest, top-k merges, interpolation, own adapter."""
    import torch
    from generation_bench import member_interpolation

    from generation.icm_lora import ICMConfig, ICMLoRA, TaskSnapshots
    from generation.sg_lora import Expert, SGConfig, SGLoRA
    from hub.core.peft_io import load_peft
    from hub.core.provenance import ParentRef
    from hub.search.embedder import load_embedder
    from merging import merge
    from testbed.real.quality import eval_set
    from testbed.real.tasks import get_task

    held_out = [e for e in zoo.adapters if e.held_out]
    library = [e for e in zoo.adapters if not e.held_out]
    if not held_out:
        raise SystemExit("the zoo has no held-out family member (build it with the family tasks)")
    minilm = load_embedder()

    def embed(text: str) -> torch.Tensor:
        return torch.from_numpy(minilm.embed([text])[0].copy()).float()

    t0 = time.perf_counter()
    snaps = {e.task: [load_peft(e.dir)] for e in library}
    experts = [Expert(e.name, embed(e.description), snaps[e.task], ParentRef(e.name, "1", sha256=e.sha256))
               for e in library]
    sg = SGLoRA.fit(experts, SGConfig(k=4, tau=0.05, steps=args.sg_steps, lr=1e-3, seed=args.seed))
    sg_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    desc = [TaskSnapshots(e.name, embed(e.description), snaps[e.task], (ParentRef(e.name, "1", sha256=e.sha256),))
            for e in library]
    icm = ICMLoRA.fit(desc, replace(ICMConfig(latent=64, steps=args.icm_steps, lr=2e-3, batch=8, seed=2024),
                                    condition="description"))
    icm_s = time.perf_counter() - t0
    log(f"generators trained on {len(library)} adapters: sg_lora {sg_s:.0f} s ({sg.report['parameters']} params), "
        f"icm_lora {icm_s:.0f} s ({icm.report['parameters']} params)")
    out: dict[str, Any] = {"library": [e.task for e in library], "sg_train_s": sg_s, "icm_train_s": icm_s,
                           "members": {}}
    rows = []
    for held in held_out:
        task = get_task(held.task)
        query = embed(task.description)
        prior = sg.prior(query)
        top = [next(e for e in library if e.name == n) for n in prior.names]
        nearest = top[0]
        configs: dict[str, Any] = {
            "base": None,
            f"nearest ({nearest.task})": snaps[nearest.task][0],
            f"cat top-{len(top)}": merge([snaps[e.task][0] for e in top], "cat", weights=[float(w) for w in prior.weights]),
            f"linear top-{len(top)} (SG prior mean)": sg.topk_weighted(query),
            "sg_lora (z = prior mean)": sg.generate(query, seed=args.seed)[0],
            "icm_lora, description condition (z = 0)": icm.generate(query, seed=args.seed, sample=False),
            "icm_lora, description condition (z ~ N(0, I))": icm.generate(query, seed=args.seed),
            "member interpolation (diagnostic)": member_interpolation(library, task),
            "own adapter": load_peft(held.dir),
        }
        data = eval_set([held.task], args.n, "all")
        t1 = time.perf_counter()
        acc = {name: scorer.adapter_accuracy(ad, data)[held.task] for name, ad in configs.items()
               if ad is not None or name == "base"}
        own = acc["own adapter"]
        out["members"][held.task] = {"accuracy": acc, "top": [f"{n} {float(w):.2f}" for n, w in
                                                              zip(prior.names, prior.weights, strict=True)],
                                     "eval_s": time.perf_counter() - t1}
        log(f"{held.task} (\"{task.description}\"; prior top-{len(top)}: "
            + ", ".join(out["members"][held.task]["top"]) + ")")
        for name, a in acc.items():
            rows.append([held.task, name, f"{a:.0%}", f"{a / own:.2f}" if own else "-"])
    log(f"\nheld-out family members described in words (n={args.n}, all phrasings):\n| member | config | exact match "
        "| / own |\n|---|---|---|---|\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows))
    return out
