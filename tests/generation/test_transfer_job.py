"""Trans-LoRA end to end as a job: the testbed's ci-size bases (Llama A, Qwen2 B) registered with their
weights, ``zoo/upper`` published on A with its sample rows, ``POST /api/v1/transfers`` to B, an
in-process worker runs the job, and the published adapter lifts B's exact-match accuracy on the task
far above B's base (the issue's test bar), measured with the testbed's evaluator."""

from __future__ import annotations

import re

import pytest

from tests.services.fixtures import db_templates  # noqa: F401

TASK = "upper"


@pytest.fixture(scope="module")
def tb_zoo(tmp_path_factory):
    """The ci recipe on one task (bases A and B pre-trained, ``upper`` trained on both)."""
    from testbed.zoo import build_zoo

    return build_zoo("ci", tmp_path_factory.mktemp("gen_zoo"), seed=0, tasks=(TASK,))


@pytest.fixture
def thub(tmp_path, db_templates, tb_zoo):  # noqa: F811
    from hub.services.container import Hub
    from hub.services.publish import PublishFiles
    from hub.settings import get_settings

    with db_templates.database("sqlite", tmp_path) as url:
        hub = Hub(get_settings(data_dir=tmp_path / "data", database_url=url), migrate=False)
        for b in tb_zoo.bases:
            hub.base_models.register(b.id, (b.dir / "config.json").read_bytes(), weights=str(b.dir))
        src = tb_zoo.adapter(TASK)
        alice = hub.users.ensure_user("alice")
        files = PublishFiles(config=(src.dir / "adapter_config.json").read_bytes(),
                             weights=src.dir / "adapter_model.safetensors", samples=src.samples.read_bytes())
        hub.publisher.publish(alice, f"alice/{TASK}", files, description=src.description)
        try:
            yield hub
        finally:
            hub.close()


def test_transfer_job_lifts_target_accuracy(thub, tb_zoo):
    from fastapi.testclient import TestClient

    from hub.api.app import create_app
    from hub.core.peft_io import load_peft_files
    from hub.jobs.worker import Worker
    from testbed.eval import Adapter, BaseModel, evaluate

    target = next(b for b in tb_zoo.bases if b.role == "B").id
    _, token = thub.users.create_token("alice")
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(hub=thub, warm_index=False)) as c:
        r = c.post("/api/v1/transfers", headers=h, json={
            "source": f"alice/{TASK}", "target_base": target, "name": "alice/upper-qwen",
            "params": {"n_accept": 512, "max_candidates": 2048}})
        assert r.status_code == 202 and r.json()["kind"] == "transfer", r.text
        job_id = r.json()["id"]
        worker = Worker(thub.queue, thub.handlers, name="test-worker")
        while worker.run_once():
            pass
        job = c.get(f"/api/v1/jobs/{job_id}", headers=h).json()
    assert job["status"] == "succeeded", (job["error"], job["log"][-5:])
    assert job["result"]["adapter"] == "alice/upper-qwen" and job["result"]["accepted"] > 0, job["result"]
    log = "\n".join(job["log"]) if isinstance(job["log"], list) else str(job["log"])
    for phase in ("discriminator", "synthesize", "filter", "label", "distil"):  # each phase once, with its time
        assert sum(f"phase {phase}: " in line and line.endswith(" s") for line in job["log"]) == 1, log
    assert "candidates" in log and "accepted" in log  # the interleaved phases' counts
    done = [m.group(1) for line in job["log"] if (m := re.search(r"phase (\w+): ", line))]
    assert done == ["discriminator", "synthesize", "filter", "label", "distil"], done  # logged in their order

    alice = thub.users.ensure_user("alice")
    ver = thub.adapters.version(alice, "alice", "upper-qwen", None)
    assert ver.base_model == target and ver.provenance["method"] == "trans_lora"
    assert any(p["name"] == f"alice/{TASK}" for p in ver.provenance["parents"])
    files = ver.files
    moved = load_peft_files(thub.blobs.path(files["adapter_config.json"]["key"]),
                            thub.blobs.path(files["adapter_model.safetensors"]["key"]))
    res = evaluate({"base": BaseModel(target), "moved": Adapter(moved, base_id=target)}, zoo=tb_zoo, tasks=[TASK],
                   n=60, composites=False)
    base, moved_acc = res.accuracy["base"][TASK], res.accuracy["moved"][TASK]
    # measured 0.80 vs 0.00 on this setting (n=60); the bar leaves room for run-to-run variation
    assert base <= 0.1 and moved_acc >= 0.5 and moved_acc >= base + 0.4, (base, moved_acc, job["result"])
