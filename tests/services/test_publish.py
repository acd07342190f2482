"""Publishing through the service layer: versions, ownership, validation, atomicity."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from hub.core.errors import (
    AuthenticationError,
    IncompatibleAdaptersError,
    InvalidAdapterError,
    InvalidInputError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from hub.repositories import adapters as adapters_repo
from hub.services.publish import PublishFiles
from tests.services.util import files_of, registry_state


def test_publish_versions_and_ownership(hub, adapter_dirs):
    alice = hub.users.ensure_user("alice")
    bob = hub.users.ensure_user("bob")
    r1 = hub.publisher.publish(alice, "alice/upper", files_of(adapter_dirs[0]), description="uppercases text",
                              tags=["Text", "case"], license="apache-2.0")
    assert r1.created and r1.version.number == 1 and r1.version.rank == 4
    assert r1.version.target_modules == ["q_proj", "v_proj"]
    assert r1.version.base_model == "loom-test/pico-llama"
    assert r1.adapter.tags == ["text", "case"] and r1.adapter.owner.name == "alice"
    assert set(r1.version.files) == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    card = hub.adapters.read_file(None, "alice", "upper", "README.md").decode()
    assert "base_model_relation: adapter" in card and "uppercases text" in card
    # the stored files are the uploaded bytes
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert hub.adapters.read_file(None, "alice", "upper", name) == (adapter_dirs[0] / name).read_bytes()
    again = hub.publisher.publish(alice, "alice/upper", files_of(adapter_dirs[0]))
    assert not again.created and again.version.number == 1
    r2 = hub.publisher.publish(alice, "alice/upper", files_of(adapter_dirs[2]))
    assert r2.created and r2.version.number == 2 and r2.version.rank == 8 and r2.adapter.latest_rank == 8
    assert [v.number for v in hub.adapters.versions(None, "alice", "upper")] == [1, 2]
    assert hub.adapters.get(None, "alice", "upper").description == "uppercases text"  # kept when not given
    with pytest.raises(PermissionDeniedError, match="belongs to alice"):
        hub.publisher.publish(bob, "alice/upper", files_of(adapter_dirs[1]))
    with pytest.raises(AuthenticationError):
        hub.publisher.publish(None, "anon/x", files_of(adapter_dirs[1]))
    assert hub.adapters.get(None, "alice", "upper").downloads == 1  # one read of the weights file above


def _bad(tmp_path, adapter_dir, *, tensors=None, config=None, raw=None):
    d = tmp_path / "bad"
    d.mkdir(exist_ok=True)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config:
        cfg.update(config)
    (d / "adapter_config.json").write_text(json.dumps({k: v for k, v in cfg.items() if v is not None}))
    w = d / "adapter_model.safetensors"
    if raw is not None:
        w.write_bytes(raw)
    else:
        t = load_file(str(adapter_dir / "adapter_model.safetensors"))
        if tensors:
            tensors(t)
        save_file(t, str(w))
    return d


def _nan(t):
    k = next(iter(t))
    t[k] = t[k].clone()
    t[k][0, 0] = float("nan")


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("pickle", InvalidAdapterError, "not a valid safetensors"),
        ("bad_header", InvalidAdapterError, "header"),
        ("nan", InvalidAdapterError, "NaN or Inf"),
        ("no_base", InvalidAdapterError, "base_model_name_or_path is required"),
        ("dora", InvalidAdapterError, "DoRA"),
        ("rank", InvalidAdapterError, "rank is 4 by its tensors but 2"),
        ("samples", InvalidInputError, "samples.jsonl line 2"),
    ],
)
def test_malformed_uploads_are_refused_and_change_nothing(hub, adapter_dirs, tmp_path, case, error, message):
    alice = hub.users.ensure_user("alice")
    good = adapter_dirs[0]
    samples = None
    if case == "pickle":
        d = _bad(tmp_path, good, raw=b"")
        torch.save({"x": torch.zeros(2)}, d / "adapter_model.safetensors")
    elif case == "bad_header":
        d = _bad(tmp_path, good, raw=b"\xff" * 8 + b"{not json at all}")
    elif case == "nan":
        d = _bad(tmp_path, good, tensors=_nan)
    elif case == "no_base":
        d = _bad(tmp_path, good, config={"base_model_name_or_path": None})
    elif case == "dora":
        d = _bad(tmp_path, good, config={"use_dora": True})
    elif case == "rank":
        d = _bad(tmp_path, good, config={"r": 2})
    else:
        d = good
        samples = b'{"input": "a", "output": "A"}\n{"input": 1}\n'
    before = registry_state(hub)
    with pytest.raises(error, match=message):
        hub.publisher.publish(alice, "alice/bad", files_of(d, samples=samples))
    assert registry_state(hub) == before


@pytest.mark.parametrize("name", ["../etc", "alice/..", "alice/../x", "Alice/x", "alice/x/y", "alice", "alice/",
                                  "alice/-x", "alice/x y", "a" * 65 + "/x", "alice/x%2f..", "/abs"])
def test_bad_names(hub, adapter_dirs, name):
    alice = hub.users.ensure_user("alice")
    before = registry_state(hub)
    with pytest.raises(InvalidInputError):
        hub.publisher.publish(alice, name, files_of(adapter_dirs[0]))
    assert registry_state(hub) == before


def test_oversize_is_refused(make_hub, adapter_dirs):
    hub = make_hub(max_upload_bytes=1000)
    alice = hub.users.ensure_user("alice")
    with pytest.raises(PayloadTooLargeError, match="limit of 1000 bytes"):
        hub.publisher.publish(alice, "alice/big", files_of(adapter_dirs[0]))
    assert registry_state(hub) == ([], 0, [], [])


def test_shapes_checked_against_registered_base(hub, tmp_path, tiny_model):
    from tests.helpers import make_peft_adapter, pico_llama

    hub.base_models.register("loom-test/pico-llama", tiny_model.config.to_json_string().encode())
    alice = hub.users.ensure_user("alice")
    wide = make_peft_adapter(pico_llama(hidden=64), tmp_path / "wide", seed=5)  # same base id, wrong shapes
    before = registry_state(hub)
    with pytest.raises(IncompatibleAdaptersError, match=r"\(32, 64\).*\(32, 32\)|\(64, 64\).*\(32, 32\)"):
        hub.publisher.publish(alice, "alice/wide", files_of(wide))
    assert registry_state(hub) == before
    ok = make_peft_adapter(tiny_model, tmp_path / "ok", seed=6)
    res = hub.publisher.publish(alice, "alice/ok", files_of(ok))
    assert res.created and not res.warnings


def test_publish_is_atomic_when_the_transaction_fails(hub, adapter_dirs, monkeypatch):
    alice = hub.users.ensure_user("alice")

    def boom(s, adapter_id):
        s.flush()  # the adapter row exists inside the transaction at this point
        raise RuntimeError("injected failure between blob write and commit")

    monkeypatch.setattr(adapters_repo, "max_version_number", boom)
    with pytest.raises(RuntimeError, match="injected"):
        hub.publisher.publish(alice, "alice/atomic", files_of(adapter_dirs[0], samples=b'{"input":"a","output":"b"}\n'))
    names, n_versions, keys, tmp = registry_state(hub)
    assert names == [] and n_versions == 0 and tmp == []
    assert len(keys) == 4  # config, weights, README, samples: written, unreferenced
    report = hub.fsck.run()
    assert sorted(report.young_orphans + report.orphan_blobs) == keys
    report = hub.fsck.run(repair=True, orphan_grace_s=0)
    assert sorted(report.orphan_blobs) == keys
    assert list(hub.blobs.keys()) == []
    assert hub.fsck.run().ok


def test_fsck_finds_and_repairs_a_missing_blob(hub, adapter_dirs):
    alice = hub.users.ensure_user("alice")
    first = hub.fsck.run()
    assert first.stale_index and first.ok  # no index persisted yet: a cache the start rebuilds, not a problem
    assert hub.search.ensure_index() == "rebuilt"  # what the server does at start
    hub.publisher.publish(alice, "alice/one", files_of(adapter_dirs[0]), description="first")
    hub.publisher.publish(alice, "alice/one", files_of(adapter_dirs[1]))
    hub.publisher.publish(alice, "alice/two", files_of(adapter_dirs[2]), description="second")
    assert hub.fsck.run().ok
    v2 = hub.adapters.version(None, "alice", "one", 2)
    weights_key = v2.files["adapter_model.safetensors"]["key"]
    hub.blobs.delete(weights_key)
    report = hub.fsck.run()
    assert not report.ok
    assert report.missing_blobs == [{"version": "alice/one@2", "file": "adapter_model.safetensors",
                                     "key": weights_key}]
    report = hub.fsck.run(repair=True, orphan_grace_s=0)
    assert any("alice/one@2" in r for r in report.repaired)
    assert [v.number for v in hub.adapters.versions(None, "alice", "one")] == [1]
    assert hub.adapters.get(None, "alice", "one").latest_version == 1
    assert hub.fsck.run().ok
    # publish with the file missing and an orphan: deleting an adapter leaves blobs for fsck
    hub.adapters.delete(alice, "alice/two".split("/")[0], "two")
    report = hub.fsck.run(repair=True, orphan_grace_s=0)
    assert len(report.orphan_blobs) >= 2 and hub.fsck.run().ok


def test_samples_are_stored(hub, adapter_dirs):
    alice = hub.users.ensure_user("alice")
    samples = b'{"input": "abc", "output": "ABC"}\n{"input": "x", "output": "X"}\n'
    res = hub.publisher.publish(alice, "alice/s", PublishFiles(
        config=(adapter_dirs[0] / "adapter_config.json").read_bytes(),
        weights=adapter_dirs[0] / "adapter_model.safetensors", samples=samples, readme=b"# My card\n"))
    assert res.version.samples_key is not None
    assert hub.adapters.read_file(None, "alice", "s", "samples.jsonl") == samples
    assert hub.adapters.read_file(None, "alice", "s", "README.md") == b"# My card\n"


def test_lineage_edges_from_provenance(hub, adapter_dirs):
    from hub.core.errors import NotFoundError
    from hub.core.provenance import ParentRef, Provenance

    alice = hub.users.ensure_user("alice")
    hub.publisher.publish(alice, "alice/p1", files_of(adapter_dirs[0]))
    hub.publisher.publish(alice, "alice/p2", files_of(adapter_dirs[1]))
    prov = Provenance(method="linear", recipe_json='{"weights": [0.5, 0.5]}',
                      parents=(ParentRef("alice/p1", "1", 0.5), ParentRef("alice/p2", None, 0.5)))
    res = hub.publisher.publish(alice, "alice/merged", files_of(adapter_dirs[2]), provenance=prov, source="merge")
    assert res.version.provenance["method"] == "linear" and res.version.source == "merge"
    lin = hub.adapters.lineage(None, "alice", "merged")
    assert sorted(p["version"] for p in lin.parents) == ["alice/p1@1", "alice/p2@1"]
    assert lin.parents[0]["method"] == "linear" and lin.parents[0]["recipe"] == {"weights": [0.5, 0.5]}
    assert [c["version"] for c in hub.adapters.lineage(None, "alice", "p1").children] == ["alice/merged@1"]
    card = hub.adapters.read_file(None, "alice", "merged", "README.md").decode()
    assert "merged_from" in card and "alice/p1" in card
    hub.adapters.patch(alice, "alice", "p2", visibility="private")
    assert [p["version"] for p in hub.adapters.lineage(None, "alice", "merged").parents] == ["alice/p1@1"]
    assert len(hub.adapters.lineage(alice, "alice", "merged").parents) == 2
    before = registry_state(hub)
    bad = Provenance(method="linear", parents=(ParentRef("alice/ghost", "1"),))
    with pytest.raises(NotFoundError, match="alice/ghost@1"):
        hub.publisher.publish(alice, "alice/orphan", files_of(adapter_dirs[0]), provenance=bad)
    assert registry_state(hub)[:2] == before[:2]  # rolled back (its blobs are orphans for fsck)


def test_concurrent_publishes_get_distinct_version_numbers(hub, adapter_dirs, tmp_path, tiny_model):
    from concurrent.futures import ThreadPoolExecutor

    from tests.helpers import make_peft_adapter

    alice = hub.users.ensure_user("alice")
    dirs = [make_peft_adapter(tiny_model, tmp_path / f"c{i}", seed=100 + i) for i in range(4)]
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda d: hub.publisher.publish(alice, "alice/busy", files_of(d)), dirs))
    assert sorted(r.version.number for r in results) == [1, 2, 3, 4]
    assert hub.adapters.get(None, "alice", "busy").latest_version == 4
