"""Build (or reuse) the task zoo: base models plus one PEFT LoRA per task, described by a manifest.

``build_zoo("ci" | "full", data_dir)`` trains everything deterministically from a seed and caches
it under ``<data_dir>/testbed/<recipe-hash>/`` (``manifest.json`` + folders). It stays UI-free:
progress goes to a callback ``progress(phase, done, total)``. ``publish_zoo`` and
``register_bases`` hand each entry to caller-supplied functions (the hub's services).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from hub.core.errors import InvalidInputError
from testbed.entries import MANIFEST, AdapterEntry, BaseEntry, Zoo
from testbed.models import SizeRecipe, size_recipe
from testbed.tasks import Task, get_task, tasks_for

T = TypeVar("T")
ProgressFn = Callable[[str, int, int], None]
LICENSE = "apache-2.0"
N_SAMPLES = 5


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def zoo_hash(recipe: SizeRecipe, tasks: Sequence[str], seed: int) -> str:
    """Hash of everything that determines the zoo's weights."""
    body = json.dumps({"recipe": recipe.to_dict(), "tasks": list(tasks), "seed": seed}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _model_card(task: Task, base_id: str, rows: list[dict[str, str]]) -> str:
    samples = "\n".join(f"- `{r['input']}` → `{r['output']}`" for r in rows)
    return (
        f"---\nlicense: {LICENSE}\nbase_model: {base_id}\nlibrary_name: peft\ntags: {list(task.tags)}\n---\n"
        f"# {task.name}\n\n{task.description}\n\nPrompt format: `<text> | <instruction>`, e.g. "
        f"`{rows[0]['input']}`.\n\n## Examples\n{samples}\n\nTrained by Loom's testbed (rank-8 LoRA, PEFT).\n"
    )


def build_zoo(
    size: str = "ci",
    data_dir: str | Path = "loom-data",
    seed: int = 0,
    progress: ProgressFn | None = None,
    *,
    tasks: Sequence[str] | None = None,
    recipe: SizeRecipe | None = None,
    transfer: bool = True,
    force: bool = False,
    workers: int | None = None,
) -> Zoo:
    """Build the zoo of ``size`` (or reuse the cached one) and return it.

    Args:
        size: ``"ci"`` (2-layer 0.56M base, mapping tasks; ~70 s on 2 idle cores) or ``"full"`` (2M
            Llama + 2M Qwen2, positional tasks too; 14.3 min measured on 2 cores).
        data_dir: Loom's data directory; the zoo goes to ``data_dir/testbed/<recipe-hash>/``.
        seed: seeds every model and data stream; same seed, same weights.
        progress: ``progress(phase, done, total)`` called as training advances.
        tasks: a subset of task names (default: every task of the size).
        recipe: override the size's recipe (tests use shorter schedules).
        transfer: also train the transfer tasks on base B.
        force: rebuild even when cached.
        workers: training processes (default ``LOOM_TESTBED_WORKERS`` or ``min(4, CPU count)``); the
            weights do not depend on it.

    Raises:
        InvalidInputError: unknown size or a task the size cannot learn.
        UnknownNameError: an unknown task name.
    """
    rec = recipe or size_recipe(size)
    allowed = {t.name for t in tasks_for(size)}
    chosen = [get_task(n) for n in tasks] if tasks is not None else tasks_for(size)
    for t in chosen:
        if t.name not in allowed:
            raise InvalidInputError(f"task {t.name!r} needs the full size; size {size!r} cannot learn it")
    if not chosen:
        raise InvalidInputError("tasks must name at least one task")
    b_tasks = [t for t in chosen if t.transfer] if transfer else []
    root = zoo_root(rec, chosen, b_tasks, data_dir, seed)
    h = root.name
    if (root / MANIFEST).is_file() and not force:
        return Zoo.load(root)
    tmp = root.with_name(f"{h}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        from testbed.jobs import default_workers

        n_workers = default_workers() if workers is None else workers
        manifest = _train_all(rec, chosen, b_tasks, tmp, seed, progress, n_workers)
        manifest.update(
            {
                "size": rec.size,
                "seed": seed,
                "recipe_hash": h,
                "recipe": rec.to_dict(),
                "tasks": [t.name for t in chosen],
            }
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if force:
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished the same zoo first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Zoo.load(root)


def zoo_root(rec: SizeRecipe, chosen: Sequence[Task], b_tasks: Sequence[Task], data_dir: str | Path, seed: int) -> Path:
    """Where the zoo of this recipe, these tasks and seed is (or will be) cached."""
    h = zoo_hash(rec, [t.name for t in chosen] + [f"B:{t.name}" for t in b_tasks], seed)
    return Path(data_dir) / "testbed" / h


def is_cached(size: str, data_dir: str | Path, seed: int = 0) -> bool:
    """Whether ``build_zoo(size, data_dir, seed)`` (every task of the size) would only load its cache."""
    chosen = tasks_for(size)
    return (zoo_root(size_recipe(size), chosen, [t for t in chosen if t.transfer], data_dir, seed) / MANIFEST).is_file()


def cached_base(testbed_dir: Path, brec: Any, seed: int) -> tuple[Path, int] | None:
    """A base already pre-trained by another zoo build with the same base recipe, seed and trainer version
    (pre-training depends on nothing else), as ``(folder, params)``; None if there is none."""
    from testbed.models import TRAINER_VERSION

    want = json.loads(json.dumps(brec.to_dict()))  # as a manifest stores it (tuples -> lists)
    for man_path in sorted(testbed_dir.glob(f"*/{MANIFEST}")):
        try:
            man = json.loads(man_path.read_text())
        except (OSError, ValueError):
            continue
        recipe = man.get("recipe") or {}
        if man.get("seed") != seed or recipe.get("trainer") != TRAINER_VERSION:
            continue
        for key, role in (("base_a", "A"), ("base_b", "B")):
            if recipe.get(key) != want:
                continue
            for b in man.get("bases", []):
                folder = man_path.parent / b["dir"]
                if b.get("role") == role and (folder / "config.json").is_file():
                    return folder, int(b["params"])
    return None


def plan_jobs(rec: SizeRecipe, chosen: Sequence[Task], b_tasks: Sequence[Task], root: Path, seed: int) -> list[Any]:
    """The build's training jobs (:class:`testbed.jobs.Job`): pre-train each base (or copy it from another
    cached zoo with the same base recipe, seed and trainer: e.g. after a LoRA-recipe change), then one LoRA per
    task."""
    from testbed.jobs import Job, copy_base_job, lora_job, pretrain_job

    plan = [(rec.base_a, "A", list(chosen))] + ([(rec.base_b, "B", list(b_tasks))] if b_tasks else [])
    jobs: list[Job] = []
    for brec, role, _ in plan:
        bdir = root / "bases" / brec.dirname
        hit = cached_base(root.parent, brec, seed)
        if hit is not None:
            jobs.append(Job(f"base:{role}", f"reuse {brec.model_id}", 1, copy_base_job, (hit[0], bdir, hit[1])))
            continue
        jobs.append(
            Job(f"base:{role}", f"pre-train {brec.model_id}", brec.steps, pretrain_job, (brec, bdir, seed),
                threads=brec.threads)
        )
    loras: list[Job] = []
    for brec, role, btasks in plan:
        bdir = root / "bases" / brec.dirname
        lrec = rec.lora_for(role)
        for t in btasks:
            steps = lrec.steps_for(t)
            loras.append(
                Job(
                    f"lora:{role}:{t.name}",
                    f"train LoRAs on {brec.model_id}",
                    steps,
                    lora_job,
                    (bdir, brec.model_id, t.name, lrec, root / "adapters" / brec.dirname / t.name, seed,
                     steps, lrec.checkpoints if t.family else (1.0,)),
                    after=(f"base:{role}",),
                )
            )
    # longest first (stable): a long LoRA started last would leave the other worker idle at the end
    return jobs + sorted(loras, key=lambda j: -j.total)


def _train_all(
    rec: SizeRecipe,
    chosen: list[Task],
    b_tasks: list[Task],
    root: Path,
    seed: int,
    progress: ProgressFn | None,
    workers: int,
) -> dict[str, Any]:
    from testbed.jobs import run_jobs

    t_start = time.perf_counter()
    plan = [(rec.base_a, "A", chosen)] + ([(rec.base_b, "B", b_tasks)] if b_tasks else [])
    jobs = plan_jobs(rec, chosen, b_tasks, root, seed)
    results, timings = run_jobs(jobs, workers, progress)
    bases: list[dict[str, Any]] = []
    adapters: list[dict[str, Any]] = []
    for brec, role, btasks in plan:
        bdir = root / "bases" / brec.dirname
        bases.append(
            {
                "id": brec.model_id,
                "arch": brec.arch,
                "dir": str(bdir.relative_to(root)),
                "params": results[f"base:{role}"]["params"],
                "role": role,
                "config": json.loads((bdir / "config.json").read_text()),
                "reused_from": results[f"base:{role}"].get("reused"),
            }
        )
        for t in btasks:
            res = results[f"lora:{role}:{t.name}"]
            adir = root / "adapters" / brec.dirname / t.name
            rows = [{"input": e.prompt, "output": e.output} for e in t.samples(N_SAMPLES, seed + 7)]
            (adir / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (adir / "README.md").write_text(_model_card(t, brec.model_id, rows))
            name = f"zoo/{t.name}" if role == "A" else f"zoo/{t.name}-{brec.dirname}"
            adapters.append(
                {
                    "task": t.name,
                    "base_id": brec.model_id,
                    "dir": str(adir.relative_to(root)),
                    "name": name,
                    "description": t.description,
                    "tags": list(t.tags),
                    "license": LICENSE,
                    "samples": str((adir / "samples.jsonl").relative_to(root)),
                    "sha256": _sha256(adir / "adapter_model.safetensors"),
                    "family": t.family,
                    "param": t.param,
                    "held_out": t.held_out,
                    "final_loss": res["final_loss"],
                    "lr": res["lr"],
                    "attempts": res["attempts"],
                    "checkpoints": [
                        {
                            "step": c["step"],
                            "fraction": c["fraction"],
                            "dir": str(Path(c["dir"]).relative_to(root)),
                            "sha256": _sha256(Path(c["dir"]) / "adapter_model.safetensors"),
                        }
                        for c in res["checkpoints"]
                    ],
                }
            )
    timings["build wall"] = time.perf_counter() - t_start
    return {"bases": bases, "adapters": adapters, "timings": timings, "workers": workers}


def publish_zoo(
    zoo: Zoo,
    publish: Callable[[AdapterEntry], T],
    *,
    base_id: str | None = None,
    include_held_out: bool = True,
) -> list[T]:
    """Call ``publish(entry)`` for each adapter (of one base if ``base_id``) and return the results.

    ``entry.dir`` is a PEFT folder (with README.md); ``entry.name``, ``description``, ``tags``,
    ``license`` and ``sample_rows()`` carry what the hub shows.
    """
    chosen = zoo.adapters if base_id is None else tuple(zoo.adapters_on(base_id))
    return [publish(a) for a in chosen if include_held_out or not a.held_out]


def register_bases(zoo: Zoo, register: Callable[[BaseEntry], T]) -> list[T]:
    """Call ``register(entry)`` for each base model (``entry.dir`` holds config.json + weights)."""
    return [register(b) for b in zoo.bases]


def with_steps(recipe: SizeRecipe, base_steps: int, lora_steps: int) -> SizeRecipe:
    """A copy of ``recipe`` with shorter schedules (for tests of the build itself)."""
    short = lambda lora: replace(  # noqa: E731
        lora, steps=lora_steps, warmup=min(lora.warmup, lora_steps), positional_steps=0, task_steps=()
    )
    return replace(
        recipe,
        base_a=replace(recipe.base_a, steps=base_steps, warmup=min(recipe.base_a.warmup, base_steps)),
        base_b=replace(recipe.base_b, steps=base_steps, warmup=min(recipe.base_b.warmup, base_steps)),
        lora=short(recipe.lora),
        lora_b=short(recipe.lora_b) if recipe.lora_b else None,
    )
