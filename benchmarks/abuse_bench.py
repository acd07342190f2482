"""Bounded abuse run against a real server subprocess: oversize JSON, row explosion, a disconnect storm.

Starts ``uvicorn`` on the Loom app in a child process (a tiny byte-level Llama registered as a base, one
adapter published, SQLite in a temp dir), then for each attack prints what the server answered, how long it
took, and the server's RSS and CPU seconds before and after (read from ``/proc/<pid>``):

* oversize JSON: one 10 MB prompt (refused by ``LOOM_MAX_JSON_BYTES`` before it is parsed);
* row explosion: ``n=16`` x 64 prompts = 1,024 rows (refused by ``LOOM_INFERENCE_MAX_ROWS_PER_REQUEST``);
* disconnect storm: ``--clients`` streams of 80 tokens, each dropped after its first chunk (beyond
  ``LOOM_INFERENCE_MAX_CONCURRENT_PER_USER``, 16 by default, they get 429: one address is one caller); the CPU
  the server spends in the 2 s after the last drop shows whether work for gone clients stopped
  (``loom_inference_cancelled_requests_total`` from ``/metrics`` counts the freed rows).

    python benchmarks/abuse_bench.py            # 32 clients
    python benchmarks/abuse_bench.py --clients 64
    python benchmarks/abuse_bench.py --scheduler window   # the baseline: no cancellation
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE_ID = "abuse/tiny-llama"




def prepare(root: Path) -> None:
    from hub.services.container import Hub
    from hub.services.publish import PublishFiles
    from hub.settings import get_settings
    from tests.helpers import HashEmbedder, make_peft_adapter, save_byte_base

    base = save_byte_base(root / "base")
    with Hub(get_settings(data_dir=root / "data"), embedder_factory=lambda n: HashEmbedder()) as hub:
        hub.base_models.register(BASE_ID, (base / "config.json").read_bytes(), weights=str(base))
        from transformers import AutoModelForCausalLM

        d = make_peft_adapter(AutoModelForCausalLM.from_pretrained(str(base)), root / "ad", seed=1, base_id=BASE_ID)
        hub.publisher.publish(hub.users.ensure_user("abuse"), "abuse/ad",
                              PublishFiles(config=(d / "adapter_config.json").read_bytes(),
                                           weights=d / "adapter_model.safetensors"))


def serve(data_dir: str, port: int) -> None:
    """The child: the Loom app on 127.0.0.1:port."""
    import uvicorn

    from hub.api import create_app
    from hub.settings import get_settings
    from tests.helpers import HashEmbedder

    app = create_app(get_settings(data_dir=Path(data_dir)), embedder_factory=lambda n: HashEmbedder(),
                     warm_index=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")


def usage(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of ``pid``."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


def report(name: str, pid: int, before: tuple[float, float], outcome: str, dt: float) -> None:
    after = usage(pid)
    print(f"{name:18s} {outcome:40s} {dt * 1000:8.0f} ms   RSS {before[0]:7.0f} -> {after[0]:7.0f} MiB   "
          f"CPU {before[1]:7.2f} -> {after[1]:7.2f} s")


async def storm(url: str, clients: int) -> dict[int, int]:
    import httpx

    body = {"model": "abuse/ad", "prompt": "go", "max_tokens": 80, "temperature": 0, "stream": True}

    async def one(c: httpx.AsyncClient) -> int:
        async with c.stream("POST", url + "/v1/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    return r.status_code  # leaving: the stream is closed here
        return r.status_code

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients + 4)) as c:
        codes = await asyncio.gather(*(one(c) for _ in range(clients)))
    return {code: codes.count(code) for code in sorted(set(codes))}


def metric(url: str, name: str) -> float:
    import httpx

    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name):
            return float(line.split()[-1])
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--scheduler", choices=["continuous", "window"], default="continuous",
                    help="window: the earlier batcher, which runs a dropped request to its end (a baseline)")
    ap.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    import httpx

    from tests.helpers import free_port

    with tempfile.TemporaryDirectory() as tmp:
        prepare(Path(tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "LOOM_HF_ENDPOINT": "http://127.0.0.1:9", "LOOM_INFERENCE_DEFAULT_BASE": BASE_ID,
               "LOOM_SCHEDULER": args.scheduler}
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(Path(tmp) / "data"), str(port)], env=env)
        try:
            deadline = time.time() + 120
            while True:
                try:
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.2)
            ok = httpx.post(url + "/v1/completions", json={"model": "abuse/ad", "prompt": "warm", "max_tokens": 4},
                            timeout=120)
            print(f"server pid {child.pid}; warm-up request {ok.status_code}\n")
            print(f"{'attack':18s} {'answer':40s} {'time':>11s}")

            before, t0 = usage(child.pid), time.perf_counter()
            r = httpx.post(url + "/v1/completions", json={"model": "abuse/ad", "prompt": "x" * 10_000_000},
                           timeout=120)
            report("oversize JSON", child.pid, before, f"{r.status_code} {r.json()['error']['code']}",
                   time.perf_counter() - t0)

            before, t0 = usage(child.pid), time.perf_counter()
            r = httpx.post(url + "/v1/completions", json={"model": "abuse/ad", "prompt": ["tell me"] * 64, "n": 16,
                                                          "max_tokens": 240}, timeout=120)
            report("row explosion", child.pid, before, f"{r.status_code} {r.json()['error']['code']}",
                   time.perf_counter() - t0)

            before, t0 = usage(child.pid), time.perf_counter()
            served = asyncio.run(storm(url, args.clients))
            dropped = time.perf_counter() - t0
            mid = usage(child.pid)
            time.sleep(2.0)
            report("disconnect storm", child.pid, before, f"{args.clients} streams dropped, status {served}", dropped)
            after = usage(child.pid)
            print(f"{'':18s} CPU in the 2 s after the last drop: {after[1] - mid[1]:.2f} s; "
                  f"rows still running: {metric(url, 'vllm:num_requests_running'):.0f}; "
                  f"cancelled rows: {metric(url, 'loom_inference_cancelled_requests_total'):.0f}")
        finally:
            child.terminate()
            child.wait(timeout=30)


if __name__ == "__main__":
    main()
