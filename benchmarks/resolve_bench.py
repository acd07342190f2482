"""What resolving a request's ``model`` costs: SQL statements, transactions and milliseconds per request.

Every ``/v1`` request, served or refused, resolves its model through the registry before admission (the adapter row,
its version, the base row; visibility is checked per request, so nothing is cached across requests). Printed: the
statements and transactions of one ``Resolver.resolve`` of an adapter name, its time, and the adapter lookup alone
read in one transaction (``AdapterService.with_version``, what resolve uses) against two (``get`` then ``version``,
what it used before), interleaved in the same run; SQLite in a temporary directory, one thread.

    python benchmarks/resolve_bench.py [--repeats 5] [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()

    from serving_bench import build
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from hub.services.container import inference_service
    from hub.services.inference import CompletionRequest

    with tempfile.TemporaryDirectory() as tmp:
        hub, _base_id, _folder, _adapters = build(Path(tmp), "tiny", 2)
        svc = inference_service(hub)
        svc.complete(None, CompletionRequest(model="bench/ad1", prompts=["warm"], max_tokens=2))  # loads, checks
        counts = {"statements": 0, "transactions": 0}

        def statement(*_a: object) -> None:
            counts["statements"] += 1

        def transaction(*_a: object) -> None:
            counts["transactions"] += 1

        event.listen(Engine, "before_cursor_execute", statement)
        event.listen(Session, "after_begin", transaction)
        svc.resolver.resolve(None, "bench/ad1")
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Session, "after_begin", transaction)
        ads = svc.resolver.adapters
        two, one, whole = [], [], []
        for _ in range(args.repeats):  # interleaved, so drift in the machine's load hits both alike
            for out, call in ((two, lambda: (ads.get(None, "bench", "ad1"), ads.version(None, "bench", "ad1"))),
                              (one, lambda: ads.with_version(None, "bench", "ad1")),
                              (whole, lambda: svc.resolver.resolve(None, "bench/ad1"))):
                t = time.perf_counter()
                for _ in range(args.calls):
                    call()
                out.append((time.perf_counter() - t) / args.calls * 1000)
        svc.close()
        hub.close()
    a, b = statistics.median(two), statistics.median(one)
    print(f"Resolver.resolve of an adapter name: {counts['statements']} SQL statements in {counts['transactions']} "
          f"transactions, {statistics.median(whole):.2f} ms (median of {args.repeats} x {args.calls} calls)")
    print(f"adapter + version lookup: one transaction {b:.2f} ms, two (get, then version) {a:.2f} ms: {a / b:.2f}x")


if __name__ == "__main__":
    main()
