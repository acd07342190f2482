"""The OpenAI-compatible routes over a real uvicorn server, driven by the official ``openai`` client."""

from __future__ import annotations

import collections

import httpx
import openai
import pytest

from hub.services.inference import CompletionRequest
from tests.inference.conftest import BASE_ID


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="EMPTY", max_retries=0, timeout=120)


def test_openai_client_completions_chat_stream_models(client, server):
    r = client.completions.create(model="alice/math", prompt="Add 2 and 3", max_tokens=10, temperature=0)
    assert r.object == "text_completion" and r.model == "alice/math" and r.id.startswith("cmpl-")
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens >= 1 and r.usage.prompt_tokens == len(b"Add 2 and 3") + 1  # + BOS
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.model_extra["loom"]["adapters"] == {"alice/math@1": 1.0}
    svc = server[1].state.inference
    svc_text = svc.complete(None, CompletionRequest(
        model="alice/math", prompts=["Add 2 and 3"], max_tokens=10, temperature=0.0)).choices[0].text
    assert r.choices[0].text == svc_text

    # streaming gives the same text, piece by piece, the loom extension on the finish chunk; the usage chunk (no
    # choice) only with stream_options.include_usage, as OpenAI: the usual chunk.choices[0] loop works unchanged
    pieces, finish, loom = [], None, None
    for chunk in client.completions.create(model="alice/math", prompt="Add 2 and 3", max_tokens=10,
                                           temperature=0, stream=True):
        pieces.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
        loom = (chunk.model_extra or {}).get("loom") or loom
        assert chunk.usage is None
    assert "".join(pieces) == r.choices[0].text and len([p for p in pieces if p]) >= 1
    assert finish == r.choices[0].finish_reason and loom["adapters"] == {"alice/math@1": 1.0}
    chunks = list(client.completions.create(model="alice/math", prompt="Add 2 and 3", max_tokens=10, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert all(c.choices and c.usage is None for c in chunks[:-1])

    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    c = client.chat.completions.create(model=f"{BASE_ID}:bob/python", messages=msgs, max_tokens=8, temperature=0)
    assert c.object == "chat.completion" and c.choices[0].message.role == "assistant"
    # the testbed tokenizer's chat template: <s>, the user message and a newline (system dropped), as a completion
    want = client.completions.create(model="bob/python", prompt="hello\n", max_tokens=8, temperature=0)
    assert c.choices[0].message.content == want.choices[0].text
    streamed = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
        model=f"{BASE_ID}:bob/python", messages=msgs, max_tokens=8, temperature=0, stream=True))
    assert streamed == c.choices[0].message.content
    last = list(client.chat.completions.create(model=f"{BASE_ID}:bob/python", messages=msgs, max_tokens=8,
                                               temperature=0, stream=True, stream_options={"include_usage": True}))[-1]
    assert last.choices == [] and last.usage.total_tokens == c.usage.total_tokens

    models = {m.id: m for m in client.models.list()}
    assert {BASE_ID, "alice/math", "alice/french", "bob/python", "carol/other"} <= set(models)
    assert models["alice/math"].model_extra["parent"] == BASE_ID
    assert models["alice/math"].model_extra["root"] == "alice/math@1"
    assert models[BASE_ID].model_extra["parent"] is None
    # models.retrieve (GET /v1/models/{id}, the id may hold a slash) answers the listing's entry, or a 404
    assert client.models.retrieve("alice/math").model_extra["root"] == "alice/math@1"
    assert client.models.retrieve(BASE_ID).id == BASE_ID
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("nobody/unknown")
    assert "model 'nobody/unknown' does not exist; available: " in missing.value.message
    assert missing.value.body["details"]["model"] == "nobody/unknown"
    # retrieve looks the id up directly: an adapter past the listing's length (1000 on a real hub) is found too
    assert "alice/math" not in {m["id"] for m in svc.available(None, limit=1)}
    assert svc.model(None, "alice/math") == models["alice/math"].model_dump(exclude_unset=True) | {
        "loom": models["alice/math"].model_extra["loom"]}
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("alice/math@1")  # a version is not a model id of the listing

    mix = client.completions.create(model=BASE_ID, prompt="Add 2 and 3", max_tokens=6, temperature=0,
                                    extra_body={"merged_adapters": {"ids": ["alice/math", "bob/python"],
                                                                    "weights": [0.5, 0.5],
                                                                    "merge_strategy": "linear"}})
    assert mix.model_extra["loom"]["adapters"] == {"alice/math@1": 0.5, "bob/python@1": 0.5}
    auto = client.chat.completions.create(model="auto", max_tokens=4, temperature=0, messages=[
        {"role": "user", "content": "Translate into French: good morning, my friend."}])
    assert auto.model_extra["loom"]["route"] == "auto"
    assert list(auto.model_extra["loom"]["adapters"]) == ["alice/french@1"]


def test_sampling_and_n(client):
    r = client.completions.create(model="alice/math", prompt="Hi", max_tokens=5, temperature=1.0, n=3, seed=7)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert r.usage.prompt_tokens == 3  # BOS + "Hi": one prompt, counted once
    r2 = client.completions.create(model="alice/math", prompt="Hi", max_tokens=5, temperature=1.0, n=3, seed=7)
    assert [c.text for c in r2.choices] == [c.text for c in r.choices]  # seeded


