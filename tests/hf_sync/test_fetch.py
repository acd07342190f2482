"""fetch_adapter against the fake Hub with the real huggingface_hub client."""

from __future__ import annotations

import json

import pytest
import torch

from hub.core.errors import (
    AuthenticationError,
    ConflictError,
    InvalidAdapterError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnsupportedFeatureError,
)
from hub.core.peft_io import load_peft
from hub.hf_sync import fetch_adapter, render_model_card
from tests.helpers import PICO_BASE_ID

REPO = "alice/pico-lora"


def _card() -> str:
    return render_model_card(base_model=PICO_BASE_ID, name="Pico LoRA", description="Answers like a pirate.",
                             license="apache-2.0", tags=["pirate"], datasets=["alice/pirate-talk"])


def _seed(hub, folder, repo=REPO, **kw) -> str:
    hub.upload_folder(repo, folder, **kw)
    return hub.commit(repo, {"README.md": _card()}, message="card")


def _same_adapter(a, b) -> None:
    assert set(a.layers) == set(b.layers)
    for m in a.layers:
        assert torch.equal(a.layers[m].a, b.layers[m].a) and torch.equal(a.layers[m].b, b.layers[m].b)
        assert a.layers[m].alpha == b.layers[m].alpha


def test_imports_peft_adapter_with_card_and_pins_sha(fake_hub, anon_api, peft_dirs, tmp_path):
    sha = _seed(fake_hub, peft_dirs["one"])
    got = fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "out")
    assert got.sha == sha == fake_hub.repo(REPO).head().oid
    assert got.source == f"hf:{REPO}@{sha}"
    assert got.files == ("README.md", "adapter_config.json", "adapter_model.safetensors")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == list(got.files)  # no cache or metadata
    assert got.base_model == PICO_BASE_ID and got.license == "apache-2.0"
    assert "pirate" in got.tags and "lora" in got.tags and f"base_model:adapter:{PICO_BASE_ID}" in got.tags
    assert got.datasets == ("alice/pirate-talk",)
    assert got.description.startswith("# Pico LoRA") and "Answers like a pirate." in got.description
    assert got.adapter_config["r"] == 4 and got.card_data["library_name"] == "peft"
    _same_adapter(got.adapter, load_peft(peft_dirs["one"]))
    _same_adapter(load_peft(got.path), load_peft(peft_dirs["one"]))
    # every file was read at the resolved sha, never at a moving branch name
    resolves = [p for m, p in fake_hub.requests if "/resolve/" in p]
    assert resolves and all(f"/resolve/{sha}/" in p for p in resolves)


def test_revision_by_branch_tag_and_sha(fake_hub, anon_api, peft_dirs, tmp_path):
    first = _seed(fake_hub, peft_dirs["one"])
    fake_hub.tag(REPO, "v1")
    fake_hub.create_branch(REPO, "dev")
    dev = fake_hub.upload_folder(REPO, peft_dirs["two"], branch="dev")
    latest = fake_hub.commit(REPO, {"notes.txt": "later"}, message="notes")
    cases = {"v1": (first, 4), "dev": (dev, 2), first: (first, 4), first[:10]: (first, 4), None: (latest, 4)}
    for i, (revision, (sha, rank)) in enumerate(cases.items()):
        got = fetch_adapter(anon_api, REPO, revision, dest_dir=tmp_path / f"r{i}")
        assert (got.revision, got.sha) == (revision, sha)
        assert got.adapter.r == rank


def test_downloads_only_adapter_files(fake_hub, anon_api, peft_dirs, tmp_path):
    _seed(fake_hub, peft_dirs["one"])
    fake_hub.commit(REPO, {"adapter_model.bin": b"\x80\x04pickle", "optimizer.pt": b"x" * 1000,
                           "training_args.bin": b"\x80\x04", "tokenizer.json": "{}"})
    got = fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "out")
    fetched = {p.rsplit("/", 1)[-1] for m, p in fake_hub.requests if "/resolve/" in p}
    assert fetched == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    assert "adapter_model.bin" not in got.files


def test_subfolder_adapter(fake_hub, anon_api, peft_dirs, tmp_path):
    fake_hub.create_repo(REPO)
    files = {f"ckpt/{p.name}": p for p in peft_dirs["two"].iterdir() if p.name != "README.md"}
    fake_hub.commit(REPO, files | {"README.md": _card()})  # the root card describes the subfolder too
    got = fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "out", subfolder="ckpt")
    assert got.adapter.r == 2 and got.license == "apache-2.0"


