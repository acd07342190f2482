"""Fixtures of the merging tests: tiny random adapters (in memory) and a pico Llama with PEFT folders."""

from __future__ import annotations

import pytest

from tests.merging.builders import rand_adapter


@pytest.fixture(scope="session")
def trio():
    """Three compatible adapters with different ranks, alphas and scaling modes."""
    return [
        rand_adapter(1, rank=4, alpha=8.0),
        rand_adapter(2, rank=2, alpha=3.0, use_rslora=True),
        rand_adapter(3, rank=3, alpha=6.0),
    ]


@pytest.fixture(scope="session")
def pico():
    """The pico Llama of tests/helpers (hidden 32, 2 layers), seeded."""
    from tests.helpers import pico_llama

    return pico_llama()
