"""What resolving a request's ``model`` costs: SQL statements, transactions and milliseconds per request.

Every admitted ``/v1`` request resolves its model through the registry before admission (the adapter row,
its version, the base row; visibility is checked per request, so nothing is cached across requests). Printed: the
statements and transactions of one ``Resolver.resolve`` of an adapter name, its time, and the adapter lookup alone
read in one transaction (``AdapterService.with_version``, what resolve uses) against two (``get`` then ``version``,
what it used before), interleaved in the same run; SQLite in a temporary directory, one thread. Then what a request
refused with 429 costs the service (``InferenceService.complete`` until it raises; the scheduler is held full by a
running row): a model this viewer asked for before, turned away before it is resolved (``Scheduler.precheck``),
against the same request with that memory cleared, resolved and tokenized, then refused (the path before), interleaved.

    python benchmarks/resolve_bench.py [--repeats 5] [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
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
        known, unknown = refusals(svc, args.repeats, args.calls)
        svc.close()
        http_known, http_unknown = http_refusals(hub, args.repeats, args.calls)
        hub.close()
    a, b = statistics.median(two), statistics.median(one)
    print(f"Resolver.resolve of an adapter name: {counts['statements']} SQL statements in {counts['transactions']} "
          f"transactions, {statistics.median(whole):.2f} ms (median of {args.repeats} x {args.calls} calls)")
    print(f"adapter + version lookup: one transaction {b:.2f} ms, two (get, then version) {a:.2f} ms: {a / b:.2f}x")
    k, u = statistics.median(known), statistics.median(unknown)
    print(f"a request refused with 429 (scheduler full): model seen before, turned away before resolving {k:.3f} ms; "
          f"resolved and tokenized first {u:.3f} ms: {u / k:.1f}x")
    k, u = statistics.median(http_known), statistics.median(http_unknown)
    print(f"the same over HTTP (uvicorn on 127.0.0.1, one request at a time, the client in this process): "
          f"{k:.2f} ms vs {u:.2f} ms per 429: {u / k:.2f}x")


def http_refusals(hub: object, repeats: int, calls: int) -> tuple[list[float], list[float]]:
    """:func:`refusals` through a real server: ms per refused ``POST /v1/completions``, interleaved."""
    import httpx

    from hub.api import create_app
    from tests.helpers import serve_in_thread

    app = create_app(hub=hub, warm_index=False)
    body = {"model": "bench/ad1", "prompt": "a prompt of a few words", "max_tokens": 8}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/v1/completions", json=body).status_code == 200  # loads the base, seen from now on
        svc = app.state.inference
        return refusals(svc, repeats, calls, lambda: client.post("/v1/completions", json=body).status_code == 429)


def refusals(svc: object, repeats: int, calls: int,
             send: Callable[[], bool] | None = None) -> tuple[list[float], list[float]]:
    """ms per refused request, with and without the memory of the model's base, interleaved; ``send`` makes one
    request and says whether it was refused (default: ``svc.complete``)."""
    import threading

    from hub.core.errors import TooManyRequestsError
    from hub.services.inference import CompletionRequest

    engine = svc.engine(svc.default_base())  # type: ignore[attr-defined]
    sched, gate = engine.batcher, threading.Event()
    sched.max_running, sched.admission.max_queued = 1, 0
    hook = engine.base.mixed.model.register_forward_pre_hook(lambda *a: gate.wait() and None)  # holds its slot
    req = CompletionRequest(model="bench/ad1", prompts=["a prompt of a few words"], max_tokens=8)
    held = threading.Thread(target=lambda: svc.complete(None, req))  # type: ignore[attr-defined]
    held.start()
    while not sched.num_running:  # its row is in the batch, its prefill held
        time.sleep(0.001)
    known: list[float] = []
    unknown: list[float] = []

    def direct() -> bool:
        try:
            svc.complete(None, req)  # type: ignore[attr-defined]
        except TooManyRequestsError:
            return True
        return False

    send = send or direct
    for _ in range(repeats):
        for out, forget in ((known, False), (unknown, True)):
            t = time.perf_counter()
            for _ in range(calls):
                if forget:
                    svc._bases_seen.clear()  # type: ignore[attr-defined]
                if not send():
                    raise SystemExit("the request was admitted: the scheduler is not full")
            out.append((time.perf_counter() - t) / calls * 1000)
    gate.set()
    hook.remove()
    held.join()
    return known, unknown


if __name__ == "__main__":
    main()
