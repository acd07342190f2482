"""Fixtures of the Hugging Face sync tests: the fake Hub ones (see fixtures.py) and real PEFT folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import make_peft_adapter
from tests.hf_sync.fixtures import OTHER_TOKEN, TOKEN, anon_api, api, fake_hub, hf_env  # noqa: F401


@pytest.fixture(scope="session")
def peft_dirs(tmp_path_factory, tiny_model) -> dict[str, Path]:
    """Two real PEFT LoRA folders (seeds 1 and 2) on the pico Llama, plus a pickle-only copy."""
    root = tmp_path_factory.mktemp("hf_peft")
    one = make_peft_adapter(tiny_model, root / "one", seed=1)
    two = make_peft_adapter(tiny_model, root / "two", seed=2, r=2)
    pickles = root / "pickle_only"
    pickles.mkdir()
    shutil.copy(one / "adapter_config.json", pickles / "adapter_config.json")
    (pickles / "adapter_model.bin").write_bytes(b"\x80\x04not-really-a-pickle")
    return {"one": one, "two": two, "pickle_only": pickles}
