"""Compositions: build a new adapter from registered ones, as a background job.

A request names its sources explicitly (``"sources": ["ns/a@1", ...]``, ``"weights"``, ``"method"``,
``"params"``) or gives only a task description (``"task"``, ``"base_model"``, ``"method": "auto"``):
the hub then retrieves the most relevant adapters of that base model by semantic search, weighs
them by similarity, and lets ``merging.choose_method`` pick the method when asked for ``auto``,
writing why into the job log. ``lorahub`` searches the weights itself: the job scores candidate merges
with the registered base model (its local weights folder) on the sources' samples
(:mod:`hub.services.composition_objective`) and records the found weights in the log, the result, the
provenance and the lineage. Everything a request can get wrong is checked at submit time (4xx);
the job (:mod:`hub.services.composition_job`) loads the sources, merges (on a GPU when one is present)
and publishes the result with lineage and a generated model card as its very last step, so a failed
or cancelled job leaves no partial adapter. Identical resolved recipes are deduplicated by hash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError, NotFoundError
from hub.core.provenance import Provenance
from hub.jobs.queue import JobView
from hub.repositories.adapters import AdapterFilters
from hub.services import validation as v

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User
    from hub.services.generation import GenerationService
    from hub.services.jobs import JobService
    from hub.services.search import SearchService
    from hub.services.sources import ResolvedSources, SourceResolver

KIND = "compose"
#: methods a composition delegates to the generation service: same jobs, progress, lineage and cards as
#: ``POST /api/v1/generations`` (sg_lora, icm_lora) and ``/transfers`` (trans_lora)
TRANS_LORA = "trans_lora"
DELEGATED = ("sg_lora", "icm_lora", TRANS_LORA)
GENERATE_PARAMS = ("generator", "samples", "seed")

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
    min_score: float | None = None  # None: the search's match threshold (settings.search_match_threshold)
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    visibility: str = "public"

    def __post_init__(self) -> None:
        if bool(self.sources) == bool(self.task):
            which = "not both" if self.sources else "neither was given"
            raise InvalidInputError(f"give either sources (explicit adapters) or task (a description): {which}",
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
        if self.min_score is not None and not -1.0 <= self.min_score <= 1.0:
            raise InvalidInputError(f"min_score must be in [-1, 1], got {self.min_score}", field="min_score")
        if self.name is not None:
            v.parse_name(self.name)
        v.check_visibility(self.visibility)
        if self.method in DELEGATED:
            _check_delegated(self)
        elif self.method == "lorahub":
            _check_lorahub_params(self.params, self.weights)
        elif self.method != "auto":
            from merging import config_class

            config_class(self.method).from_params(self.params, list(self.weights) if self.weights else None)


def _check_delegated(req: CompositionRequest) -> None:
    """The shape of a generation (``sg_lora``, ``icm_lora``: a task) or transfer (``trans_lora``: one source)."""
    if req.method == TRANS_LORA:
        if len(req.sources) != 1 or not req.base_model:
            raise InvalidInputError("trans_lora moves one adapter to another base: give one source and base_model "
                                    "(the target base)", field="sources")
        if req.weights is not None:
            raise InvalidInputError("trans_lora takes no weights", field="weights")
        return
    if not req.task:
        raise InvalidInputError(f"{req.method} generates an adapter from a task description: give task (and "
                                "base_model)", field="task")
    unknown = sorted(set(req.params) - set(GENERATE_PARAMS))
    if unknown:
        raise InvalidInputError(f"{req.method} compositions take params {list(GENERATE_PARAMS)}, got {unknown}",
                                field="params")


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
    """Resolve, check and queue composition jobs (:class:`~hub.services.composition_job.CompositionJob` runs them).

    Args:
        jobs: where jobs are queued. sources: resolves ``ns/name[@version]`` refs. search: retrieval for
        task requests. generation: generates an adapter instead when ``auto`` finds none close enough.
    """

    def __init__(self, jobs: JobService, sources: SourceResolver, search: SearchService,
                 generation: GenerationService) -> None:
        self.jobs, self.sources, self.search, self.generation = jobs, sources, search, generation

    def submit(self, user: User, req: CompositionRequest) -> tuple[JobView, bool]:
        """Resolve and validate ``req``, then queue it (or return the identical earlier job).

        Raises:
            InvalidInputError / UnknownNameError: bad fields, unknown method (listing the known ones), bad params.
            NotFoundError: a source that does not exist (or is private), or no adapter similar to the task.
            IncompatibleAdaptersError: sources for different base models.
        """
        if req.name is not None:
            v.check_namespace(user.name, req.name)  # before any work: the output's namespace is the user's
        if req.method in DELEGATED:
            return self._delegate(user, req)
        log: list[str] = []
        sims: list[float] | None = None
        if req.sources:
            resolved = self.sources.resolve_all(user, req.sources, field="sources", role="merge source")
            weights: list[float] | None = list(req.weights) if req.weights is not None else [1.0] * len(resolved)
        else:
            found = self._retrieve(user, req, log)
            if isinstance(found[0], JobView):
                return found  # type: ignore[return-value]  # auto: a generation job instead
            resolved, sims = found  # type: ignore[assignment]
            weights = [round(w, 6) for w in similarity_weights(sims)]
            log.insert(0, "retrieved for the task: " + ", ".join(
                f"{r.key} (similarity {s:.3f}, weight {w:.3f})" for r, s, w in zip(resolved, sims, weights, strict=True))
                + f"; weights softmax(similarity / {SIMILARITY_TEMPERATURE})")
        base_model = resolved.one_base()
        if req.method == "lorahub":
            self._check_lorahub(resolved, base_model)
            weights = None  # the search finds them
        recipe = {"kind": KIND, "method": req.method, "params": req.params, "weights": weights,
                  "sources": [r.pinned() for r in resolved]}
        recipe_hash = Provenance.create(KIND, recipe).recipe_hash()
        name = req.name or f"{user.name}/{_slug(req.task or req.method)}-{recipe_hash[:8]}"
        request = {
            **recipe, "task": req.task, "similarities": sims, "base_model": base_model,
            "output": {"name": name, "description": req.description, "tags": list(req.tags),
                       "visibility": req.visibility},
            "log": log,
        }
        return self.jobs.submit(KIND, user.id, request, recipe_hash)

    def _delegate(self, user: User, req: CompositionRequest) -> tuple[JobView, bool]:
        """sg_lora / icm_lora: a ``generate`` job with ``params.generator`` (default: the newest visible generator
        of that method for ``base_model``); trans_lora: a ``transfer`` job of the one source to ``base_model``."""
        from hub.services.generation import GenerateRequest, TransferRequest

        if req.method == TRANS_LORA:
            return self.generation.submit_transfer(user, TransferRequest(
                source=req.sources[0], target_base=req.base_model or "", name=req.name, params=dict(req.params),
                visibility=req.visibility))
        p = req.params
        generator = p.get("generator") or self.generation.newest_generator(user, req.base_model or "", req.method)
        samples, seed = p.get("samples", []), p.get("seed", 0)
        if not isinstance(generator, str):
            raise InvalidInputError("params.generator must be 'ns/name[@version]'", field="params.generator")
        if not isinstance(samples, list) or not all(isinstance(s, str) for s in samples):
            raise InvalidInputError("params.samples must be a list of example prompts", field="params.samples")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise InvalidInputError(f"params.seed must be an integer, got {seed!r}", field="params.seed")
        return self.generation.submit_generate(user, GenerateRequest(
            generator=generator, task=req.task or "", samples=tuple(samples), seed=seed, name=req.name,
            visibility=req.visibility), method=req.method, base_model=req.base_model)

    def _retrieve(self, user: User, req: CompositionRequest,
                  log: list[str]) -> tuple[ResolvedSources, list[float]] | tuple[JobView, bool]:
        """The adapters of the base most similar to the task, or (auto, none close) a generation job."""
        hits = self.search.search(user, req.task or "", req.k, AdapterFilters(base_model=req.base_model, kind="adapter"))
        min_score = self.search.match_threshold if req.min_score is None else req.min_score
        good = [h for h in hits if h.score >= min_score]
        if not good and req.method == "auto":
            generated = self.generation.generate_instead(
                user, req.task or "", req.base_model or "", best_score=hits[0].score if hits else None,
                min_score=min_score, name=req.name)
            if generated is not None:  # auto: no close adapter, so generate one from the description
                job, dedup, reason = generated
                if not dedup:
                    self.jobs.log(job.id, f"auto: {reason}")
                return self.jobs.get(job.id, user.id), dedup
        if not good:
            best = f"best score {hits[0].score:.2f}" if hits else "no adapters at all"
            raise NotFoundError(
                f"no adapter for base model {req.base_model} is similar enough to the task ({best}; "
                f"min_score {min_score})", field="task",
            )
        soft = similarity_weights([h.score for h in good])
        floor = MIN_SOURCE_WEIGHT if req.method != "lorahub" else 0.0  # lorahub searches every candidate
        dropped = [h for h, w in zip(good, soft, strict=True) if w < floor]
        good = [h for h, w in zip(good, soft, strict=True) if w >= floor]
        if dropped:
            log.append(f"left out (weight < {MIN_SOURCE_WEIGHT:.2f}): " + ", ".join(
                f"{h.adapter.full_name} (similarity {h.score:.3f})" for h in dropped))
        resolved = self.sources.resolve_all(user, [h.adapter.full_name for h in good], field="sources",
                                            role="merge source")
        return resolved, [round(h.score, 6) for h in good]

    def _check_lorahub(self, resolved: ResolvedSources, base_id: str) -> None:
        """lorahub scores merges with the base model on the sources' samples: both must be there."""
        why = "lorahub scores candidate merges with the base model"
        try:
            self.sources.base_with_weights(base_id, field="method", why=why)
        except NotFoundError:
            raise InvalidInputError(f"{why}, but {base_id} is not registered; register it with its weights (loom "
                                    f"base add {base_id} --config config.json --weights FOLDER)",
                                    field="method") from None
        resolved.with_samples("lorahub scores merges on the sources' samples")


def describe(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Methods a composition may name: ``auto``, the registered merge methods, and the generation methods it
    delegates (sg_lora, icm_lora, trans_lora)."""
    from merging import describe_methods

    delegated = [
        {"name": "sg_lora", "summary": "generate an adapter for the task with an SG-LoRA generator of base_model",
         "params": {"generator": "ns/name[@version] (default: the newest visible one)", "seed": 0}},
        {"name": "icm_lora", "summary": "generate an adapter for the task with an ICM-LoRA generator of base_model",
         "params": {"generator": "ns/name[@version] (default: the newest visible one)",
                    "samples": "example prompts (hidden-state generators)", "seed": 0}},
        {"name": TRANS_LORA, "summary": "move the one source adapter to base_model with Trans-LoRA",
         "params": "the transfer's settings (see POST /api/v1/transfers)"},
    ]
    return [{"name": "auto", "summary": "pick a method from the sources and say why"}, *describe_methods(), *delegated]
