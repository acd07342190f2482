"""HfService against the fake Hub and a real registry on SQLite and PostgreSQL: import, dedup, sync, bulk."""

from __future__ import annotations

import pytest

from hub.core.errors import InvalidAdapterError, NotFoundError, PermissionDeniedError, UpstreamError
from hub.services.hf import default_name
from tests.helpers import PICO_BASE_ID
from tests.hf.conftest import card
from tests.hf.util import counts, leftovers, seed

REPO = "alice/pico-french"


def test_default_name_mapping():
    assert default_name("Loom-Org/My..Repo_V2", "alice") == "alice/my.repo_v2"  # the importer's namespace
    assert default_name("a/.x", "bob") == "bob/x"
    long = default_name("a/" + "x" * 90, "bob")
    assert len(long.split("/")[1]) == 64 and long != default_name("a/" + "x" * 91, "bob")


def test_import_pins_sha_records_source_and_dedups(svc, hf_hub, alice, fake_hub, lora_dirs):
    sha = seed(fake_hub, REPO, lora_dirs["one"], "Answers every question in French.", license="mit",
               tags=["french", "Chat"])
    res = svc.import_repo(alice, REPO)
    assert res.created and res.sha == sha and res.adapter.full_name == "alice/pico-french"
    assert res.version.number == 1 and res.version.source == f"hf:{REPO}@{sha}"
    a = res.adapter
    assert "Answers every question in French." in a.description and a.license == "mit"
    assert {"french", "chat", "lora", "peft", f"base_model:adapter:{PICO_BASE_ID}"} <= set(a.tags)
    assert a.visibility == "public" and a.owner.name == "alice"
    stored = hf_hub.adapters.read_file(alice, "alice", "pico-french", "adapter_model.safetensors")
    assert stored == (lora_dirs["one"] / "adapter_model.safetensors").read_bytes()
    card = hf_hub.adapters.read_file(alice, "alice", "pico-french", "README.md").decode()
    assert "Answers every question in French." in card  # the Hub's own card is kept

    downloads = fake_hub.count("GET", "/resolve/")
    for ref in (REPO, f"{REPO}@{sha}", f"{REPO}@main"):  # the same commit again: nothing downloaded or added
        again = svc.import_repo(alice, ref)
        assert not again.created and again.version.number == 1 and again.sha == sha
    assert fake_hub.count("GET", "/resolve/") == downloads
    assert counts(hf_hub) == {"adapters": 1, "adapter_versions": 1, "hf_imports": 1, "hf_exports": 0}
    assert leftovers(hf_hub) == []

    named = svc.import_repo(alice, f"{REPO}@{sha}", name="alice/french", visibility="private")
    assert named.created and named.adapter.full_name == "alice/french" and named.adapter.visibility == "private"


def test_sync_adds_versions_for_new_upstream_commits_only(svc, hf_hub, alice, fake_hub, lora_dirs):
    first = seed(fake_hub, REPO, lora_dirs["one"])
    svc.import_repo(alice, REPO)
    report = svc.sync()
    assert report.updated == [] and report.unchanged == ["alice/pico-french"]

    second = seed(fake_hub, REPO, lora_dirs["two"], "Answers in French, version 2.")
    report = svc.sync()
    assert [(r.adapter.full_name, r.version.number, r.sha, r.created) for r in report.updated] == [
        ("alice/pico-french", 2, second, True)]
    versions = hf_hub.adapters.versions(alice, "alice", "pico-french")
    assert [v.source for v in versions] == [f"hf:{REPO}@{first}", f"hf:{REPO}@{second}"]
    assert hf_hub.adapters.get(alice, "alice", "pico-french").description.count("version 2") == 1

    downloads = fake_hub.count("GET", "/resolve/")
    assert svc.sync().updated == [] and fake_hub.count("GET", "/resolve/") == downloads  # nothing duplicated

    third = fake_hub.commit(REPO, {"notes.md": "only a note changed"})  # same adapter files
    report = svc.sync()
    assert [(r.version.number, r.sha, r.created) for r in report.updated] == [(2, third, False)]
    assert svc.sync().updated == []  # the card-only commit is remembered: not fetched again
    assert counts(hf_hub)["adapter_versions"] == 2


def test_sync_follows_the_imported_branch_and_reports_failures(svc, hf_hub, alice, fake_hub, lora_dirs):
    seed(fake_hub, REPO, lora_dirs["one"])
    fake_hub.create_branch(REPO, "stable")
    seed(fake_hub, "alice/gone-later", lora_dirs["three"])
    svc.import_repo(alice, f"{REPO}@stable")
    svc.import_repo(alice, "alice/gone-later")
    seed(fake_hub, REPO, lora_dirs["two"])  # main moves; stable does not
    del fake_hub.state.repos["alice/gone-later"]
    report = svc.sync()
    assert report.updated == [] and report.unchanged == ["alice/pico-french"]
    assert isinstance(report.errors["alice/gone-later"], NotFoundError)
    fake_hub.commit(REPO, {"x.md": "x"}, branch="stable")
    fake_hub.commit(REPO, {k.name: k for k in lora_dirs["two"].iterdir() if k.suffix != ".md"}, branch="stable")
    report = svc.sync(repos=[REPO])
    assert [r.version.number for r in report.updated] == [2] and report.errors == {}


