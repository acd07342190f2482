"""Generation jobs: train a generator (SG-LoRA / ICM-LoRA) on a base model's registered adapters,
generate an adapter from a task description, and transfer an adapter to another base (Trans-LoRA).

Everything a request can get wrong is checked at submit time (domain errors -> 4xx); the jobs
(:mod:`hub.services.generation_jobs`) load, train and publish as their last step, with lineage. A trained generator is an artifact of kind
``generator``: its version holds ``generator.json`` + ``generator.safetensors`` (never pickle) and
lineage edges to the adapters it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, NotFoundError
from hub.core.params import check_param_types
from hub.core.provenance import Provenance
from hub.core.refs import AdapterRef
from hub.jobs.queue import JobView
from hub.repositories.adapters import AdapterFilters
from hub.services import validation as v
from hub.services.artifacts import generator_manifest

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User
    from hub.services.adapters import AdapterService
    from hub.services.base_models import BaseModelService
    from hub.services.jobs import JobService
    from hub.services.sources import ResolvedSource, SourceResolver

TRAIN_GENERATOR, GENERATE, TRANSFER = "train_generator", "generate", "transfer"
GENERATOR_METHODS = ("sg_lora", "icm_lora")
MAX_SOURCES = 256


@dataclass(frozen=True)
class TrainGeneratorRequest:
    """Train ``method`` on ``sources`` (default: every visible adapter of ``base_model``)."""

    method: str
    base_model: str
    name: str
    sources: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    def __post_init__(self) -> None:
        if self.method not in GENERATOR_METHODS:
            raise InvalidInputError(f"method must be one of {list(GENERATOR_METHODS)}, got {self.method!r}",
                                    field="method")
        v.parse_name(self.name)
        if len(self.sources) > MAX_SOURCES:
            raise InvalidInputError(f"at most {MAX_SOURCES} sources, got {len(self.sources)}", field="sources")
        generator_config(self.method, self.params)  # validates the params now (4xx), not in the job


@dataclass(frozen=True)
class GenerateRequest:
    """Generate an adapter for ``task`` (a description) with a trained ``generator`` (ns/name[@v])."""

    generator: str
    task: str
    samples: tuple[str, ...] = ()
    seed: int = 0
    name: str | None = None
    visibility: str = "public"

    def __post_init__(self) -> None:
        if not 0 < len(self.task.strip()) <= 1000:
            raise InvalidInputError("task must be 1-1000 characters", field="task")
        if self.name is not None:
            v.parse_name(self.name)
        v.check_visibility(self.visibility)


@dataclass(frozen=True)
class TransferRequest:
    """Move ``source`` (ns/name[@v]) to ``target_base`` with Trans-LoRA."""

    source: str
    target_base: str
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    visibility: str = "public"

    def __post_init__(self) -> None:
        AdapterRef.parse(self.source, field="source")
        if self.name is not None:
            v.parse_name(self.name)
        v.check_visibility(self.visibility)
        transfer_config(self.params)


def _build(cls: Any, method: str, params: dict[str, Any], tuples: tuple[str, ...]) -> Any:
    """``cls(**params)`` with JSON lists turned into tuples for ``tuples``; unknown or mistyped params -> 4xx."""
    import dataclasses

    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidInputError(f"bad params for {method}: unknown {unknown}; known: {known}", field="params")
    p = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in params.items()}
    try:
        check_param_types(cls, p)
        return cls(**p)
    except InvalidInputError as e:
        raise InvalidInputError(f"bad params for {method}: {e.message}", field="params") from None
    except TypeError as e:
        raise InvalidInputError(f"bad params for {method}: {e}", field="params") from None


def generator_config(method: str, params: dict[str, Any]) -> Any:
    """The validated config (``SGConfig`` / ``ICMConfig``) of a generator method's JSON params."""
    if method == "sg_lora":
        from generation.sg_lora import SGConfig

        return _build(SGConfig, method, params, ())
    from generation.icm_lora import ICMConfig

    return _build(ICMConfig, method, params, ("channels",))


def transfer_config(params: dict[str, Any]) -> Any:
    """The validated ``TransConfig`` of Trans-LoRA's JSON params."""
    from generation.trans_lora import TransConfig

    return _build(TransConfig, "trans_lora", params, ("student_targets", "rewrite_rates", "instruction_rates"))


def sample_inputs(raw: bytes) -> list[str]:
    """The sample inputs of a stored samples.jsonl (validated at publish)."""
    return [r["input"] for r in v.sample_pairs(raw)]


