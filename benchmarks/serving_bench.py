"""Serving under open-loop load: continuous batching vs the window batcher vs PEFT one request at a time.

Requests arrive as a Poisson process (open loop: arrivals never wait for answers) at three rates, through
the HTTP endpoint of a real uvicorn server, sent by a load generator in a process of its own, each with a
prompt length and an output length drawn from ranges and an adapter drawn from ``--adapters`` (8-16) with a
Zipf skew (weight 1/k^1.1). Every system sees the same requests, greedy (``--sampled 0.5``: half of them sample
with temperature 0.8, top_p 0.95 and a seed each; ``--output-tokens LO HI``: another ``max_tokens`` range;
``--ignore-eos``: every request runs its ``max_tokens`` (vLLM's ``ignore_eos``), so each system does the same work;
``--no-stream``: Loom's requests ask for the whole answer at once):

* (a) Loom, ``LOOM_SCHEDULER=continuous`` (iteration-level batching, per-row adapters);
* (b) Loom, ``LOOM_SCHEDULER=window`` (collect for a window, run each batch to completion);
* (c) a baseline server running PEFT ``generate`` one request at a time (``set_adapter`` per request);
* (d) Loom continuous with every request on the bare base (no adapter): the cost of the LoRA rows;
* (e) with ``--max-queued N``: (a) with a queue bound of N rows (the others queue up to 4096): beyond it a request
  answers 429 at once, as a server under overload should; printed: how many were turned away, and the latency
  of those served.
* (f) with ``--max-queue-wait S``: (a) with admission by expected wait (``LOOM_INFERENCE_MAX_QUEUE_WAIT=S``): a
  request whose first token would come later than S seconds (estimated from the queued and running rows'
  ``max_tokens`` and the prompts ahead at the measured seconds per step and per prompt token) answers 429 at once;
  printed as (e) is, plus how many served rows got their first token later than S on the server
  (``loom_inference_first_token_over_wait_bound_total``: the estimate's misses, apart from the way to the client).

With ``--router PRESET`` every request names one router artifact of that preset (untrained gates over the
first 4 adapters) instead of an adapter, and the systems are (a) Loom continuous (the router's rows batched
per iteration on its routed copy of the base) and (b) Loom window (routers run one request at a time there),
rates as multiples of (b)'s serial capacity; printed: the same columns and (a)/(b).

Printed per system: the full (generation 2) garbage collections of the server's process during its timed runs, each
of which stops the scheduler thread (``LOOM_INFERENCE_GC_FREEZE``, on by default, freezes what is alive after a
base loads, so they walk far fewer objects). Printed per base and rate: request throughput, output tokens/s, output
tokens per request (a system whose rows end at EOS sooner, e.g. adapters against the bare base, does less decode
work per request), TTFT and TPOT p50/p99 (streamed, so the first token is timed where its chunk reaches the client,
its text possibly "", as vLLM's bench times it; (c) does not stream: its TTFT is the whole latency), the ratios
(a)/(b) and (a)/(d) in output tokens/s, and the share of (a)'s and (b)'s forward input tokens that a row needed
(prompt tokens and each generated token but the last; the rest is left padding, rows that finished before their
batch and holes): where a forward costs in proportion to its tokens (a busy CPU), their quotient is what
iteration-level scheduling can gain over the window batcher on that workload, and the load generator's CPU share of
a core (it shares the machine with the server; ``--client``: aiohttp, as vLLM's bench, or httpx).
Rates are multiples of the one-request-at-a-time capacity measured first (1 / the mean latency of (c)): below,
near and above saturation; ``--capacity R`` gives it instead, so that two builds run at the same rates.

    python benchmarks/serving_bench.py --quick                  # tiny base, small runs
    python benchmarks/serving_bench.py --quick --base smollm2 --rate-multiples 1 4 12   # SmolLM2-135M
    python benchmarks/serving_bench.py --base both --requests 64
    python benchmarks/serving_bench.py --quick --router meteora   # a router artifact: batched vs one at a time
    python benchmarks/serving_bench.py --requests 48 --output-tokens 8 160 --sampled 0.5
    python benchmarks/serving_bench.py --requests 48 --ignore-eos   # the same tokens per request everywhere
Uses CUDA when available.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers: PEFT adapters, serve_in_thread

TINY_ID = "bench/tiny-llama"
BOUNDED = "(e) cont., bounded"
WAIT_BOUNDED = "(f) cont., wait-bounded"
WORDS = ("plan", "river", "stone", "light", "north", "market", "signal", "garden", "copper", "window", "engine",
         "paper", "orbit", "forest", "melody", "harbor", "silver", "canvas", "motion", "summit")




@dataclass
class Req:
    at: float  # seconds after the start
    model: str
    adapter: str | None
    prompt: str
    max_tokens: int
    temperature: float = 0.0
    seed: int | None = None
    ignore_eos: bool = False
    stream: bool = True


@dataclass
class Result:
    ttft: float
    e2e: float
    tokens: int
    text: str
    rejected: bool = False  # answered 429 (the queue bound): no tokens


def build(root: Path, base: str, n_adapters: int):
    """A throwaway hub with the base registered and ``n_adapters`` PEFT adapters published; returns
    (hub, base id, base folder, {name: folder})."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from hub.services.container import Hub
    from hub.services.publish import PublishFiles
    from hub.settings import get_settings
    from testbed.tokenizer import save_tokenizer
    from tests.helpers import make_peft_adapter

    data = root / "data"
    if base == "tiny":
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=259, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                          bos_token_id=257, eos_token_id=258, pad_token_id=256)
        folder = root / "base"
        LlamaForCausalLM(cfg).eval().save_pretrained(str(folder))
        save_tokenizer(folder)
        base_id = TINY_ID
    else:
        from testbed.real.base import SMOLLM2_ID, smollm2_folder

        folder, _ = smollm2_folder(data)
        base_id = SMOLLM2_ID
    settings = get_settings(data_dir=data, hf_endpoint="http://127.0.0.1:9", inference_default_base=base_id,
                            adapter_cache_gpu=32, inference_max_queued=4096, inference_max_rows_per_request=64,
                            inference_max_concurrent_per_user=4096)
    from tests.helpers import HashEmbedder

    hub = Hub(settings, embedder_factory=lambda name: HashEmbedder())
    hub.base_models.register(base_id, (folder / "config.json").read_bytes(), weights=str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    user = hub.users.ensure_user("bench")
    folders = {}
    for i in range(n_adapters):
        d = make_peft_adapter(model, root / f"ad{i}", seed=i, r=8, alpha=8, base_id=base_id,
                              targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
        if base != "tiny":  # keep the real model's outputs language-like: small deltas
            _shrink(d, 0.05)
        hub.publisher.publish(user, f"bench/ad{i}", PublishFiles(config=(d / "adapter_config.json").read_bytes(),
                                                                 weights=d / "adapter_model.safetensors"))
        folders[f"bench/ad{i}"] = d
    return hub, base_id, folder, folders


def _shrink(folder: Path, factor: float) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "adapter_model.safetensors"
    tensors = {k: (v * factor if "lora_B" in k else v) for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path))


def workload(n: int, rate: float, names: list[str], base_id: str, tokens: tuple[int, int], seed: int,
             bare: bool = False, sampled: float = 0.0, ignore_eos: bool = False, stream: bool = True) -> list[Req]:
    """``n`` requests, Poisson arrivals at ``rate``/s, Zipf-skewed adapters, lengths from ranges; a share
    ``sampled`` of them sample (temperature 0.8, top_p 0.95, a seed each), the others are greedy;
    ``ignore_eos``: each runs its ``max_tokens``; ``stream``: False asks for the whole answer at once."""
    rng = random.Random(seed)
    pick = random.Random(seed + 1)  # its own stream: the greedy workload stays the same with or without sampling
    weights = [1.0 / (k + 1) ** 1.1 for k in range(len(names))]
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        ad = rng.choices(names, weights)[0]
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 24)))
        req = Req(t, base_id if bare else ad, None if bare else ad, prompt, rng.randint(*tokens),
                  ignore_eos=ignore_eos, stream=stream)
        if pick.random() < sampled:
            req.temperature, req.seed = 0.8, pick.randrange(1 << 30)
        out.append(req)
    return out


