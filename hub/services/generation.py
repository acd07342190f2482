"""Generation jobs: train a generator (SG-LoRA / ICM-LoRA) on a base model's registered adapters,
generate an adapter from a task description, and transfer an adapter to another base (Trans-LoRA).

Everything a request can get wrong is checked at submit time (domain errors -> 4xx); the jobs load,
train and publish as their last step, with lineage. A trained generator is an artifact of kind
``generator``: its version holds ``generator.json`` + ``generator.safetensors`` (never pickle) and
lineage edges to the adapters it was trained on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, NotFoundError, PermissionDeniedError
from hub.core.files import GENERATOR_MANIFEST, GENERATOR_TENSORS
from hub.core.params import check_param_types
from hub.core.provenance import Provenance
from hub.core.refs import AdapterRef
from hub.jobs.queue import JobQueue, JobView
from hub.repositories.adapters import AdapterFilters
from hub.services import validation as v

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User
    from hub.services.hub import Hub

GENERATOR_METHODS = ("sg_lora", "icm_lora")
MANIFEST, TENSORS = GENERATOR_MANIFEST, GENERATOR_TENSORS
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
        _config(self.method, self.params)  # validates the params now (4xx), not in the job


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
        _trans_config(self.params)


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


def _config(method: str, params: dict[str, Any]) -> Any:
    if method == "sg_lora":
        from generation.sg_lora import SGConfig

        return _build(SGConfig, method, params, ())
    from generation.icm_lora import ICMConfig

    return _build(ICMConfig, method, params, ("channels",))


def _trans_config(params: dict[str, Any]) -> Any:
    from generation.trans_lora import TransConfig

    return _build(TransConfig, "trans_lora", params, ("student_targets", "rewrite_rates", "instruction_rates"))


def _samples(raw: bytes) -> list[str]:
    """The sample inputs of a stored samples.jsonl (validated at publish)."""
    return [r["input"] for r in v.sample_pairs(raw)]


class GenerationService:
    """Submit generation, generator-training and transfer jobs (workers run the handlers below)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.jobs = JobQueue(hub.sessions)

    def _resolve(self, user: User | None, ref: str, kind: str = "adapter") -> dict[str, Any]:
        r = AdapterRef.parse(ref, field="source")
        ns, nm, number = r.namespace, r.name, r.version
        row = self.hub.adapters.get(user, ns, nm)
        if row.kind != kind:
            raise InvalidInputError(f"{ns}/{nm} is a {row.kind}, not a {kind}", field="source")
        ver = self.hub.adapters.version(user, ns, nm, number)
        return {"name": f"{ns}/{nm}", "version": ver.number, "sha256": ver.sha256, "base_model": ver.base_model,
                "has_samples": "samples.jsonl" in (ver.files or {})}

    def _base_with_weights(self, model_id: str, what: str) -> str:
        row = self.hub.base_models.get(model_id)
        if not row.weights or not Path(row.weights).is_dir():
            raise InvalidInputError(f"{what} {model_id} has no local weight folder registered; "
                                    "register it with its weights first", field="base_model")
        return row.weights

    def submit_train_generator(self, user: User, req: TrainGeneratorRequest) -> tuple[JobView, bool]:
        """Queue a ``train_generator`` job.

        Raises:
            NotFoundError: unknown base model or sources, or no adapters of that base to train on.
            IncompatibleAdaptersError: a source for another base. InvalidInputError: too few sources.
        """
        self.hub.base_models.get(req.base_model)
        if req.sources:
            srcs = [self._resolve(user, r) for r in req.sources]
        else:
            rows, _ = self.hub.adapters.list(user, AdapterFilters(base_model=req.base_model, kind="adapter"),
                                             limit=100)
            srcs = [self._resolve(user, f"{a.namespace}/{a.name}") for a in rows]
        if not srcs:
            raise NotFoundError(f"no adapters of base model {req.base_model} to train a generator on", field="sources")
        wrong = [s["name"] for s in srcs if s["base_model"] != req.base_model]
        if wrong:
            raise IncompatibleAdaptersError(f"sources {wrong} are not adapters of {req.base_model}", field="sources")
        if req.method == "sg_lora" and len(srcs) < 2 and _config(req.method, req.params).train_condition != "self":
            raise InvalidInputError("sg_lora needs at least 2 adapters (leave-one-out conditions)", field="sources")
        if req.method == "icm_lora" and _config(req.method, req.params).condition == "hidden":
            self._base_with_weights(req.base_model, "base model")
            missing = [s["name"] for s in srcs if not s["has_samples"]]
            if missing:
                raise InvalidInputError(f"icm_lora with hidden-state task vectors needs sample data; {missing} "
                                        "have no samples.jsonl (or use params.condition='description')",
                                        field="sources")
        request = {"method": req.method, "base_model": req.base_model, "params": req.params,
                   "sources": [{k: s[k] for k in ("name", "version", "sha256")} for s in srcs],
                   "output": {"name": req.name, "description": req.description}}
        h = Provenance.create("train_generator", request).recipe_hash()
        return self.jobs.submit("train_generator", user.id, request, h)

    def submit_generate(self, user: User, req: GenerateRequest) -> tuple[JobView, bool]:
        """Queue a ``generate`` job. Raises NotFoundError (no such generator) or InvalidInputError."""
        g = self._resolve(user, req.generator, kind="generator")
        meta = self._generator_meta(user, g)
        if meta["method"] == "icm_lora" and meta["config"]["condition"] == "hidden":
            if not req.samples:
                raise InvalidInputError("this icm_lora generator is conditioned on task vectors: give samples "
                                        "(a few example prompts of the task)", field="samples")
            self._base_with_weights(g["base_model"], "base model")
        request = {"generator": {k: g[k] for k in ("name", "version", "sha256", "base_model")},
                   "method": meta["method"], "task": req.task, "samples": list(req.samples), "seed": req.seed,
                   "output": {"name": req.name, "visibility": req.visibility}}
        return self.jobs.submit("generate", user.id, request, Provenance.create("generate", request).recipe_hash())

    def submit_transfer(self, user: User, req: TransferRequest) -> tuple[JobView, bool]:
        """Queue a ``transfer`` job.

        Raises:
            NotFoundError: unknown source or base. InvalidInputError: no samples or no local weights.
            IncompatibleAdaptersError: the target is the source's own base.
        """
        src = self._resolve(user, req.source)
        if src["base_model"] == req.target_base:
            raise IncompatibleAdaptersError(f"{src['name']} is already an adapter of {req.target_base}",
                                            field="target_base")
        if not src["has_samples"]:
            raise InvalidInputError(f"{src['name']}@{src['version']} has no sample data (samples.jsonl); "
                                    "Trans-LoRA needs a few seed examples", field="source")
        self._base_with_weights(src["base_model"], "source base model")
        self._base_with_weights(req.target_base, "target base model")
        request = {"source": {k: src[k] for k in ("name", "version", "sha256", "base_model")},
                   "target_base": req.target_base, "params": req.params,
                   "output": {"name": req.name, "visibility": req.visibility}}
        return self.jobs.submit("transfer", user.id, request, Provenance.create("transfer", request).recipe_hash())

    def _generator_meta(self, user: User | None, g: dict[str, Any]) -> dict[str, Any]:
        ns, nm = v.parse_name(g["name"])
        ver = self.hub.adapters.version(user, ns, nm, g["version"])
        return json.loads(self.hub.blobs.read_bytes((ver.files or {})[MANIFEST]["key"]))