def _check_one_layout(layouts: dict[str, str]) -> None:
    """Generator sources must share one layout (ranks and target modules): name the ones that differ.

    Raises:
        IncompatibleAdaptersError: naming the adapters whose layout differs from the most common one.
    """
    groups: dict[str, list[str]] = {}
    for key, lay in layouts.items():
        groups.setdefault(lay, []).append(key)
    if len(groups) <= 1:
        return
    common = max(groups, key=lambda lay: len(groups[lay]))
    odd = [f"{k} ({lay})" for lay, keys in groups.items() if lay != common for k in keys]
    raise IncompatibleAdaptersError(
        f"generator sources must share one layout (ranks and target modules): {', '.join(odd)} "
        f"differ from the others ({common}); leave them out, or give no sources to use every adapter of the "
        f"base with the most common layout", field="sources", adapters=[o.split(" ")[0] for o in odd])


class GenerationService:
    """Submit generation, generator-training and transfer jobs (:mod:`hub.services.generation_jobs` runs them).

    Args:
        jobs: where jobs are queued. sources: resolves and checks refs. adapters: reads generators.
        base_models: the registered bases.
    """

    def __init__(self, jobs: JobService, sources: SourceResolver, adapters: AdapterService,
                 base_models: BaseModelService) -> None:
        self.jobs, self.sources, self.adapters, self.base_models = jobs, sources, adapters, base_models

    def submit_train_generator(self, user: User, req: TrainGeneratorRequest) -> tuple[JobView, bool]:
        """Queue a ``train_generator`` job.

        Raises:
            NotFoundError: unknown base model or sources, or no adapters of that base to train on.
            IncompatibleAdaptersError: a source for another base. InvalidInputError: too few sources.
        """
        v.check_namespace(user.name, req.name)
        self.base_models.get(req.base_model)
        if req.sources:
            refs: list[str] = list(req.sources)
        else:
            rows, _ = self.adapters.list(user, AdapterFilters(base_model=req.base_model, kind="adapter"), limit=100)
            refs = [f"{a.namespace}/{a.name}" for a in rows]
        srcs = self.sources.resolve_all(user, refs, field="sources", role="generator source")
        if not srcs:
            raise NotFoundError(f"no adapters of base model {req.base_model} to train a generator on", field="sources")
        srcs.of_base(req.base_model)
        layouts = {src.key: self._layout(user, src) for src in srcs}
        left_out: list[str] = []
        if req.sources:
            _check_one_layout(layouts)
        else:  # the base's adapters of the most common layout (ranks and target modules); the others are left out
            groups: dict[str, list[str]] = {}
            for key, lay in layouts.items():
                groups.setdefault(lay, []).append(key)
            chosen = max(groups.values(), key=len)
            left_out = [k for k in layouts if k not in chosen]
            srcs = type(srcs)([src for src in srcs if src.key in chosen], "sources")
        cfg = generator_config(req.method, req.params)
        if req.method == "sg_lora" and len(srcs) < 2 and cfg.train_condition != "self":
            raise InvalidInputError("sg_lora needs at least 2 adapters (leave-one-out conditions)", field="sources")
        if req.method == "icm_lora" and cfg.condition == "hidden":
            self.sources.base_with_weights(req.base_model, field="base_model", why="icm_lora's hidden-state task "
                                           "vectors run the base model")
            srcs.with_samples("icm_lora with hidden-state task vectors needs sample data (or use "
                              "params.condition='description')")
        request = {"method": req.method, "base_model": req.base_model, "params": req.params,
                   "sources": [s.pinned() for s in srcs],
                   "output": {"name": req.name, "description": req.description}}
        h = Provenance.create(TRAIN_GENERATOR, request).recipe_hash()
        job, dedup = self.jobs.submit(TRAIN_GENERATOR, user.id, request, h)
        if not dedup:
            chosen_layout = layouts[srcs[0].key]
            self.jobs.log(job.id, f"{len(srcs)} adapters of {req.base_model} with the layout {chosen_layout}"
                          + (f"; left out (other layouts): {', '.join(f'{k} ({layouts[k]})' for k in left_out)}"
                             if left_out else ""))
        return job, dedup

    def _layout(self, user: User, src: Any) -> str:
        """A source's layout as a generator sees it: its rank per target module kind, e.g. ``q_proj,v_proj r8``."""
        ns, name = src.name.split("/", 1)
        ver = self.adapters.version(user, ns, name, src.version)
        kinds: dict[str, set[int]] = {}
        for module, rank in sorted((ver.ranks or {}).items()):
            kinds.setdefault(module.rsplit(".", 1)[-1], set()).add(int(rank))
        if not kinds:
            kinds = {t: {int(ver.rank)} for t in sorted(ver.target_modules or [])}
        by_rank: dict[str, list[str]] = {}
        for kind, ranks in sorted(kinds.items()):
            by_rank.setdefault("/".join(f"r{r}" for r in sorted(ranks)), []).append(kind)
        return " ".join(f"{','.join(k)} {r}" for r, k in sorted(by_rank.items()))

    def submit_generate(self, user: User, req: GenerateRequest, *, method: str | None = None,
                        base_model: str | None = None) -> tuple[JobView, bool]:
        """Queue a ``generate`` job.

        Args:
            method, base_model: what the generator must be (a composition names them); None: any.

        Raises:
            NotFoundError: no such generator. InvalidInputError: bad fields, or a generator of another method.
            IncompatibleAdaptersError: a generator of another base model.
        """
        if req.name is not None:
            v.check_namespace(user.name, req.name)
        g = self.sources.resolve(user, req.generator, field="generator", kind="generator", role="generator")
        meta = self.generator_meta(user, g)
        if method is not None and meta["method"] != method:
            raise InvalidInputError(f"{g.key} is an {meta['method']} generator, not {method}", field="params.generator")
        if base_model is not None and g.base_model != base_model:
            raise IncompatibleAdaptersError(f"{g.key} generates adapters of {g.base_model}, not {base_model}",
                                            field="base_model")
        if meta["method"] == "icm_lora" and meta["config"]["condition"] == "hidden":
            if not req.samples:
                raise InvalidInputError("this icm_lora generator is conditioned on task vectors: give samples "
                                        "(a few example prompts of the task)", field="samples")
            self.sources.base_with_weights(g.base_model, field="generator", why="its task vectors run the base model")
        request = {"generator": g.pinned("base_model"),
                   "method": meta["method"], "task": req.task, "samples": list(req.samples), "seed": req.seed,
                   "output": {"name": req.name, "visibility": req.visibility}}
        return self.jobs.submit(GENERATE, user.id, request, Provenance.create(GENERATE, request).recipe_hash())

    def submit_transfer(self, user: User, req: TransferRequest) -> tuple[JobView, bool]:
        """Queue a ``transfer`` job.

        Raises:
            NotFoundError: unknown source or base. InvalidInputError: no samples or no local weights.
            IncompatibleAdaptersError: the target is the source's own base.
        """
        if req.name is not None:
            v.check_namespace(user.name, req.name)
        src = self.sources.resolve(user, req.source, field="source", role="transfer source")
        if src.base_model == req.target_base:
            raise IncompatibleAdaptersError(f"{src.name} is already an adapter of {req.target_base}",
                                            field="target_base")
        if not src.has_samples:
            raise InvalidInputError(f"{src.key} has no sample data (samples.jsonl); "
                                    "Trans-LoRA needs a few seed examples", field="source")
        self.sources.base_with_weights(src.base_model, field="source", why="Trans-LoRA runs the source base")
        self.sources.base_with_weights(req.target_base, field="target_base", why="Trans-LoRA trains on the target")
        request = {"source": src.pinned("base_model"), "target_base": req.target_base, "params": req.params,
                   "output": {"name": req.name, "visibility": req.visibility}}
        return self.jobs.submit(TRANSFER, user.id, request, Provenance.create(TRANSFER, request).recipe_hash())

    def generator_meta(self, user: User | None, g: ResolvedSource) -> dict[str, Any]:
        """The manifest (``generator.json``) of a resolved generator version."""
        ns, nm = v.parse_name(g.name)
        return generator_manifest(self.adapters, self.adapters.version(user, ns, nm, g.version))

    def newest_generator(self, user: User, base_model: str, method: str) -> str:
        """``ns/name@version`` of the newest generator of ``method`` for ``base_model`` that ``user`` can see.

        Raises:
            NotFoundError: there is none (train one with ``loom train-generator``).
        """
        rows, _ = self.adapters.list(user, AdapterFilters(base_model=base_model, kind="generator"), limit=50)
        for row in rows:
            g = self.sources.resolve(user, f"{row.namespace}/{row.name}", field="generator", kind="generator",
                                     role="generator")
            if self.generator_meta(user, g)["method"] == method:
                return g.key
        raise NotFoundError(f"no {method} generator of base model {base_model} is visible to you; train one "
                            f"(POST /api/v1/generators) or give params.generator", field="params.generator")

    def generate_instead(self, user: User, task: str, base_model: str, *, best_score: float | None,
                         min_score: float, name: str | None = None) -> tuple[JobView, bool, str] | None:
        """For a ``"method": "auto"`` composition whose task has no close adapter: queue a ``generate`` job
        with the newest visible SG-LoRA generator of ``base_model`` and say why; None if there is none.
        """
        rows, _ = self.adapters.list(user, AdapterFilters(base_model=base_model, kind="generator"), limit=20)
        for row in rows:
            g = self.sources.resolve(user, f"{row.namespace}/{row.name}", field="generator", kind="generator",
                                     role="generator")
            if self.generator_meta(user, g)["method"] != "sg_lora":
                continue  # icm_lora generators may need sample prompts; a description is all we have
            best = "no adapters at all" if best_score is None else f"best similarity {best_score:.2f}"
            reason = (f"no adapter of {base_model} is similar enough to the task ({best}; min_score {min_score}): "
                      f"generating one from the description with the sg_lora generator {g.key}")
            job, dedup = self.submit_generate(user, GenerateRequest(generator=g.key, task=task, name=name))
            return job, dedup, reason
        return None