def test_errors_map_to_openai_statuses(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="nobody/nothing", prompt="x", max_tokens=2)
    assert "alice/math" in e.value.message and e.value.body["code"] == "not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="alice/math", prompt="y" * 500, max_tokens=2)
    assert e.value.status_code == 400 and "context" in e.value.message
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.chat.completions.create(model=f"{BASE_ID}:carol/other", max_tokens=2,
                                       messages=[{"role": "user", "content": "x"}])
    assert "loom-test/other-llama" in e.value.message
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model=BASE_ID, prompt="x", max_tokens=2,
                                  extra_body={"merged_adapters": {"ids": ["alice/math"], "merge_strategy": "ties"}})
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model="alice/math", prompt="x", max_tokens=0)
    with pytest.raises(openai.UnprocessableEntityError) as e:  # asked for, and not done: refused, not ignored
        client.completions.create(model="alice/math", prompt="x", max_tokens=2, logprobs=2)
    assert "logprobs is not supported" in e.value.message
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.chat.completions.create(model="alice/math", max_tokens=2, messages=[{"role": "user", "content": "x"}],
                                       logprobs=True, top_logprobs=2)
    assert "logprobs is not supported" in e.value.message
    assert client.completions.create(model="alice/math", prompt="x", max_tokens=2, logprobs=None, echo=False).choices
    refused = [("tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
               ("response_format", {"type": "json_object"}), ("logit_bias", {"5": 100}), ("presence_penalty", 0.5),
               ("frequency_penalty", 1.0), ("tool_choice", "required")]
    for name, value in refused:  # each would change the answer: refused, not ignored
        with pytest.raises(openai.UnprocessableEntityError) as e:
            client.chat.completions.create(model="alice/math", max_tokens=2, messages=[{"role": "user", "content": "x"}],
                                           **{name: value})
        assert f"{name} is not supported" in e.value.message, name
    assert client.chat.completions.create(  # the no-op values are accepted
        model="alice/math", max_tokens=2, messages=[{"role": "user", "content": "x"}], tool_choice="none",
        response_format={"type": "text"}, presence_penalty=0, frequency_penalty=0, user="u1").choices
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model="alice/math", prompt="x", max_tokens=2, best_of=3)
    # streaming requests fail before the stream starts, with the same JSON error
    r = httpx.post(server[0] + "/v1/completions", json={"model": "nobody/x", "prompt": "x", "stream": True})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_operation_ids_unique(server):
    ops = [op.get("operationId") for path in server[1].openapi()["paths"].values() for op in path.values()]
    dup = [k for k, v in collections.Counter(ops).items() if v > 1]
    assert not dup and "openai_create_chat_completion" in ops


def test_private_adapters_need_their_owners_token(server, ihub, adapter_dirs):
    from hub.services.publish import PublishFiles

    d = adapter_dirs["alice/math"]
    alice, token = ihub.users.create_token("alice")
    ihub.publisher.publish(alice, "alice/secret", PublishFiles(config=(d / "adapter_config.json").read_bytes(),
                                                              weights=d / "adapter_model.safetensors"),
                          visibility="private")
    url = server[0] + "/v1"
    anon = openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        anon.completions.create(model="alice/secret", prompt="x", max_tokens=2)
    assert "alice/secret" not in e.value.message.split("available:")[1]  # not even listed
    assert "alice/secret" not in {m.id for m in anon.models.list()}
    with pytest.raises(openai.NotFoundError):
        anon.models.retrieve("alice/secret")
    for ref in ("alice/secret", "nobody/unknown"):  # in a mixture: the error names the adapter, not the base
        with pytest.raises(openai.NotFoundError) as e:
            anon.completions.create(model=BASE_ID, prompt="x", max_tokens=2,
                                    extra_body={"merged_adapters": {"ids": ["alice/math", ref]}})
        assert f"adapter {ref} does not exist or is not visible" in e.value.message
        assert e.value.body["details"]["field"] == "merged_adapters.ids"
    # a Loom token that is refused (revoked, mistyped) is served as anonymous, and a 404 says why; a foreign key not
    hint = "the Authorization token is not a valid Loom token (revoked or mistyped), so only public models are served"
    stale = openai.OpenAI(base_url=url, api_key=token[:-2] + "xx", max_retries=0)
    for call in (lambda: stale.completions.create(model="alice/secret", prompt="x", max_tokens=2),
                 lambda: stale.chat.completions.create(model="alice/secret", messages=[{"role": "user", "content": "x"}],
                                                       max_tokens=2, stream=True),
                 lambda: stale.models.retrieve("alice/secret")):
        with pytest.raises(openai.NotFoundError) as e:
            call()
        assert e.value.message.startswith("Error code: 404 - model 'alice/secret' does not exist") and hint in e.value.message
    assert stale.completions.create(model="alice/math", prompt="x", max_tokens=2).choices  # public: served
    with pytest.raises(openai.NotFoundError) as e:
        anon.completions.create(model="alice/secret", prompt="x", max_tokens=2)
    assert "Loom token" not in e.value.message
    owner = openai.OpenAI(base_url=url, api_key=token, max_retries=0)
    r = owner.completions.create(model="alice/secret", prompt="x", max_tokens=2, temperature=0)
    assert r.model_extra["loom"]["adapters"] == {"alice/secret@1": 1.0}
    assert "alice/secret" in {m.id for m in owner.models.list()}
    assert owner.models.retrieve("alice/secret").id == "alice/secret"
