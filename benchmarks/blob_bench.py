"""Blob store costs: S3 (a moto server in a child process, on 127.0.0.1) against the local store, in one run.

For each size: ``put_file`` of new content; a cold read (S3: ``path()`` misses the node's cache, downloads
the blob, checks its sha256, caches it; then the file is read) against reading the local store's file; the
same read warm (a cache hit); a streamed read (``iter_bytes``, what a pull serves, S3 not cached); and the
growth of this process's peak RSS during the put (obstore sends a conditional put as one request, so the blob
is held in memory). Ratios are S3 / local.

moto is a Python server on the same 2 cores, so the S3 timings include its CPU time: they show the shape of
the costs (what is paid once per node, what a cache hit costs), not what a real S3 or SeaweedFS takes.

    python benchmarks/blob_bench.py                      # 1, 16 and 64 MiB, 3 repeats
    python benchmarks/blob_bench.py --sizes 1,128 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import free_port  # noqa: E402
from tests.storage.s3server import AWS_ENV, aws_env  # noqa: E402


def peak_rss_reset() -> None:
    """Reset the process's peak RSS (VmHWM) so the next reading covers one operation (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_store(store, size: int, repeats: int, tmp: Path, forget: Callable[[str], None]) -> dict[str, float]:
    """Median seconds of each operation, and the median peak-RSS growth of a put in MB."""
    out: dict[str, list[float]] = {"put_file": [], "read_cold": [], "read_warm": [], "stream": [], "put_rss": []}
    for r in range(repeats):
        src = tmp / f"src-{size}-{r}.bin"
        src.write_bytes(os.urandom(size))
        base = rss_mb()
        peak_rss_reset()
        t = time.perf_counter()
        key = store.put_file(src).key
        out["put_file"].append(time.perf_counter() - t)
        out["put_rss"].append(peak_rss_mb() - base)
        forget(key)
        out["read_cold"].append(timed(lambda k=key: store.path(k).read_bytes()))
        out["read_warm"].append(timed(lambda k=key: store.path(k).read_bytes()))
        forget(key)
        out["stream"].append(timed(lambda k=key: sum(len(c) for c in store.iter_bytes(k))))
        src.unlink()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,16,64", help="blob sizes in MiB, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from hub.storage import BlobCache, LocalBlobStore, S3BlobStore

    sizes = [int(float(s) * 1024 * 1024) for s in args.sizes.split(",")]
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              env={**os.environ, **AWS_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        with aws_env(), tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            bucket = make_bucket(endpoint)
            local = LocalBlobStore(tmp / "local")
            s3 = S3BlobStore(f"s3://{bucket}/bench", BlobCache(tmp / "cache", 1 << 40), endpoint=endpoint)
            print(f"{'op':<11}{'MiB':>6}{'local ms':>11}{'S3 ms':>10}{'S3/local':>10}")
            for size in sizes:
                lo = bench_store(local, size, args.repeats, tmp, lambda k: None)
                s3r = bench_store(s3, size, args.repeats, tmp, s3.cache.discard)
                for op in ("put_file", "read_cold", "read_warm", "stream"):
                    print(f"{op:<11}{size / 2**20:>6.0f}{lo[op] * 1e3:>11.1f}{s3r[op] * 1e3:>10.1f}"
                          f"{s3r[op] / lo[op]:>9.1f}x")
                print(f"{'put peak RSS':<11}{size / 2**20:>6.0f}   local +{lo['put_rss']:.0f} MB, "
                      f"S3 +{s3r['put_rss']:.0f} MB ({s3r['put_rss'] / (size / 2**20):.1f}x the blob)")
    finally:
        server.terminate()
        server.wait(10)


def make_bucket(endpoint: str) -> str:
    """Create a bucket on the server (waiting for it to listen); returns its name."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for _ in range(100):
        try:
            client.create_bucket(Bucket="loom-bench")
            return "loom-bench"
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.1)
    raise SystemExit(f"the moto server at {endpoint} did not start")

if __name__ == "__main__":
    main()
