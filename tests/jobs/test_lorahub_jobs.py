"""``lorahub`` through the composition API and the job runner, on SQLite and PostgreSQL.

A real tiny base (a byte-level Llama saved with its tokenizer) is registered with its weights folder;
two LoRAs are trained on it with PEFT on their own samples, a third is random noise. LoraHub must
search the weights on the sources' samples with the base model, record them (job log, result,
provenance, lineage) and publish a merge whose few-shot loss, recomputed here from the registry,
beats weights 1 each and the base model (a constant objective fails this: measured 6.88 vs 4.80).
"""

from __future__ import annotations

import json

import pytest
import torch

from hub.jobs.queue import JobQueue
from hub.jobs.worker import Worker
from hub.services.composition_objective import balanced, build_objective, load_scorer, source_examples
from tests.services.util import registry_state

BASE_ID = "loom-test/lorahub-llama"
SAMPLES = {
    "alice/upper": [(f"up: {w}", w.upper()) for w in ("cat", "dog", "sun", "map", "pen", "cup", "hat", "box")],
    "bob/digits": [(f"#{n} {n + 1}", str(2 * n + 1)) for n in range(10, 18)],
    "carol/noise": [(f"rev: {w}", w[::-1]) for w in ("abc", "xyz", "pqr", "uvw", "ijk", "lmn", "efg", "rst")],
}
SOURCES = ["alice/upper@1", "bob/digits@1", "carol/noise@1"]


def _rows(name):
    return [{"input": i, "output": o} for i, o in SAMPLES[name]]


def _save_base(folder):
    """A byte-level Llama with its tokenizer; the output head is scaled up so a rank-4 LoRA can fit samples."""
    from testbed.tokenizer import save_tokenizer
    from tests.helpers import byte_llama

    model = byte_llama(seed=0)
    with torch.no_grad():
        model.lm_head.weight.mul_(10.0)  # random init gives near-uniform logits a LoRA cannot sharpen
    model.save_pretrained(str(folder))
    save_tokenizer(folder)
    return folder


def _train_lora(base_dir, folder, rows, seed):
    """A rank-4 PEFT LoRA fitted to ``rows`` in the served format (BOS + prompt + newline -> answer + EOS)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hub.services.composition_objective import ServedPrompts

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    served = ServedPrompts(tok)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    pm = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                          task_type="CAUSAL_LM"))
    seqs = []
    for r in rows:
        p = served(r["input"])["input_ids"]
        a = served(r["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        seqs.append((p + a, [-100] * len(p) + a))
    width = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, lab) in enumerate(seqs):
        ids[i, : len(s)], labels[i, : len(lab)], mask[i, : len(s)] = torch.tensor(s), torch.tensor(lab), 1
    opt = torch.optim.Adam([p for p in pm.parameters() if p.requires_grad], lr=2e-2)
    pm.train()
    for _ in range(120):
        loss = pm(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    pm.save_pretrained(str(folder))
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = BASE_ID
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(base folder, {name: PEFT folder}): two trained LoRAs and one of random noise, on one tiny base."""
    from transformers import AutoModelForCausalLM

    from tests.helpers import byte_llama, make_peft_adapter

    root = tmp_path_factory.mktemp("lorahub")
    base_dir = _save_base(root / "base")
    dirs = {
        "alice/upper": _train_lora(base_dir, root / "upper", _rows("alice/upper"), seed=1),
        "bob/digits": _train_lora(base_dir, root / "digits", _rows("bob/digits"), seed=2),
        "carol/noise": make_peft_adapter(AutoModelForCausalLM.from_pretrained(str(base_dir)), root / "noise",
                                         seed=3, r=4, alpha=8, targets=("q_proj", "v_proj", "down_proj"),
                                         base_id=BASE_ID),
        "dave/nosamples": make_peft_adapter(AutoModelForCausalLM.from_pretrained(str(base_dir)), root / "nos",
                                            seed=4, r=4, alpha=8, targets=("q_proj", "v_proj", "down_proj"),
                                            base_id=BASE_ID),
        "erin/noweights": make_peft_adapter(byte_llama(seed=5, layers=3), root / "nw", seed=5,
                                            base_id="loom-test/no-weights"),
        "erin/unregistered": make_peft_adapter(byte_llama(seed=6, layers=3), root / "unreg", seed=6,
                                               base_id="loom-test/unregistered"),
    }
    return base_dir, dirs


def _publish(hub, folder, name, rows=None):
    from hub.services.publish import PublishFiles

    user = hub.users.ensure_user(name.split("/")[0])
    raw = "".join(json.dumps(r) + "\n" for r in rows).encode() if rows else None
    files = PublishFiles(config=(folder / "adapter_config.json").read_bytes(),
                         weights=folder / "adapter_model.safetensors", samples=raw)
    return hub.publisher.publish(user, name, files, description=f"adapter {name}")


@pytest.fixture
def client(hub, world):
    """(hub, TestClient, alice's auth header) with the base registered and the sources published."""
    from fastapi.testclient import TestClient

    from hub.api import create_app
    from tests.helpers import byte_llama

    base_dir, dirs = world
    hub.base_models.register(BASE_ID, (base_dir / "config.json").read_bytes(), weights=str(base_dir))
    hub.base_models.register("loom-test/no-weights", byte_llama(layers=3).config.to_dict())
    for name in SAMPLES:
        _publish(hub, dirs[name], name, _rows(name))
    _publish(hub, dirs["dave/nosamples"], "dave/nosamples")
    _publish(hub, dirs["erin/noweights"], "erin/noweights", _rows("alice/upper"))
    _publish(hub, dirs["erin/unregistered"], "erin/unregistered", _rows("alice/upper"))
    _, token = hub.users.create_token("alice")
    with TestClient(create_app(hub=hub)) as c:
        yield hub, c, {"Authorization": f"Bearer {token}"}