def _loom_body(r: Req) -> dict[str, Any]:
    body = {"model": r.model, "prompt": r.prompt, "max_tokens": r.max_tokens, "temperature": r.temperature,
            "stream": r.stream}
    if r.temperature:
        body.update(top_p=0.95, seed=r.seed)
    if r.ignore_eos:
        body["ignore_eos"] = True
    return body


class _Stream:
    """What one streamed answer brought: its first token's time (the first chunk with choices, whose text may be
    "": vLLM's bench's definition; Loom sends the first token's chunk at once even when its text is held back), its
    text pieces, the usage's token count."""

    def __init__(self, t0: float) -> None:
        self.t0, self.ttft, self.text, self.tokens = t0, None, [], 0

    def line(self, line: str) -> None:
        if not line.startswith("data: ") or line == "data: [DONE]":
            return
        c = json.loads(line[6:])
        if "error" in c:
            raise RuntimeError(c["error"])
        if c.get("usage"):
            self.tokens = c["usage"]["completion_tokens"]
        if c.get("choices"):
            self.ttft = self.ttft or time.perf_counter() - self.t0
        for ch in c.get("choices", []):
            if ch.get("text"):
                self.text.append(ch["text"])

    def result(self) -> Result:
        e2e = time.perf_counter() - self.t0
        return Result(self.ttft or e2e, e2e, self.tokens, "".join(self.text))


