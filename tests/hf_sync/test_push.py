"""push_adapter: create the repo, one commit with PEFT files + card; round trip through fetch_adapter."""

from __future__ import annotations

import pytest
import torch

from hub.core.errors import AuthenticationError, InvalidAdapterError, InvalidInputError, PermissionDeniedError
from hub.core.peft_io import load_peft
from hub.hf_sync import fetch_adapter, parse_model_card, push_adapter, render_model_card
from tests.helpers import PICO_BASE_ID

CARD = render_model_card(base_model=PICO_BASE_ID, name="Merged", license="mit", tags=["merged"],
                         merged_from=[{"id": "alice/a", "revision": "1", "weight": 0.7},
                                      {"id": "hf:bob/b@" + "c" * 40, "revision": None, "weight": 0.3}],
                         merge={"method": "ties", "params": {"density": 0.2}})


def test_push_creates_repo_and_round_trips(fake_hub, api, peft_dirs, tmp_path):
    sha = push_adapter(api, peft_dirs["one"], "alice/exported", CARD, private=True)
    repo = fake_hub.repo("alice/exported")
    assert repo.private and repo.head().oid == sha
    assert set(repo.head().files) == {".gitattributes", "adapter_config.json", "adapter_model.safetensors",
                                      "README.md"}
    assert repo.head().files["adapter_model.safetensors"].lfs
    assert fake_hub.count("PUT", "/_lfs/") == 1  # weights went through the LFS batch + PUT
    assert fake_hub.count("POST", "/commit/main") == 1  # one commit
    meta, _ = parse_model_card(repo.head().files["README.md"].data.decode())
    assert meta["library_name"] == "peft" and meta["base_model_relation"] == "adapter"
    assert f"base_model:adapter:{PICO_BASE_ID}" in meta["tags"]
    got = fetch_adapter(api, "alice/exported", sha, dest_dir=tmp_path / "back")
    assert got.sha == sha and got.card_data == meta and got.license == "mit"
    assert got.card_data["merged_from"][0] == {"id": "alice/a", "revision": "1", "weight": 0.7}
    original = load_peft(peft_dirs["one"])
    for m, layer in original.layers.items():
        assert torch.equal(got.adapter.layers[m].a, layer.a) and torch.equal(got.adapter.layers[m].b, layer.b)


def test_push_again_adds_a_commit_to_the_existing_repo(fake_hub, api, peft_dirs):
    first = push_adapter(api, peft_dirs["one"], "loom-org/exported", CARD)  # alice may write to loom-org
    second = push_adapter(api, peft_dirs["two"], "loom-org/exported", CARD, commit_message="v2")
    repo = fake_hub.repo("loom-org/exported")
    assert first != second and repo.commits[second].parent == first and not repo.private
    assert repo.commits[second].message == "v2"


def test_push_refusals_send_nothing(fake_hub, anon_api, api, peft_dirs):
    with pytest.raises(AuthenticationError, match="needs a Hugging Face token"):
        push_adapter(anon_api, peft_dirs["one"], "alice/x", CARD)
    with pytest.raises(InvalidAdapterError, match="pickle"):
        push_adapter(api, peft_dirs["pickle_only"], "alice/x", CARD)
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        push_adapter(api, peft_dirs["one"], "alice/x", "---\ntags: [a\n---\n")
    with pytest.raises(InvalidInputError, match="repo_id"):
        push_adapter(api, peft_dirs["one"], "no-namespace", CARD)
    assert fake_hub.requests == []


def test_push_to_someone_elses_namespace_is_denied(fake_hub, api, peft_dirs):
    fake_hub.create_repo("bob/theirs")
    with pytest.raises(PermissionDeniedError):
        push_adapter(api, peft_dirs["one"], "bob/theirs", CARD)
    with pytest.raises(PermissionDeniedError):
        push_adapter(api, peft_dirs["one"], "carol/new", CARD)
    assert set(fake_hub.repo("bob/theirs").head().files) == {".gitattributes"}
    assert "carol/new" not in fake_hub.state.repos
