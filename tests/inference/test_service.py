"""The inference service against PEFT (the oracle), model resolution, auto routing and batching."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from hub.core.errors import (
    IncompatibleAdaptersError,
    InvalidInputError,
    NotFoundError,
    UnsupportedFeatureError,
)
from hub.services.inference import CompletionRequest, ContextLengthError, MergedAdapters
from hub.services.inference.service import encode_prompt
from tests.inference.conftest import BASE_ID, OTHER_BASE_ID, peft_greedy, publish, stream_events

PROMPT = "The weather today is"


def greedy(service, model, prompt=PROMPT, n=12, **kw):
    res = service.complete(None, CompletionRequest(model=model, prompts=[prompt], max_tokens=n, temperature=0.0,
                                                   **kw))
    return res.choices[0]


def test_adapter_matches_peft_logits_and_greedy(service, base_dir, adapter_dirs):
    from tests.helpers import peft_logits

    c = greedy(service, "alice/math")
    assert c.route == "adapter" and c.adapters == {"alice/math@1": 1.0}
    lb = service.engine(BASE_ID)[0]
    ids = encode_prompt(lb.tokenizer, PROMPT)
    want = peft_greedy(base_dir, adapter_dirs["alice/math"], ids, 12)
    assert c.tokens == want and c.completion_tokens == len(want)
    assert lb.tokenizer.decode(want, skip_special_tokens=True) == c.text
    base_tokens = greedy(service, BASE_ID).tokens
    assert base_tokens == peft_greedy(base_dir, None, ids, 12)
    assert base_tokens != c.tokens  # the adapter changes the output
    # logits of the served model for the adapter row equal PEFT's
    x = torch.tensor([ids])
    with torch.no_grad():
        got = lb.mixed(x, adapters=["alice/math@1"]).logits
    from transformers import AutoModelForCausalLM

    ref = peft_logits(AutoModelForCausalLM.from_pretrained(str(base_dir)).eval(), adapter_dirs["alice/math"], x)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_model_forms(service, ihub, adapter_dirs):
    a = greedy(service, "alice/french")
    assert greedy(service, f"{BASE_ID}:alice/french").tokens == a.tokens
    assert greedy(service, "alice/french@1").adapters == {"alice/french@1": 1.0}
    # a second version: @1 keeps the old weights, the bare name follows the latest
    publish(ihub, adapter_dirs["alice/math"], "alice/french", "Translate English sentences into French.")
    assert greedy(service, "alice/french@1").tokens == a.tokens
    latest = greedy(service, "alice/french")
    assert latest.adapters == {"alice/french@2": 1.0}
    assert latest.tokens == greedy(service, "alice/math").tokens != a.tokens
    with pytest.raises(NotFoundError, match="no version 7"):
        greedy(service, "alice/french@7")


def test_mixture_is_linear_in_weights(service):
    lb = service.engine(BASE_ID)[0]
    plan = service.resolve(None, BASE_ID, MergedAdapters.parse({"ids": ["alice/math", "bob/python"],
                                                                 "weights": [0.7, 0.3]}))
    assert plan.route == "mixture" and plan.mixture == {"alice/math@1": 0.7, "bob/python@1": 0.3}
    c = greedy(service, BASE_ID, merged=MergedAdapters.parse({"ids": ["alice/math", "bob/python"],
                                                              "weights": [0.7, 0.3]}))
    assert c.adapters == {"alice/math@1": 0.7, "bob/python@1": 0.3}
    # the mixture's delta is 0.7 * delta(math) + 0.3 * delta(python)
    x = torch.tensor([encode_prompt(lb.tokenizer, PROMPT)])
    with torch.no_grad():
        mix = lb.mixed(x, adapters=[c.adapters]).logits
        base = lb.mixed(x, adapters=[None]).logits
    assert not torch.allclose(mix, base, atol=1e-4)
    # one-hot mixture == the single adapter
    one = greedy(service, BASE_ID, merged=MergedAdapters.parse({"ids": ["alice/math"], "weights": [1.0]}))
    assert one.tokens == greedy(service, "alice/math").tokens
    with pytest.raises(UnsupportedFeatureError, match="ties"):
        MergedAdapters.parse({"ids": ["alice/math"], "merge_strategy": "ties"})
    with pytest.raises(InvalidInputError, match="weights"):
        MergedAdapters.parse({"ids": ["alice/math", "bob/python"], "weights": [1.0]})


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_auto_picks_matching_adapter_or_falls_back(service):
    c = greedy(service, "auto", prompt="Translate this English sentence into French: the cat is black.")
    assert c.route == "auto" and list(c.adapters) == ["alice/french@1"], c.scores
    c2 = greedy(service, f"{BASE_ID}:auto", prompt="Write a Python function with a loop that sums a list.")
    assert list(c2.adapters) == ["bob/python@1"], c2.scores
    c3 = greedy(service, "auto", prompt="zebras graze quietly")
    assert c3.adapters == {} and c3.route == "auto", c3.scores
    assert max(c3.scores.values()) < 0.3
    assert "carol/other" not in c.scores  # only adapters of the base are candidates
    assert c3.tokens == greedy(service, BASE_ID, prompt="zebras graze quietly").tokens


def _concurrently(service, models):
    out: dict[str, object] = {}
    barrier = threading.Barrier(len(models))

    def call(m):
        barrier.wait()
        out[m] = greedy(service, m, prompt=f"{m} says hi")

    threads = [threading.Thread(target=call, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_requests_share_one_forward(service):
    """Continuous batching: four requests arriving together run in the same decode forwards."""
    models = ["alice/french", "alice/math", "bob/python", BASE_ID]
    single = {m: greedy(service, m, prompt=f"{m} says hi") for m in models}
    _, _, batcher = service.engine(BASE_ID)
    before, steps = batcher.generate_calls, len(batcher.batch_sizes)
    out = _concurrently(service, models)
    assert max(batcher.batch_sizes[steps:]) == 4  # the four rows shared decode steps
    assert batcher.generate_calls - before < 2 * 12 + 4  # far fewer forwards than 4 x 12 one by one
    for m in models:
        assert out[m].tokens == single[m].tokens
    assert len({tuple(o.tokens) for o in out.values()}) == 4  # four different outputs


def test_window_scheduler_runs_one_generate(ihub):
    """LOOM_SCHEDULER=window keeps the earlier batcher: one generate for requests of one window."""
    from hub.services.inference import InferenceService
    from hub.services.inference.batcher import Batcher

    settings = ihub.settings.model_copy(update={"scheduler": "window"})
    svc = InferenceService(settings, ihub.adapters, ihub.base_models, ihub.search, ihub.metrics, "cpu")
    try:
        models = ["alice/french", "alice/math", "bob/python", BASE_ID]
        single = {m: greedy(svc, m, prompt=f"{m} says hi") for m in models}
        _, _, batcher = svc.engine(BASE_ID)
        assert isinstance(batcher, Batcher)
        before, work = batcher.generate_calls, (batcher.tokens_computed, batcher.tokens_useful)
        batcher.window_s = 2.0  # wait for all four
        out = _concurrently(svc, models)
        assert batcher.generate_calls == before + 1  # one generate served the four requests
        assert batcher.batch_sizes[-1] == 4
        computed, useful = batcher.tokens_computed - work[0], batcher.tokens_useful - work[1]
        tok = svc.tokenizer(BASE_ID)  # needed: each prompt, then each generated token (an eos included) but the last
        assert useful == sum(len(encode_prompt(tok, f"{m} says hi")) + len(out[m].tokens)
                             - (out[m].finish_reason == "length") for m in models)
        assert computed % 4 == 0 and computed > useful  # four rows padded to the longest prompt and output
        for m in models:
            assert out[m].tokens == single[m].tokens and out[m].batch_size == 4
    finally:
        svc.close()


def test_bad_input(service):
    with pytest.raises(NotFoundError) as e:
        greedy(service, "nobody/nothing")
    assert "alice/math" in str(e.value) and BASE_ID in str(e.value)
    assert BASE_ID in e.value.details["available"]
    with pytest.raises(NotFoundError):
        greedy(service, "not a model")
    with pytest.raises(IncompatibleAdaptersError, match="not 'loom-test/infer-llama'"):
        greedy(service, f"{BASE_ID}:carol/other")
    with pytest.raises(IncompatibleAdaptersError):
        greedy(service, BASE_ID, merged=MergedAdapters.parse({"ids": ["alice/math", "carol/other"]}))
    with pytest.raises(ContextLengthError) as e:
        greedy(service, "alice/math", prompt="x" * 200)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(ContextLengthError):
        greedy(service, "alice/math", prompt="x" * 90, n=10)
    with pytest.raises(InvalidInputError, match="merged_adapters"):
        greedy(service, "alice/math", merged=MergedAdapters.parse({"ids": ["bob/python"]}))
    assert service.engine(BASE_ID)[2].generate_calls == 0  # nothing reached the model


def test_adapter_of_other_base_runs_on_its_base(service):
    c = greedy(service, "carol/other")
    assert c.adapters == {"carol/other@1": 1.0}
    assert set(service.stats()["bases"]) == {OTHER_BASE_ID}


def test_cache_tiers(service, ihub):
    from hub.services.inference.cache import GpuTier

    greedy(service, "alice/math")
    greedy(service, "alice/math")
    assert service.cpu.misses == 1 and service.cpu.hits >= 1
    assert service.stats()["cold_load_seconds"]["alice/math@1"] > 0
    lb, gpu, _ = service.engine(BASE_ID)
    tier = GpuTier(lb.mixed, 1)
    ma = service.resolver.adapter(None, "alice/math", None, "x")
    assert ma[1] is service.resolver.adapter(None, "alice/math@1", None, "x")[1]  # a host-tier hit: same object
    ads = {ma[0]: ma[1]}
    tier.pin("alice/math@1")
    fr = service.resolver.adapter(None, "alice/french", None, "x")
    tier.ensure(ads)
    tier.ensure({fr[0]: fr[1]})
    py = service.resolver.adapter(None, "bob/python", None, "x")
    tier.ensure({py[0]: py[1]})
    assert tier.resident() == ["alice/math@1", "bob/python@1"]  # pinned kept, LRU french evicted
    assert "alice/french@1" not in lb.mixed.slots


def test_deleted_and_republished_name_is_not_served_stale(service, ihub, adapter_dirs):
    before = greedy(service, "bob/python")
    ihub.adapters.delete(ihub.users.ensure_user("bob"), "bob", "python")
    with pytest.raises(NotFoundError):
        greedy(service, "bob/python")
    publish(ihub, adapter_dirs["alice/math"], "bob/python", "now the math weights")
    after = greedy(service, "bob/python")
    assert after.adapters == {"bob/python@1": 1.0}  # same key as before ...
    assert after.tokens == greedy(service, "alice/math").tokens != before.tokens  # ... but the new weights


def test_tokens_stream_while_the_batch_generates(service, ihub):
    import queue

    from prometheus_client import generate_latest

    from hub.services.inference.batcher import Job

    lb, _, batcher = service.engine(BASE_ID)
    ids = encode_prompt(lb.tokenizer, PROMPT)
    at_first: list[tuple[int, str]] = []

    class Recording(queue.Queue):
        """Records, in the scheduler's thread as it hands out the first token, the forwards run so far and a
        scrape (checked after: a check in the test's thread races with the steps that follow)."""

        def put(self, item, block=True, timeout=None):
            if item is not None and not at_first:
                at_first.append((batcher.generate_calls, generate_latest(ihub.metrics.registry).decode()))
            super().put(item, block, timeout)

    q: queue.Queue = Recording()
    ad = service.resolver.adapter(None, "alice/math", None, "x")
    fut = batcher.submit(Job(ids, {ad[0]: 1.0}, {ad[0]: ad[1]}, 60, tokens=q))
    first = q.get(timeout=60)
    calls, scrape = at_first[0]
    assert calls < 5  # the first token came out mid-generation (the 60 tokens take 60 forwards)
    assert 'running_lora_adapters="alice/math@1"' in scrape
    got = [first]
    while (t := q.get(timeout=60)) is not None:
        got.append(t)
    assert got == fut.result().tokens == greedy(service, "alice/math", n=60).tokens


def test_stream_pieces_join_to_the_completion(service):
    from hub.services.inference.messages import IncrementalText

    req = dict(model="bob/python", prompts=["def f(x):"], max_tokens=20, temperature=0.0)
    events = stream_events(service, CompletionRequest(**req))
    res = events[-1]
    assert "".join(p for _, p in events[:-1]) == res.choices[0].text == service.complete(
        None, CompletionRequest(**req)).choices[0].text
    # text is sent only once final: partial UTF-8 and a possible stop sequence are held back
    tok = service.engine(BASE_ID)[0].tokenizer
    dec = IncrementalText(tok, ["wor"])
    pieces = [dec.add(t) for t in tok("hello world")["input_ids"]]
    assert "".join(pieces) == "hello " and dec.stopped and pieces[-1] == ""
    dec = IncrementalText(tok, [])
    euro = tok("€", add_special_tokens=False)["input_ids"]  # three bytes, three tokens
    assert [dec.add(t) for t in euro] == ["", "", "€"]
    with pytest.raises(NotFoundError):
        asyncio.run(service.astream(None, CompletionRequest(model="nobody/nothing", prompts=["x"])))  # when awaited


def test_adapter_whose_base_is_not_registered_says_so(service, ihub, adapter_dirs, tmp_path):
    from tests.helpers import make_peft_adapter, pico_llama

    folder = make_peft_adapter(pico_llama(), tmp_path / "orphan", seed=3, base_id="loom-test/unregistered-base")
    publish(ihub, folder, "dave/orphan", "an adapter for a base nobody registered")
    with pytest.raises(NotFoundError, match="base model loom-test/unregistered-base, which is not registered"):
        greedy(service, "dave/orphan")