async def _one_loom_aiohttp(session, url: str, r: Req) -> Result:
    t0 = time.perf_counter()
    async with session.post(url + "/v1/completions", json=_loom_body(r)) as resp:
        if resp.status == 429:
            await resp.read()
            return Result(0.0, time.perf_counter() - t0, 0, "", rejected=True)
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {await resp.text()}")
        if not r.stream:  # the whole answer at once: its latency is its TTFT
            d = await resp.json()
            e2e = time.perf_counter() - t0
            return Result(e2e, e2e, d["usage"]["completion_tokens"], d["choices"][0]["text"])
        got = _Stream(t0)
        async for raw in resp.content:
            got.line(raw.decode().rstrip("\r\n"))
        return got.result()


async def _one_peft_aiohttp(session, url: str, r: Req) -> Result:
    t0 = time.perf_counter()
    async with session.post(url + "/generate", json={"adapter": r.adapter, "prompt": r.prompt,
                                                      "max_tokens": r.max_tokens, "ignore_eos": r.ignore_eos}) as resp:
        d = await resp.json()
    e2e = time.perf_counter() - t0
    return Result(e2e, e2e, d["tokens"], d["text"])


async def _one_loom(client, url: str, r: Req) -> Result:
    body = _loom_body(r)
    t0 = time.perf_counter()
    if not r.stream:  # the whole answer at once: its latency is its TTFT
        resp = await client.post(url + "/v1/completions", json=body)
        e2e = time.perf_counter() - t0
        if resp.status_code == 429:
            return Result(0.0, e2e, 0, "", rejected=True)
        if resp.status_code != 200:
            raise RuntimeError(f"{resp.status_code}: {resp.text}")
        d = resp.json()
        return Result(e2e, e2e, d["usage"]["completion_tokens"], d["choices"][0]["text"])
    got = _Stream(t0)
    async with client.stream("POST", url + "/v1/completions", json=body) as resp:
        if resp.status_code == 429:
            await resp.aread()
            return Result(0.0, time.perf_counter() - t0, 0, "", rejected=True)
        if resp.status_code != 200:
            raise RuntimeError(f"{resp.status_code}: {await resp.aread()}")
        async for line in resp.aiter_lines():
            got.line(line)
    return got.result()


async def _one_peft(client, url: str, r: Req) -> Result:
    t0 = time.perf_counter()
    resp = await client.post(url + "/generate", json={"adapter": r.adapter, "prompt": r.prompt,
                                                       "max_tokens": r.max_tokens, "ignore_eos": r.ignore_eos})
    e2e = time.perf_counter() - t0
    d = resp.json()
    return Result(e2e, e2e, d["tokens"], d["text"])


