"""The fake Hub itself, driven by the real huggingface_hub client (so other suites can trust it)."""

from __future__ import annotations

import pytest


def test_upload_folder_list_and_snapshot(fake_hub, api, anon_api, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello")
    (src / "w.safetensors").write_bytes(bytes(range(256)) * 8)
    api.create_repo("alice/demo")
    commit = api.upload_folder(repo_id="alice/demo", folder_path=str(src))
    info = anon_api.model_info("alice/demo")
    assert info.sha == commit.oid and {s.rfilename for s in info.siblings} >= {"a.txt", "w.safetensors"}
    snap = anon_api.snapshot_download("alice/demo", cache_dir=str(tmp_path / "cache"))
    assert (tmp_path / "cache").exists() and open(f"{snap}/w.safetensors", "rb").read() == bytes(range(256)) * 8
    assert [m.id for m in anon_api.list_models(author="alice")] == ["alice/demo"]


def test_pagination_follows_link_headers(fake_hub, anon_api):
    for i in range(25):
        fake_hub.create_repo(f"bob/m{i:02d}")
    ids = [m.id for m in anon_api.list_models(author="bob")]  # server pages by 20
    assert len(ids) == 25 and fake_hub.count("GET", "/api/models") == 2


def test_invalid_token_and_private_repos(fake_hub, api):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    fake_hub.create_repo("alice/secret", private=True)
    assert api.model_info("alice/secret").private
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=fake_hub.url, token=False).model_info("alice/secret")
    with pytest.raises(HfHubHTTPError) as e:
        HfApi(endpoint=fake_hub.url, token="hf_wrong").model_info("alice/secret")
    assert e.value.response.status_code == 401
    assert api.whoami()["name"] == "alice"
