"""peft_io against the real peft library as the oracle."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from hub.core import LoraAdapter, load_peft, save_peft
from hub.core.adapter import LoraLayer
from hub.core.errors import InvalidAdapterError, PayloadTooLargeError, UnsupportedFeatureError
from hub.core.peft_io import CONFIG_NAME, WEIGHTS_NAME
from hub.core.safetensors_check import check_safetensors_header
from tests.helpers import PICO_BASE_ID, make_peft_adapter, peft_logits


def _manual_logits(model, adapter: LoraAdapter, ids: torch.Tensor) -> torch.Tensor:
    """Apply Loom's deltas to a copy of the base weights (W + scaling * B @ A) and run the model."""
    import copy

    m = copy.deepcopy(model)
    mods = dict(m.named_modules())
    with torch.no_grad():
        for name, delta in adapter.deltas().items():
            mods[name].weight += delta
        return m(input_ids=ids).logits


IDS = torch.tensor([[1, 5, 9, 3, 7, 2]])


def test_peft_saved_adapter_loads_and_matches_peft_logits(tiny_model, peft_adapter_dir):
    ad = load_peft(peft_adapter_dir)
    assert ad.base_model == PICO_BASE_ID
    assert ad.target_modules == ["q_proj", "v_proj"]
    assert ad.r == 4 and ad.alpha == 8
    assert "model.layers.0.self_attn.q_proj" in ad.layers
    ref = peft_logits(tiny_model, peft_adapter_dir, IDS)
    base = tiny_model(input_ids=IDS).logits
    assert not torch.allclose(ref, base, atol=1e-4)  # the adapter does something
    torch.testing.assert_close(_manual_logits(tiny_model, ad, IDS), ref, atol=1e-5, rtol=1e-4)


def test_round_trip_is_exact_and_loads_in_peft(tiny_model, peft_adapter_dir, tmp_path):
    ad = load_peft(peft_adapter_dir)
    out = save_peft(ad, tmp_path / "rt")
    again = load_peft(out)
    assert again.content_hash() == ad.content_hash()
    assert again.allclose(ad, rtol=0, atol=0)
    torch.testing.assert_close(
        peft_logits(tiny_model, out, IDS), peft_logits(tiny_model, peft_adapter_dir, IDS), rtol=0, atol=0
    )
    # Saving twice gives byte-identical weights (content addressing relies on it).
    out2 = save_peft(again, tmp_path / "rt2")
    assert (out / WEIGHTS_NAME).read_bytes() == (out2 / WEIGHTS_NAME).read_bytes()


@pytest.mark.parametrize("rslora", [False, True])
def test_rank_pattern_and_rslora_match_peft(tiny_model, tmp_path, rslora):
    src = make_peft_adapter(
        tiny_model, tmp_path / "src", seed=3, r=4, alpha=16, use_rslora=rslora,
        rank_pattern={"model.layers.1.self_attn.v_proj": 2},
    )
    ad = load_peft(src)
    assert ad.layers["model.layers.1.self_attn.v_proj"].rank == 2
    assert ad.spec.use_rslora is rslora
    expected_scaling = 16 / (4**0.5 if rslora else 4)
    assert ad.layers["model.layers.0.self_attn.q_proj"].scaling == pytest.approx(expected_scaling)
    ref = peft_logits(tiny_model, src, IDS)
    torch.testing.assert_close(_manual_logits(tiny_model, ad, IDS), ref, atol=1e-5, rtol=1e-4)
    # A Loom-written adapter with a per-layer rank and alpha loads in PEFT with identical logits.
    layers = dict(ad.layers)
    la = layers["model.layers.0.self_attn.q_proj"]
    layers["model.layers.0.self_attn.q_proj"] = LoraLayer(la.a[:3], la.b[:, :3], alpha=5.0, use_rslora=rslora)
    mixed = LoraAdapter(layers=layers, spec=ad.spec)
    out = save_peft(mixed, tmp_path / "mixed")
    cfg = json.loads((out / CONFIG_NAME).read_text())
    assert cfg["rank_pattern"]["model.layers.0.self_attn.q_proj"] == 3
    assert cfg["alpha_pattern"]["model.layers.0.self_attn.q_proj"] == 5.0
    torch.testing.assert_close(
        peft_logits(tiny_model, out, IDS), _manual_logits(tiny_model, mixed, IDS), atol=1e-5, rtol=1e-4
    )