class Client:
    """The load generator in a process of its own (as vLLM's ``benchmark_serving`` runs apart from the server):
    in the server's process its HTTP parsing would take the interpreter lock from the server and the scheduler
    thread. ``--in-process-client`` runs it in the server's process instead. ``http``: ``aiohttp`` (as vLLM's
    bench) or ``httpx`` (the client of the runs before session 16). :attr:`cpu`: the CPU seconds
    the load generator spent on the last run (on a 2-core machine it competes with the server for them)."""

    def __init__(self, in_process: bool = False, http: str = "aiohttp") -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.http, self.cpu = http, 0.0
        self.pool = None if in_process else ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    def run(self, url: str, reqs: list[Req], peft: bool) -> tuple[list[Result], float]:
        if self.pool is None:
            res, wall, self.cpu = run_drive(url, reqs, peft, self.http)
        else:
            res, wall, self.cpu = self.pool.submit(run_drive, url, reqs, peft, self.http).result()
        return res, wall

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def run_drive(url: str, reqs: list[Req], peft: bool, http: str) -> tuple[list[Result], float, float]:
    cpu = time.process_time()
    res, wall = asyncio.run(drive(url, reqs, peft) if http == "httpx" else drive_aiohttp(url, reqs, peft))
    return res, wall, time.process_time() - cpu


async def _fire_all(reqs: list[Req], one: Any) -> tuple[list[Result], float]:
    """Each request sent at its arrival time (``one(r)`` sends it); the results and the wall time."""
    t0 = time.perf_counter()

    async def fire(r: Req) -> Result:
        await asyncio.sleep(max(0.0, r.at - (time.perf_counter() - t0)))
        return await one(r)

    results = await asyncio.gather(*(fire(r) for r in reqs))
    return list(results), time.perf_counter() - t0


async def drive(url: str, reqs: list[Req], peft: bool) -> tuple[list[Result], float]:
    import httpx

    one = _one_peft if peft else _one_loom
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=4096)) as client:
        return await _fire_all(reqs, lambda r: one(client, url, r))


async def drive_aiohttp(url: str, reqs: list[Req], peft: bool) -> tuple[list[Result], float]:
    import aiohttp

    one = _one_peft_aiohttp if peft else _one_loom_aiohttp
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:
        return await _fire_all(reqs, lambda r: one(session, url, r))


def peft_app(folder: Path, adapters: dict[str, Path], device: str):
    """The baseline: PEFT with every adapter loaded, one request at a time (a lock), ``set_adapter`` per request;
    ``ignore_eos``: generate does not stop at eos (eos_token_id None)."""
    import torch
    from fastapi import FastAPI
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype="auto").to(device).eval()
    names = list(adapters)
    pm = PeftModel.from_pretrained(model, str(adapters[names[0]]), adapter_name=names[0])
    for n in names[1:]:
        pm.load_adapter(str(adapters[n]), adapter_name=n)
    pm.eval()
    lock = threading.Lock()
    eos = model.generation_config.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos if isinstance(eos, int) else 0)
    app = FastAPI()

    @app.post("/generate")
    def generate(body: dict) -> dict:
        ids = torch.tensor([tok(body["prompt"])["input_ids"]], device=device)
        stop = None if body.get("ignore_eos") else eos
        with lock, torch.no_grad():
            pm.set_adapter(body["adapter"])
            out = pm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=body["max_tokens"],
                              do_sample=False, eos_token_id=stop, pad_token_id=pad)
        new = out[0, ids.shape[1]:].tolist()
        eos_set = set() if stop is None else set(stop) if isinstance(stop, list) else {stop}
        cut = next((i for i, t in enumerate(new) if t in eos_set), len(new))
        return {"tokens": cut, "text": tok.decode(new[:cut], skip_special_tokens=True)}

    return app


