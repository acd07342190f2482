"""Fixtures of the generation tests: planted snapshot clouds of tiny adapters, a toy text encoder."""

from __future__ import annotations

import hashlib

import pytest
import torch

from hub.core.adapter import LoraAdapter, LoraLayer, LoraSpec

BASE = "loom-test/toy"
MODULES = ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj")


def planted_clouds(n_tasks: int = 3, n_snap: int = 8, dim: int = 16, r: int = 4, noise: float = 0.05,
                   seed: int = 0) -> list[list[LoraAdapter]]:
    """``n_tasks`` well-separated task means, ``n_snap`` Gaussian snapshots around each (L = 2*2*r*dim)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_tasks):
        means = {m: (torch.randn((r, dim), generator=g), torch.randn((dim, r), generator=g)) for m in MODULES}
        snaps = []
        for _ in range(n_snap):
            layers = {m: LoraLayer(a=a + noise * torch.randn(a.shape, generator=g),
                                   b=b + noise * torch.randn(b.shape, generator=g), alpha=8.0)
                      for m, (a, b) in means.items()}
            snaps.append(LoraAdapter(layers=layers, spec=LoraSpec(base_model=BASE)))
        out.append(snaps)
    return out


def toy_embed(text: str, dim: int = 32) -> torch.Tensor:
    """Hashed bag of words through a fixed random projection, L2-normalised (the spec's toy encoder)."""
    v = torch.zeros(dim)
    for w in text.lower().split():
        h = int(hashlib.sha256(w.encode()).hexdigest()[:8], 16)
        v += torch.randn(dim, generator=torch.Generator().manual_seed(h))
    return v / v.norm().clamp_min(1e-8)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run fastest (and deterministically) on one intra-op thread on a shared host."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def clouds() -> list[list[LoraAdapter]]:
    return planted_clouds()


def as_saved_before(folder, setting: str, tensor: str | None = None):
    """Rewrite a saved generator as one written before ``setting`` existed: the key leaves its config (and
    ``tensor``, if given, its safetensors file). Returns the folder."""
    import json

    from safetensors.torch import load_file, save_file

    from generation.artifact import META

    meta = json.loads((folder / META).read_text())
    del meta["config"][setting]
    (folder / META).write_text(json.dumps(meta))
    if tensor is not None:
        weights = next(folder.glob("*.safetensors"))
        tensors = load_file(weights)
        del tensors[tensor]
        save_file(tensors, weights)
    return folder
