"""Continuous serving: stop strings, ignore_eos, admission (429), request limits (413/401), disconnects, vLLM metrics.

Real uvicorn servers and real httpx clients; where a test needs generation to take a while (to leave in the
middle of it) a forward hook on the real model waits a few milliseconds per forward.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from hub.core.errors import PayloadTooLargeError, TooManyRequestsError
from hub.services.inference import CompletionRequest
from hub.services.inference.admission import Pace, slot_wait
from tests.helpers import OneThreadPool, serve_in_thread
from tests.inference.conftest import BASE_ID, peft_greedy


def greedy(service, model, prompt, n, **kw):
    return service.complete(None, CompletionRequest(model=model, prompts=[prompt], max_tokens=n, temperature=0.0,
                                                    **kw)).choices[0]


def wait_idle(batcher, timeout=10.0):
    deadline = time.monotonic() + timeout
    while (batcher.num_running or batcher.num_waiting) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not (batcher.num_running or batcher.num_waiting)


def long_request(service, batcher, model):
    """A greedy 60-token request in a thread; returns (thread, answers) once its row runs."""
    done: list[object] = []
    running = threading.Thread(target=lambda: done.append(greedy(service, model, "long one", 60)))
    running.start()
    deadline = time.monotonic() + 10
    while batcher.num_running == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    return running, done


def test_stop_string_ends_the_row_early(service):
    full = greedy(service, BASE_ID, "leave early", 60)  # "@|@|...@|g|g|..." (ASCII)
    assert full.completion_tokens == 60 and full.finish_reason == "length"
    stop = "g|"
    assert full.text.find(stop) >= 10
    cut = greedy(service, BASE_ID, "leave early", 60, stop=[stop])
    assert cut.text == full.text[: full.text.find(stop)] and cut.finish_reason == "stop"
    # the row left the batch when the stop string appeared: it did not generate the other ~40 tokens
    assert cut.completion_tokens <= len(full.text[: full.text.find(stop) + len(stop)].encode()) + 1


def test_queue_bound_answers_429_and_admits_all_rows_or_none(service, ihub):
    svc = service
    ihub.settings.inference_max_batch = 1  # read when the engine is built: set before the first request
    svc.engine(BASE_ID).base.mixed.model.register_forward_pre_hook(lambda *a: time.sleep(0.015))  # ~1 s per 60
    batcher = svc.engine(BASE_ID).batcher
    batcher.admission.max_queued = 1
    running, done = long_request(svc, batcher, "alice/math")
    deadline = time.monotonic() + 10
    queued = threading.Thread(target=lambda: done.append(greedy(svc, "bob/python", "queued one", 4)))
    queued.start()
    while batcher.num_waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(TooManyRequestsError) as e:
        greedy(svc, BASE_ID, "third", 4)
    assert e.value.details["retry_after"] >= 1 and "LOOM_INFERENCE_MAX_QUEUED" in e.value.message
    assert batcher.num_waiting == 1  # nothing of the refused request was queued
    running.join()
    queued.join()
    assert len(done) == 2  # the admitted requests were served, nothing was dropped
    with pytest.raises(TooManyRequestsError):  # two rows do not fit one free slot + a queue of 0
        batcher.admission.max_queued = 0
        svc.complete(None, CompletionRequest(model=BASE_ID, prompts=["a", "b"], max_tokens=2, temperature=0.0))
    assert wait_idle(batcher)


def test_a_server_at_its_bound_turns_a_known_model_away_before_resolving_it(service, ihub):
    svc = service
    ihub.settings.inference_max_batch = 1  # read when the engine is built: set before the first request
    assert greedy(svc, "alice/math", "first", 2).completion_tokens == 2  # served: alice/math runs on BASE_ID
    sched = svc.engine(BASE_ID).batcher
    sched.admission.max_queued = 0
    svc.engine(BASE_ID).base.mixed.model.register_forward_pre_hook(lambda *a: time.sleep(0.015))
    resolved: list[str] = []
    resolve = svc.resolver.resolve
    svc.resolver.resolve = lambda viewer, model, *a, **kw: resolved.append(model) or resolve(viewer, model, *a, **kw)
    running, done = long_request(svc, sched, "bob/python")
    resolved.clear()
    refused = sched.admission.refused
    with pytest.raises(TooManyRequestsError, match="LOOM_INFERENCE_MAX_QUEUED"):
        greedy(svc, "alice/math", "second", 2)
    assert resolved == []  # turned away before the registry was read
    with pytest.raises(TooManyRequestsError):  # a model this viewer has not asked for yet: resolved, then refused
        greedy(svc, "alice/french", "second", 2)
    assert resolved == ["alice/french"]
    alice = ihub.users.ensure_user("alice")  # another viewer: what a name means depends on who asks
    with pytest.raises(TooManyRequestsError):
        svc.complete(alice, CompletionRequest(model="alice/math", prompts=["x"], max_tokens=2, temperature=0.0))
    assert resolved == ["alice/french", "alice/math"]
    assert sched.admission.refused == refused + 3 and sched.num_waiting == 0  # nothing of them was queued
    running.join()
    assert done[0].completion_tokens == 60 and wait_idle(sched)
    assert greedy(svc, "alice/math", "third", 2).completion_tokens == 2  # a free slot: the precheck admits it


def test_slot_wait_hands_slots_out_in_queue_order():
    assert slot_wait([], 2, [], [5]) == 0  # a free slot: no wait
    assert slot_wait([10, 3], 1, [], [5]) == 0
    assert slot_wait([10, 3], 0, [], [5]) == 3  # the first row to finish frees the slot
    assert slot_wait([10, 3], 0, [4], [5]) == 7  # the queued row takes that slot and frees it 4 steps later
    assert slot_wait([10, 3], 0, [9], [5]) == 10
    assert slot_wait([10, 3], 0, [], [5, 5]) == 8  # its last row starts when its first one (3 + 5) has left
    assert slot_wait([10, 3], 0, [1, 1, 1], [2]) == 6
    assert slot_wait([0, 7], 0, [], [1]) == 0  # a row on its last step


def test_pace_estimates_the_wait_for_a_first_token_from_measured_costs():
    pace = Pace()
    assert pace.wait(3, 100) is None  # nothing measured: nothing is refused
    pace.stepped(0.010)
    pace.prefilled(0.020, 40)  # 0.5 ms per prompt token
    assert pace.wait(0, 40) == pytest.approx(0.010 + 0.020)  # the step under way, then its own prefill
    assert pace.wait(3, 100) == pytest.approx(4 * 0.010 + 100 * 0.0005)
    pace.stepped(0.060)  # a moving average: the newest step weighs 0.2
    assert pace.step_s == pytest.approx(0.020)
    pace.prefilled(1.0, 0)  # no prompt tokens: nothing learned
    assert pace.prefill_token_s == pytest.approx(0.0005)


def test_queue_wait_bound_refuses_a_request_that_would_wait_too_long(server, ihub):
    url, app = server
    ihub.settings.inference_max_batch = 1  # read when the engine is built: set before the first request
    ihub.settings.inference_max_queue_wait = 0.3
    first = httpx.post(url + "/v1/completions", json={"model": BASE_ID, "prompt": "warm", "max_tokens": 4,
                                                             "ignore_eos": True}, timeout=60)
    assert first.json()["usage"]["completion_tokens"] == 4  # nothing is refused before the loop's costs were measured
    svc, sched = slow_engine(app)  # ~15 ms per forward from now on
    assert sched.admission.max_wait == 0.3 and sched.pace.step_s > 0 and sched.pace.prefill_token_s > 0
    done: list[httpx.Response] = []
    long_one = {"model": "alice/math", "prompt": "long one", "max_tokens": 80, "ignore_eos": True}
    running = threading.Thread(target=lambda: done.append(httpx.post(url + "/v1/completions", json=long_one,
                                                                      timeout=60)))
    running.start()
    deadline = time.monotonic() + 10
    while sched.pace.step_s < 0.01 and time.monotonic() < deadline:
        time.sleep(0.005)
    # the one slot frees in >= ~40 steps of >= 10 ms: a new request would wait > 0.3 s, so it is refused at once
    r = httpx.post(url + "/v1/completions", json={"model": BASE_ID, "prompt": "next", "max_tokens": 2}, timeout=60)
    assert r.status_code == 429, r.text
    assert "LOOM_INFERENCE_MAX_QUEUE_WAIT" in r.json()["error"]["message"]
    assert int(r.headers["retry-after"]) >= 1
    assert sched.num_waiting == 0 and sched.num_running == 1  # nothing of it was queued
    running.join()
    assert done[0].status_code == 200 and done[0].json()["usage"]["completion_tokens"] == 80
    assert wait_idle(sched)
    again = httpx.post(url + "/v1/completions", json={"model": BASE_ID, "prompt": "next", "max_tokens": 2,
                                                       "ignore_eos": True}, timeout=60)
    assert again.json()["usage"]["completion_tokens"] == 2  # a free slot: no wait
    assert over_wait_bound(app) == 0  # every admitted row's first token came within the bound
    model = svc.engine(BASE_ID).base.mixed.model
    slower = model.register_forward_pre_hook(lambda *a: time.sleep(0.4))  # slower than the costs measured so far
    try:
        late = httpx.post(url + "/v1/completions", json={"model": BASE_ID, "prompt": "late", "max_tokens": 1,
                                                          "ignore_eos": True}, timeout=60)
    finally:
        slower.remove()
    # admitted on the old costs; its first token came after 0.4 s: the miss is counted
    assert late.json()["usage"]["completion_tokens"] == 1
    assert over_wait_bound(app) == 1
    with pytest.raises(TooManyRequestsError) as e:  # the estimate, straight from the admission check
        sched.admission.check_wait(1.2)
    assert e.value.details["expected_wait_s"] == 1.2 and e.value.details["retry_after"] == 2
    sched.admission.check_wait(0.2)  # admitted
    sched.admission.check_wait(None)  # not measured yet: admitted
    assert wait_idle(sched)
    sched.pace.prefill_token_s = 1.0  # costs measured in a bad moment: a 4-token prompt "would wait" 4 s ...
    idle = httpx.post(url + "/v1/completions", json={"model": BASE_ID, "prompt": "idle", "max_tokens": 2,
                                                     "ignore_eos": True}, timeout=60)
    assert idle.json()["usage"]["completion_tokens"] == 2, idle.text  # ... but nothing runs: an idle server serves it
    assert sched.pace.prefill_token_s < 1.0  # and its prefill brought the estimate back down


def test_rows_per_request_limit_before_any_work(service, ihub):
    ihub.settings.inference_max_rows_per_request = 8
    with pytest.raises(PayloadTooLargeError, match="LOOM_INFERENCE_MAX_ROWS_PER_REQUEST") as e:
        service.complete(None, CompletionRequest(model="alice/math", prompts=["a", "b", "c"], n=3, max_tokens=2))
    assert e.value.details["limit"] == 8
    assert service.engines.loaded() == {}  # refused before the base was even loaded


def slow_engine(app, ms=15):
    svc = app.state.inference
    model = svc.engine(BASE_ID).base.mixed.model
    model.register_forward_pre_hook(lambda *a: time.sleep(ms / 1000))
    return svc, svc.engine(BASE_ID).batcher


def test_json_body_limit_refuses_before_parsing(server, ihub):
    ihub.settings.max_json_bytes = 4096  # read when the app is built
    from hub.api import create_app

    app = create_app(hub=ihub, warm_index=False)
    with serve_in_thread(app) as url:
        r = httpx.post(url + "/v1/completions", json={"model": "alice/math", "prompt": "x" * 10_000})
        assert r.status_code == 413 and "LOOM_MAX_JSON_BYTES" in r.json()["error"]["message"]
        chunked = httpx.post(url + "/v1/completions", content=iter([b'{"model": "a", "prompt": "', b"y" * 8000]),
                             headers={"content-type": "application/json"})
        assert chunked.status_code == 413  # no Content-Length: counted as it streams in
        ok = httpx.post(url + "/v1/completions", json={"model": "alice/math", "prompt": "x", "max_tokens": 2},
                        timeout=60)
        assert ok.status_code == 200
    assert getattr(app.state, "inference", None) is not None
    app.state.inference.close()
    documented = app.openapi()["paths"]["/v1/completions"]["post"]["responses"]
    assert {"400", "401", "413", "429"} <= set(documented)


def test_anonymous_inference_off_and_per_caller_limit(server, ihub):
    url, app = server
    body = {"model": "alice/math", "prompt": "x", "max_tokens": 2, "temperature": 0}
    assert httpx.post(url + "/v1/completions", json=body, timeout=60).status_code == 200
    ihub.settings.anonymous_inference = False
    r = httpx.post(url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 401 and "LOOM_ANONYMOUS_INFERENCE" in r.json()["error"]["message"]
    _, token = ihub.users.create_token("alice")
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.post(url + "/v1/completions", json=body, headers=auth, timeout=60).status_code == 200
    # one request in flight per caller: a second concurrent one answers 429 with Retry-After
    svc, batcher = slow_engine(app)
    svc.user_limits.limit = 1
    long = {**body, "model": BASE_ID, "prompt": "leave early", "max_tokens": 60, "stream": True}  # ASCII pieces
    with httpx.Client(timeout=60) as c, c.stream("POST", url + "/v1/completions", json=long, headers=auth) as s:
        assert s.status_code == 200
        lines = s.iter_lines()  # kept: a dropped line iterator closes the response (a disconnect)
        assert next(lines).startswith("data: ")
        second = httpx.post(url + "/v1/completions", json=body, headers=auth, timeout=60)
        assert second.status_code == 429 and second.headers["retry-after"] == "1"
        assert second.json()["error"]["code"] == "too_many_requests"
    assert wait_idle(batcher)
    assert httpx.post(url + "/v1/completions", json=body, headers=auth, timeout=60).status_code == 200


def counter(app, sample: str) -> float:
    """A counter sample's value in the hub's /metrics (0 before its first increment)."""
    from prometheus_client import generate_latest

    return _counter(generate_latest(app.state.hub.metrics.registry).decode(), sample)


def over_wait_bound(app) -> float:
    return counter(app, f'loom_inference_first_token_over_wait_bound_total{{model_name="{BASE_ID}"}}')


def cancelled(app):
    return counter(app, f'loom_inference_cancelled_requests_total{{model_name="{BASE_ID}"}}')


def test_disconnected_clients_free_their_rows(server):
    url, app = server
    warm = httpx.post(url + "/v1/completions", json={"model": "alice/math", "prompt": "x", "max_tokens": 2},
                      timeout=60)
    assert warm.status_code == 200
    svc, batcher = slow_engine(app)
    body = {"model": BASE_ID, "prompt": "leave early", "max_tokens": 60, "temperature": 0}  # one piece a token
    # a stream dropped after its first chunks
    calls = batcher.generate_calls
    with httpx.Client(timeout=60) as c, c.stream("POST", url + "/v1/completions", json={**body, "stream": True}) as s:
        lines = s.iter_lines()
        for _ in range(3):
            next(lines)
    t0 = time.monotonic()
    assert wait_idle(batcher) and time.monotonic() - t0 < 0.5  # freed within a few steps, not 60
    assert batcher.generate_calls - calls < 20
    assert cancelled(app) == 1
    # a plain request whose client gives up (read timeout) stops too
    calls = batcher.generate_calls
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/completions", json=body, timeout=0.2)
    deadline = time.monotonic() + 10  # on a busy machine the request may not have reached the batcher yet
    while cancelled(app) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cancelled(app) == 2 and wait_idle(batcher)
    assert batcher.generate_calls - calls < 30  # a few steps, not its 60 tokens


def _counter(text: str, sample: str) -> float:
    """A sample's value in a scrape, 0 before it exists (a base not loaded yet)."""
    return float(next((line.split()[-1] for line in text.splitlines() if line.startswith(sample + " ")), 0.0))


