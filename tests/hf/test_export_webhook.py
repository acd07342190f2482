"""Export with lineage cards and recorded commit shas; webhooks that queue a sync a worker runs."""

from __future__ import annotations

import json

import pytest

from hub.core.errors import AuthenticationError, PermissionDeniedError
from hub.core.provenance import ParentRef, Provenance
from hub.hf_sync import parse_model_card
from hub.services.publish import PublishFiles
from tests.helpers import PICO_BASE_ID
from tests.hf.conftest import WEBHOOK_SECRET
from tests.hf.util import counts, leftovers, seed

REPO = "alice/pico-french"


def files_of(folder) -> PublishFiles:
    return PublishFiles(config=(folder / "adapter_config.json").read_bytes(),
                        weights=folder / "adapter_model.safetensors")


@pytest.fixture
def composed(svc, hf_hub, alice, fake_hub, lora_dirs):
    """alice/mix@1, composed from an adapter imported from the Hub and one uploaded to Loom."""
    sha = seed(fake_hub, REPO, lora_dirs["one"])
    svc.import_repo(alice, REPO)
    hf_hub.publisher.publish(alice, "alice/plain", files_of(lora_dirs["two"]), description="Plain uploaded adapter.")
    prov = Provenance.create("linear", {"weights": [0.7, 0.3]},
                             parents=[ParentRef("alice/pico-french", "1", 0.7), ParentRef("alice/plain", "1", 0.3)])
    hf_hub.publisher.publish(alice, "alice/mix", files_of(lora_dirs["three"]), description="French plain mix.",
                            license="apache-2.0", provenance=prov)
    return sha


def test_export_pushes_files_and_a_lineage_card_and_records_the_commit(svc, hf_hub, alice, fake_hub, lora_dirs,
                                                                       composed):
    res = svc.export(alice, "alice/mix@1", "loom-org/french-mix", private=True)
    remote = fake_hub.repo("loom-org/french-mix")
    head = remote.head()
    assert remote.private and res.commit_sha == head.oid and res.version == 1 and res.name == "alice/mix"
    assert res.url == f"{fake_hub.url}/loom-org/french-mix"
    assert head.files["adapter_model.safetensors"].data == (lora_dirs["three"] / "adapter_model.safetensors").read_bytes()
    meta, body = parse_model_card(head.files["README.md"].data.decode())
    assert meta["library_name"] == "peft" and meta["base_model"] == PICO_BASE_ID
    assert meta["base_model_relation"] == "adapter" and meta["license"] == "apache-2.0"
    assert f"base_model:adapter:{PICO_BASE_ID}" in meta["tags"]
    assert meta["merged_from"] == [{"id": REPO, "revision": composed, "weight": 0.7},  # the Hub parent by repo + sha
                                   {"id": "alice/plain", "revision": "1", "weight": 0.3}]
    assert meta["merge"]["method"] == "linear" and meta["merge"]["params"] == {"weights": [0.7, 0.3]}
    assert meta["loom_source"] == "loom:alice/mix@1" and "French plain mix." in body and "merge_method: linear" in body
    ver = hf_hub.adapters.version(alice, "alice", "mix", 1)
    assert [(e.repo_id, e.commit_sha) for e in svc.exports(ver.id)] == [("loom-org/french-mix", head.oid)]
    assert leftovers(hf_hub) == []

    # the exported repo imports back into Loom with identical weights
    back = svc.import_repo(alice, "loom-org/french-mix", name="alice/mix-back")
    assert back.version.source == f"hf:loom-org/french-mix@{head.oid}"
    assert hf_hub.adapters.read_file(alice, "alice", "mix-back", "adapter_model.safetensors") == head.files[
        "adapter_model.safetensors"].data


def test_export_refusals_record_nothing(svc, hf_hub, alice, fake_hub, composed, make_hub):
    bob = hf_hub.users.ensure_user("bob")
    with pytest.raises(PermissionDeniedError, match="only the owner"):
        svc.export(bob, "alice/mix", "bob/stolen")
    with pytest.raises(PermissionDeniedError, match="not allowed"):
        svc.export(alice, "alice/mix", "bob/not-alices")  # the Hub token may not write to bob's namespace
    no_token = make_hub(hf_endpoint=fake_hub.url).hf
    with pytest.raises(AuthenticationError, match="needs a Hugging Face token"):
        no_token.export(alice, "alice/mix", "alice/x")
    assert counts(hf_hub)["hf_exports"] == 0 and "bob/not-alices" not in fake_hub.state.repos