class FullCollections:
    """The pauses of Python's full (generation 2) collections in this process (the server's; the load generator
    runs in a process of its own unless ``--in-process-client``)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._t = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._t)

    def close(self) -> None:
        gc.callbacks.remove(self._on_gc)

    def since(self, n: int) -> str:
        xs = self.pauses[n:]
        return f"{len(xs)} ({sum(xs) * 1000:.0f} ms, longest {max(xs, default=0.0) * 1000:.0f} ms)"


def work(app: Any, base_id: str) -> tuple[int, int, int, int]:
    """(input tokens the base's scheduler computed, input tokens its rows needed, forwards run, rows whose first
    token came later than the wait bound, server side) so far."""
    sched = app.state.inference.engines.loaded()[base_id].batcher
    late = app.state.hub.metrics.registry.get_sample_value("loom_inference_first_token_over_wait_bound_total",
                                                           {"model_name": base_id})
    return sched.tokens_computed, sched.tokens_useful, sched.forwards, int(late or 0)


def useful_share(before: tuple[int, ...], after: tuple[int, ...]) -> float:
    """The share of the forwards' input tokens that some row needed, between two :func:`work` readings."""
    computed, useful = after[0] - before[0], after[1] - before[1]
    return useful / computed if computed else float("nan")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def summary(results: list[Result], wall: float, client_cpu: float = float("nan")) -> dict[str, float]:
    """Throughput and latency of the served requests (a 429 counts in ``rejected``, not in the latencies);
    ``client_cpu``: the load generator's CPU seconds in the run (its share of a core is printed)."""
    rejected = sum(r.rejected for r in results)
    results = [r for r in results if not r.rejected]
    toks = sum(r.tokens for r in results)
    tpot = [(r.e2e - r.ttft) / (r.tokens - 1) for r in results if r.tokens > 1]
    ttft = [r.ttft for r in results]
    return {"req_s": len(results) / wall, "tok_s": toks / wall, "ttft50": pct(ttft, 50), "ttft99": pct(ttft, 99),
            "tpot50": pct(tpot, 50), "tpot99": pct(tpot, 99), "wall": wall, "rejected": rejected,
            "client_cpu": client_cpu / wall}


def print_rate(rate: float, at_rate: dict[str, dict[str, float]], labels: list[str]) -> None:
    """The table of one rate: a row per system."""
    print(f"\n-- rate {rate:.2f} req/s (mean gap {1000 / rate:.0f} ms)")
    print(f"{'system':18s} {'req/s':>7s} {'out tok/s':>9s} {'tok/req':>7s} {'TTFT p50':>9s} {'TTFT p99':>9s} "
          f"{'TPOT p50':>9s} {'TPOT p99':>9s} {'client CPU':>10s}")
    for label in labels:
        s = at_rate[label]
        print(f"{label:18s} {s['req_s']:7.2f} {s['tok_s']:9.1f} {s['tok_s'] / s['req_s']:7.1f} {s['ttft50'] * 1000:7.0f}ms "
              f"{s['ttft99'] * 1000:7.0f}ms {s['tpot50'] * 1000:7.1f}ms {s['tpot99'] * 1000:7.1f}ms "
              f"{s['client_cpu'] * 100:9.0f}%")


