"""The real model served by Loom: SmolLM2-135M-Instruct (dequantized from its GGUF) with LoRAs trained on it.
A completion equals transformers + PEFT ``generate`` on ``tokenizer(prompt)`` and a chat completion (plain and
streamed, through the official ``openai`` client and a real server) equals it on the chat-templated prompt,
greedy, token for token; ``model="auto"`` routes an English request to the adapter for it."""

from __future__ import annotations

import pytest
import torch

from testbed.real.tasks import get_task
from tests.real.conftest import REAL_TASKS


@pytest.fixture(scope="module")
def peft_model(real_zoo):
    """The base with every real adapter loaded by PEFT (the oracle), and its tokenizer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(real_zoo.base_a.dir))
    base = AutoModelForCausalLM.from_pretrained(str(real_zoo.base_a.dir), dtype=torch.float32).eval()
    entries = real_zoo.adapters
    model = PeftModel.from_pretrained(base, str(entries[0].dir), adapter_name=entries[0].task)
    for e in entries[1:]:
        model.load_adapter(str(e.dir), adapter_name=e.task)
    return model.eval(), tok


def _generate(model, tok, ids: list[int], adapter: str | None, n: int = 12) -> list[int]:
    x = torch.tensor([ids])
    with torch.no_grad():
        if adapter is None:
            with model.disable_adapter():
                out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
        else:
            model.set_adapter(adapter)
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
    new = out[0, len(ids):].tolist()
    return new[: new.index(tok.eos_token_id) + 1] if tok.eos_token_id in new else new


def test_the_dequantized_base_is_smollm2(real_zoo, peft_model):
    from testbed.real.eval import greedy_chat

    model, tok = peft_model
    assert real_zoo.base_a.id == "HuggingFaceTB/SmolLM2-135M-Instruct" and 130e6 < real_zoo.base_a.params < 140e6
    with model.disable_adapter():
        answer = greedy_chat(model, tok, ["What is the capital of France? Answer in one word."])[0]
    assert "Paris" in answer


def test_completion_equals_peft_generate_on_tokenizer_prompt(real_zoo, real_demo, peft_model):
    from hub.services.container import inference_service
    from hub.services.inference import CompletionRequest

    _, hub = real_demo
    model, tok = peft_model
    prompt = "Convert to snake_case: Big Red Apple\n"
    ids = tok(prompt)["input_ids"]
    assert ids[0] != tok.bos_token_id  # SmolLM2's tokenizer adds no BOS, and Loom adds none either
    svc = inference_service(hub, "cpu")
    try:
        for task in REAL_TASKS:
            res = svc.complete(None, CompletionRequest(model=f"smol/{task}", prompts=[prompt], max_tokens=12,
                                                       temperature=0.0))
            want = _generate(model, tok, ids, task)
            assert res.choices[0].tokens == [t for t in want if t != tok.eos_token_id], task
    finally:
        svc.close()


def test_chat_and_streaming_equal_peft_on_the_chat_template(real_zoo, real_demo, peft_model):
    from openai import OpenAI

    from hub.core.prompts import chat_prompt_ids

    url, _ = real_demo
    model, tok = peft_model
    client = OpenAI(base_url=f"{url}/v1", api_key="anything")
    outputs = {}
    for task in REAL_TASKS:
        e = get_task(task).examples(1, seed=3)[0]
        msgs = [{"role": "user", "content": e.prompt}]
        ids = chat_prompt_ids(tok, e.prompt)
        assert ids == tok.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"]
        want = tok.decode(_generate(model, tok, ids, task), skip_special_tokens=True)
        r = client.chat.completions.create(model=f"smol/{task}", messages=msgs, max_tokens=12, temperature=0)
        assert r.choices[0].message.content == want, task
        stream = client.chat.completions.create(model=f"smol/{task}", messages=msgs, max_tokens=12, temperature=0,
                                                stream=True)
        assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == want
        outputs[task] = (want, tok.decode(_generate(model, tok, ids, None), skip_special_tokens=True))
    assert any(mine != base for mine, base in outputs.values())  # the adapters change what the model says


def test_auto_routes_an_english_request_to_its_adapter(real_demo):
    from openai import OpenAI

    url, _ = real_demo
    client = OpenAI(base_url=f"{url}/v1", api_key="anything")
    r = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Is this review positive or negative? I loved it."}],
        max_tokens=8, temperature=0)
    assert list(r.model_extra["loom"]["adapters"]) == ["smol/sentiment@1"]
    assert r.choices[0].message.content.strip()


def test_demo_registers_smollm2_from_its_gguf_and_publishes_the_zoo(real_zoo, tmp_path):
    """In the demo's data directory the zoo's base folder is the GGUF's conversion: SmolLM2 is registered from
    the GGUF (its source recorded) without converting it again, and the adapters are published with cards."""
    from pathlib import Path

    from hub.cli.testbed import publish_zoo_into
    from hub.services.container import Hub
    from hub.settings import get_settings
    from testbed.real.base import SMOLLM2_ID, smollm2_gguf

    data = tmp_path / "data"
    data.mkdir()
    (data / "weights").symlink_to(real_zoo.base_a.dir.resolve().parent.parent)  # the cached conversion
    with Hub(get_settings(data_dir=data, hf_endpoint="http://127.0.0.1:9")) as hub:
        assert publish_zoo_into(hub, real_zoo) == (1, len(REAL_TASKS))
        row = hub.base_models.get(SMOLLM2_ID)
        assert row.source["kind"] == "gguf" and row.source["file"] == str(smollm2_gguf())
        assert Path(row.weights) == real_zoo.base_a.dir.resolve()
        ver = hub.adapters.version(None, "smol", "snake_case", None)
        assert ver.base_model == SMOLLM2_ID and {"README.md", "samples.jsonl"} <= set(ver.files)
        publish_zoo_into(hub, real_zoo)  # again: nothing new
        assert hub.adapters.version(None, "smol", "snake_case", None).number == 1
