"""Probe of the Ray prototypes (hub/services/inference/ray_serve.py, hub/services/ray_jobs.py) on a local cluster.

Everything on 127.0.0.1: a moto S3 server (child process), SQLite, a local Ray cluster
(``ray.init(address="local", num_cpus=2, num_gpus=1)``, a logical GPU; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
keeps Ray on loopback), two Serve replicas of Loom's engine with ``@serve.multiplexed`` keys. It prints the time
to each stage, which replica served each adapter (affinity), the engine loads per replica and the blob cache,
a streamed completion, and a composition job run as a Ray task. It never runs ``ray stop``.

    python benchmarks/ray_probe.py --adapters 4 --requests 20
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import free_port  # noqa: E402
from tests.storage.s3server import AWS_ENV  # noqa: E402

BASE_ID = "loom-probe/llama"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapters", type=int, default=4)
    ap.add_argument("--requests", type=int, default=20)
    args = ap.parse_args()
    os.environ.update(AWS_ENV)
    t0 = time.perf_counter()
    stamp = lambda what: print(f"[{time.perf_counter() - t0:6.1f}s] {what}", flush=True)  # noqa: E731
    port = free_port()
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory() as d:
            run(Path(d), f"http://127.0.0.1:{port}", args, stamp)
    finally:
        moto.terminate()
        moto.wait(10)


def run(tmp: Path, endpoint: str, args: argparse.Namespace, stamp) -> None:
    import ray
    from ray import serve
    from transformers import AutoModelForCausalLM

    from benchmarks.blob_bench import make_bucket
    from hub.services.compositions import CompositionRequest
    from hub.services.container import Hub
    from hub.services.inference.ray_serve import affinity_key, build_app
    from hub.services.publish import PublishFiles
    from hub.settings import get_settings
    from tests.helpers import make_peft_adapter, save_byte_base

    bucket = make_bucket(endpoint)
    settings = get_settings(data_dir=tmp / "data", blob_url=f"s3://{bucket}/loom", s3_endpoint=endpoint,
                            inference_default_base=BASE_ID, workers=0, ray_address="local")
    hub = Hub(settings)
    base = save_byte_base(tmp / "base")
    hub.base_models.register(BASE_ID, (base / "config.json").read_bytes(), weights=str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base))
    alice = hub.users.ensure_user("alice")
    names = []
    for i in range(args.adapters):
        folder = make_peft_adapter(model, tmp / f"a{i}", seed=100 + i, base_id=BASE_ID)
        hub.publisher.publish(alice, f"alice/a{i}", PublishFiles((folder / "adapter_config.json").read_bytes(),
                                                                folder / "adapter_model.safetensors"))
        names.append(f"alice/a{i}")
    stamp(f"published {len(names)} adapters to S3")

    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    stamp(f"ray {ray.__version__} up: {ray.cluster_resources()}")
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    handle = serve.run(build_app(settings, replicas=2, models_per_replica=2), name="loom", route_prefix=None)
    stamp("serve up: 2 replicas")
    try:
        served = collections.defaultdict(set)
        t = time.perf_counter()
        for i in range(args.requests):
            name = names[i % len(names)]
            key = affinity_key(hub, name)
            spec = {"model": name, "prompts": ["Hello"], "max_tokens": 4, "temperature": 0.0}
            out = handle.options(multiplexed_model_id=key).complete.remote(spec).result()
            served[name].add(out["replica"])
        stamp(f"{args.requests} requests in {time.perf_counter() - t:.1f}s; replicas per adapter: "
              f"{ {n: len(r) for n, r in served.items()} }")
        mix = {"ids": names[:2], "weights": [0.5, 0.5]}
        mkey = affinity_key(hub, BASE_ID, mix)
        out = handle.options(multiplexed_model_id=mkey).complete.remote(
            {"model": BASE_ID, "prompts": ["Hi"], "max_tokens": 4, "merged": mix}).result()
        stamp(f"mixture key {mkey[:16]}... served by {out['replica']}")
        pieces = list(handle.options(stream=True, multiplexed_model_id=affinity_key(hub, names[0])).stream.remote(
            {"model": names[0], "prompts": ["Hello"], "max_tokens": 6}))
        stamp(f"streamed {len(pieces)} pieces through the handle")
        stats = {}
        for _ in range(8):  # a stats call goes to either replica: ask a few times
            s = handle.stats.remote().result()
            stats[s["replica"]] = s
        for pid, s in stats.items():
            stamp(f"replica {pid}: {len(s['loads'])} engine loads {sorted(k[:8] for k in s['loads'])}, "
                  f"blob cache {s['blob_cache']}")

        job, _ = hub.compositions.submit(alice, CompositionRequest(
            sources=tuple(names[:2]), method="linear", name="alice/merged"))
        from hub.services.container import job_dispatcher

        dispatcher = job_dispatcher(hub)
        dispatcher.start()
        while hub_job_status(hub, job.id) in ("queued", "running"):
            time.sleep(0.2)
        dispatcher.stop()
        stamp(f"composition job as a Ray task: status={hub_job_status(hub, job.id)}")
        out = handle.options(multiplexed_model_id=affinity_key(hub, "alice/merged")).complete.remote(
            {"model": "alice/merged", "prompts": ["Hello"], "max_tokens": 4}).result()
        stamp(f"alice/merged served by replica {out['replica']}: {out['texts']}")
    finally:
        serve.shutdown()
        ray.shutdown()
        hub.close()


def hub_job_status(hub, job_id: str) -> str:
    from hub.jobs.queue import JobQueue

    return JobQueue(hub.sessions).get(job_id, check_owner=False).status


if __name__ == "__main__":
    main()