def test_vllm_metrics(server):
    url, app = server
    tokens = (f'loom_inference_forward_tokens_total{{base="{BASE_ID}"}}',
              f'loom_inference_needed_tokens_total{{base="{BASE_ID}"}}')
    before = httpx.get(url + "/metrics").text
    r = httpx.post(url + "/v1/completions", json={"model": "alice/math", "prompt": "metrics", "max_tokens": 5,
                                                  "temperature": 0}, timeout=60)
    assert r.status_code == 200
    text = httpx.get(url + "/metrics").text
    usage, finish = r.json()["usage"], r.json()["choices"][0]["finish_reason"]
    need = usage["prompt_tokens"] + usage["completion_tokens"] - (finish == "length")  # an eos needs its forward
    ran, needed = (_counter(text, m) - _counter(before, m) for m in tokens)
    assert ran == needed == need  # one row alone: no padding, no holes
    for name in ("vllm:time_to_first_token_seconds_count", "vllm:time_per_output_token_seconds_count",
                 "vllm:e2e_request_latency_seconds_count"):
        assert f'{name}{{model_name="{BASE_ID}"}} 1.0' in text, name
    assert f'vllm:num_requests_running{{model_name="{BASE_ID}"}} 0.0' in text
    assert f'vllm:num_requests_waiting{{model_name="{BASE_ID}"}} 0.0' in text
    assert f'loom_inference_adapter_requests_total{{adapter="alice/math@1",model_name="{BASE_ID}"}} 1.0' in text


