"""A .gguf file as a base: dequantized once into a safetensors folder, registered without --config, served
exactly like the model it was written from; a GGUF transformers cannot load registers nothing."""

from __future__ import annotations

import pytest

from hub.core.errors import InvalidInputError
from tests.weights.conftest import hf_greedy, served_greedy
from tests.weights.gguf_files import write_llama_gguf

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_gguf_registers_converts_once_and_serves_like_its_model(hub, tiny_base, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, _ = tiny_base
    gguf = write_llama_gguf(tmp_path / "tiny.gguf", model)
    row = hub.base_models.register("loom-test/gguf-llama", weights=str(gguf))  # no config: the GGUF's own
    assert row.revision == "main" and row.source["kind"] == "gguf" and row.source["architecture"] == "llama"
    folder = hub.settings.weights_dir / "gguf" / row.source["sha256"][:16]
    assert row.weights == str(folder.resolve())
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in folder.iterdir()}
    assert "quantization_config" not in (folder / "config.json").read_text()
    plain = AutoModelForCausalLM.from_pretrained(str(folder))
    for k, v in model.state_dict().items():  # dequantized F32 tensors: the written weights, exactly
        assert torch.equal(plain.state_dict()[k], v), k
    assert hub.base_models.shapes(row)["model.layers.0.self_attn.q_proj"] == (32, 32)

    tok = AutoTokenizer.from_pretrained(str(folder))
    prompt = "hello | shout this\n"
    assert served_greedy(hub, "loom-test/gguf-llama", prompt) == hf_greedy(model, tok, prompt)

    again = hub.base_models.register("loom-test/gguf-llama-again", weights=str(gguf))
    assert again.weights == row.weights  # converted once, by content
    assert len([p for p in (hub.settings.weights_dir / "gguf").iterdir()]) == 1


def test_bad_gguf_files_register_nothing(hub, tiny_base, tmp_path):
    model, _ = tiny_base
    alien = write_llama_gguf(tmp_path / "alien.gguf", model, arch="loomnet")
    with pytest.raises(InvalidInputError, match="transformers cannot load the GGUF file alien.gguf.*loomnet"):
        hub.base_models.register("loom-test/alien", weights=str(alien))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(InvalidInputError, match="not a GGUF file"):
        hub.base_models.register("loom-test/fake", weights=str(fake))
    with pytest.raises(InvalidInputError, match="does not exist"):
        hub.base_models.register("loom-test/none", weights=str(tmp_path / "none.gguf"))
    assert hub.base_models.list() == []
    root = hub.settings.weights_dir / "gguf"
    assert not root.exists() or list(root.iterdir()) == []  # no half-converted folder left behind
