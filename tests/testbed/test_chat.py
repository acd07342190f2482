"""Parity and chat on the demo's tiny bases: a served completion is transformers + PEFT ``generate`` on
``tokenizer(prompt)``, token for token, on both bases; chat completions and chat streaming through the
OpenAI endpoint (the official client, a real server) answer every ci adapter family's prompts correctly."""

from __future__ import annotations

import shutil

import pytest

from testbed.tasks import get_task
from tests.helpers import served_zoo

N = 6  # prompts per adapter


@pytest.fixture(scope="module")
def demo(ci_zoo, tmp_path_factory):
    """The ci zoo published into a hub, served over HTTP: (url, hub)."""
    with served_zoo(ci_zoo, tmp_path_factory.mktemp("chat_demo")) as served:
        yield served


def _peft_generate(base_dir, adapter_dir, tokenizer, prompt: str, n: int = 24) -> list[int]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir)), str(adapter_dir)).eval()
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    new = out[0, ids.shape[1]:].tolist()
    return new[: new.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in new else new


def test_served_completion_is_peft_generate_on_tokenizer_prompt(ci_zoo, demo):
    from transformers import AutoTokenizer

    from hub.services.container import inference_service
    from hub.services.inference import CompletionRequest

    _, hub = demo
    svc = inference_service(hub, "cpu")
    try:
        for entry in ci_zoo.adapters:  # every adapter of base A and base B's transfer adapter
            base = ci_zoo.base(entry.base_id)
            tok = AutoTokenizer.from_pretrained(str(base.dir))
            exs = get_task(entry.task).examples(3, seed=11)
            prompts = [e.prompt + "\n" for e in exs]
            res = svc.complete(None, CompletionRequest(model=entry.name, prompts=prompts, max_tokens=24,
                                                       temperature=0.0))
            for p, c in zip(prompts, res.choices, strict=True):
                assert c.tokens == _peft_generate(base.dir, entry.dir, tok, p), (entry.name, p)
            right = sum(c.text == e.output for c, e in zip(res.choices, exs, strict=True))
            assert right >= 2, (entry.name, [c.text for c in res.choices])  # BOS first: the adapters work
    finally:
        svc.close()


def test_chat_and_chat_streaming_answer_every_family(ci_zoo, demo):
    from openai import OpenAI

    url, _ = demo
    client = OpenAI(base_url=f"{url}/v1", api_key="anything")
    for entry in ci_zoo.adapters:
        exs = get_task(entry.task).examples(N, seed=23)
        right = 0
        for e in exs:
            msgs = [{"role": "user", "content": e.prompt}]
            text = client.chat.completions.create(model=entry.name, messages=msgs, max_tokens=24,
                                                  temperature=0).choices[0].message.content
            stream = client.chat.completions.create(model=entry.name, messages=msgs, max_tokens=24, temperature=0,
                                                    stream=True)
            pieces = [ch.choices[0].delta.content or "" for ch in stream if ch.choices]
            assert "".join(pieces) == text, (entry.name, e.prompt)
            right += text == e.output
        assert right >= N - 1, (entry.name, right)


def test_auto_chat_routes_to_the_right_adapter(ci_zoo, demo):
    from openai import OpenAI

    url, _ = demo
    client = OpenAI(base_url=f"{url}/v1", api_key="anything")
    e = get_task("upper").examples(1, seed=5)[0]
    r = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": e.prompt}],
                                       max_tokens=24, temperature=0)
    assert r.choices[0].message.content == e.output
    assert list(r.model_extra["loom"]["adapters"]) == ["zoo/upper@1"]


def test_zoo_cached_with_the_old_tokenizer_is_upgraded_on_load(ci_zoo, tmp_path):
    import json

    from testbed.entries import Zoo
    from testbed.tokenizer import is_current

    copy = tmp_path / "zoo"
    shutil.copytree(ci_zoo.root, copy)
    for b in ci_zoo.bases:
        d = copy / b.dir.relative_to(ci_zoo.root)
        body = json.loads((d / "tokenizer.json").read_text())
        body["post_processor"] = None
        (d / "tokenizer.json").write_text(json.dumps(body))
        (d / "chat_template.jinja").unlink()
        assert not is_current(d)
    zoo = Zoo.load(copy)
    assert all(is_current(b.dir) for b in zoo.bases)


def test_chat_without_a_template_falls_back_to_role_lines():
    """A tokenizer with no chat template: "role: content" lines and "assistant:", encoded like a completion."""
    from hub.api.routes.openai import render_chat
    from testbed.tokenizer import build_tokenizer

    tok = build_tokenizer()
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert render_chat(tok, msgs) == ("<s>hello\n", True)
    tok.chat_template = None
    assert render_chat(tok, msgs) == ("system: be brief\nuser: hello\nassistant:", False)

