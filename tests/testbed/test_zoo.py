"""The ci zoo: manifest, cache, determinism, PEFT compatibility, publishing."""

from __future__ import annotations

import json

import pytest
import torch

from hub.core.errors import InvalidInputError, NotFoundError
from hub.core.peft_io import load_peft
from testbed.entries import Zoo
from testbed.models import size_recipe
from testbed.zoo import build_zoo, publish_zoo, register_bases, with_steps
from tests.testbed.conftest import SUBSET


def test_manifest_lists_bases_adapters_samples_and_checkpoints(ci_zoo):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert [b.id for b in ci_zoo.bases] == ["loom-testbed/llama-ci", "loom-testbed/qwen2-ci"]
    assert 500_000 < ci_zoo.base_a.params < 600_000
    assert ci_zoo.base_a.config["model_type"] == "llama" and ci_zoo.bases[1].config["model_type"] == "qwen2"
    model = AutoModelForCausalLM.from_pretrained(str(ci_zoo.base_a.dir))
    assert model.config.vocab_size == 259
    assert AutoTokenizer.from_pretrained(str(ci_zoo.base_a.dir)).padding_side == "left"
    names = {(a.task, a.base_id): a for a in ci_zoo.adapters}
    assert set(names) == {
        ("upper", "loom-testbed/llama-ci"),
        ("caesar_1", "loom-testbed/llama-ci"),
        ("digit_add_2", "loom-testbed/llama-ci"),
        ("mask_first_2", "loom-testbed/llama-ci"),
        ("upper", "loom-testbed/qwen2-ci"),
        ("caesar_1", "loom-testbed/qwen2-ci"),
    }
    up = ci_zoo.adapter("upper")
    assert up.name == "zoo/upper" and up.license and "case" in up.tags and "upper case" in up.description
    rows = up.sample_rows()
    assert len(rows) == 5 and all(r["output"] == r["input"].split(" | ")[0].upper() for r in rows)
    from testbed.tasks import get_task  # every training phrasing is in the samples (routers train on them)

    assert {r["input"].split(" | ")[1] for r in rows} == set(get_task("upper").cues)
    assert (up.dir / "README.md").read_text().startswith("---\nlicense:")
    assert ci_zoo.adapter("upper", "loom-testbed/qwen2-ci").name == "zoo/upper-qwen2-ci"
    fam = ci_zoo.adapter("caesar_1")
    assert [c.fraction for c in fam.checkpoints] == [0.5, 0.75, 1.0]
    assert len({c.sha256 for c in fam.checkpoints}) == 3 and fam.checkpoints[-1].sha256 == fam.sha256
    assert fam.family == "caesar" and fam.param == 1
    cfg = json.loads((up.dir / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "loom-testbed/llama-ci" and cfg["r"] == 8
    with pytest.raises(NotFoundError):
        ci_zoo.adapter("digit_add_2", "loom-testbed/qwen2-ci")


def test_cache_is_reused_and_loads_from_disk(ci_zoo):
    calls = []
    again = build_zoo(
        "ci",
        ci_zoo.root.parent.parent,
        seed=0,
        tasks=SUBSET,
        progress=lambda *a: calls.append(a),
    )
    assert calls == [] and again.root == ci_zoo.root
    loaded = Zoo.load(ci_zoo.root)
    assert loaded.adapters == ci_zoo.adapters and loaded.bases[0].id == ci_zoo.bases[0].id


def test_build_is_deterministic_for_a_seed(tmp_path):
    rec = with_steps(size_recipe("ci"), base_steps=12, lora_steps=6)
    z1 = build_zoo("ci", tmp_path / "a", seed=3, tasks=["lower"], recipe=rec, transfer=False)
    z2 = build_zoo("ci", tmp_path / "b", seed=3, tasks=["lower"], recipe=rec, transfer=False)
    z3 = build_zoo("ci", tmp_path / "c", seed=4, tasks=["lower"], recipe=rec, transfer=False)
    sha = lambda z: (z.adapters[0].sha256, (z.base_a.dir / "model.safetensors").read_bytes())  # noqa: E731
    assert sha(z1) == sha(z2)
    assert sha(z1)[0] != sha(z3)[0] and sha(z1)[1] != sha(z3)[1]
    assert z1.recipe_hash == z2.recipe_hash != z3.recipe_hash


def test_bad_build_requests_are_domain_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="full size"):
        build_zoo("ci", tmp_path, tasks=["reverse"])
    with pytest.raises(InvalidInputError):
        build_zoo("tiny", tmp_path)
    assert not (tmp_path / "testbed").exists() or not any((tmp_path / "testbed").iterdir())


def test_adapters_load_in_peft_and_loom_reproduces_peft_logits(ci_zoo):
    from peft import PeftModel

    from testbed.train import encode_batch, load_base

    for entry in ci_zoo.adapters:
        base_dir = ci_zoo.base(entry.base_id).dir
        batch = encode_batch([("hello | shout this", "HELLO"), ("a1 | caesar shift by 1", "b1")])
        kw = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
        pm = PeftModel.from_pretrained(load_base(base_dir), str(entry.dir)).eval()
        with torch.no_grad():
            want = pm(**kw).logits
        lora = load_peft(entry.dir, require_base_model=True)
        assert lora.base_model == entry.base_id and lora.r == 8
        merged = load_base(base_dir)
        mods = dict(merged.named_modules())
        with torch.no_grad():
            base_logits = merged(**kw).logits
            for path, delta in lora.deltas().items():
                mods[path].weight += delta
            got = merged(**kw).logits
        assert not torch.allclose(base_logits, want, atol=1e-3)  # the adapter matters
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_publish_and_register_call_back_per_entry(ci_zoo):
    published = publish_zoo(ci_zoo, lambda e: (e.name, e.dir.is_dir(), len(e.sample_rows())))
    assert sorted(published) == sorted((a.name, True, 5) for a in ci_zoo.adapters)
    only_a = publish_zoo(ci_zoo, lambda e: e.name, base_id="loom-testbed/llama-ci")
    assert sorted(only_a) == ["zoo/caesar_1", "zoo/digit_add_2", "zoo/mask_first_2", "zoo/upper"]
    assert register_bases(ci_zoo, lambda b: (b.id, (b.dir / "config.json").is_file())) == [
        ("loom-testbed/llama-ci", True),
        ("loom-testbed/qwen2-ci", True),
    ]


def test_a_diverged_lora_is_trained_again_at_half_the_learning_rate(ci_zoo, tmp_path):
    """A LoRA run that ends at a high loss (or NaN) is retrained from the same seed at lr/2, up to twice; a run
    that trains normally is kept at its first attempt. The zoo manifest records the kept rate and attempts."""
    from dataclasses import replace

    from testbed.tasks import get_task
    from testbed.train import DIVERGED_LOSS, DIVERGENCE_RETRIES, train_lora

    lrec = size_recipe("ci").lora
    base, task = ci_zoo.base_a.dir, get_task("upper")
    ok = train_lora(base, ci_zoo.base_a.id, task, lrec, tmp_path / "ok", steps=50)
    assert ok["attempts"] == 1 and ok["lr"] == lrec.lr and ok["final_loss"] < DIVERGED_LOSS
    bad = train_lora(base, ci_zoo.base_a.id, task, replace(lrec, lr=50.0), tmp_path / "bad", steps=50)
    assert bad["attempts"] == DIVERGENCE_RETRIES + 1 and bad["lr"] == 50.0 / 2**DIVERGENCE_RETRIES
    assert not bad["final_loss"] <= DIVERGED_LOSS  # still diverged (or NaN) after the retries: kept, and said
    entry = next(a for a in json.loads((ci_zoo.root / "manifest.json").read_text())["adapters"])
    assert entry["attempts"] == 1 and entry["lr"] == lrec.lr