def payload(repo_id: str, sha: str, *, scope: str = "repo.content", ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"event": {"action": "update", "scope": scope},
                       "repo": {"type": "model", "name": repo_id, "headSha": sha},
                       "updatedRefs": [{"ref": ref, "oldSha": "0" * 40, "newSha": sha}]}).encode()


def test_webhook_verifies_the_secret_and_queues_a_sync_a_worker_runs(svc, hf_hub, alice, fake_hub, lora_dirs):
    from hub.jobs.queue import JobQueue
    from hub.jobs.worker import Worker

    first = seed(fake_hub, REPO, lora_dirs["one"])
    svc.import_repo(alice, REPO)
    second = seed(fake_hub, REPO, lora_dirs["two"])
    for headers in ({}, {"X-Webhook-Secret": "wrong"}, {"x-webhook-secret": WEBHOOK_SECRET + "x"}):
        with pytest.raises(AuthenticationError, match="X-Webhook-Secret"):
            svc.handle_webhook(headers, payload(REPO, second))
    assert JobQueue(hf_hub.sessions).list(None) == []

    ignored = svc.handle_webhook({"x-webhook-secret": WEBHOOK_SECRET}, payload("bob/untracked", second))
    assert ignored.status == "ignored" and "no adapter tracks" in ignored.reason
    assert svc.handle_webhook({"X-Webhook-Secret": WEBHOOK_SECRET},
                              payload(REPO, second, scope="discussion")).status == "ignored"
    assert svc.handle_webhook({"X-Webhook-Secret": WEBHOOK_SECRET}, payload(REPO, first)).status == "ignored"

    out = svc.handle_webhook({"X-Webhook-Secret": WEBHOOK_SECRET}, payload(REPO, second))
    assert out.status == "queued" and out.sha == second
    again = svc.handle_webhook({"X-Webhook-Secret": WEBHOOK_SECRET}, payload(REPO, second))
    assert again.job_id == out.job_id  # the same event twice: one job
    assert hf_hub.adapters.version(alice, "alice", "pico-french").number == 1  # nothing ran yet

    assert Worker(hf_hub.queue, hf_hub.handlers).run_once()
    job = JobQueue(hf_hub.sessions).get(out.job_id, check_owner=False)
    assert job.status == "succeeded", job.error
    assert job.result["updated"] == [{"name": "alice/pico-french", "version": 2, "repo_id": REPO, "sha": second,
                                      "created": True}]
    ver = hf_hub.adapters.version(alice, "alice", "pico-french")
    assert ver.number == 2 and ver.source == f"hf:{REPO}@{second}"
    done = svc.handle_webhook({"X-Webhook-Secret": WEBHOOK_SECRET}, payload(REPO, second))
    assert done.status == "ignored" and done.reason == "already at this commit"


def test_webhook_without_a_configured_secret_refuses_everything(make_hub, fake_hub):
    svc = make_hub(hf_endpoint=fake_hub.url).hf
    with pytest.raises(AuthenticationError):
        svc.handle_webhook({"X-Webhook-Secret": ""}, payload(REPO, "a" * 40))


def test_webhook_for_a_tracked_branch_other_than_main(svc, hf_hub, alice, fake_hub, lora_dirs):
    from hub.jobs.worker import Worker

    seed(fake_hub, REPO, lora_dirs["one"])
    fake_hub.create_branch(REPO, "stable")
    svc.import_repo(alice, f"{REPO}@stable")
    main_sha = seed(fake_hub, REPO, lora_dirs["two"])
    ignored = svc.handle_webhook({"X-Webhook-Secret": WEBHOOK_SECRET}, payload(REPO, main_sha))
    assert ignored.status == "ignored" and "refs/heads/main" in ignored.reason
    stable = fake_hub.commit(REPO, {k.name: k for k in lora_dirs["three"].iterdir() if k.suffix != ".md"},
                             branch="stable")
    out = svc.handle_webhook({"X-Webhook-Secret": WEBHOOK_SECRET}, payload(REPO, stable, ref="refs/heads/stable"))
    assert out.status == "queued" and out.sha == stable
    assert Worker(hf_hub.queue, hf_hub.handlers).run_once()
    ver = hf_hub.adapters.version(alice, "alice", "pico-french")
    assert ver.number == 2 and ver.source == f"hf:{REPO}@{stable}"
