"""search_adapters, upstream_sha and plan_sync against the fake Hub."""

from __future__ import annotations

import pytest

from hub.core.errors import AuthenticationError, InvalidInputError, NotFoundError
from hub.hf_sync import plan_sync, render_model_card, search_adapters, upstream_sha
from tests.helpers import PICO_BASE_ID

OTHER_BASE = "org/other-base"


def _seed(hub, repo_id, base, *, library="peft", private=False):
    hub.create_repo(repo_id, private=private)
    card = render_model_card(base_model=base)
    if library != "peft":
        card = f"---\nlibrary_name: {library}\nbase_model: {base}\n---\n# a model\n"
    return hub.commit(repo_id, {"README.md": card, "adapter_config.json": "{}"})


@pytest.fixture
def seeded(fake_hub):
    return {
        "alice/pico-chat": _seed(fake_hub, "alice/pico-chat", PICO_BASE_ID),
        "alice/other-lora": _seed(fake_hub, "alice/other-lora", OTHER_BASE),
        "bob/pico-code": _seed(fake_hub, "bob/pico-code", PICO_BASE_ID),
        "alice/pico-full": _seed(fake_hub, "alice/pico-full", PICO_BASE_ID, library="transformers"),
        "bob/pico-secret": _seed(fake_hub, "bob/pico-secret", PICO_BASE_ID, private=True),
    }


def _ids(refs):
    return sorted(r.repo_id for r in refs)


def test_search_filters(anon_api, seeded):
    assert _ids(search_adapters(anon_api)) == ["alice/other-lora", "alice/pico-chat", "bob/pico-code"]
    assert _ids(search_adapters(anon_api, base_model=PICO_BASE_ID)) == ["alice/pico-chat", "bob/pico-code"]
    assert _ids(search_adapters(anon_api, author="alice")) == ["alice/other-lora", "alice/pico-chat"]
    assert _ids(search_adapters(anon_api, search="CODE")) == ["bob/pico-code"]
    assert _ids(search_adapters(anon_api, author="alice", base_model=OTHER_BASE)) == ["alice/other-lora"]
    assert _ids(search_adapters(anon_api, limit=1)) == ["alice/pico-chat"]


def test_search_returns_shas_and_private_repos_for_their_owner(fake_hub, seeded):
    from huggingface_hub import HfApi

    from tests.hf_sync.fixtures import OTHER_TOKEN

    bob = HfApi(endpoint=fake_hub.url, token=OTHER_TOKEN)
    refs = {r.repo_id: r for r in search_adapters(bob, author="bob")}
    assert set(refs) == {"bob/pico-code", "bob/pico-secret"}
    assert all(r.sha == seeded[r.repo_id] for r in refs.values())
    assert refs["bob/pico-secret"].private and f"base_model:adapter:{PICO_BASE_ID}" in refs["bob/pico-code"].tags


def test_search_validates_input(anon_api):
    with pytest.raises(InvalidInputError, match="limit"):
        search_adapters(anon_api, limit=0)
    with pytest.raises(InvalidInputError, match="repo_id"):
        search_adapters(anon_api, base_model="not a model id")


def test_upstream_sha_and_plan_sync(fake_hub, api, anon_api, seeded):
    assert upstream_sha(anon_api, "alice/pico-chat") == seeded["alice/pico-chat"]
    new = fake_hub.commit("bob/pico-code", {"notes.md": "v2"})
    fake_hub.create_branch("alice/other-lora", "stable")
    stable_new = fake_hub.commit("alice/other-lora", {"x": "1"}, branch="stable")
    known = {"alice/pico-chat": seeded["alice/pico-chat"], "bob/pico-code": seeded["bob/pico-code"],
             "alice/other-lora": seeded["alice/other-lora"], "alice/gone": "0" * 40, "bob/never": None}
    fake_hub.create_repo("bob/never")
    plan = plan_sync(anon_api, known, revisions={"alice/other-lora": "stable"})
    assert plan.unchanged == ["alice/pico-chat"]
    got = {(u.repo_id, u.known_sha, u.upstream_sha, u.revision) for u in plan.updates}
    assert got == {("bob/pico-code", seeded["bob/pico-code"], new, "main"),
                   ("alice/other-lora", seeded["alice/other-lora"], stable_new, "stable"),
                   ("bob/never", None, fake_hub.repo("bob/never").head().oid, "main")}
    assert isinstance(plan.errors["alice/gone"], AuthenticationError)  # anonymous: 401, as on the Hub
    assert isinstance(plan_sync(api, {"alice/gone": None}).errors["alice/gone"], NotFoundError)
    # after importing the new shas, a second pass finds nothing to do: nothing is duplicated
    known.update({u.repo_id: u.upstream_sha for u in plan.updates})
    del known["alice/gone"]
    again = plan_sync(anon_api, known, revisions={"alice/other-lora": "stable"})
    assert again.updates == [] and sorted(again.unchanged) == sorted(known)


def test_bulk_import_from_search(fake_hub, anon_api, peft_dirs, tmp_path):
    from hub.hf_sync import fetch_many

    fake_hub.upload_folder("alice/pico-good", peft_dirs["one"])
    good = fake_hub.commit("alice/pico-good", {"README.md": render_model_card(base_model=PICO_BASE_ID)})
    fake_hub.upload_folder("alice/pico-known", peft_dirs["two"])
    known_sha = fake_hub.commit("alice/pico-known", {"README.md": render_model_card(base_model=PICO_BASE_ID)})
    _seed(fake_hub, "alice/pico-broken", PICO_BASE_ID)  # a card but no weights
    refs = search_adapters(anon_api, author="alice", base_model=PICO_BASE_ID)
    assert {r.repo_id for r in refs} == {"alice/pico-good", "alice/pico-known", "alice/pico-broken"}
    fake_hub.commit("alice/pico-good", {"later.txt": "x"})  # moves main after the listing
    results = list(fetch_many(anon_api, [*refs, "alice/pico-good@" + good], tmp_path / "dl",
                              known={"alice/pico-known": [known_sha]}))
    assert [(i.repo_id, i.status) for i in results if i.repo_id == "alice/pico-good"] == [
        ("alice/pico-good", "imported"), ("alice/pico-good", "skipped")]  # same sha twice: fetched once
    assert results[0].sha == good and results[0].fetched.path.is_dir()
    items = {i.repo_id: i for i in results}
    assert items["alice/pico-known"].status == "skipped" and items["alice/pico-known"].sha == known_sha
    assert items["alice/pico-broken"].status == "failed" and "no adapter_model.safetensors" in str(
        items["alice/pico-broken"].error)
    moved = fake_hub.repo("alice/pico-good").head().oid
    assert moved != good and refs[0].sha == good and results[0].sha == good  # pinned to the listing's sha
    assert fake_hub.count("GET", "/resolve/" + fake_hub.repo("alice/pico-known").head().oid) == 0
