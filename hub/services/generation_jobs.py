"""Worker handlers of the generation jobs: ``train_generator``, ``generate`` and ``transfer``.

Each loads what it needs, does the work (reporting progress per phase), and publishes as its very
last step, so a failed or cancelled job leaves nothing half-written.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import NotFoundError
from hub.core.provenance import ParentRef, Provenance
from hub.jobs.queue import JobView
from hub.jobs.worker import HANDLERS, Reporter

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User
    from hub.services.hub import Hub


def _owner(hub: Hub, job: JobView) -> User:
    from hub.db.models import User

    with hub.sessions() as s:
        user = s.get(User, job.owner_id) if job.owner_id is not None else None
        if user is not None:
            s.expunge(user)
    if user is None:
        raise NotFoundError("the job's owner no longer exists")
    return user


def _embed(hub: Hub, text: str) -> Any:
    import torch

    return torch.from_numpy(hub.search.embed([text])[0].copy()).float()


def _load_model(folder: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from generation.taskvec import TextCodec

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return model, TextCodec(AutoTokenizer.from_pretrained(folder))


def _sample_rows(raw: bytes) -> bytes | None:
    """The ``{"input", "output"}`` rows of a stored samples.jsonl (at most 64), re-serialised; None if none."""
    from hub.services.validation import sample_pairs

    return "".join(json.dumps(r) + "\n" for r in sample_pairs(raw)[:64]).encode() or None


def _publish_adapter(hub: Hub, user: User, adapter: Any, name: str, description: str, tags: list[str],
                     visibility: str, samples: bytes | None, source: str) -> dict[str, Any]:
    """Publish ``adapter``; ``samples``: a samples.jsonl of ``{"input", "output"}`` rows, or None."""
    from hub.core.peft_io import adapter_config, save_peft
    from hub.services.publish import PublishFiles

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_peft(adapter, Path(tmp) / "out")
        files = PublishFiles(config=json.dumps(adapter_config(adapter), indent=2, sort_keys=True).encode(),
                             weights=folder / "adapter_model.safetensors", samples=samples)
        res = hub.adapters.publish(user, name, files, description=description, tags=tags, visibility=visibility,
                                   source=source, provenance=adapter.provenance)
    return {"adapter": f"{res.adapter.namespace}/{res.adapter.name}", "version": res.version.number}


def run_train_generator(hub: Hub, job: JobView, report: Reporter) -> dict[str, Any]:
    """Load the sources, fit SG-LoRA or ICM-LoRA, publish the generator (kind ``generator``)."""
    from generation.icm_lora import ICMLoRA, TaskSnapshots
    from generation.sg_lora import Expert, SGLoRA
    from generation.taskvec import task_vector
    from hub.services.generation import _config, _samples, publish_generator

    req = job.request
    user = _owner(hub, job)
    cfg = _config(req["method"], req["params"])
    items = []
    for i, src in enumerate(req["sources"]):
        report(0.05 + 0.3 * i / len(req["sources"]), f"loading {src['name']}@{src['version']}", force=True)
        ad, raw = hub.adapters.load(user, src["name"], src["version"])
        ns, nm = src["name"].split("/", 1)
        desc = hub.adapters.get(user, ns, nm).description or src["name"]
        items.append((src, ad, _samples(raw), desc))
    parents = [ParentRef(s["name"], str(s["version"]), None, s["sha256"]) for s, *_ in items]
    report(0.4, f"training {req['method']} on {len(items)} adapters", force=True)
    if req["method"] == "sg_lora":
        gen: Any = SGLoRA.fit([Expert(s["name"], _embed(hub, d), [a], p)
                               for (s, a, _, d), p in zip(items, parents, strict=True)], cfg)
    else:
        if cfg.condition == "hidden":
            model, codec = _load_model(hub.base_models.get(req["base_model"]).weights)
            conds = [task_vector(model, codec, smp) for _, _, smp, _ in items]
        else:
            conds = [_embed(hub, d) for *_, d in items]
        gen = ICMLoRA.fit([TaskSnapshots(s["name"], c, [a], (p,))
                           for (s, a, _, _), c, p in zip(items, conds, parents, strict=True)], cfg)
    report.log(f"trained: {json.dumps(gen.report, default=str)}")
    report(0.9, "publishing the generator", force=True)
    prov = Provenance.create(req["method"], {"config": cfg.to_dict(), "kind": "generator"}, parents)
    with tempfile.TemporaryDirectory() as tmp:
        folder = gen.save(Path(tmp) / "g")
        desc = req["output"].get("description") or f"{req['method']} generator for {req['base_model']}"
        ref = publish_generator(hub, user, req["output"]["name"], folder, req["base_model"], desc, prov)
    report.log(f"published {ref}")
    return {"generator": ref, "report": gen.report}


def _read_generator(hub: Hub, user: User, g: dict[str, Any], tmp: Path) -> Path:
    from hub.services import validation as v
    from hub.services.generation import MANIFEST, TENSORS

    ns, nm = v.parse_name(g["name"])
    ver = hub.adapters.version(user, ns, nm, g["version"])
    files = ver.files or {}
    folder = tmp / "g"
    folder.mkdir()
    for f in (MANIFEST, TENSORS):
        (folder / f).write_bytes(hub.blobs.read_bytes(files[f]["key"]))
    return folder


def run_generate(hub: Hub, job: JobView, report: Reporter) -> dict[str, Any]:
    """Generate an adapter for a description (and samples) with a stored generator; publish it."""
    from generation.icm_lora import ICMLoRA
    from generation.sg_lora import SGLoRA
    from generation.taskvec import task_vector

    req = job.request
    user = _owner(hub, job)
    g = req["generator"]
    report(0.1, f"loading generator {g['name']}@{g['version']}", force=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = _read_generator(hub, user, g, Path(tmp))
        if req["method"] == "sg_lora":
            sg = SGLoRA.load(folder)
            p = sg.prior(_embed(hub, req["task"]))
            report.log("experts: " + ", ".join(f"{n} (weight {w:.3f})" for n, w in zip(p.names, p.weights.tolist(),
                                                                                     strict=True)))
            adapter = sg.generate(_embed(hub, req["task"]), seed=req["seed"])[0]
        else:
            icm = ICMLoRA.load(folder)
            if icm.cfg.condition == "hidden":
                model, codec = _load_model(hub.base_models.get(g["base_model"]).weights)
                cond = task_vector(model, codec, req["samples"])
            else:
                cond = _embed(hub, req["task"])
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
    res = _publish_adapter(hub, user, adapter, name, f"Generated ({req['method']}) for the task: {req['task']}",
                           ["generated", req["method"].replace("_", "-")], out.get("visibility", "public"),
                           None, f"generate:{job.id}")  # the request's samples are prompts without answers
    report.log(f"published {res['adapter']}@{res['version']}")
    return {**res, "method": req["method"]}


def run_transfer(hub: Hub, job: JobView, report: Reporter) -> dict[str, Any]:
    """Trans-LoRA: move the source adapter to the target base; progress per phase; publish."""
    from generation.trans_lora import PHASES, transfer
    from hub.services.generation import _samples, _trans_config

    req = job.request
    user = _owner(hub, job)
    src = req["source"]
    report(0.02, f"loading {src['name']}@{src['version']} and both bases", force=True)
    adapter, raw = hub.adapters.load(user, src["name"], src["version"])
    s_model, s_codec = _load_model(hub.base_models.get(src["base_model"]).weights)
    t_model, t_codec = _load_model(hub.base_models.get(req["target_base"]).weights)
    last = {"phase": ""}

    def progress(phase: str, frac: float, msg: str) -> None:
        if phase != last["phase"]:
            report.log(f"phase {phase}")
            last["phase"] = phase
        i = PHASES.index(phase)
        report(0.05 + 0.85 * (i + min(1.0, frac)) / len(PHASES), f"{phase}: {msg}".rstrip(": "))

    res = transfer(s_model, adapter, t_model, _samples(raw), source_id=src["base_model"],
                   target_id=req["target_base"], codec_s=s_codec, codec_t=t_codec, cfg=_trans_config(req["params"]),
                   progress=progress, parent=ParentRef(src["name"], str(src["version"]), None, src["sha256"]))
    report.log(f"transfer report: {json.dumps({k: res.report[k] for k in ('seconds', 'accepted', 'candidates')})}")
    report(0.92, "publishing the transferred adapter", force=True)
    out = req["output"]
    name = out.get("name") or f"{user.name}/{src['name'].split('/')[1]}-{req['target_base'].split('/')[-1]}"
    pub = _publish_adapter(hub, user, res.adapter, name,
                           f"{src['name']}@{src['version']} transferred to {req['target_base']} with Trans-LoRA",
                           ["transferred", "trans-lora"], out.get("visibility", "public"), _sample_rows(raw),
                           f"transfer:{job.id}")  # the source's real examples hold on the new base too
    report.log(f"published {pub['adapter']}@{pub['version']}")
    return {**pub, "seconds": res.report["seconds"], "accepted": res.report["accepted"]}


HANDLERS.register("train_generator", summary="train an SG-LoRA / ICM-LoRA generator")(run_train_generator)
HANDLERS.register("generate", summary="generate an adapter from a task description")(run_generate)
HANDLERS.register("transfer", summary="move an adapter to another base model (Trans-LoRA)")(run_transfer)