def test_import_errors_register_nothing(svc, hf_hub, alice, fake_hub, lora_dirs):
    with pytest.raises(NotFoundError, match="not found"):
        svc.import_repo(alice, "alice/does-not-exist")
    seed(fake_hub, "bob/gated", lora_dirs["one"], gated="manual")
    with pytest.raises(PermissionDeniedError, match="gated"):
        svc.import_repo(alice, "bob/gated")
    fake_hub.create_repo("alice/full-model")
    fake_hub.commit("alice/full-model", {"config.json": "{}", "model.safetensors": b"x"})
    with pytest.raises(InvalidAdapterError, match="not a LoRA repository"):
        svc.import_repo(alice, "alice/full-model")
    seed(fake_hub, REPO, lora_dirs["one"])
    with pytest.raises(NotFoundError, match="revision 'nope'"):
        svc.import_repo(alice, f"{REPO}@nope")
    fake_hub.drop_downloads(times=6, after_bytes=100, path_contains="adapter_model.safetensors")
    with pytest.raises(UpstreamError, match="network failure while downloading"):
        svc.import_repo(alice, REPO)
    assert counts(hf_hub) == {"adapters": 0, "adapter_versions": 0, "hf_imports": 0, "hf_exports": 0}
    assert leftovers(hf_hub) == []
    assert svc.import_repo(alice, REPO).created  # the retry completes


def test_private_hub_repo_imports_private(svc, hf_hub, alice, fake_hub, lora_dirs):
    seed(fake_hub, "alice/secret", lora_dirs["one"], private=True)
    assert svc.import_repo(alice, "alice/secret").adapter.visibility == "private"
    assert [t.name for t in svc.trackers()] == ["alice/secret"]
    hf_hub.adapters.delete(alice, "alice", "secret")  # its import records go with it
    assert svc.trackers() == [] and counts(hf_hub)["hf_imports"] == 0


def test_bulk_import_from_search(svc, hf_hub, alice, fake_hub, lora_dirs):
    good = seed(fake_hub, "alice/pico-a", lora_dirs["one"])
    seed(fake_hub, "alice/pico-b", lora_dirs["two"])
    fake_hub.create_repo("alice/pico-broken")
    fake_hub.commit("alice/pico-broken", {"README.md": card("no weights"),
                                          "adapter_config.json": "{}"})
    seed(fake_hub, "bob/pico-c", lora_dirs["three"])
    svc.import_repo(alice, "alice/pico-b")
    seen = []
    out = svc.import_search(alice, author="alice", base_model=PICO_BASE_ID,
                            progress=lambda done, total, o: seen.append((done, total, o.repo_id, o.status)))
    status = {o.repo_id: o.status for o in out}
    assert status == {"alice/pico-a": "imported", "alice/pico-b": "skipped", "alice/pico-broken": "failed"}
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    a = next(o for o in out if o.repo_id == "alice/pico-a")
    assert a.result.version.source == f"hf:alice/pico-a@{good}"
    assert counts(hf_hub)["adapters"] == 2


def test_hub_token_is_never_logged_stored_or_shown(svc, hf_hub, alice, fake_hub, lora_dirs, caplog, db_url):
    import logging
    import traceback

    from huggingface_hub.utils import logging as hf_logging

    from tests.hf_sync.fixtures import TOKEN

    seed(fake_hub, REPO, lora_dirs["one"])
    seed(fake_hub, "bob/gated", lora_dirs["two"], gated="manual")
    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_debug()
    try:
        with caplog.at_level(logging.DEBUG):
            svc.import_repo(alice, REPO)
            with pytest.raises(PermissionDeniedError) as denied:
                svc.import_repo(alice, "bob/gated")
            svc.export(alice, "alice/pico-french", "alice/copy")
    finally:
        hf_logging.set_verbosity(old)
    assert any(fake_hub.authorization_seen)  # the token was really sent
    assert caplog.records and TOKEN not in caplog.text
    assert TOKEN not in repr(hf_hub.settings) and TOKEN not in str(hf_hub.settings.model_dump())
    assert TOKEN not in "".join(traceback.format_exception(denied.value))
    if db_url.startswith("sqlite:///"):
        from pathlib import Path

        assert TOKEN.encode() not in Path(db_url.removeprefix("sqlite:///")).read_bytes()
    for path in hf_hub.settings.data_dir.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes()


def test_another_owners_name_is_refused_before_any_download(svc, hf_hub, alice, fake_hub, lora_dirs):
    seed(fake_hub, REPO, lora_dirs["one"])
    svc.import_repo(alice, REPO)
    seed(fake_hub, REPO, lora_dirs["two"])
    bob = hf_hub.users.ensure_user("bob")
    downloads = fake_hub.count("GET", "/resolve/")
    with pytest.raises(PermissionDeniedError, match="namespace alice belongs to alice"):
        svc.import_repo(bob, REPO, name="alice/pico-french")  # alice's namespace, whoever the Hub repo belongs to
    with pytest.raises(PermissionDeniedError, match="namespace alice belongs to alice"):
        svc.import_repo(bob, REPO, name="alice/new-name")
    assert fake_hub.count("GET", "/resolve/") == downloads and counts(hf_hub)["adapter_versions"] == 1
    assert svc.import_repo(bob, REPO, name="bob/french").adapter.owner.name == "bob"
    assert svc.import_repo(bob, REPO).adapter.full_name == "bob/pico-french"  # the default: the importer's own
