"""Router training as a background job: gates over registered adapters, trained on their sample data.

A request names a router preset (``meteora``, ``mole``, ``smora``, ``lora_mixer`` ...), the expert
adapters (``ns/name[@version]``, in bank order) and the ``ns/name`` of the router to publish.
Everything a request can get wrong is checked at submit time (a 4xx, nothing queued): the experts
exist and are visible, they are adapters for one base model, that base is registered with a local
weights folder, every expert has ``samples.jsonl`` (the error names those that lack it), the preset
is known and trainable (the error lists them), and its config and the optimisation settings are
valid. The job (:mod:`hub.services.router_training_job`) loads the base, its tokenizer, the experts and
their samples, runs :func:`routing.train.train_router` (progress per step), and publishes the router as
its very last step: a registry artifact of kind ``router`` with provenance and one lineage edge per expert.
Identical recipes are deduplicated by hash through :meth:`hub.jobs.queue.JobQueue.submit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError
from hub.core.provenance import Provenance
from hub.jobs.queue import JobView
from hub.services import validation as v

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User
    from hub.services.jobs import JobService
    from hub.services.publish import Publisher
    from hub.services.sources import SourceResolver

KIND = "router_train"
MAX_EXPERTS = 16
MAX_STEPS = 20_000
#: optimisation settings a request may set (``routing.train.TrainConfig`` fields).
TRAIN_FIELDS = ("lr", "batch_size", "max_length", "weight_decay", "warmup", "seed", "trainable")


#: ``recipe="hub"`` (the default): the settings that route on the hub's adapters, measured by
#: ``benchmarks/routing_quality.py --features lexical`` (README, "Recommended hub settings"): gates read the
#: request's sentence embedding plus hashed words, a supervised gate loss from the experts' own samples, and
#: per preset what made it route (top-1 for MeteoRA and LoRA-Mixer, no balance loss for Wu MoLE, routed attention
#: for LLaVA-MoLE, SMoRA's gate only). Given params and train settings override these; ``recipe="paper"``
#: starts from each preset's own (the paper's) defaults instead.
HUB_FEATURES: dict[str, Any] = {"features": "embedding", "lexical_dim": 4096}
HUB_PARAMS: dict[str, dict[str, Any]] = {
    "meteora": {"k": 1},
    "mole_llava": {"task_ce": 1.0, "routed_attention": True},
    "mole_wu": {"task_ce": 1.0, "balance_coef": 0.0},
    "smora": {"task_ce": 5.0, "trainable": "gate"},
    "lora_mixer": {"task_ce": 1.0, "placement": "all_linear", "k": 1},
}
HUB_TRAIN: dict[str, Any] = {"lr": 3e-2}
RECIPES = ("hub", "paper")


def recipe_settings(recipe: str, preset: str, params: dict[str, Any],
                    train: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The preset config and training settings a request trains with: the recipe's, overridden by the given ones.

    Raises:
        InvalidInputError: an unknown recipe.
    """
    if recipe not in RECIPES:
        raise InvalidInputError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}", field="recipe")
    if recipe == "paper":
        return dict(params), dict(train)
    return {**HUB_FEATURES, **HUB_PARAMS.get(preset, {}), **params}, {**HUB_TRAIN, **train}


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
        recipe: ``hub`` (default: the settings that route on hub adapters, :data:`HUB_PARAMS`) or ``paper`` (the
            preset's own defaults); ``params`` and ``train`` override either.
    """

    preset: str
    experts: tuple[str, ...]
    name: str
    steps: int = 100
    params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    recipe: str = "hub"

    def __post_init__(self) -> None:
        recipe_settings(self.recipe, self.preset, {}, {})
        if len(set(self.experts)) < 2:  # a gate over one expert has nothing to choose: its loss never moves
            raise InvalidInputError(f"a router needs at least 2 different experts to choose among, got "
                                    f"{len(set(self.experts))}", field="experts")
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
    """Submit router-training jobs (:class:`~hub.services.router_training_job.RouterTrainingJob` runs them).

    Args:
        jobs: where jobs are queued. sources: resolves and checks the experts. publisher: checks the name.
    """

    def __init__(self, jobs: JobService, sources: SourceResolver, publisher: Publisher) -> None:
        self.jobs, self.sources, self.publisher = jobs, sources, publisher

    def submit(self, user: User, req: RouterTrainRequest) -> tuple[JobView, bool]:
        """Validate ``req`` against the registry and queue it (or return the identical earlier job).

        Raises:
            InvalidInputError / UnknownNameError: bad fields, unknown or training-free preset, bad config,
                an expert without sample data, a base without local weights.
            NotFoundError: an expert that does not exist or is not visible; an unregistered base model.
            IncompatibleAdaptersError: experts for different base models.
            PermissionDeniedError: ``name`` is in another user's namespace, belongs to someone else or is not a
                router.
        """
        params, train = recipe_settings(req.recipe, req.preset, req.params, req.train)
        config = _check_preset(req.preset, params, req.steps, train)
        self.publisher.check_can_publish(user, req.name, "router")  # the user's own namespace, a router's name
        experts = self.sources.resolve_all(user, req.experts, field="experts", role="expert").distinct()
        base_id = experts.one_base()
        self.sources.base_with_weights(base_id, field="experts", why="a router is trained on its base model")
        experts.with_samples("a router is trained on its experts' samples")
        recipe = {"kind": KIND, "preset": req.preset, "config": config, "steps": req.steps,
                  "train": dict(sorted(train.items())), "recipe": req.recipe, "experts": [e.pinned() for e in experts]}
        recipe_hash = Provenance.create(KIND, {**recipe, "name": req.name}).recipe_hash()
        request = {**recipe, "base_model": base_id, "expert_ids": experts.keys,
                   "output": {"name": req.name, "description": req.description}}
        return self.jobs.submit(KIND, user.id, request, recipe_hash)
