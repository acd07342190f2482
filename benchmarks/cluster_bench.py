"""Adapter affinity vs random routing over Ray Serve replicas of Loom's engine, in one run.

Everything on 127.0.0.1: a moto S3 server (child process) holding the adapters, SQLite, a local Ray cluster
(``num_cpus=2``; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps it on loopback). Each replica has its own data dir
(``own_data_dir``: its own blob cache, as on separate nodes), so a blob-cache miss is one S3 GET of that replica.
Each replica holds ``--per-replica`` adapters (the multiplexing LRU, the engine's tiers and a blob cache sized to
that many adapters): 16 adapters on 2 replicas of 8 fit only if each replica keeps its half.

The same seeded mixed workload (``--requests`` over ``--adapters`` adapters, uniform, ``--concurrency`` clients)
runs twice on fresh replicas:

- affinity: through Loom's gateway (``multiplexed_model_id`` = the adapter's content hash);
- random: the same handle without a model id (Serve's default router: two random replicas, the less loaded).

Printed per mode: S3 GETs (blob-cache misses) per request, adapter loads (engine cache misses) per request, the
hit rate (1 - loads / requests: a request whose adapter was already loaded on its replica is a hit; the first
request of each adapter is always a miss, so 16 adapters x 10 requests can reach 90% at most), how many replicas loaded each adapter, and latency p50/p99; then random / affinity.

    python benchmarks/cluster_bench.py --adapters 16 --requests 160
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import free_port  # noqa: E402
from tests.storage.s3server import AWS_ENV  # noqa: E402

BASE_ID = "loom-bench/llama"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapters", type=int, default=16)
    ap.add_argument("--requests", type=int, default=160)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--per-replica", type=int, default=8, help="adapters each replica keeps loaded")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.update(AWS_ENV)
    from benchmarks.blob_bench import make_bucket

    port = free_port()
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        bucket = make_bucket(endpoint)
        with tempfile.TemporaryDirectory() as d:
            run(Path(d), endpoint, bucket, args)
    finally:
        moto.terminate()
        moto.wait(10)


def run(tmp: Path, endpoint: str, bucket: str, args: argparse.Namespace) -> None:
    from ray import serve
    from transformers import AutoModelForCausalLM

    from hub.services.container import Hub, build_replica
    from hub.services.inference import CompletionRequest
    from hub.services.inference.ray_gateway import RayInference
    from hub.services.inference.ray_serve import APP_NAME, request_spec
    from hub.services.publish import PublishFiles
    from hub.services.ray_cluster import RayConnection
    from hub.settings import get_settings
    from tests.helpers import make_peft_adapter, save_byte_base

    t0 = time.perf_counter()
    settings = get_settings(data_dir=tmp / "api", blob_url=f"s3://{bucket}/loom", s3_endpoint=endpoint,
                            inference_default_base=BASE_ID, workers=0, inference="ray", ray_address="local",
                            adapter_cache_gpu=args.per_replica, adapter_cache_cpu=args.per_replica)
    hub = Hub(settings)
    base = save_byte_base(tmp / "base")
    hub.base_models.register(BASE_ID, (base / "config.json").read_bytes(), weights=str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base))
    alice = hub.users.ensure_user("alice")
    names, size = [], 0
    for i in range(args.adapters):
        folder = make_peft_adapter(model, tmp / f"a{i}", seed=100 + i, base_id=BASE_ID)
        hub.publisher.publish(alice, f"alice/a{i}", PublishFiles((folder / "adapter_config.json").read_bytes(),
                                                                folder / "adapter_model.safetensors"))
        names.append(f"alice/a{i}")
        size = max(size, sum(f.stat().st_size for f in folder.iterdir() if f.is_file()))
    # each replica's blob cache holds about per_replica adapters, like its engine caches
    settings = settings.model_copy(update={"blob_cache_bytes": int(size * (args.per_replica + 0.5))})
    print(f"[{time.perf_counter() - t0:5.1f}s] published {len(names)} adapters to S3 ({size} bytes each)", flush=True)
    rng = random.Random(args.seed)
    workload = [rng.choice(names) for _ in range(args.requests)]

    conn = RayConnection("local", init_kwargs={"num_cpus": 2, "num_gpus": 0})
    gateway = RayInference(settings, hub.adapters, hub.base_models, hub.metrics, conn, build_replica)
    results = {}
    try:
        for mode in ("affinity", "random"):
            t = time.perf_counter()
            gateway.start(replicas=args.replicas, models_per_replica=args.per_replica, own_data_dir=True)
            print(f"[{time.perf_counter() - t0:5.1f}s] {mode}: {args.replicas} fresh replicas up in "
                  f"{time.perf_counter() - t:.1f}s", flush=True)
            states: dict[str, dict] = {}
            served: dict[str, set[str]] = collections.defaultdict(set)

            def one(name: str, mode: str = mode, states: dict = states, served: dict = served) -> float:
                req = CompletionRequest(model=name, prompts=["Hello"], max_tokens=4, temperature=0.0)
                s = time.perf_counter()
                if mode == "affinity":
                    asyncio.run(gateway.acomplete(None, req))
                    state = gateway.replicas[gateway.served_by[hub.adapters.version(None, *name.split("/")).sha256]]
                else:
                    state, _ = gateway.handle.complete.remote(request_spec(req, None)).result(timeout_s=600)
                dt = time.perf_counter() - s
                states[state["replica"]] = state
                served[name].add(state["replica"])
                return dt

            t = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                lat = list(pool.map(one, workload))
            wall = time.perf_counter() - t
            final = {}
            for _ in range(10 * args.replicas):  # the last state of every replica (a plain call reaches either)
                st, _ = gateway.handle.complete.remote(request_spec(
                    CompletionRequest(model=BASE_ID, prompts=["x"], max_tokens=1), None)).result(timeout_s=600)
                final[st["replica"]] = st
            gets = sum(s["blob_cache"]["misses"] for s in final.values())
            loads = sum(s["adapter_cache"]["misses"] for s in final.values())
            results[mode] = {
                "requests": len(workload), "s3_gets": gets, "gets_per_req": gets / len(workload),
                "loads": loads, "loads_per_req": loads / len(workload), "hit_rate": 1 - loads / len(workload),
                "replicas_per_adapter": statistics.mean(len(v) for v in served.values()),
                "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * sorted(lat)[int(0.99 * (len(lat) - 1))],
                "wall_s": wall,
            }
            print(f"[{time.perf_counter() - t0:5.1f}s] {mode}: {results[mode]}", flush=True)
            serve.delete(APP_NAME)
    finally:
        gateway.close()
        serve.shutdown()
        conn.close()
        hub.close()
    report(results, args)


def report(results: dict, args: argparse.Namespace) -> None:
    a, r = results["affinity"], results["random"]
    print(f"\n{args.adapters} adapters, {args.replicas} replicas x {args.per_replica} adapters, {args.requests} "
          f"requests, {args.concurrency} clients")
    print("| metric | affinity | random | random / affinity |\n|---|---|---|---|")
    rows = [("S3 GETs (blob-cache misses)", "s3_gets", "{:.0f}"), ("S3 GETs per request", "gets_per_req", "{:.3f}"),
            ("adapter loads (engine cache misses)", "loads", "{:.0f}"), ("adapter loads per request", "loads_per_req",
                                                                          "{:.3f}"),
            ("hit rate (requests that loaded nothing)", "hit_rate", "{:.1%}"), ("replicas that loaded an adapter (mean)",
                                                              "replicas_per_adapter", "{:.2f}"),
            ("latency p50 (ms)", "p50_ms", "{:.1f}"), ("latency p99 (ms)", "p99_ms", "{:.1f}"),
            ("wall time (s)", "wall_s", "{:.1f}")]
    for label, k, fmt in rows:
        ratio = r[k] / a[k] if a[k] else float("inf")
        print(f"| {label} | {fmt.format(a[k])} | {fmt.format(r[k])} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