def print_identical(texts: dict[str, list[str]], a: str, b: str, rates: list[float], cpu: dict[str, float]) -> None:
    """Greedy outputs of systems ``a`` and ``b`` compared request by request; CPU seconds per system."""
    pairs = [(x, y) for rate in rates for x, y in zip(texts[f"{a}@{rate}"], texts[f"{b}@{rate}"], strict=True)
             if x is not None]  # None: a sampled request (the two schedulers draw differently)
    same, total = sum(x == y for x, y in pairs), len(pairs)
    print("process CPU seconds per system (server and client, warm-up included): "
          + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()) + f"; load average {os.getloadavg()}")
    print(f"greedy outputs identical between {a} and {b}: {same}/{total}")
    for rate in rates:  # where they differ: the request and the first character that differs
        for i, (x, y) in enumerate(zip(texts[f"{a}@{rate}"], texts[f"{b}@{rate}"], strict=True)):
            if x is not None and x != y:
                at = next((k for k, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
                print(f"  differs at rate {rate:.2f}, request {i}, character {at} of {len(x)} / {len(y)}: "
                      f"{x[max(0, at - 8):at + 8]!r} vs {y[max(0, at - 8):at + 8]!r}")


def setup(base: str, args: argparse.Namespace) -> tuple[str, tuple[int, int]]:
    """The device, the ``max_tokens`` range of ``base``, and ``--quick``'s request count."""
    import torch

    if args.quick:
        args.requests = 24 if base == "tiny" else 8
    tokens = tuple(args.output_tokens) if args.output_tokens else ((8, 48) if base == "tiny" else (8, 32))
    return ("cuda" if torch.cuda.is_available() else "cpu"), tokens  # type: ignore[return-value]


def bench_base(base: str, args: argparse.Namespace, client: Client) -> None:

    from hub.api import create_app
    from tests.helpers import serve_in_thread

    device, tokens = setup(base, args)
    with tempfile.TemporaryDirectory() as tmp:
        hub, base_id, folder, adapters = build(Path(tmp), base, args.adapters)
        names = list(adapters)
        with serve_in_thread(peft_app(folder, adapters, device), timeout=120) as purl:
            warm = workload(4, 1000.0, names, base_id, tokens, seed=99)
            client.run(purl, warm, True)
            probe = workload(3 if args.quick else 6, 1000.0, names, base_id, tokens, seed=98, ignore_eos=args.ignore_eos)
            lat = []
            for r in probe:  # one at a time: the serial capacity
                res, _ = client.run(purl, [dataclasses.replace(r, at=0.0)], True)
                lat.append(res[0].e2e)
            capacity = args.capacity or 1.0 / statistics.mean(lat)  # measured, unless given
            rates = [m * capacity for m in args.rate_multiples]
            print(f"\n== {base} ({base_id}, {device}): {len(names)} adapters (Zipf 1.1), prompts 4-24 words, "
                  f"max_tokens {tokens[0]}-{tokens[1]}, {args.requests} requests per rate; serial capacity "
                  f"{capacity:.2f} req/s ({'given' if args.capacity else 'PEFT, one at a time'})")
            rows: dict[float, dict[str, dict[str, float]]] = {}
            texts: dict[str, list[str]] = {}
            for rate in rates:
                rows[rate] = {}
                reqs = workload(args.requests, rate, names, base_id, tokens, seed=int(rate * 1000),
                                ignore_eos=args.ignore_eos)
                res, wall = client.run(purl, reqs, True)
                rows[rate]["(c) PEFT serial"] = summary(res, wall, client.cpu)
            systems = [("(a) continuous", "continuous", False), ("(b) window", "window", False),
                       ("(d) base alone", "continuous", True)]
            if args.max_queued is not None:
                systems.append((BOUNDED, "continuous", False))
            if args.max_queue_wait is not None:
                systems.append((WAIT_BOUNDED, "continuous", False))
            cpu: dict[str, float] = {}
            collections, full_gc = FullCollections(), {}
            for label, sched, bare in systems:
                cpu0 = time.process_time()
                hub.settings.scheduler = sched
                hub.settings.inference_max_batch = args.max_batch
                hub.settings.inference_max_queued = args.max_queued if label == BOUNDED else 4096
                hub.settings.inference_max_queue_wait = args.max_queue_wait if label == WAIT_BOUNDED else 0.0
                hub.settings.inference_batch_window_ms = args.window_ms
                app = create_app(hub=hub, warm_index=False)
                with serve_in_thread(app, timeout=120) as url:
                    warm = workload(len(names), 1000.0, names, base_id, tokens, seed=97)
                    for r, name in zip(warm, names, strict=True):  # every adapter loaded before the clock runs
                        r.model, r.adapter = name, name
                    client.run(url, warm, False)
                    gc0 = len(collections.pauses)
                    for rate in rates:
                        reqs = workload(args.requests, rate, names, base_id, tokens, seed=int(rate * 1000), bare=bare,
                                        sampled=args.sampled, ignore_eos=args.ignore_eos, stream=not args.no_stream)
                        work0 = work(app, base_id)
                        res, wall = client.run(url, reqs, False)
                        rows[rate][label] = summary(res, wall, client.cpu)
                        work1 = work(app, base_id)
                        rows[rate][label]["useful"] = useful_share(work0, work1)
                        rows[rate][label]["forwards"] = work1[2] - work0[2]
                        rows[rate][label]["late"] = work1[3] - work0[3]
                        texts[f"{label}@{rate}"] = [r.text if not q.temperature else None
                                                    for r, q in zip(res, reqs, strict=True)]
                full_gc[label] = collections.since(gc0)
                app.state.inference.close()
                cpu[label] = time.process_time() - cpu0
            collections.close()
            hub.close()
        print_identical(texts, "(a) continuous", "(b) window", rates, cpu)
        print(f"full GC collections in the server process during the timed runs (LOOM_INFERENCE_GC_FREEZE="
              f"{hub.settings.inference_gc_freeze}): " + ", ".join(f"{k} {v}" for k, v in full_gc.items()))
        labels = ["(a) continuous", "(b) window", "(c) PEFT serial", "(d) base alone"]
        bounds = {BOUNDED: f"queue bound {args.max_queued} rows", WAIT_BOUNDED: f"queue wait bound {args.max_queue_wait} s"}
        bounded = [k for k, v in ((BOUNDED, args.max_queued), (WAIT_BOUNDED, args.max_queue_wait)) if v is not None]
        labels += bounded
        for rate in rates:
            gap = 1.0 / rate
            print_rate(rate, rows[rate], labels)
            for k in bounded:
                e = rows[rate][k]
                late = (f"; server side, first token later than the bound: {e['late']} of "
                        f"{args.requests - e['rejected']} served") if k == WAIT_BOUNDED else ""
                print(f"{k}: {e['rejected']} of {args.requests} requests answered 429 ({bounds[k]}); "
                      f"served p99 TTFT < 10 x gap ({10 * gap * 1000:.0f} ms): {e['ttft99'] < 10 * gap}{late}")
            a, b, d = (rows[rate][k]["tok_s"] for k in ("(a) continuous", "(b) window", "(d) base alone"))
            ok = rows[rate]["(a) continuous"]["ttft99"] < 10 * gap
            print(f"(a)/(b) output tok/s {a / b:.2f}x   (a)/(d) {a / d:.2f}x   (a)/(c) "
                  f"{a / rows[rate]['(c) PEFT serial']['tok_s']:.2f}x   (a) p99 TTFT < 10 x gap: {ok}")
            ua, ub = rows[rate]["(a) continuous"]["useful"], rows[rate]["(b) window"]["useful"]
            print("forwards run (prefills and decode steps): " + ", ".join(
                f"{k} {rows[rate][k]['forwards']}" for k in labels if "forwards" in rows[rate][k]))
            print(f"useful share of the forwards' input tokens (prompts + generated, vs padding, finished rows and "
                  f"holes): (a) {ua:.2f}, (b) {ub:.2f}, quotient {ua / ub:.2f}x")


def bench_router(base: str, args: argparse.Namespace, client: Client) -> None:
    """Requests to one router artifact: continuous (batched routed rows) vs window (one request at a time)."""
    import torch

    from hub.api import create_app
    from hub.core.peft_io import load_peft
    from routing import build_router
    from routing.checkpoint import router_state
    from tests.helpers import publish_router, serve_in_thread

    device, tokens = setup(base, args)
    with tempfile.TemporaryDirectory() as tmp:
        hub, base_id, folder, adapters = build(Path(tmp), base, args.adapters)
        from transformers import AutoModelForCausalLM

        experts = list(adapters)[:4]
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        model.config.name_or_path = base_id
        loaded = [load_peft(adapters[e]) for e in experts]
        names = [f"{e}@1" for e in experts]
        routed = build_router(model, loaded, args.router, {}, names=names)
        router = publish_router(hub, hub.users.ensure_user("bench"), "bench/router", router_state(routed, loaded))
        rows: dict[float, dict[str, dict[str, float]]] = {}
        texts: dict[str, list[str]] = {}
        rates: list[float] = []
        cpu: dict[str, float] = {}
        for label, sched in (("(b) one at a time", "window"), ("(a) continuous", "continuous")):
            cpu0 = time.process_time()
            hub.settings.scheduler = sched
            hub.settings.inference_max_batch = args.max_batch
            app = create_app(hub=hub, warm_index=False)
            with serve_in_thread(app, timeout=120) as url:
                client.run(url, workload(4, 1000.0, [router], base_id, tokens, seed=97), False)
                if not rates:  # the serial capacity: (b), one request after another
                    lat = [client.run(url, [dataclasses.replace(r, at=0.0)], False)[0][0].e2e
                           for r in workload(3 if args.quick else 6, 1000.0, [router], base_id, tokens, seed=98,
                                             ignore_eos=args.ignore_eos)]
                    rates = [m / statistics.mean(lat) for m in args.rate_multiples]
                    print(f"\n== {base} ({base_id}, {device}): router {router} ({args.router}, 4 experts), "
                          f"max_tokens {tokens[0]}-{tokens[1]}, {args.requests} requests per rate; serial capacity "
                          f"{1 / statistics.mean(lat):.2f} req/s")
                for rate in rates:
                    reqs = workload(args.requests, rate, [router], base_id, tokens, seed=int(rate * 1000),
                                    ignore_eos=args.ignore_eos, stream=not args.no_stream)
                    res, wall = client.run(url, reqs, False)
                    rows.setdefault(rate, {})[label] = summary(res, wall, client.cpu)
                    texts[f"{label}@{rate}"] = [r.text for r in res]
            app.state.inference.close()
            cpu[label] = time.process_time() - cpu0
        hub.close()
    print_identical(texts, "(a) continuous", "(b) one at a time", rates, cpu)
    for rate in rates:
        print_rate(rate, rows[rate], ["(a) continuous", "(b) one at a time"])
        a, b = (rows[rate][k]["tok_s"] for k in ("(a) continuous", "(b) one at a time"))
        print(f"(a)/(b) output tok/s {a / b:.2f}x")


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # PEFT would look the bench base ids up on the Hub
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", choices=["tiny", "smollm2", "both"], default="tiny")
    ap.add_argument("--requests", type=int, default=48, help="requests per rate")
    ap.add_argument("--adapters", type=int, default=12, help="8-16")
    ap.add_argument("--max-batch", type=int, default=16, help="running rows (both Loom schedulers)")
    ap.add_argument("--window-ms", type=float, default=10.0, help="the window batcher's collection window")
    ap.add_argument("--rate-multiples", type=float, nargs=3, default=[0.5, 2.0, 6.0],
                    help="rates as multiples of the serial capacity (below, near, above saturation)")
    ap.add_argument("--capacity", type=float, default=None,
                    help="the serial capacity in req/s the rates multiply (default: measured; give it to compare "
                         "two builds at the same rates)")
    ap.add_argument("--quick", action="store_true", help="24 requests per rate on the tiny base, 8 on SmolLM2")
    ap.add_argument("--in-process-client", action="store_true",
                    help="run the load generator in the server's process (it then shares the interpreter lock)")
    ap.add_argument("--max-queued", type=int, default=None,
                    help="also run (e): continuous with this queue bound (beyond it 429; the others queue 4096)")
    ap.add_argument("--max-queue-wait", type=float, default=None,
                    help="also run (f): continuous with admission by expected wait (LOOM_INFERENCE_MAX_QUEUE_WAIT, "
                         "seconds; beyond it 429)")
    ap.add_argument("--output-tokens", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                    help="max_tokens range (default 8-48 on the tiny base, 8-32 on SmolLM2)")
    ap.add_argument("--sampled", type=float, default=0.0,
                    help="share of requests that sample (temperature 0.8, top_p 0.95, seeded); the window batcher "
                         "runs greedy and sampled requests in separate batches, (c) serves every request greedy")
    ap.add_argument("--ignore-eos", action="store_true",
                    help="every request runs its max_tokens (vLLM's ignore_eos): the same work for every system, "
                         "the bare base's rows included")
    ap.add_argument("--no-stream", action="store_true",
                    help="Loom's requests ask for the whole answer at once (TTFT is then the whole latency)")
    ap.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp",
                    help="the load generator's HTTP client (its CPU share of a core is printed per system)")
    ap.add_argument("--router", default=None, help="bench a router artifact of this preset (e.g. meteora, mole_wu)")
    args = ap.parse_args()
    if not 8 <= args.adapters <= 16:
        ap.error("--adapters must be in 8..16")
    import torch

    from hub.services.inference.engines import inference_threads
    from hub.settings import Settings

    env = Settings()  # the LOOM_* environment the systems' hubs also read
    threads = inference_threads(env.inference_threads)  # every system, (c) included, runs with Loom's count
    if threads is not None:
        torch.set_num_threads(threads)
    print(f"torch intra-op threads in the server process: {torch.get_num_threads()} (LOOM_INFERENCE_THREADS="
          f"{env.inference_threads}; 0 = auto: the CPUs less one), {len(os.sched_getaffinity(0))} CPUs; "
          f"LOOM_INFERENCE_STREAM_INTERVAL={env.inference_stream_interval}")
    client = Client(args.in_process_client, args.client)
    try:
        for base in (["tiny", "smollm2"] if args.base == "both" else [args.base]):
            (bench_router if args.router else bench_base)(base, args, client)
    finally:
        client.close()


if __name__ == "__main__":
    main()
