"""Served inference: cold adapter load time, and 8 concurrent different-adapter requests batched vs one at a time.

Builds a random-weight Llama (testbed byte tokenizer; no downloads), registers it in a throwaway hub
(SQLite, temp data dir), publishes 8 rank-16 adapters on every linear, and drives
:class:`hub.services.inference.InferenceService` from 8 threads at once:

* baseline: ``inference_max_batch=1`` (the batcher serves one request per forward, one after another);
* Loom: ``inference_max_batch=8`` (one mixed-adapter generate serves all 8 rows).

Both see the same requests (greedy, same prompts and lengths) in the same run; outputs are checked
to be identical. Cold load = registry blobs -> LoraAdapter (host tier) and LoraAdapter -> slot bank
(device tier), per adapter.

    python benchmarks/inference_bench.py                  # hidden 256, 4 layers
    python benchmarks/inference_bench.py --hidden 1024 --layers 8 --rounds 5
Uses CUDA when available.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE_ID = "bench/llama"
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")




def setup(root: Path, hidden: int, layers: int, n_adapters: int, rank: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hub.services.container import Hub
    from hub.services.publish import PublishFiles
    from hub.settings import get_settings
    from testbed.tokenizer import save_tokenizer
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers builds the PEFT adapters
    from tests.helpers import HashEmbedder, make_peft_adapter

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=259, hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 64),
                      max_position_embeddings=512, bos_token_id=257, eos_token_id=258, pad_token_id=256)
    model = LlamaForCausalLM(cfg).eval()
    base = root / "base"
    model.save_pretrained(str(base))
    save_tokenizer(base)
    hub = Hub(get_settings(data_dir=root / "data"), embedder_factory=lambda name: HashEmbedder())
    hub.base_models.register(BASE_ID, (base / "config.json").read_bytes(), weights=str(base))
    user = hub.users.ensure_user("bench")
    names = []
    for i in range(n_adapters):
        d = make_peft_adapter(model, root / f"ad{i}", seed=i, r=rank, alpha=2 * rank, targets=TARGETS,
                              base_id=BASE_ID)
        d_cfg, d_w = (d / "adapter_config.json").read_bytes(), d / "adapter_model.safetensors"
        hub.publisher.publish(user, f"bench/ad{i}", PublishFiles(config=d_cfg, weights=d_w), description=f"task {i}")
        names.append(f"bench/ad{i}")
    return hub, names


def run_round(svc, names, prompts, max_tokens):
    from hub.services.inference import CompletionRequest

    out: dict[int, str] = {}
    barrier = threading.Barrier(len(names))

    def call(i):
        barrier.wait()
        r = svc.complete(None, CompletionRequest(model=names[i], prompts=[prompts[i]], max_tokens=max_tokens,
                                                 temperature=0.0))
        out[i] = r.choices[0].text

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(names))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, [out[i] for i in range(len(names))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--adapters", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--window-ms", type=float, default=20.0, help="the batcher's collection window")
    args = ap.parse_args()

    from hub.services.container import inference_service
    from hub.services.inference.cache import CpuTier

    with tempfile.TemporaryDirectory() as tmp:
        hub, names = setup(Path(tmp), args.hidden, args.layers, args.adapters, args.rank)
        prompts = [f"Request {i}: please describe the plan for task number {i} in detail." for i in range(len(names))]
        modes = {"one at a time (max_batch=1)": 1, f"batched (max_batch={len(names)})": len(names)}
        svcs, marks, times, texts = {}, {}, {}, {}
        for label, max_batch in modes.items():  # the batcher reads the settings when the base loads
            hub.settings.inference_max_batch = max_batch
            hub.settings.inference_batch_window_ms = args.window_ms
            svcs[label] = svc = inference_service(hub)
            run_round(svc, names, prompts, args.max_tokens)  # warm-up: loads the base and the adapters
            b = svc.engine(BASE_ID)[2]
            marks[label], times[label] = (b.generate_calls, b.rows_served), []
        for _ in range(args.rounds):  # interleaved, so both modes see the same machine load
            for label, svc in svcs.items():
                dt, texts[label] = run_round(svc, names, prompts, args.max_tokens)
                times[label].append(dt)
        results = {}
        for label, svc in svcs.items():
            b = svc.engine(BASE_ID)[2]
            calls0, rows0 = marks[label]
            results[label] = (statistics.median(times[label]),
                              (b.rows_served - rows0) / max(1, b.generate_calls - calls0))
            device = svc.engine(BASE_ID)[0].device
            svc.close()
        a, b = list(texts.values())
        assert a == b, "batched outputs differ from one-at-a-time outputs"

        # cold load: blobs -> LoraAdapter (host tier), then LoraAdapter -> slot bank (device tier)
        svc = inference_service(hub)
        lb, gpu, _ = svc.engine(BASE_ID)
        host, dev = [], []
        for n in names:
            tier = CpuTier(1)
            t0 = time.perf_counter()
            ad = tier.get(n, lambda n=n: hub.adapters.load(None, n, None)[0])
            host.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            lb.mixed.load_adapter(n + "@1", ad)
            if device == "cuda":
                import torch

                torch.cuda.synchronize()
            dev.append(time.perf_counter() - t0)
        svc.close()
        hub.close()

    n = len(names)
    print(f"device={device} hidden={args.hidden} layers={args.layers} rank={args.rank} adapters={n} "
          f"max_tokens={args.max_tokens} rounds={args.rounds} (median)")
    print(f"{'mode':34s} {'seconds':>9s} {'req/s':>8s} {'rows/forward':>13s} {'vs baseline':>12s}")
    base_t = list(results.values())[0][0]
    for label, (t, rpf) in results.items():
        print(f"{label:34s} {t:9.3f} {n / t:8.2f} {rpf:13.1f} {base_t / t:11.2f}x")
    print(f"cold adapter load, median of {n}: registry -> host {statistics.median(host) * 1000:.1f} ms, "
          f"host -> slot bank {statistics.median(dev) * 1000:.1f} ms, total "
          f"{(statistics.median(host) + statistics.median(dev)) * 1000:.1f} ms (goal <= 100 ms)")
    print("outputs identical batched vs one at a time: yes")


if __name__ == "__main__":
    main()
