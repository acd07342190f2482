"""Router training as a background job: gates over registered adapters, trained on their sample data.

A request names a router preset (``meteora``, ``mole``, ``smora``, ``lora_mixer`` ...), the expert
adapters (``ns/name[@version]``, in bank order) and the ``ns/name`` of the router to publish.
Everything a request can get wrong is checked at submit time (a 4xx, nothing queued): the experts
exist and are visible, they are adapters for one base model, that base is registered with a local
weights folder, every expert has ``samples.jsonl`` (the error names those that lack it), the preset
is known and trainable (the error lists them), and its config and the optimisation settings are
valid. The job loads the base, its tokenizer, the experts and their samples, runs
:func:`routing.train.train_router` (progress per step), and publishes the router as its very last
step: a registry artifact of kind ``router`` with provenance and one lineage edge per expert.
Identical recipes are deduplicated by hash through :meth:`hub.jobs.queue.JobQueue.submit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, PermissionDeniedError
from hub.core.provenance import ParentRef, Provenance
from hub.core.refs import AdapterRef
from hub.jobs.queue import JobQueue, JobView
from hub.jobs.worker import HANDLERS, Reporter
from hub.services import validation as v

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User
    from hub.services.hub import Hub

KIND = "router_train"
MAX_EXPERTS = 16
MAX_STEPS = 20_000
#: optimisation settings a request may set (``routing.train.TrainConfig`` fields).
TRAIN_FIELDS = ("lr", "batch_size", "max_length", "weight_decay", "warmup", "seed", "trainable")


@dataclass(frozen=True)
class RouterTrainRequest:
    """A router-training request (the API's pydantic schema and the CLI map onto it).

    Attributes:
        preset: a trainable router preset name.
        experts: ``ns/name[@version]`` of each expert, in bank order (the gate's output order).
        name: ``ns/name`` of the router artifact to publish (a new version if it exists).
        steps: optimisation steps.
        params: the preset's config fields (e.g. ``{"k": 2}``).
        train: optimisation settings (``lr``, ``batch_size``, ``max_length``, ``seed``, ``trainable`` ...).
        description: the router's description in the registry.
    """

    preset: str
    experts: tuple[str, ...]
    name: str
    steps: int = 100
    params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    def __post_init__(self) -> None:
        if not self.experts:
            raise InvalidInputError("experts must name at least one adapter", field="experts")
        if len(self.experts) > MAX_EXPERTS:
            raise InvalidInputError(f"at most {MAX_EXPERTS} experts, got {len(self.experts)}", field="experts")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise InvalidInputError(f"steps must be in 1..{MAX_STEPS}, got {self.steps}", field="steps")
        unknown = sorted(set(self.train) - set(TRAIN_FIELDS))
        if unknown:
            raise InvalidInputError(f"unknown training setting(s) {unknown}; known: {list(TRAIN_FIELDS)}",
                                    field="train")
        v.parse_name(self.name)


def presets() -> list[dict[str, Any]]:
    """The router presets: name, paper link, granularity, trainable, config fields with defaults."""
    import dataclasses

    from routing import ROUTERS

    out = []
    for name in ROUTERS.names():
        p = ROUTERS.get(name)
        fields = {f.name: (f.default if f.default is not dataclasses.MISSING else None)
                  for f in dataclasses.fields(p.config_cls)}
        out.append({"name": name, "paper": ROUTERS.entry(name).paper, "summary": ROUTERS.entry(name).summary,
                    "granularity": p.granularity, "trainable": p.trainable,
                    "uses_task_labels": p.uses_task_labels,
                    "config": {k: list(x) if isinstance(x, tuple) else x for k, x in fields.items()}})
    return out


def _check_preset(preset: str, params: dict[str, Any], steps: int, train: dict[str, Any]) -> dict[str, Any]:
    """Validate preset, config and training settings; returns the full config as a JSON dict."""
    from routing import ROUTERS, make_config
    from routing.train import TrainConfig

    trainable = [n for n in ROUTERS.names() if ROUTERS.get(n).trainable]
    if preset not in ROUTERS.names():
        raise InvalidInputError(f"unknown router preset {preset!r}; known trainable presets: {trainable}",
                                field="preset", known=trainable)
    if not ROUTERS.get(preset).trainable:
        raise InvalidInputError(f"router preset {preset!r} is training-free; trainable presets: {trainable}",
                                field="preset", known=trainable)
    cfg = make_config(preset, params)
    try:
        TrainConfig(steps=steps, **train)
    except TypeError as e:
        raise InvalidInputError(f"invalid training settings: {e}", field="train") from None
    return dict(cfg.to_dict())


class RouterTrainingService:
    """Submit router-training jobs (the worker runs :func:`run_router_train`)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.jobs = JobQueue(hub.sessions)

    def submit(self, user: User, req: RouterTrainRequest) -> tuple[JobView, bool]:
        """Validate ``req`` against the registry and queue it (or return the identical earlier job).

        Raises:
            InvalidInputError / UnknownNameError: bad fields, unknown or training-free preset, bad config,
                an expert without sample data, a base without local weights.
            NotFoundError: an expert that does not exist or is not visible; an unregistered base model.
            IncompatibleAdaptersError: experts for different base models.
            PermissionDeniedError: ``name`` belongs to someone else or is not a router.
        """
        config = _check_preset(req.preset, req.params, req.steps, req.train)
        refs = [AdapterRef.parse(r, field="experts") for r in req.experts]
        resolved = [self._resolve(user, r.full_name, r.version) for r in refs]
        keys = [f"{r['name']}@{r['version']}" for r in resolved]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise InvalidInputError(f"experts must be distinct; repeated: {dup}", field="experts")
        bases = {r["base_model"] for r in resolved}
        if len(bases) > 1:
            detail = ", ".join(f"{k}: {r['base_model']}" for k, r in zip(keys, resolved, strict=True))
            raise IncompatibleAdaptersError(f"experts are for different base models ({detail})")
        base_id = bases.pop()
        base = self.hub.base_models.get(base_id)
        if not base.weights:
            raise InvalidInputError(f"base model {base_id} has no local weights folder; register it with one "
                                    "(loom base register ... --weights FOLDER) to train a router", field="experts")
        from hub.services.inference.models import weights_folder

        weights_folder(base_id, base.weights)
        lacking = [k for k, r in zip(keys, resolved, strict=True) if not r["samples"]]
        if lacking:
            raise InvalidInputError(f"experts without sample data (samples.jsonl): {lacking}; a router is trained "
                                    "on its experts' samples", field="experts", lacking=lacking)
        self._check_name(user, req.name)
        recipe = {"kind": KIND, "preset": req.preset, "config": config, "steps": req.steps,
                  "train": dict(sorted(req.train.items())),
                  "experts": [{k: r[k] for k in ("name", "version", "sha256")} for r in resolved]}
        recipe_hash = Provenance.create(KIND, {**recipe, "name": req.name}).recipe_hash()
        request = {**recipe, "base_model": base_id, "expert_ids": keys,
                   "output": {"name": req.name, "description": req.description}}
        return self.jobs.submit(KIND, user.id, request, recipe_hash)

    def _resolve(self, user: User, name: str, number: int | None) -> dict[str, Any]:
        ns, nm = v.parse_name(name)
        kind = self.hub.adapters.get(user, ns, nm).kind
        if kind != "adapter":
            raise InvalidInputError(f"{name} is a {kind}, not an adapter; only adapters can be experts",
                                    field="experts")
        ver = self.hub.adapters.version(user, ns, nm, number)
        return {"name": f"{ns}/{nm}", "version": ver.number, "sha256": ver.sha256, "base_model": ver.base_model,
                "samples": "samples.jsonl" in (ver.files or {})}

    def _check_name(self, user: User, name: str) -> None:
        from hub.repositories import adapters as repo

        ns, nm = v.parse_name(name)
        with self.hub.sessions() as s:
            row = repo.get_adapter(s, ns, nm)
        if ns != user.name and row is None:
            raise PermissionDeniedError(f"you ({user.name}) can only publish under your own namespace, not {ns}/")
        if row is not None and (row.owner_id != user.id or row.kind != "router"):
            raise PermissionDeniedError(f"{ns}/{nm} exists and is not a router of {user.name}", field="name")


def _examples(raw: bytes, key: str) -> list[dict[str, str]]:
    rows = v.sample_pairs(raw)
    if not rows:
        raise InvalidInputError(f"expert {key} has no sample data (samples.jsonl is empty)")
    return rows


def run_router_train(hub: Hub, job: JobView, report: Reporter) -> dict[str, Any]:
    """The worker side: load base, tokenizer, experts and samples; train; publish with lineage."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hub.db.models import User
    from hub.services.inference.models import weights_folder
    from hub.services.inference.routers import publish_router
    from routing import ROUTERS  # noqa: F401 - importing it registers the presets (a worker starts bare)
    from routing.train import TrainConfig, train_router

    req = job.request
    with hub.sessions() as s:
        user = s.get(User, job.owner_id) if job.owner_id is not None else None
        if user is not None:
            s.expunge(user)
    if user is None:
        from hub.core.errors import NotFoundError

        raise NotFoundError("the job's owner no longer exists")
    base_id = req["base_model"]
    folder = weights_folder(base_id, hub.base_models.get(base_id).weights)
    report(0.02, f"loading base model {base_id}", force=True)
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model.config.name_or_path = base_id  # the checkpoint names the registered id, not the folder
    experts, examples, keys = [], [], list(req["expert_ids"])
    for i, src in enumerate(req["experts"]):
        report(0.05 + 0.05 * i / len(keys), f"loading {keys[i]}", force=True)
        ad, raw = hub.adapters.load(user, src["name"], src["version"])
        experts.append(ad)
        examples.append(_examples(raw, keys[i]))
    report.log(f"training {req['preset']} over {len(keys)} experts ({sum(map(len, examples))} samples) "
               f"for {req['steps']} steps")
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    tc = TrainConfig(steps=int(req["steps"]), pad_id=int(pad), **req.get("train", {}))

    def progress(rec: dict[str, Any]) -> None:
        step, steps = rec["step"], rec["steps"]
        report(0.1 + 0.8 * step / steps, f"step {step}/{steps} loss {rec['loss']:.4f} (lm {rec['lm']:.4f}, "
                                         f"aux {rec['aux']:.4f})", force=step == steps)

    state = train_router(model, experts, req["preset"], req["config"], examples=examples, tokenizer=tok,
                         names=keys, train=tc, progress=progress,
                         embed=lambda texts: torch.from_numpy(hub.search.embed(texts)))  # features="embedding"
    report.log(f"trained: loss {state.metrics['first_loss']:.4f} -> {state.metrics['final_loss']:.4f}")
    parents = [ParentRef(s["name"], str(s["version"]), None, s["sha256"]) for s in req["experts"]]
    recipe = {k: req[k] for k in ("preset", "config", "steps", "train")}
    prov = Provenance.create(KIND, recipe, parents)
    report(0.95, "publishing the router", force=True)  # last chance to cancel: nothing is written before this
    out = req["output"]
    description = out.get("description") or f"{req['preset']} router over " + ", ".join(keys)
    ref = publish_router(hub, user, out["name"], state, description=description, provenance=prov)
    report.log(f"published {ref}")
    name, _, number = ref.rpartition("@")
    return {"router": name, "version": int(number), "preset": req["preset"], "experts": keys,
            "first_loss": state.metrics["first_loss"], "final_loss": state.metrics["final_loss"]}


HANDLERS.register(KIND, summary="train a router's gates over registered adapters")(run_router_train)
