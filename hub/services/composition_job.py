"""The ``compose`` job: load the sources, choose and run the merge method, publish the result with lineage.

Queued by :class:`hub.services.compositions.CompositionService`, which checked everything a request can
get wrong. The result is published as the very last step (the last chance to cancel is just before),
so a failed or cancelled job leaves no partial adapter.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError, NotFoundError
from hub.core.provenance import ParentRef, Provenance, canonical_json
from hub.jobs.queue import JobView
from hub.jobs.reporter import Reporter
from hub.services.compositions import MAX_SAMPLES_FOR_RESULT
from hub.services.jobs import job_owner
from hub.services.publish import PublishFiles

if TYPE_CHECKING:  # pragma: no cover
    from hub.services.adapters import AdapterService
    from hub.services.publish import Publisher
    from hub.services.sources import SourceResolver
    from hub.services.users import UserService


class CompositionJob:
    """Runs ``compose`` jobs.

    Args:
        users: the job's owner. adapters: loads the sources. publisher: publishes the result.
        sources: finds the base model's weights (lorahub scores merges with it).
    """

    def __init__(self, users: UserService, adapters: AdapterService, publisher: Publisher,
                 sources: SourceResolver) -> None:
        self.users, self.adapters, self.publisher, self.sources = users, adapters, publisher, sources

    def run(self, job: JobView, report: Reporter) -> dict[str, Any]:
        """The worker side: load sources, choose/run the method, publish the result with lineage."""
        from hub.core.peft_io import adapter_config, save_peft
        from hub.services.inference.models import pick_device
        from merging import choose_method, merge

        req = job.request
        for line in req.get("log", []):
            report.log(line)
        user = job_owner(self.users, job)
        sources = req["sources"]
        adapters, samples, raw_samples = [], [], []
        for i, src in enumerate(sources):
            report(0.05 + 0.35 * i / len(sources), f"loading {src['name']}@{src['version']}", force=True)
            ad, smp = self.adapters.load(user, src["name"], src["version"])
            adapters.append(ad)
            raw_samples.append(smp)
            samples.extend(ln for ln in smp.decode("utf-8", "replace").splitlines() if ln.strip())
        method, params = req["method"], dict(req["params"])
        weights: list[float] | None = list(req["weights"]) if req.get("weights") is not None else None
        reason = None
        if method == "auto":
            choice = choose_method(adapters, weights or req.get("similarities"))  # the retrieval's softmax weights
            method, params, weights, reason = choice.method, choice.params, choice.weights, choice.reason
            report.log(f"auto chose {method}: {reason}")
        device = pick_device()
        keys = [f"{s['name']}@{s['version']}" for s in sources]
        search: dict[str, Any] | None = None
        if method == "lorahub":
            objective, search = self._lorahub_objective(req["base_model"], keys, raw_samples, device, report)
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
                       + f" after {prov.recipe['report']['evaluations']} evaluations; few-shot loss {search['loss']:.4f}"
                       f" (base model {search['base_loss']:.4f}, weights 1 each {search['uniform_loss']:.4f})")
        merged = merged.to("cpu")
        extra = {"task": req.get("task"), "auto_reason": reason, "requested_method": req["method"], "objective": search}
        prov = Provenance(method=prov.method, method_version=prov.method_version,
                          recipe_json=canonical_json({**prov.recipe, **{k: x for k, x in extra.items() if x}}),
                          parents=prov.parents, library_version=prov.library_version)
        report(0.8, "publishing the result", force=True)  # last chance to cancel: nothing is written before this
        out = req["output"]
        description = out.get("description") or (
            f"Composed for the task: {req['task']}" if req.get("task")
            else f"{method} merge of " + ", ".join(keys)
        )
        with tempfile.TemporaryDirectory() as tmp:
            folder = save_peft(merged.with_provenance(prov), Path(tmp) / "out")
            files = PublishFiles(
                config=json.dumps(adapter_config(merged), indent=2, sort_keys=True).encode(),
                weights=folder / "adapter_model.safetensors",
                samples=("\n".join(samples[:MAX_SAMPLES_FOR_RESULT]) + "\n").encode() if samples else None,
            )
            res = self.publisher.publish(
                user, out["name"], files, description=description, license=self._shared_license(user, sources),
                tags=[*out.get("tags", []), "composed", method.replace("_", "-")],
                visibility=out.get("visibility", "public"), source=f"compose:{job.id}", provenance=prov,
            )
        full = f"{res.adapter.namespace}/{res.adapter.name}"
        report.log(f"published {full}@{res.version.number}")
        return {"adapter": full, "version": res.version.number, "method": method, "params": params,
                "weights": weights, "reason": reason}

    def _shared_license(self, user: Any, sources: list[dict[str, Any]]) -> str | None:
        """The license every source shares (the result inherits it), else None (no license is claimed)."""
        licenses = {self.adapters.get(user, *src["name"].split("/", 1)).license for src in sources}
        return next(iter(licenses)) if len(licenses) == 1 else None

    def _lorahub_objective(self, base_id: str, keys: list[str], raw_samples: list[bytes], device: str,
                           report: Reporter) -> tuple[Any, dict[str, Any]]:
        """The base model's few-shot loss on the sources' samples, reporting progress (and cancel) per call."""
        from hub.services.composition_objective import balanced, build_objective, load_scorer, source_examples

        try:
            _, folder = self.sources.base_with_weights(base_id, field="method", why="lorahub needs it")
        except NotFoundError:
            raise InvalidInputError(f"base model {base_id} is no longer registered; lorahub needs it",
                                    field="method") from None
        report(0.4, f"loading base model {base_id} to score candidate merges", force=True)
        model, tok = load_scorer(folder, device)
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