def _objective(hub, base_dir):
    """The few-shot objective rebuilt independently from the registry's samples (what the job should use)."""
    model, tok = load_scorer(base_dir)
    per = [source_examples(hub.adapters.load(None, s.split("@")[0], 1)[1], s) for s in SOURCES]
    return build_objective(model, tok, balanced(per))


def test_lorahub_composition_searches_records_and_beats_uniform_weights(client, world):
    from merging import merge

    hub, c, auth = client
    base_dir, _ = world
    r = c.post("/api/v1/compositions", headers=auth,
               json={"sources": SOURCES, "method": "lorahub", "params": {"budget": 40, "seed": 1},
                     "name": "alice/hubbed"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert Worker(hub.queue, hub.handlers, "test").run_once()
    job = c.get(f"/api/v1/jobs/{job_id}", headers=auth).json()
    assert job["status"] == "succeeded", job["error"]
    found = job["result"]["weights"]
    assert job["result"]["method"] == "lorahub" and len(found) == 3
    assert any("lorahub objective: few-shot loss of " + BASE_ID in line for line in job["log"])
    logged = [line for line in job["log"] if "lorahub found weights" in line]
    assert logged and all(f"{s} {w:+.4f}" in logged[0] for s, w in zip(SOURCES, found, strict=True))

    ver = hub.adapters.version(None, "alice", "hubbed", 1)
    recipe = ver.provenance["recipe"]
    assert ver.provenance["method"] == "lorahub" and recipe["weights"] == found
    assert "objective" not in recipe["params"] and recipe["params"]["budget"] == 40
    lineage = hub.adapters.lineage(None, "alice", "hubbed", 1)
    assert sorted((p["version"], p["weight"]) for p in lineage.parents) == sorted(zip(SOURCES, found, strict=True))

    # the published adapter is exactly cat with the found weights, and its loss is what the job recorded
    published, _ = hub.adapters.load(None, "alice/hubbed", 1)
    sources = [hub.adapters.load(None, s.split("@")[0], 1)[0] for s in SOURCES]
    again = merge(sources, "cat", weights=found)
    for m, d in published.deltas(torch.float64).items():
        torch.testing.assert_close(d, again.deltas(torch.float64)[m], rtol=1e-5, atol=1e-7)
    objective = _objective(hub, base_dir)
    loss = objective(published)
    uniform = objective(merge(sources, "cat"))
    base = objective(merge(sources[:1], "cat", weights=[0.0]))
    assert loss == pytest.approx(recipe["objective"]["loss"], rel=1e-4)
    assert recipe["objective"]["uniform_loss"] == pytest.approx(uniform, rel=1e-4)
    assert loss < uniform - 0.05 and loss < base - 0.05  # the search beats weights 1 each and the base model

    # the same recipe again is the same job
    r2 = c.post("/api/v1/compositions", headers=auth,
                json={"sources": SOURCES, "method": "lorahub", "params": {"budget": 40, "seed": 1},
                      "name": "alice/hubbed"})
    assert r2.json()["id"] == job_id and r2.json()["deduplicated"]

    # a task description: retrieve, then search the retrieved adapters' weights (none are given)
    r3 = c.post("/api/v1/compositions", headers=auth,
                json={"task": "adapter alice/upper", "base_model": BASE_ID, "method": "lorahub", "k": 2,
                      "min_score": -1.0})
    assert r3.status_code == 202, r3.text
    assert r3.json()["request"]["weights"] is None and len(r3.json()["request"]["sources"]) == 2
    assert Worker(hub.queue, hub.handlers, "test").run_once()
    job = c.get(f"/api/v1/jobs/{r3.json()['id']}", headers=auth).json()
    assert job["status"] == "succeeded", job["error"]
    assert len(job["result"]["weights"]) == 2 and any("lorahub found weights" in line for line in job["log"])
    ver = hub.adapters.version(None, *job["result"]["adapter"].split("/"), job["result"]["version"])
    assert ver.provenance["recipe"]["task"] == "adapter alice/upper"
    assert ver.provenance["recipe"]["objective"]["loss"] <= ver.provenance["recipe"]["objective"]["base_loss"]


BAD = [
    ({"sources": ["erin/noweights"]}, "no local weights folder"),
    ({"sources": ["erin/unregistered"]}, "loom-test/unregistered is not registered"),
    ({"sources": ["alice/upper", "dave/nosamples"]}, "without sample data (samples.jsonl): ['dave/nosamples@1']"),
    ({"sources": SOURCES, "weights": [1, 1, 1]}, "do not pass weights"),
    ({"sources": SOURCES, "params": {"objective": "loss"}}, "do not pass params.objective"),
    ({"sources": SOURCES, "params": {"budget": 1}}, r"budget must be in [2, inf], got 1"),
    ({"sources": SOURCES, "params": {"temperature": 1}}, "unknown param(s) 'temperature'"),
]


def test_lorahub_bad_input_is_a_4xx_naming_what_is_missing(client):
    hub, c, auth = client
    before = registry_state(hub)
    for body, words in BAD:
        r = c.post("/api/v1/compositions", headers=auth, json={"method": "lorahub", **body})
        assert r.status_code == 422, (body, r.text)
        assert words in r.json()["error"]["message"], (body, r.text)
    assert registry_state(hub) == before
    assert JobQueue(hub.sessions).claim("test") is None  # nothing was queued