def generate_instead(hub: Hub, user: User, task: str, base_model: str, *, best_score: float | None,
                     min_score: float, name: str | None = None) -> tuple[JobView, bool, str] | None:
    """For a ``"method": "auto"`` composition whose task has no close adapter: queue a ``generate``
    job with the newest visible SG-LoRA generator of ``base_model`` and say why; None if there is none.

    The composition service calls this where it would raise "no adapter ... similar enough".
    """
    rows, _ = hub.adapters.list(user, AdapterFilters(base_model=base_model, kind="generator"), limit=20)
    svc = GenerationService(hub)
    for row in rows:
        ref = f"{row.namespace}/{row.name}"
        g = svc._resolve(user, ref, kind="generator")
        if svc._generator_meta(user, g)["method"] != "sg_lora":
            continue  # icm_lora generators may need sample prompts; a description is all we have
        best = "no adapters at all" if best_score is None else f"best similarity {best_score:.2f}"
        reason = (f"no adapter of {base_model} is similar enough to the task ({best}; min_score {min_score}): "
                  f"generating one from the description with the sg_lora generator {ref}@{g['version']}")
        job, dedup = svc.submit_generate(user, GenerateRequest(generator=f"{ref}@{g['version']}", task=task,
                                                               name=name))
        return job, dedup, reason
    return None


def publish_generator(hub: Hub, user: User, name: str, folder: Path, base_model: str, description: str,
                      provenance: Provenance) -> str:
    """Store a generator folder as a new version of ``name`` (kind ``generator``) with lineage."""
    from hub.db.models import Adapter, AdapterVersion
    from hub.repositories import adapters as repo
    from hub.services.publish import Publisher

    ns, nm = v.parse_name(name)
    put_t = hub.blobs.put_file(str(folder / TENSORS))
    manifest = (folder / MANIFEST).read_bytes()
    put_m = hub.blobs.put_bytes(manifest)
    sha = hashlib.sha256(manifest + put_t.key.encode()).hexdigest()
    meta = json.loads(manifest)
    with hub.sessions.begin() as s:
        a = repo.get_adapter_for_update(s, ns, nm)
        if a is None:
            a = Adapter(namespace=ns, name=nm, owner_id=user.id, kind="generator", description=description,
                        tags=["generator", meta["method"].replace("_", "-")], base_model=base_model, latest_version=0)
            s.add(a)
            s.flush()
        elif a.owner_id != user.id or a.kind != "generator":
            raise PermissionDeniedError(f"{ns}/{nm} is not a generator of {user.name}")
        a.latest_version += 1
        ver = AdapterVersion(adapter_id=a.id, number=a.latest_version, sha256=sha, size=put_t.size + put_m.size,
                             rank=0, base_model=base_model, config={"method": meta["method"], "config": meta["config"]},
                             files={MANIFEST: {"key": put_m.key, "size": put_m.size},
                                    TENSORS: {"key": put_t.key, "size": put_t.size}},
                             provenance=provenance.to_dict(), source="generator", created_by_id=user.id)
        s.add(ver)
        s.flush()
        Publisher._add_lineage(s, ver, provenance)
        return f"{ns}/{nm}@{a.latest_version}"


from hub.services import generation_jobs as _jobs  # noqa: E402,F401  (registers the handlers)
