"""Compositions: build a new adapter from registered ones, as a background job.

A request names its sources explicitly (``"sources": ["ns/a@1", ...]``, ``"weights"``, ``"method"``,
``"params"``) or gives only a task description (``"task"``, ``"base_model"``, ``"method": "auto"``):
the hub then retrieves the most relevant adapters of that base model by semantic search, weighs
them by similarity, and lets ``merging.choose_method`` pick the method when asked for ``auto``,
writing why into the job log. ``lorahub`` searches the weights itself: the job scores candidate merges
with the registered base model (its local weights folder) on the sources' samples
(:mod:`hub.services.composition_objective`) and records the found weights in the log, the result, the
provenance and the lineage. Everything a request can get wrong is checked at submit time (4xx);
the job itself loads the sources, merges (on a GPU when one is present) and publishes the result
with lineage and a generated model card as its very last step, so a failed or cancelled job leaves
no partial adapter. Identical resolved recipes are deduplicated by hash.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, NotFoundError
from hub.core.provenance import ParentRef, Provenance, canonical_json
from hub.core.refs import AdapterRef
from hub.jobs.queue import JobQueue, JobView
from hub.jobs.worker import HANDLERS, Reporter
from hub.repositories.adapters import AdapterFilters
from hub.services import validation as v

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User
    from hub.services.hub import Hub

MAX_SOURCES = 16
MAX_TASK = 1000
MAX_SAMPLES_FOR_RESULT = 64


#: task-description requests weigh the retrieved adapters by ``softmax(similarity / T)`` (a convex combination of
#: their deltas): a clearly closest adapter keeps nearly all its weight; near-ties share it. Spec routers §8.2
#: suggests T in 0.02-0.1 cosine units for the same decision at serving time.
SIMILARITY_TEMPERATURE = 0.02
#: retrieved adapters whose softmax weight falls below this are left out of the merge (and the log says so)
MIN_SOURCE_WEIGHT = 0.02


def similarity_weights(sims: Sequence[float], temperature: float = SIMILARITY_TEMPERATURE) -> list[float]:
    """``softmax(sims / temperature)`` as floats summing to 1."""
    top = max(sims)
    ex = [math.exp((s - top) / temperature) for s in sims]
    total = sum(ex)
    return [e / total for e in ex]


@dataclass(frozen=True)
class CompositionRequest:
    """A validated composition request (the API's pydantic schema maps onto it)."""

    sources: tuple[str, ...] = ()
    weights: tuple[float, ...] | None = None
    task: str | None = None
    base_model: str | None = None
    method: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)
    k: int = 3
    min_score: float = 0.25
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    visibility: str = "public"

    def __post_init__(self) -> None:
        if bool(self.sources) == bool(self.task):
            raise InvalidInputError("give either sources (explicit adapters) or task (a description), not both",
                                    field="sources")
        if self.task is not None and not 0 < len(self.task.strip()) <= MAX_TASK:
            raise InvalidInputError(f"task must be 1-{MAX_TASK} characters", field="task")
        if self.task and not self.base_model:
            raise InvalidInputError("base_model is required with task: adapters are only composable on one base",
                                    field="base_model")
        if len(self.sources) > MAX_SOURCES:
            raise InvalidInputError(f"at most {MAX_SOURCES} sources, got {len(self.sources)}", field="sources")
        if self.weights is not None and len(self.weights) != len(self.sources):
            raise InvalidInputError(
                f"weights has {len(self.weights)} entries but {len(self.sources)} sources were given", field="weights"
            )
        if not 1 <= self.k <= MAX_SOURCES:
            raise InvalidInputError(f"k must be in 1..{MAX_SOURCES}, got {self.k}", field="k")
        if not -1.0 <= self.min_score <= 1.0:
            raise InvalidInputError(f"min_score must be in [-1, 1], got {self.min_score}", field="min_score")
        if self.name is not None:
            v.parse_name(self.name)
        v.check_visibility(self.visibility)
        if self.method == "lorahub":
            _check_lorahub_params(self.params, self.weights)
        elif self.method != "auto":
            from merging import config_class

            config_class(self.method).from_params(self.params, list(self.weights) if self.weights else None)


