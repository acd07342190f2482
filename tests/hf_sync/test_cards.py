"""Model cards: required Hub fields, lineage, mergekit recipe block, parsing by plain YAML and by huggingface_hub."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from hub.core.errors import InvalidInputError
from hub.core.provenance import ParentRef, Provenance
from hub.hf_sync.cards import card_for_provenance, parse_model_card, render_model_card

BASE = "meta-llama/Llama-3.1-8B-Instruct"


def _recipe_block(body: str) -> dict:
    m = re.search(r"## Merge recipe.*?```yaml\n(.*?)```", body, re.S)
    assert m, body
    return yaml.safe_load(m.group(1))


def test_plain_adapter_card_has_the_hub_fields():
    text = render_model_card(base_model=BASE, name="Pirate", description="Talks like a pirate.",
                             license="apache-2.0", tags=["pirate", "lora"], datasets=["org/pirates"],
                             language=["en"], source="hf:org/pirate@" + "a" * 40)
    meta, body = parse_model_card(text)
    assert meta["library_name"] == "peft" and meta["base_model"] == BASE
    assert meta["base_model_relation"] == "adapter" and meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "apache-2.0" and meta["datasets"] == ["org/pirates"] and meta["language"] == ["en"]
    assert meta["tags"] == ["lora", "peft", "pirate", f"base_model:adapter:{BASE}"]  # no duplicates
    assert meta["loom_source"].startswith("hf:org/pirate@")
    assert "merged_from" not in meta and "Merge recipe" not in body
    assert body.startswith("# Pirate\n") and "Talks like a pirate." in body


def test_composed_adapter_card_records_lineage_and_recipe():
    parents = [{"id": "org/a", "revision": "abc123", "weight": 0.6}, {"id": "org/b", "weight": 0.4}]
    text = render_model_card(base_model=BASE, merged_from=parents,
                             merge={"method": "ties", "params": {"density": 0.2, "majority_sign_method": "total"}})
    meta, body = parse_model_card(text)
    assert meta["base_model"] == BASE and meta["base_model_relation"] == "adapter"
    assert meta["merged_from"] == [{"id": "org/a", "revision": "abc123", "weight": 0.6},
                                   {"id": "org/b", "revision": None, "weight": 0.4}]
    assert meta["merge"] == {"method": "ties", "params": {"density": 0.2, "majority_sign_method": "total"}}
    assert _recipe_block(body) == {
        "merge_method": "ties", "base_model": BASE,
        "models": [{"model": "org/a", "revision": "abc123", "parameters": {"weight": 0.6}},
                   {"model": "org/b", "parameters": {"weight": 0.4}}],
        "parameters": {"density": 0.2, "majority_sign_method": "total"}}


def test_huggingface_hub_parses_the_card_the_same_way():
    from huggingface_hub import ModelCard

    text = render_model_card(base_model=BASE, license="mit", merged_from=[{"id": "org/a", "weight": 1.0}],
                             merge={"method": "linear", "params": {}})
    card = ModelCard(text)
    assert card.data.to_dict() == parse_model_card(text)[0]
    assert card.data.base_model == BASE and card.data.library_name == "peft"


def test_card_from_provenance():
    prov = Provenance.create("dare_ties", {"density": 0.3, "seed": 0},
                             parents=[ParentRef("alice/math", "2", 0.5), ParentRef("bob/code", "1", 0.5)])
    meta, body = parse_model_card(card_for_provenance(prov, base_model=BASE, license="mit"))
    assert meta["merged_from"] == [{"id": "alice/math", "revision": "2", "weight": 0.5},
                                   {"id": "bob/code", "revision": "1", "weight": 0.5}]
    assert meta["merge"] == {"method": "dare_ties", "params": {"density": 0.3, "seed": 0}}
    assert meta["loom_provenance"]["recipe_hash"] == prov.recipe_hash() and meta["license"] == "mit"
    assert _recipe_block(body)["merge_method"] == "dare_ties"
    plain, _ = parse_model_card(card_for_provenance(None, base_model=BASE))
    assert "merged_from" not in plain


@pytest.mark.parametrize("kwargs, match", [
    ({"base_model": ""}, "base_model is required"),
    ({"base_model": BASE, "merged_from": [{"id": "a/b"}]}, "merge.method is required"),
    ({"base_model": BASE, "merged_from": [{"weight": 1}], "merge": {"method": "linear"}}, r"merged_from\[0\].id"),
    ({"base_model": BASE, "merged_from": [{"id": "a/b", "weight": "x"}], "merge": {"method": "linear"}},
     r"merged_from\[0\].weight must be a number"),
])
def test_render_rejects_bad_input(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        render_model_card(**kwargs)


def test_parse_model_card_edge_cases():
    assert parse_model_card("# just markdown") == ({}, "# just markdown")
    assert parse_model_card("---\n---\nbody") == ({}, "body")
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        parse_model_card("---\na: [1\n---\n")
    with pytest.raises(InvalidInputError, match="must be a mapping"):
        parse_model_card("---\n- a\n---\n")


def test_hf_sync_imports_neither_torch_nor_huggingface_hub_at_import():
    code = ("import sys, hub.hf_sync.cards, hub.hf_sync.webhooks, hub.hf_sync.fetch, hub.hf_sync.search, "
            "hub.hf_sync.push, hub.hf_sync.bulk; "
            "print(sorted(m for m in ('torch', 'huggingface_hub', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
