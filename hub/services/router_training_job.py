"""The ``router_train`` job: load the base, its tokenizer, the experts and their samples; train the
router's gates (:func:`routing.train.train_router`, progress per step); publish the router (kind
``router``) with provenance and one lineage edge per expert as its very last step.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError
from hub.core.imports import import_once
from hub.core.provenance import ParentRef, Provenance
from hub.jobs.queue import JobView
from hub.jobs.reporter import Reporter
from hub.services import validation as v
from hub.services.artifacts import router_bundle
from hub.services.jobs import job_owner
from hub.services.router_training import KIND

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from hub.services.adapters import AdapterService
    from hub.services.publish import Publisher
    from hub.services.sources import SourceResolver
    from hub.services.users import UserService


def _examples(raw: bytes, key: str) -> list[dict[str, str]]:
    rows = v.sample_pairs(raw)
    if not rows:
        raise InvalidInputError(f"expert {key} has no sample data (samples.jsonl is empty)")
    return rows


class RouterTrainingJob:
    """Runs ``router_train`` jobs.

    Args:
        users: the job's owner. adapters: loads the experts and their samples. publisher: publishes the router.
        sources: finds the base's weights folder. embed: texts -> embeddings (gates with ``features="embedding"``).
    """

    def __init__(self, users: UserService, adapters: AdapterService, publisher: Publisher, sources: SourceResolver,
                 embed: Callable[[list[str]], np.ndarray]) -> None:
        self.users, self.adapters, self.publisher, self.sources = users, adapters, publisher, sources
        self.embed = embed

    def run(self, job: JobView, report: Reporter) -> dict[str, Any]:
        """The worker side: load base, tokenizer, experts and samples; train; publish with lineage."""
        import torch
        AutoModelForCausalLM, AutoTokenizer = import_once("transformers", "AutoModelForCausalLM", "AutoTokenizer")

        from routing.train import TrainConfig, train_router

        req = job.request
        user = job_owner(self.users, job)
        base_id = req["base_model"]
        _, folder = self.sources.base_with_weights(base_id, field="experts", why="the router is trained on it")
        report(0.02, f"loading base model {base_id}", force=True)
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        model.config.name_or_path = base_id  # the checkpoint names the registered id, not the folder
        experts, examples, keys = [], [], list(req["expert_ids"])
        for i, src in enumerate(req["experts"]):
            report(0.05 + 0.05 * i / len(keys), f"loading {keys[i]}", force=True)
            ad, raw = self.adapters.load(user, src["name"], src["version"])
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
                             names=keys, train=tc, progress=progress, served=True,  # as served on the base
                             embed=lambda texts: torch.from_numpy(self.embed(texts)))  # features="embedding"
        report.log(f"trained: loss {state.metrics['first_loss']:.4f} -> {state.metrics['final_loss']:.4f}")
        parents = [ParentRef(s["name"], str(s["version"]), None, s["sha256"]) for s in req["experts"]]
        prov = Provenance.create(KIND, {k: req[k] for k in ("preset", "config", "steps", "train")}, parents)
        report(0.95, "publishing the router", force=True)  # last chance to cancel: nothing is written before this
        out = req["output"]
        with tempfile.TemporaryDirectory() as tmp:
            res = self.publisher.publish(
                user, out["name"], router_bundle(state, Path(tmp) / "router"),
                description=out.get("description") or f"{req['preset']} router over " + ", ".join(keys),
                tags=["router", req["preset"]], source="router", provenance=prov)
        report.log(f"published {res.adapter.full_name}@{res.version.number}")
        return {"router": res.adapter.full_name, "version": res.version.number, "preset": req["preset"],
                "experts": keys, "first_loss": state.metrics["first_loss"], "final_loss": state.metrics["final_loss"]}