def test_refuses_pickle_only_repo_without_downloading(fake_hub, anon_api, peft_dirs, tmp_path):
    fake_hub.upload_folder(REPO, peft_dirs["pickle_only"])
    with pytest.raises(InvalidAdapterError, match="pickle"):
        fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "out")
    assert fake_hub.count(contains="/resolve/") == 0
    assert not (tmp_path / "out").exists()


def test_not_a_lora_repository(fake_hub, anon_api, tmp_path):
    fake_hub.create_repo("alice/full-model")
    fake_hub.commit("alice/full-model", {"config.json": "{}", "model.safetensors": b"\x00" * 64})
    with pytest.raises(InvalidAdapterError, match="not a LoRA repository: it has no adapter_config.json"):
        fetch_adapter(anon_api, "alice/full-model", dest_dir=tmp_path / "out")


def test_invalid_adapter_files_leave_nothing(fake_hub, anon_api, peft_dirs, tmp_path):
    cfg = json.loads((peft_dirs["one"] / "adapter_config.json").read_text())
    fake_hub.upload_folder(REPO, peft_dirs["one"])
    fake_hub.commit(REPO, {"adapter_config.json": json.dumps(cfg | {"use_dora": True})})
    with pytest.raises(UnsupportedFeatureError, match=f"{REPO}@.* is not a usable LoRA adapter: .*DoRA"):
        fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_bad_card_yaml_is_invalid_adapter(fake_hub, anon_api, peft_dirs, tmp_path):
    fake_hub.upload_folder(REPO, peft_dirs["one"])
    fake_hub.commit(REPO, {"README.md": "---\nlicense: [mit\n---\nbody"})
    with pytest.raises(InvalidAdapterError, match="front matter is not valid YAML"):
        fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_repo_and_revision_not_found(fake_hub, api, anon_api, peft_dirs, tmp_path):
    _seed(fake_hub, peft_dirs["one"])
    with pytest.raises(NotFoundError, match="alice/nope not found"):
        fetch_adapter(api, "alice/nope", dest_dir=tmp_path / "a")
    with pytest.raises(AuthenticationError, match="does not exist, or it is private or gated"):
        fetch_adapter(anon_api, "alice/nope", dest_dir=tmp_path / "b")
    with pytest.raises(AuthenticationError, match="token was refused"):
        from huggingface_hub import HfApi

        fetch_adapter(HfApi(endpoint=fake_hub.url, token="hf_not_a_real_token"), REPO, dest_dir=tmp_path / "d")
    with pytest.raises(NotFoundError, match="revision 'no-such-branch' not found"):
        fetch_adapter(anon_api, REPO, "no-such-branch", dest_dir=tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_private_repo_needs_the_owners_token(fake_hub, api, anon_api, peft_dirs, tmp_path):
    from huggingface_hub import HfApi

    from tests.hf_sync.fixtures import OTHER_TOKEN

    _seed(fake_hub, peft_dirs["one"], private=True)
    with pytest.raises(AuthenticationError, match="not visible without a token"):
        fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "a")
    with pytest.raises(NotFoundError):
        fetch_adapter(HfApi(endpoint=fake_hub.url, token=OTHER_TOKEN), REPO, dest_dir=tmp_path / "b")
    got = fetch_adapter(api, REPO, dest_dir=tmp_path / "c")
    assert got.private is True


def test_gated_repo(fake_hub, anon_api, peft_dirs, tmp_path):
    from huggingface_hub import HfApi

    from tests.hf_sync.fixtures import OTHER_TOKEN

    _seed(fake_hub, peft_dirs["one"], gated="manual")
    bob = HfApi(endpoint=fake_hub.url, token=OTHER_TOKEN)
    with pytest.raises(AuthenticationError, match="gated repository: .* needs a Hugging Face token"):
        fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "a")
    with pytest.raises(PermissionDeniedError, match="has not been granted access"):
        fetch_adapter(bob, REPO, dest_dir=tmp_path / "b")
    assert list(tmp_path.iterdir()) == []
    fake_hub.grant(REPO, "bob")
    assert fetch_adapter(bob, REPO, dest_dir=tmp_path / "c").gated == "manual"


def test_dest_must_be_new_or_empty_and_size_limit(fake_hub, anon_api, peft_dirs, tmp_path):
    _seed(fake_hub, peft_dirs["one"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(ConflictError):
        fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "full")
    assert fake_hub.requests == [] and (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(PayloadTooLargeError, match="over the limit of 100"):
        fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "big", max_bytes=100)
    (tmp_path / "empty").mkdir()
    assert fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "empty", max_bytes=10**6).files