def _check_lorahub_params(params: dict[str, Any], weights: tuple[float, ...] | None) -> None:
    """lorahub's JSON params are checked here; its objective is the hub's to build, its weights its to find."""
    if weights is not None:
        raise InvalidInputError("lorahub searches the weights of the sources itself; do not pass weights",
                                field="weights")
    if isinstance(params, dict) and "objective" in params:
        raise InvalidInputError("lorahub's objective is built by the hub (the base model's loss on the sources' "
                                "samples); do not pass params.objective", field="params")
    from merging import config_class

    config_class("lorahub").from_params({**(params or {}), "objective": _unused_objective})


def _unused_objective(adapter: Any) -> float:  # stands in for the job's objective while params are checked
    return 0.0


def _slug(text: str, n: int = 4) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:n]
    return "-".join(words)[:40].strip("-") or "composed"


class CompositionService:
    """Submit and observe composition jobs (the worker runs :func:`run_compose`)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.jobs = JobQueue(hub.sessions)

    def submit(self, user: User, req: CompositionRequest) -> tuple[JobView, bool]:
        """Resolve and validate ``req``, then queue it (or return the identical earlier job).

        Raises:
            InvalidInputError / UnknownNameError: bad fields, unknown method (listing the known ones), bad params.
            NotFoundError: a source that does not exist (or is private), or no adapter similar to the task.
            IncompatibleAdaptersError: sources for different base models.
        """
        log: list[str] = []
        if req.sources:
            refs = [AdapterRef.parse(r, field="sources") for r in req.sources]
            resolved = [self._resolve(user, r.full_name, r.version) for r in refs]
            weights = list(req.weights) if req.weights is not None else [1.0] * len(resolved)
            sims: list[float] | None = None
        else:
            hits = self.hub.search.search(user, req.task or "", req.k,
                                          AdapterFilters(base_model=req.base_model, kind="adapter"))
            good = [h for h in hits if h.score >= req.min_score]
            if not good and req.method == "auto":
                from hub.services.generation import generate_instead

                generated = generate_instead(self.hub, user, req.task or "", req.base_model or "",
                                             best_score=hits[0].score if hits else None, min_score=req.min_score,
                                             name=req.name)
                if generated is not None:  # auto: no close adapter, so generate one from the description
                    job, dedup, reason = generated
                    if not dedup:
                        self.jobs.report(job.id, log=f"auto: {reason}")
                    return self.jobs.get(job.id, user.id), dedup
            if not good:
                best = f"best score {hits[0].score:.2f}" if hits else "no adapters at all"
                raise NotFoundError(
                    f"no adapter for base model {req.base_model} is similar enough to the task ({best}; "
                    f"min_score {req.min_score})", field="task",
                )
            soft = similarity_weights([h.score for h in good])
            floor = MIN_SOURCE_WEIGHT if req.method != "lorahub" else 0.0  # lorahub searches every candidate
            dropped = [h for h, w in zip(good, soft, strict=True) if w < floor]
            good = [h for h, w in zip(good, soft, strict=True) if w >= floor]
            resolved = [self._resolve(user, h.adapter.full_name, None) for h in good]
            sims = [round(h.score, 6) for h in good]
            weights = [round(w, 6) for w in similarity_weights(sims)]
            log.append("retrieved for the task: " + ", ".join(
                f"{r['name']}@{r['version']} (similarity {s:.3f}, weight {w:.3f})"
                for r, s, w in zip(resolved, sims, weights, strict=True))
                + f"; weights softmax(similarity / {SIMILARITY_TEMPERATURE})")
            if dropped:
                log.append(f"left out (weight < {MIN_SOURCE_WEIGHT:.2f}): " + ", ".join(
                    f"{h.adapter.full_name} (similarity {h.score:.3f})" for h in dropped))
        bases = {r["base_model"] for r in resolved}
        if len(bases) > 1:
            detail = ", ".join(f"{r['name']}@{r['version']}: {r['base_model']}" for r in resolved)
            raise IncompatibleAdaptersError(f"sources are for different base models ({detail})")
        if req.method == "lorahub":
            self._check_lorahub(resolved, next(iter(bases)))
            weights = None  # the search finds them
        recipe = {
            "kind": "compose", "method": req.method, "params": req.params, "weights": weights,
            "sources": [{k: r[k] for k in ("name", "version", "sha256")} for r in resolved],
        }
        recipe_hash = Provenance.create("compose", recipe).recipe_hash()
        name = req.name or f"{user.name}/{_slug(req.task or req.method)}-{recipe_hash[:8]}"
        request = {
            **recipe, "task": req.task, "similarities": sims, "base_model": bases.pop(),
            "output": {"name": name, "description": req.description, "tags": list(req.tags),
                       "visibility": req.visibility},
            "log": log,
        }
        return self.jobs.submit("compose", user.id, request, recipe_hash)

    def _resolve(self, user: User, name: str, number: int | None) -> dict[str, Any]:
        ns, nm = v.parse_name(name)
        kind = self.hub.adapters.get(user, ns, nm).kind
        if kind != "adapter":
            raise InvalidInputError(f"{name} is a {kind}, not an adapter; only adapters can be merged",
                                    field="sources")
        ver = self.hub.adapters.version(user, ns, nm, number)
        return {"name": f"{ns}/{nm}", "version": ver.number, "sha256": ver.sha256, "base_model": ver.base_model,
                "samples": "samples.jsonl" in (ver.files or {})}

    def _check_lorahub(self, resolved: list[dict[str, Any]], base_id: str) -> None:
        """lorahub scores merges with the base model on the sources' samples: both must be there."""
        from hub.services.inference.models import weights_folder

        base = self.hub.base_models.find(base_id)
        if base is None:
            raise InvalidInputError(f"lorahub scores candidate merges with the base model, but {base_id} is not "
                                    f"registered; register it with its weights (loom base add {base_id} --config "
                                    "config.json --weights FOLDER)", field="method")
        if not base.weights:
            raise InvalidInputError(f"base model {base_id} has no local weights folder; lorahub needs one to score "
                                    "candidate merges (register it with --weights FOLDER)", field="method")
        weights_folder(base_id, base.weights)  # a hub id or a missing folder is refused, naming it
        lacking = [f"{r['name']}@{r['version']}" for r in resolved if not r["samples"]]
        if lacking:
            raise InvalidInputError(f"sources without sample data (samples.jsonl): {lacking}; lorahub scores "
                                    "merges on the sources' samples", field="sources", lacking=lacking)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_compose(hub: Hub, job: JobView, report: Reporter) -> dict[str, Any]:
    """The worker side: load sources, choose/run the method, publish the result with lineage."""
    from hub.core.peft_io import adapter_config, save_peft
    from hub.db.models import User
    from hub.services.publish import PublishFiles
    from merging import choose_method, merge

    req = job.request
    for line in req.get("log", []):
        report.log(line)
    with hub.sessions() as s:
        user = s.get(User, job.owner_id) if job.owner_id is not None else None
        if user is not None:
            s.expunge(user)
    if user is None:
        raise NotFoundError("the job's owner no longer exists")

    sources = req["sources"]
    adapters, samples, raw_samples = [], [], []
    for i, src in enumerate(sources):
        report(0.05 + 0.35 * i / len(sources), f"loading {src['name']}@{src['version']}", force=True)
        ad, smp = hub.adapters.load(user, src["name"], src["version"])
        adapters.append(ad)
        raw_samples.append(smp)
        samples.extend(ln for ln in smp.decode("utf-8", "replace").splitlines() if ln.strip())
    method, params = req["method"], dict(req["params"])
    weights: list[float] | None = list(req["weights"]) if req.get("weights") is not None else None
    reason = None
    if method == "auto":
        choice = choose_method(adapters, weights or req.get("similarities"))  # the softmax weights of the retrieval
        method, params, weights, reason = choice.method, choice.params, choice.weights, choice.reason
        report.log(f"auto chose {method}: {reason}")
    device = _device()
    keys = [f"{s['name']}@{s['version']}" for s in sources]
    search: dict[str, Any] | None = None
    if method == "lorahub":
        objective, search = _lorahub_objective(hub, req["base_model"], keys, raw_samples, device, report)
        params["objective"] = objective
    report(0.45, f"merging {len(adapters)} adapters with {method} on {device}", force=True)
    parents = [ParentRef(s["name"], str(s["version"]), None if weights is None else float(w), s["sha256"])
               for s, w in zip(sources, weights or [None] * len(sources), strict=True)]
    moved = [a.to(device) for a in adapters]
    merged = merge(moved, method, weights=weights, params=params, names=keys, parents=parents)
    params.pop("objective", None)
    prov = merged.provenance
    assert prov is not None
    if search is not None:  # log and record what the search found, next to the base and uniform weights
        weights = [float(w) for w in prov.recipe["weights"]]
        score = search.pop("objective")
        search["loss"] = score(merged)
        search["base_loss"] = score(merge(moved[:1], "cat", weights=[0.0]))
        search["uniform_loss"] = score(merge(moved, "cat"))
        report.log("lorahub found weights " + ", ".join(f"{k} {w:+.4f}" for k, w in zip(keys, weights, strict=True))
                   + f" after {prov.recipe['report']['evaluations']} evaluations; few-shot loss {search['loss']:.4f} "
                   f"(base model {search['base_loss']:.4f}, weights 1 each {search['uniform_loss']:.4f})")
    merged = merged.to("cpu")
    extra = {"task": req.get("task"), "auto_reason": reason, "requested_method": req["method"], "objective": search}
    prov = Provenance(method=prov.method, method_version=prov.method_version,
                      recipe_json=canonical_json({**prov.recipe, **{k: x for k, x in extra.items() if x}}),
                      parents=prov.parents, library_version=prov.library_version)
    report(0.8, "publishing the result", force=True)  # last chance to cancel: nothing is written before this
    out = req["output"]
    description = out.get("description") or (
        f"Composed for the task: {req['task']}" if req.get("task")
        else f"{method} merge of " + ", ".join(f"{s['name']}@{s['version']}" for s in sources)
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_peft(merged.with_provenance(prov), Path(tmp) / "out")
        files = PublishFiles(
            config=json.dumps(adapter_config(merged), indent=2, sort_keys=True).encode(),
            weights=folder / "adapter_model.safetensors",
            samples=("\n".join(samples[:MAX_SAMPLES_FOR_RESULT]) + "\n").encode() if samples else None,
        )
        res = hub.adapters.publish(
            user, out["name"], files, description=description,
            tags=[*out.get("tags", []), "composed", method.replace("_", "-")],
            visibility=out.get("visibility", "public"), source=f"compose:{job.id}", provenance=prov,
        )
    full = f"{res.adapter.namespace}/{res.adapter.name}"
    report.log(f"published {full}@{res.version.number}")
    return {"adapter": full, "version": res.version.number, "method": method, "params": params,
            "weights": weights, "reason": reason}


def _lorahub_objective(hub: Hub, base_id: str, keys: list[str], raw_samples: list[bytes], device: str,
                       report: Reporter) -> tuple[Any, dict[str, Any]]:
    """The base model's few-shot loss on the sources' samples, reporting progress (and cancel) per call."""
    from hub.services.composition_objective import balanced, build_objective, load_scorer, source_examples
    from hub.services.inference.models import weights_folder

    base = hub.base_models.find(base_id)
    if base is None:
        raise InvalidInputError(f"base model {base_id} is no longer registered; lorahub needs it", field="method")
    report(0.4, f"loading base model {base_id} to score candidate merges", force=True)
    model, tok = load_scorer(weights_folder(base_id, base.weights), device)
    examples = balanced([source_examples(raw, key) for raw, key in zip(raw_samples, keys, strict=True)])
    score = build_objective(model, tok, examples)
    calls = [0]

    def objective(adapter: Any) -> float:
        calls[0] += 1
        report(0.45 + 0.3 * min(calls[0] / 100, 1.0), f"lorahub: scoring candidate merge {calls[0]}")
        return score(adapter)

    report.log(f"lorahub objective: few-shot loss of {base_id} on {len(examples)} samples "
               f"({len(examples) // len(keys)} from each of {len(keys)} sources)")
    return objective, {"objective": score, "examples": len(examples), "base_id": base_id}


HANDLERS.register("compose", summary="merge registered adapters into a new one")(run_compose)


def job_summary(job: JobView) -> dict[str, Any]:
    """The public view of a job (what the API returns)."""
    d = job.to_dict()
    d["request"] = {k: x for k, x in job.request.items() if k != "log"}
    return d


def describe(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Methods a composition may name: the registered merge methods plus ``auto``."""
    from merging import describe_methods

    return [{"name": "auto", "summary": "pick a method from the sources and say why"}, *describe_methods()]
