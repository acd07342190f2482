"""Generation jobs through the service layer, an in-process worker and the HTTP API (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, NotFoundError
from hub.core.peft_io import load_peft_files
from hub.jobs.worker import Worker
from hub.services.generation import (
    GenerateRequest,
    TrainGeneratorRequest,
    TransferRequest,
    transfer_config,
)
from tests.helpers import PICO_BASE_ID
from tests.services.fixtures import *  # noqa: F403
from tests.services.util import files_of


@pytest.fixture
def setup(hub, adapter_dirs, tiny_model):
    alice = hub.users.ensure_user("alice")
    a, b, _ = adapter_dirs
    hub.base_models.register(PICO_BASE_ID, tiny_model.config.to_json_string().encode())
    hub.publisher.publish(alice, "alice/upper", files_of(a), description="convert text to upper case letters")
    hub.publisher.publish(alice, "alice/reverse", files_of(b), description="reverse the order of characters")
    return hub, alice


def _run_all(hub):
    w = Worker(hub.queue, hub.handlers, name="test-worker")
    while w.run_once():
        pass


def _generated(hub, svc, user, req):
    """Submit a generation, run it, and return the published version and its PEFT adapter."""
    job, _ = svc.submit_generate(user, req)
    _run_all(hub)
    done = svc.jobs.get(job.id, user.id)
    assert done.status == "succeeded", done.error
    ns, nm = req.name.split("/")
    ver = hub.adapters.version(user, ns, nm, None)
    files = ver.files
    return ver, load_peft_files(hub.blobs.path(files["adapter_config.json"]["key"]),
                                hub.blobs.path(files["adapter_model.safetensors"]["key"]))


def test_train_generator_then_generate_publishes_with_lineage(setup):
    hub, alice = setup
    svc = hub.generation
    job, _ = svc.submit_train_generator(alice, TrainGeneratorRequest(
        method="sg_lora", base_model=PICO_BASE_ID, name="alice/gen", sources=("alice/upper", "alice/reverse@1"),
        params={"steps": 20, "k": 2}))
    _run_all(hub)
    done = svc.jobs.get(job.id, alice.id)
    assert done.status == "succeeded", done.error
    assert done.result["generator"] == "alice/gen@1"
    row = hub.adapters.get(alice, "alice", "gen")
    assert row.kind == "generator"
    lineage = hub.adapters.lineage(alice, "alice", "gen")
    labels = " ".join(str(p["version"]) for p in lineage.parents)
    assert len(lineage.parents) == 2 and "alice/upper" in labels and "alice/reverse" in labels, lineage.parents
    assert hub.generation.generate_instead(alice, "make text upper case", "other/base", best_score=None, min_score=0.3) is None
    auto = hub.generation.generate_instead(alice, "make text upper case", PICO_BASE_ID, best_score=0.1, min_score=0.3)
    assert auto is not None and auto[0].kind == "generate" and "alice/gen@1" in auto[2]
    # A composition asked for "auto" with no close adapter generates one instead, and says why.
    from hub.services.compositions import CompositionRequest

    cjob, _ = hub.compositions.submit(alice, CompositionRequest(
        task="write a haiku about the rain", base_model=PICO_BASE_ID, method="auto", min_score=0.99))
    assert cjob.kind == "generate" and any("auto: no adapter" in line for line in cjob.log), cjob.log
    ver, adapter = _generated(hub, svc, alice, GenerateRequest(generator="alice/gen", task="make text upper case",
                                                               name="alice/made", seed=3))
    assert ver.provenance["method"] == "sg_lora"
    assert {p["name"] for p in ver.provenance["parents"]} >= {"alice/upper", "alice/gen"}
    assert adapter.base_model == PICO_BASE_ID


def test_icm_generator_trained_by_the_job_regenerates_its_sources(setup):
    """icm_lora through the jobs: the (folded, default) CVAE trained on the registry's two adapters, conditioned on
    their descriptions, generates for a source's own description an adapter that is that source's weights (nearer
    to it than to the other, within 25%), published with lineage to the generator and the sources."""
    import torch

    from generation.flat import FlatLayout, flatten

    hub, alice = setup
    svc = hub.generation
    job, _ = svc.submit_train_generator(alice, TrainGeneratorRequest(
        method="icm_lora", base_model=PICO_BASE_ID, name="alice/icm", sources=("alice/upper", "alice/reverse"),
        params={"condition": "description", "steps": 300, "lr": 3e-3, "latent": 16}))
    _run_all(hub)
    done = svc.jobs.get(job.id, alice.id)
    assert done.status == "succeeded", done.error
    assert done.result["report"]["final_recon_mse"] < 0.05, done.result["report"]
    ver, made = _generated(hub, svc, alice, GenerateRequest(
        generator="alice/icm", task="convert text to upper case letters", name="alice/icm-made", seed=0))
    assert ver.provenance["method"] == "icm_lora"
    assert {p["name"] for p in ver.provenance["parents"]} >= {"alice/upper", "alice/reverse", "alice/icm"}
    srcs = [hub.adapters.load(alice, n, None)[0] for n in ("alice/upper", "alice/reverse")]
    layout = FlatLayout.of(srcs[0])
    x, up, rev = (flatten(a, layout) for a in (made, *srcs))
    assert float((x - up).norm()) < float((x - rev).norm())
    assert float((x - up).norm() / up.norm()) < 0.25, float((x - up).norm() / up.norm())
    assert torch.isfinite(x).all()


def test_bad_requests_are_refused_at_submit(setup):
    hub, alice = setup
    svc = hub.generation
    with pytest.raises(InvalidInputError, match="method must be one of"):
        TrainGeneratorRequest(method="nope", base_model=PICO_BASE_ID, name="alice/g")
    with pytest.raises(InvalidInputError, match=r"bad params for sg_lora: unknown \['bogus'\]; known: \['k', "):
        TrainGeneratorRequest(method="sg_lora", base_model=PICO_BASE_ID, name="alice/g", params={"bogus": 1})
    for method, params, msg in (("sg_lora", {"sample": "yes"}, "sample must be true or false"),
                                ("sg_lora", {"k": 2.0}, "k must be an integer"),
                                ("icm_lora", {"beta": "0.1"}, "beta must be a number"),
                                ("icm_lora", {"depth": 0}, r"depth must be in \[1, 16\]")):
        with pytest.raises(InvalidInputError, match=f"bad params for {method}: {msg}") as err:
            TrainGeneratorRequest(method=method, base_model=PICO_BASE_ID, name="alice/g", params=params)
        assert err.value.details == {"field": "params"}
    with pytest.raises(InvalidInputError, match="bad params for trans_lora: student_steps must be an integer"):
        TransferRequest(source="alice/upper", target_base="other/base", params={"student_steps": 2.5})
    cfg = transfer_config({"rewrite_rates": [0.1, 0.5], "student_targets": ["q_proj"]})  # JSON lists -> tuples
    assert cfg.rewrite_rates == (0.1, 0.5) and cfg.student_targets == ("q_proj",)
    with pytest.raises(NotFoundError, match="not registered"):
        svc.submit_train_generator(alice, TrainGeneratorRequest(method="sg_lora", base_model="x/unknown",
                                                                name="alice/g"))
    with pytest.raises(InvalidInputError, match="not a generator"):
        svc.submit_generate(alice, GenerateRequest(generator="alice/upper", task="anything"))
    with pytest.raises(IncompatibleAdaptersError, match="already an adapter of"):
        svc.submit_transfer(alice, TransferRequest(source="alice/upper", target_base=PICO_BASE_ID))
    with pytest.raises(InvalidInputError, match="no sample data"):
        svc.submit_transfer(alice, TransferRequest(source="alice/upper", target_base="other/base"))


def test_api_maps_errors_to_4xx(setup):
    from hub.api.app import create_app

    hub, _ = setup
    app: FastAPI = create_app(hub=hub, warm_index=False)
    _, token = hub.users.create_token("alice")
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as c:
        r = c.post("/api/v1/transfers", headers=h, json={"source": "alice/upper", "target_base": PICO_BASE_ID})
        assert r.status_code == 422 and "already an adapter" in r.json()["error"]["message"], r.text
        r = c.post("/api/v1/generations", headers=h, json={"generator": "alice/none", "task": "x"})
        assert r.status_code == 404, r.text
        r = c.post("/api/v1/generators", headers=h, json={"method": "sg_lora", "base_model": PICO_BASE_ID,
                                                          "name": "alice/g", "params": {"tau": -1}})
        assert r.status_code == 422 and "tau" in r.json()["error"]["message"], r.text
        r = c.post("/api/v1/generators", headers=h, json={"method": "sg_lora", "base_model": PICO_BASE_ID,
                                                          "name": "alice/g", "params": {"steps": 5}})
        assert r.status_code == 202 and r.json()["kind"] == "train_generator", r.text


def test_cli_generation_commands_submit_and_report(setup, monkeypatch):
    """`loom train-generator` / `loom transfer` against a real uvicorn server with the generation routes."""

    from typer.testing import CliRunner

    from hub.api.app import create_app
    from hub.cli import common
    from hub.cli.generation import app as tapp
    from tests.helpers import serve_in_thread

    hub, _ = setup
    with serve_in_thread(create_app(hub=hub, warm_index=False)) as url:
        _, token = hub.users.create_token("alice")
        monkeypatch.setattr(common.options, "server", url)
        monkeypatch.setattr(common.options, "token", token)
        runner = CliRunner()
        r = runner.invoke(tapp, ["transfer", "alice/upper", "--to", PICO_BASE_ID])
        assert r.exit_code != 0 and "already an adapter" in (r.output + str(r.exception))
        r = runner.invoke(tapp, ["train-generator", "alice/g2", "--base-model", PICO_BASE_ID, "-p", "steps=5",
                                 "--no-wait", "--json"])
        assert r.exit_code == 0, r.output
        assert '"kind": "train_generator"' in r.output


def test_train_generator_picks_the_bases_adapters_of_one_layout_and_names_the_odd_one(setup, adapter_dirs):
    """#18.6: after a compose (or any adapter of another rank) `loom train-generator -b BASE` still works: the
    base's adapters of the most common layout are used and the others named in the log; explicit sources of
    mixed layouts are refused naming the offending adapter."""
    hub, alice = setup
    hub.publisher.publish(alice, "alice/wide", files_of(adapter_dirs[2]), description="a rank-8 adapter")
    svc = hub.generation
    job, _ = svc.submit_train_generator(alice, TrainGeneratorRequest(
        method="sg_lora", base_model=PICO_BASE_ID, name="alice/gen", params={"steps": 5, "k": 2}))
    assert sorted(s["name"] for s in job.request["sources"]) == ["alice/reverse", "alice/upper"]
    logged = svc.jobs.get(job.id, alice.id).log
    assert any("left out (other layouts): alice/wide@1 (" in line for line in logged), logged
    _run_all(hub)
    done = svc.jobs.get(job.id, alice.id)
    assert done.status == "succeeded", done.error
    with pytest.raises(IncompatibleAdaptersError, match=r"alice/wide@1 \(.*r8.*\) differ from the others") as err:
        svc.submit_train_generator(alice, TrainGeneratorRequest(
            method="sg_lora", base_model=PICO_BASE_ID, name="alice/gen2",
            sources=("alice/upper", "alice/reverse", "alice/wide")))
    assert err.value.details["adapters"] == ["alice/wide@1"]