def test_a_failed_step_fails_its_rows_and_the_scheduler_goes_on(service):
    before = greedy(service, BASE_ID, "leave early", 6)
    model = service.engine(BASE_ID).base.mixed.model
    calls: list[int] = []

    def boom(*a):
        calls.append(1)
        if len(calls) == 1:  # the prefill of the joining row
            raise RuntimeError("device lost")

    hook = model.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="device lost"):
            greedy(service, BASE_ID, "fail me", 20)
    finally:
        hook.remove()
    batcher = service.engine(BASE_ID).batcher
    assert batcher.num_running == 0 and batcher.num_waiting == 0
    assert greedy(service, BASE_ID, "leave early", 6).tokens == before.tokens


def test_a_sliding_window_base_is_served_by_the_window_batcher(ihub, service, tmp_path):
    """Gemma 3 mixes sliding-window and full-attention layers, which the continuous batch's padded cache does not
    handle: its base is served by the window batcher, with transformers' greedy tokens, adapter rows included."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    from hub.services.inference.batcher import Batcher
    from hub.services.inference.scheduler import Scheduler
    from testbed.tokenizer import save_tokenizer
    from tests.helpers import make_peft_adapter
    from tests.inference.conftest import publish

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=8,
                           layer_types=["sliding_attention", "full_attention"], max_position_embeddings=256,
                           bos_token_id=257, eos_token_id=258, pad_token_id=256)
    folder = tmp_path / "gemma"
    Gemma3ForCausalLM(cfg).eval().save_pretrained(str(folder))
    save_tokenizer(folder)
    ihub.base_models.register("loom-test/gemma3", (folder / "config.json").read_bytes(), weights=str(folder))
    ad = make_peft_adapter(AutoModelForCausalLM.from_pretrained(str(folder)), tmp_path / "g-ad", seed=3,
                           targets=("q_proj", "v_proj", "down_proj"), base_id="loom-test/gemma3")
    publish(ihub, ad, "alice/gemma-ad")
    prompt = "a prompt longer than the sliding window of eight"
    ids = torch.tensor([service.engine("loom-test/gemma3").base.tokenizer(prompt)["input_ids"]])
    for model, folder_ad in (("loom-test/gemma3", None), ("alice/gemma-ad", ad)):
        ref = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        if folder_ad is not None:
            ref = PeftModel.from_pretrained(ref, str(folder_ad)).eval()
        with torch.no_grad():
            out = ref.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                               eos_token_id=258, pad_token_id=256)
        new = out[0, ids.shape[1]:].tolist()
        want = new[: new.index(258)] if 258 in new else new
        got = greedy(service, model, prompt, 12)
        assert got.text == service.engine("loom-test/gemma3").base.tokenizer.decode(want, skip_special_tokens=True)
    assert isinstance(service.engine("loom-test/gemma3").batcher, Batcher)
    assert isinstance(service.engine(BASE_ID).batcher, Scheduler)


@pytest.mark.parametrize("scheduler", ["continuous", "window"])
def test_ignore_eos_runs_each_row_to_max_tokens(ihub, base_dir, scheduler):
    """``ignore_eos`` (vLLM's extension): the row keeps going past the eos token, which stays in its tokens and
    not in its text, with transformers' greedy tokens; a row beside it without the flag still stops at eos."""
    from hub.services.inference import InferenceService
    from hub.services.inference.service import encode_prompt

    settings = ihub.settings.model_copy(update={"scheduler": scheduler})
    svc = InferenceService(settings, ihub.adapters, ihub.base_models, ihub.search, ihub.metrics, "cpu")
    try:
        tok = svc.tokenizer(BASE_ID)
        ids = encode_prompt(tok, "a b c")  # the tiny base answers eos (258) after 4 tokens
        free = peft_greedy(base_dir, None, ids, 24, stop_at_eos=False)  # transformers, no eos
        assert 258 in free[:8]
        out: dict[bool, object] = {}

        def run(flag: bool) -> None:
            out[flag] = greedy(svc, BASE_ID, "a b c", 24, ignore_eos=flag)

        threads = [threading.Thread(target=run, args=(f,)) for f in (True, False)]  # the two share the engine
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        full, cut = out[True], out[False]
        assert full.tokens == free and full.completion_tokens == 24 and full.finish_reason == "length"
        assert full.text == tok.decode(free, skip_special_tokens=True)
        assert cut.tokens == free[: free.index(258)] and cut.finish_reason == "stop"
    finally:
        svc.close()


def test_ignore_eos_over_http_and_streamed(server):
    url, _ = server
    body = {"model": BASE_ID, "prompt": "a b c", "max_tokens": 20, "temperature": 0}
    plain = httpx.post(url + "/v1/completions", json=body, timeout=60).json()
    assert plain["choices"][0]["finish_reason"] == "stop" and plain["usage"]["completion_tokens"] < 20
    full = httpx.post(url + "/v1/completions", json={**body, "ignore_eos": True}, timeout=60).json()
    assert full["choices"][0]["finish_reason"] == "length" and full["usage"]["completion_tokens"] == 20
    assert full["choices"][0]["text"].startswith(plain["choices"][0]["text"])
    pieces = []
    with httpx.Client(timeout=60) as c, c.stream("POST", url + "/v1/completions",
                                                 json={**body, "ignore_eos": True, "stream": True}) as s:
        for line in s.iter_lines():
            if line.startswith("data: {"):
                pieces.extend(json.loads(line[6:])["choices"])  # the last event: usage, no choice
    assert "".join(p["text"] for p in pieces) == full["choices"][0]["text"]
    assert pieces[-1]["finish_reason"] == "length"
    bad = httpx.post(url + "/v1/completions", json={**body, "ignore_eos": "maybe"}, timeout=60)
    assert bad.status_code == 422 and "ignore_eos" in bad.text


@pytest.mark.parametrize("freeze", [True, False])
def test_a_loaded_base_is_frozen_out_of_the_cyclic_collector(ihub, freeze):
    """``LOOM_INFERENCE_GC_FREEZE``: once a base is loaded its model (and everything else alive then) is in
    Python's permanent generation, which full collections do not walk; closing the service unfreezes it."""
    import gc

    from hub.services.inference import InferenceService

    def tracked(obj) -> bool:  # gc.get_objects() lists the three generations, not the permanent one
        return any(o is obj for o in gc.get_objects())

    settings = ihub.settings.model_copy(update={"inference_gc_freeze": freeze})
    svc = InferenceService(settings, ihub.adapters, ihub.base_models, ihub.search, ihub.metrics, "cpu")
    try:
        model = svc.engine(BASE_ID).base.mixed.model
        assert tracked(model) is not freeze
        assert greedy(svc, "alice/math", "still served", 4).completion_tokens == 4
    finally:
        svc.close()
    assert tracked(model)
    assert gc.get_freeze_count() == 0 or not freeze


def test_inference_threads_resolve_from_the_setting_the_cpus_and_omp_num_threads(monkeypatch):
    """``LOOM_INFERENCE_THREADS``: a positive value as is; auto (0) is the CPUs less one, at least one, and leaves
    torch's own count when ``OMP_NUM_THREADS`` is set (an operator's or Ray's per-replica choice)."""
    import os

    import pydantic

    from hub.services.inference.engines import inference_threads
    from hub.settings import Settings

    assert inference_threads(3) == 3
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert inference_threads(0) == max(1, len(os.sched_getaffinity(0)) - 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert inference_threads(0) is None
    with pytest.raises(pydantic.ValidationError, match="inference_threads"):
        Settings(inference_threads=-1)


def test_serving_sets_torch_threads_at_the_first_load_and_close_puts_them_back(ihub):
    """The engine sets torch's intra-op threads before it loads a base, serves with them, and closing the
    service restores the count it found."""
    import torch

    from hub.services.inference import InferenceService

    before = torch.get_num_threads()
    want = 3 if before != 3 else 2
    settings = ihub.settings.model_copy(update={"inference_threads": want})
    svc = InferenceService(settings, ihub.adapters, ihub.base_models, ihub.search, ihub.metrics, "cpu")
    try:
        assert torch.get_num_threads() == before  # nothing loaded yet: untouched
        assert greedy(svc, "alice/math", "threads", 4).completion_tokens == 4
        assert torch.get_num_threads() == want
    finally:
        svc.close()
    assert torch.get_num_threads() == before


def test_requests_in_flight_hold_no_thread_while_their_rows_run(ihub):
    """Generation is awaited on the event loop: with a one-thread pool, 6 non-streamed requests still run as one
    batch of 6 rows, and 2 running streams get their tokens as they come while 3 more wait in the queue
    (waiting in a pool thread, the queued streams would hold it until their rows started)."""
    import asyncio

    from hub.api import create_app
    from hub.services.container import inference_service

    ihub.settings.inference_max_batch = 6  # read when the engine is built
    app = create_app(hub=ihub, warm_index=False)
    svc = app.state.inference = inference_service(ihub, "cpu")
    batcher = svc.engine(BASE_ID).batcher
    svc.engine(BASE_ID).base.mixed.model.register_forward_pre_hook(lambda *a: time.sleep(0.004))
    try:
        with serve_in_thread(OneThreadPool(app)) as url:
            def body(i: int, n: int, stream: bool) -> dict:  # alice/french answers "row 0" and "row 1" in ASCII,
                # so every token is a piece of text (bytes of an incomplete UTF-8 sequence would be held back)
                model = "alice/french" if i < 2 else ["alice/math", "bob/python", BASE_ID][i % 3]
                return {"model": model, "prompt": f"row {i}", "max_tokens": n, "temperature": 0, "ignore_eos": True,
                        "stream": stream}

            async def plain() -> None:
                async with httpx.AsyncClient(timeout=120) as c:
                    rs = await asyncio.gather(*(c.post(url + "/v1/completions", json=body(i, 24, False))
                                                for i in range(6)))
                assert all(r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 24 for r in rs)

            batcher.batch_sizes.clear()
            asyncio.run(plain())
            assert max(batcher.batch_sizes) == 6

            batcher.max_running = 2  # now 2 rows run and the rest wait for a slot
            chunks: dict[int, list[str]] = {i: [] for i in range(5)}

            async def streams() -> None:
                async with httpx.AsyncClient(timeout=120) as c:
                    async def one(i: int, n: int) -> None:
                        async with c.stream("POST", url + "/v1/completions", json=body(i, n, True)) as r:
                            assert r.status_code == 200
                            async for line in r.aiter_lines():
                                if line.startswith("data: {"):
                                    chunks[i].extend(ch["text"] for ch in json.loads(line[6:])["choices"] if ch["text"])

                    running = [asyncio.ensure_future(one(i, 60)) for i in range(2)]
                    while not (chunks[0] and chunks[1]):
                        await asyncio.sleep(0.005)
                    queued = [asyncio.ensure_future(one(i, 4)) for i in range(2, 5)]
                    while batcher.num_waiting < 3 and not all(q.done() for q in queued):
                        await asyncio.sleep(0.002)
                    seen = [len(chunks[0]), len(chunks[1])]
                    await asyncio.gather(*running)
                    # pieces kept coming while the three others waited (a blocked pool would have sent the rest
                    # in one piece once the running rows ended)
                    assert all(len(chunks[i]) - seen[i] >= 5 for i in range(2)), chunks
                    await asyncio.gather(*queued)

            asyncio.run(streams())
            for i, n in ((0, 60), (3, 4)):
                want = svc.complete(None, CompletionRequest(model=body(i, n, False)["model"], prompts=[f"row {i}"],
                                                            max_tokens=n, temperature=0.0, ignore_eos=True))
                assert "".join(chunks[i]) == want.choices[0].text
    finally:
        svc.close()


def test_stream_interval_sends_the_first_token_then_one_event_per_interval(server, ihub):
    """``LOOM_INFERENCE_STREAM_INTERVAL=4``: the first token goes out alone (time to first token is unchanged),
    then the tokens four at a time, the rest with the end; the text is the same as without it."""
    url, app = server
    body = {"model": "alice/french", "prompt": "row 0", "max_tokens": 14, "temperature": 0, "ignore_eos": True,
            "stream": True}  # alice/french answers "row 0" in ASCII: a token is one character of text

    def pieces() -> list[str]:
        out = []
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    out.extend(c["text"] for c in json.loads(line[6:])["choices"] if c["text"])
        return out

    httpx.post(url + "/v1/completions", json={**body, "stream": False, "max_tokens": 1}, timeout=60)
    app.state.inference.engine(BASE_ID).base.mixed.model.register_forward_pre_hook(lambda *a: time.sleep(0.01))
    every = pieces()  # the default interval, 1: with slow steps the reader is always back before the next token
    ihub.settings.inference_stream_interval = 4
    grouped = pieces()
    assert "".join(grouped) == "".join(every) and len("".join(every)) == 14
    assert [len(p) for p in grouped] == [1, 4, 4, 4, 1]
    assert len(every) == 14


def test_the_first_token_is_sent_at_once_even_when_its_text_is_held_back(server):
    """A stream's first event comes with its first token even when that token's text cannot be sent yet (here it
    could begin a stop string; on a byte-level tokenizer, a partial UTF-8 character): the event's text is "" (as
    vLLM's server sends a chunk per token batch), so a client's time to first token is the first token's. The text
    follows with the next tokens and joins to the whole completion."""
    url, app = server
    body = {"model": "alice/french", "prompt": "row 0", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    whole = httpx.post(url + "/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]
    assert len(whole) == 8 and whole[0] != whole[1]  # ASCII: a token is one character
    hold = {**body, "stream": True, "stop": [whole[0] + "\x07"]}  # the first character may begin the stop string
    slow_engine(app, 50)
    with httpx.stream("POST", url + "/v1/completions", json=hold, timeout=60) as r:
        texts = [c["text"] for line in r.iter_lines() if line.startswith("data: {")
                 for c in json.loads(line[6:])["choices"] if c["finish_reason"] is None]
    assert texts[0] == "" and texts[1] == whole[:2]  # the first token alone, then its text with the second's
    assert "".join(texts) == whole


def test_the_choices_of_a_stream_arrive_interleaved(server):
    """``n=2``: both rows run in the same steps, and each choice's pieces reach the client as its row generates
    them, not one choice after the other (the second choice's tokens used to wait until the first choice ended,
    then went out in one lump). Each choice's text is the whole completion."""
    url, app = server
    body = {"model": "alice/french", "prompt": "row 0", "max_tokens": 12, "temperature": 0, "ignore_eos": True}
    whole = httpx.post(url + "/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]
    slow_engine(app, 30)
    with httpx.stream("POST", url + "/v1/completions", json={**body, "n": 2, "stream": True}, timeout=60) as r:
        pieces = [(c["index"], c["text"]) for line in r.iter_lines() if line.startswith("data: {")
                  for c in json.loads(line[6:])["choices"] if c["text"]]
    order = [i for i, _ in pieces]
    assert order.index(1) < len(order) - 1 - order[::-1].index(0)  # choice 1 began before choice 0 ended
    assert order.count(1) >= 6  # ... and its tokens came as they were generated, not in one piece at the end
    for k in (0, 1):
        assert "".join(t for i, t in pieces if i == k) == whole