def test_from_deltas_reproduces_the_delta():
    torch.manual_seed(0)
    d = torch.randn(16, 3) @ torch.randn(3, 12)
    ad = LoraAdapter.from_deltas({"model.layers.0.mlp.up_proj": d}, rank=3)
    torch.testing.assert_close(ad.layers["model.layers.0.mlp.up_proj"].delta(), d, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"bias": "lora_only"}, "bias"),
    ],
)
def test_unsupported_features_are_refused_by_name(tiny_model, tmp_path, extra, word):
    src = make_peft_adapter(tiny_model, tmp_path / "x", seed=2, **extra)
    with pytest.raises(UnsupportedFeatureError, match=word):
        load_peft(src)


def test_embedding_lora_is_refused(tiny_model, tmp_path):
    src = make_peft_adapter(tiny_model, tmp_path / "emb", seed=2, targets=("embed_tokens", "q_proj"))
    with pytest.raises(UnsupportedFeatureError, match="embedding"):
        load_peft(src)


def _write_folder(tmp_path, config, tensors):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    save_file(tensors, str(tmp_path / WEIGHTS_NAME))
    return tmp_path


CFG = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
       "base_model_name_or_path": PICO_BASE_ID}
KEY = "base_model.model.model.layers.0.self_attn.q_proj"


@pytest.mark.parametrize(
    ("config", "tensors", "message"),
    [
        (CFG, {f"{KEY}.lora_A.weight": torch.ones(3, 8), f"{KEY}.lora_B.weight": torch.ones(8, 3)},
         "rank is 3 by its tensors but 2"),
        (CFG, {f"{KEY}.lora_A.weight": torch.ones(2, 8), f"{KEY}.lora_B.weight": torch.ones(8, 3)},
         "do not form"),
        (CFG, {f"{KEY}.lora_A.weight": torch.ones(2, 8)}, "no lora_B"),
        (CFG, {f"{KEY}.lora_A.weight": torch.full((2, 8), float("nan")),
               f"{KEY}.lora_B.weight": torch.ones(8, 2)}, "NaN"),
        ({**CFG, "target_modules": ["v_proj"]},
         {f"{KEY}.lora_A.weight": torch.ones(2, 8), f"{KEY}.lora_B.weight": torch.ones(8, 2)},
         "not in target_modules"),
        (CFG, {"model.weird": torch.ones(2)}, "unexpected tensor"),
        (CFG, {"model.norm.weight": torch.ones(2)}, "full base weights"),
        ({"peft_type": "IA3", "target_modules": ["q_proj"]},
         {f"{KEY}.lora_A.weight": torch.ones(2, 8), f"{KEY}.lora_B.weight": torch.ones(8, 2)}, "IA3"),
    ],
)
def test_malformed_adapters_are_refused_with_a_message(tmp_path, config, tensors, message):
    d = _write_folder(tmp_path / "bad", config, tensors)
    with pytest.raises(InvalidAdapterError, match=message):
        load_peft(d)


def test_pickle_is_refused_and_never_loaded(tmp_path):
    d = tmp_path / "pkl"
    d.mkdir()
    (d / CONFIG_NAME).write_text(json.dumps(CFG))
    (d / "adapter_model.bin").write_bytes(b"\x80\x04 not even a real pickle")
    with pytest.raises(InvalidAdapterError, match="pickle"):
        load_peft(d)


def test_header_checks_catch_crafted_files(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"x": torch.ones(4)}, str(good))
    assert set(check_safetensors_header(good)) == {"x"}
    with pytest.raises(PayloadTooLargeError):
        check_safetensors_header(good, max_bytes=10)
    raw = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(raw[:-4])
    with pytest.raises(InvalidAdapterError, match="outside|trailing|declares"):
        check_safetensors_header(tmp_path / "trunc.safetensors")
    header = json.dumps({"x": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}).encode()
    (tmp_path / "int.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(InvalidAdapterError, match="dtype I64"):
        check_safetensors_header(tmp_path / "int.safetensors")
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(InvalidAdapterError, match="header length"):
        check_safetensors_header(tmp_path / "huge.safetensors")
