"""Worker side of the generation jobs: ``train_generator``, ``generate`` and ``transfer``.

Each loads what it needs, does the work (reporting progress per phase), and publishes as its very
last step, so a failed or cancelled job leaves nothing half-written.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.imports import import_once
from hub.core.provenance import ParentRef, Provenance
from hub.jobs.phases import Phases
from hub.jobs.queue import JobView
from hub.jobs.reporter import Reporter
from hub.services.artifacts import generator_bundle, write_generator
from hub.services.generation import generator_config, sample_inputs, transfer_config
from hub.services.jobs import job_owner
from hub.services.publish import PublishFiles
from hub.services.validation import parse_name, sample_pairs

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from hub.db.models import User
    from hub.services.adapters import AdapterService
    from hub.services.publish import Publisher
    from hub.services.sources import SourceResolver
    from hub.services.users import UserService

MAX_RESULT_SAMPLES = 64
#: Trans-LoRA's phases, weighted by their measured seconds (full testbed, README: 8, 110, 26, 17, 95 s)
TRANSFER_PHASE_WEIGHTS = {"discriminator": 8.0, "synthesize": 110.0, "filter": 26.0, "label": 17.0, "distil": 95.0}


def _load_model(folder: Path) -> tuple[Any, Any]:
    AutoModelForCausalLM, AutoTokenizer = import_once("transformers", "AutoModelForCausalLM", "AutoTokenizer")

    from generation.taskvec import TextCodec

    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    return model, TextCodec(AutoTokenizer.from_pretrained(str(folder)))


def _sample_rows(raw: bytes) -> bytes | None:
    """The ``{"input", "output"}`` rows of a stored samples.jsonl (at most 64), re-serialised; None if none."""
    return "".join(json.dumps(r) + "\n" for r in sample_pairs(raw)[:MAX_RESULT_SAMPLES]).encode() or None


class GenerationJobs:
    """Runs ``train_generator``, ``generate`` and ``transfer`` jobs.

    Args:
        users: the job's owner. adapters: reads sources and generators. publisher: publishes results.
        sources: finds base models' weights folders. embed: texts -> unit embeddings (the hub's embedder).
    """

    def __init__(self, users: UserService, adapters: AdapterService, publisher: Publisher, sources: SourceResolver,
                 embed: Callable[[list[str]], np.ndarray]) -> None:
        self.users, self.adapters, self.publisher, self.sources = users, adapters, publisher, sources
        self.embed = embed

    def _embedding(self, text: str) -> Any:
        import torch

        return torch.from_numpy(self.embed([text])[0].copy()).float()

    def _base(self, base_id: str) -> tuple[Any, Any]:
        _, folder = self.sources.base_with_weights(base_id, field="base_model", why="the job runs it")
        return _load_model(folder)

    def _publish_adapter(self, user: User, adapter: Any, name: str, description: str, tags: list[str],
                         visibility: str, samples: bytes | None, source: str) -> dict[str, Any]:
        """Publish ``adapter``; ``samples``: a samples.jsonl of ``{"input", "output"}`` rows, or None."""
        from hub.core.peft_io import adapter_config, save_peft

        with tempfile.TemporaryDirectory() as tmp:
            folder = save_peft(adapter, Path(tmp) / "out")
            files = PublishFiles(config=json.dumps(adapter_config(adapter), indent=2, sort_keys=True).encode(),
                                 weights=folder / "adapter_model.safetensors", samples=samples)
            res = self.publisher.publish(user, name, files, description=description, tags=tags,
                                         visibility=visibility, source=source, provenance=adapter.provenance)
        return {"adapter": f"{res.adapter.namespace}/{res.adapter.name}", "version": res.version.number}

    def train_generator(self, job: JobView, report: Reporter) -> dict[str, Any]:
        """Load the sources, fit SG-LoRA or ICM-LoRA, publish the generator (kind ``generator``)."""
        from generation.icm_lora import ICMLoRA, TaskSnapshots
        from generation.sg_lora import Expert, SGLoRA
        from generation.taskvec import task_vector

        req = job.request
        user = job_owner(self.users, job)
        cfg = generator_config(req["method"], req["params"])
        items = []
        for i, src in enumerate(req["sources"]):
            report(0.05 + 0.3 * i / len(req["sources"]), f"loading {src['name']}@{src['version']}", force=True)
            ad, raw = self.adapters.load(user, src["name"], src["version"])
            desc = self.adapters.get(user, *parse_name(src["name"])).description or src["name"]
            items.append((src, ad, sample_inputs(raw), desc))
        parents = [ParentRef(s["name"], str(s["version"]), None, s["sha256"]) for s, *_ in items]
        report(0.4, f"training {req['method']} on {len(items)} adapters", force=True)
        if req["method"] == "sg_lora":
            gen: Any = SGLoRA.fit([Expert(s["name"], self._embedding(d), [a], p)
                                   for (s, a, _, d), p in zip(items, parents, strict=True)], cfg)
        else:
            if cfg.condition == "hidden":
                model, codec = self._base(req["base_model"])
                conds = [task_vector(model, codec, smp) for _, _, smp, _ in items]
            else:
                conds = [self._embedding(d) for *_, d in items]
            gen = ICMLoRA.fit([TaskSnapshots(s["name"], c, [a], (p,))
                               for (s, a, _, _), c, p in zip(items, conds, parents, strict=True)], cfg)
        report.log(f"trained: {json.dumps(gen.report, default=str)}")
        report(0.9, "publishing the generator", force=True)
        prov = Provenance.create(req["method"], {"config": cfg.to_dict(), "kind": "generator"}, parents)
        out = req["output"]
        with tempfile.TemporaryDirectory() as tmp:
            folder = gen.save(Path(tmp) / "g")
            res = self.publisher.publish(
                user, out["name"], generator_bundle(folder, req["base_model"]),
                description=out.get("description") or f"{req['method']} generator for {req['base_model']}",
                tags=["generator", req["method"].replace("_", "-")], source="generator", provenance=prov)
        ref = f"{res.adapter.full_name}@{res.version.number}"
        report.log(f"published {ref}")
        return {"generator": ref, "report": gen.report}

    def generate(self, job: JobView, report: Reporter) -> dict[str, Any]:
        """Generate an adapter for a description (and samples) with a stored generator; publish it."""
        from generation.icm_lora import ICMLoRA
        from generation.sg_lora import SGLoRA
        from generation.taskvec import task_vector

        req = job.request
        user = job_owner(self.users, job)
        g = req["generator"]
        report(0.1, f"loading generator {g['name']}@{g['version']}", force=True)
        ver = self.adapters.version(user, *parse_name(g["name"]), g["version"])
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_generator(self.adapters, ver, Path(tmp) / "g")
            if req["method"] == "sg_lora":
                sg = SGLoRA.load(folder)
                p = sg.prior(self._embedding(req["task"]))
                report.log("experts: " + ", ".join(f"{n} (weight {w:.3f})"
                                                   for n, w in zip(p.names, p.weights.tolist(), strict=True)))
                adapter = sg.generate(self._embedding(req["task"]), seed=req["seed"])[0]
            else:
                icm = ICMLoRA.load(folder)
                if icm.cfg.condition == "hidden":
                    model, codec = self._base(g["base_model"])
                    cond = task_vector(model, codec, req["samples"])
                else:
                    cond = self._embedding(req["task"])
                adapter = icm.generate(cond, seed=req["seed"])
        prov = adapter.provenance
        prov = Provenance(method=prov.method, method_version=prov.method_version,
                          recipe_json=json.dumps({**prov.recipe, "task": req["task"], "generator": g}, sort_keys=True),
                          parents=(*prov.parents, ParentRef(g["name"], str(g["version"]), None, g["sha256"])),
                          library_version=prov.library_version)
        adapter = adapter.with_spec(base_model=g["base_model"]).with_provenance(prov)
        report(0.8, "publishing the generated adapter", force=True)
        out = req["output"]
        name = out.get("name") or f"{user.name}/generated-{job.id[:8]}"
        res = self._publish_adapter(user, adapter, name, f"Generated ({req['method']}) for the task: {req['task']}",
                                    ["generated", req["method"].replace("_", "-")], out.get("visibility", "public"),
                                    None, f"generate:{job.id}")  # the request's samples are prompts without answers
        report.log(f"published {res['adapter']}@{res['version']}")
        return {**res, "method": req["method"]}

    def transfer(self, job: JobView, report: Reporter) -> dict[str, Any]:
        """Trans-LoRA: move the source adapter to the target base; progress per phase; publish."""
        from generation.trans_lora import PHASES, transfer

        req = job.request
        user = job_owner(self.users, job)
        src = req["source"]
        report(0.02, f"loading {src['name']}@{src['version']} and both bases", force=True)
        adapter, raw = self.adapters.load(user, src["name"], src["version"])
        s_model, s_codec = self._base(src["base_model"])
        t_model, t_codec = self._base(req["target_base"])
        progress = Phases(report, [(p, TRANSFER_PHASE_WEIGHTS.get(p, 1.0)) for p in PHASES], 0.05, 0.9)
        res = transfer(s_model, adapter, t_model, sample_inputs(raw), source_id=src["base_model"],
                       target_id=req["target_base"], codec_s=s_codec, codec_t=t_codec,
                       cfg=transfer_config(req["params"]), progress=progress,
                       parent=ParentRef(src["name"], str(src["version"]), None, src["sha256"]))
        progress.close()
        report.log(f"transfer report: {json.dumps({k: res.report[k] for k in ('seconds', 'accepted', 'candidates')})}")
        report(0.92, "publishing the transferred adapter", force=True)
        out = req["output"]
        name = out.get("name") or f"{user.name}/{src['name'].split('/')[1]}-{req['target_base'].split('/')[-1]}"
        pub = self._publish_adapter(user, res.adapter, name,
                                    f"{src['name']}@{src['version']} transferred to {req['target_base']} with "
                                    "Trans-LoRA", ["transferred", "trans-lora"], out.get("visibility", "public"),
                                    _sample_rows(raw), f"transfer:{job.id}")  # the source's real examples hold on T
        report.log(f"published {pub['adapter']}@{pub['version']}")
        return {**pub, "seconds": res.report["seconds"], "accepted": res.report["accepted"]}
