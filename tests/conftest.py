"""Shared fixtures: a pico Llama built in code, PEFT adapters trained-free on it, seeded."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# CI has 2 cores and runs 2 xdist workers: one BLAS/OpenMP thread each avoids oversubscription, which made
# small QR/SVD calls 100x slower on a loaded machine. Subprocesses (servers, workers) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# LOOM_INFERENCE_GC_FREEZE runs a full collection after each engine load: in the suite's long-lived processes
# (hundreds of loads, millions of objects) that cost ~15 s in tests/inference alone. Off here, on by default;
# tests/inference/test_serving.py::test_a_loaded_base_is_frozen_out_of_the_cyclic_collector serves with it on.
os.environ.setdefault("LOOM_INFERENCE_GC_FREEZE", "false")

import pytest  # noqa: E402

from tests.helpers import make_peft_adapter, pico_llama  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state, so a numerical failure reproduces (CI once failed on 1 of 80
    elements of an unseeded float32 comparison)."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _sigint_handled(request):
    """Ctrl-C stays Python's KeyboardInterrupt in the test process. A library that leaves SIGINT ignored would be
    inherited by every process a later test starts (a ``loom worker`` that never stops on Ctrl-C, Ray workers that
    ignore ``ray.cancel``): it is put back and named, so the test that changed it can be found."""
    import signal
    import threading
    import warnings

    def restore(when: str) -> None:
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            warnings.warn(f"SIGINT was {signal.getsignal(signal.SIGINT)!r} {when} {request.node.nodeid}; restored",
                          stacklevel=1)
            signal.signal(signal.SIGINT, signal.default_int_handler)

    restore("before")
    yield
    restore("after")


@pytest.fixture(scope="session")
def tiny_model():
    """A 2-layer, hidden-32 Llama with random weights (seeded)."""
    return pico_llama()


@pytest.fixture(scope="session")
def peft_adapter_dir(tmp_path_factory, tiny_model):
    """A PEFT-saved LoRA folder (q_proj, v_proj, rank 4, random non-zero B) on the pico Llama."""
    d = tmp_path_factory.mktemp("peft_adapter")
    make_peft_adapter(tiny_model, d, seed=1)
    return d


#: test folders whose session fixtures are expensive (a trained zoo, a live server + browser, a served base):
#: under ``pytest -n 2 --dist loadgroup`` each runs on one worker, so its fixtures are built once, not twice.
SHARED_FIXTURE_GROUPS = ("testbed", "web", "inference", "generation", "router_training", "real", "ray_cluster")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = item.path.relative_to(config.rootpath).parts
        if len(parts) > 2 and parts[0] == "tests" and parts[1] in SHARED_FIXTURE_GROUPS:
            item.add_marker(pytest.mark.xdist_group(parts[1]))
