"""Builders for tests: tiny real transformers models and real PEFT adapters, no downloads."""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

PICO_BASE_ID = "loom-test/pico-llama"


def pico_llama(seed: int = 0, hidden: int = 32, layers: int = 2, vocab: int = 64):
    """A tiny LlamaForCausalLM with random weights (hidden 32, 2 layers), in eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    cfg.name_or_path = PICO_BASE_ID
    model = LlamaForCausalLM(cfg).eval()
    return model


def make_peft_adapter(
    model,
    folder: str | Path,
    *,
    seed: int,
    r: int = 4,
    alpha: int = 8,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
    use_rslora: bool = False,
    rank_pattern: dict | None = None,
    base_id: str = PICO_BASE_ID,
    **extra,
) -> Path:
    """Create a LoRA with PEFT on a copy of ``model``, randomise A and B, save it with PEFT."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=list(targets),
        use_rslora=use_rslora,
        rank_pattern=rank_pattern or {},
        task_type="CAUSAL_LM",
        **extra,
    )
    pm = get_peft_model(copy.deepcopy(model), cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    pm.peft_config["default"].base_model_name_or_path = base_id
    pm.save_pretrained(str(folder))
    return Path(folder)


def peft_logits(model, adapter_dir: str | Path, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` with the PEFT adapter at ``adapter_dir`` loaded by PEFT itself."""
    from peft import PeftModel

    pm = PeftModel.from_pretrained(copy.deepcopy(model), str(adapter_dir)).eval()
    with torch.no_grad():
        return pm(input_ids=input_ids).logits


def byte_llama(seed: int = 0, layers: int = 2):
    """A LlamaForCausalLM over the 259-id testbed byte tokenizer (hidden 32), eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=96,
                      bos_token_id=257, eos_token_id=258, pad_token_id=256)
    return LlamaForCausalLM(cfg).eval()


def save_byte_base(folder: str | Path, seed: int = 0, layers: int = 2) -> Path:
    """:func:`byte_llama` saved with save_pretrained next to the testbed's byte tokenizer (a servable base)."""
    from testbed.tokenizer import save_tokenizer

    d = Path(folder)
    byte_llama(seed, layers).save_pretrained(str(d))
    save_tokenizer(d)
    return d


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: Any = None, timeout: float = 120.0) -> None:
    """Wait until ``url/healthz`` answers 200 (failing at once if ``proc``, the server's process, exits)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc is None or proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer /healthz in {timeout:.0f} s")


@contextlib.contextmanager
def serve_in_thread(app, timeout: float = 30.0):
    """Run ``app`` on a real uvicorn server in a thread on a free 127.0.0.1 port; yields its URL."""
    import threading
    import time

    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + timeout
    while not srv.started:
        if time.time() > deadline or not t.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        t.join(timeout=10)


class OneThreadPool:
    """An ASGI app served with a one-thread default executor on its event loop: a request that held a pool thread
    while it waited for its rows (or for a replica) would then serialize every other request behind it."""

    def __init__(self, app) -> None:
        self.app, self.pool = app, None

    async def __call__(self, scope, receive, send) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        if self.pool is None:
            self.pool = ThreadPoolExecutor(1)
            asyncio.get_running_loop().set_default_executor(self.pool)
        await self.app(scope, receive, send)


def publish_router(hub, user, name: str, state, description: str = "") -> str:
    """Publish a :class:`routing.checkpoint.RouterState` as router ``name``; returns ``ns/name@version``."""
    import tempfile

    from hub.services.artifacts import router_bundle

    with tempfile.TemporaryDirectory() as tmp:
        res = hub.publisher.publish(user, name, router_bundle(state, Path(tmp) / "router"), description=description)
    return f"{res.adapter.full_name}@{res.version.number}"


def fresh_python(code: str, timeout: float = 120) -> str:
    """Run ``code`` in a new interpreter (nothing of ours imported yet); its stdout, or fail with its stderr."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@contextlib.contextmanager
def served_zoo(zoo, data_dir):
    """A testbed zoo published into a fresh hub (its first base the one ``auto`` uses), served over HTTP by a
    real server: yields ``(url, hub)``. Nothing leaves the machine (the Hugging Face endpoint is a closed port)."""
    from hub.api import create_app
    from hub.cli.testbed import publish_zoo_into
    from hub.services.container import Hub
    from hub.settings import get_settings

    settings = get_settings(data_dir=data_dir, hf_endpoint="http://127.0.0.1:9",
                            inference_default_base=zoo.base_a.id)
    with Hub(settings) as hub:
        publish_zoo_into(hub, zoo)
        with serve_in_thread(create_app(hub=hub, warm_index=False)) as url:
            yield url, hub


class HashEmbedder:
    """A deterministic hashing embedder (16 dims) for benchmarks that do not measure search: publishing stays
    cheap and needs no model."""

    name, dim = "bench-hash", 16

    def embed(self, texts):
        import hashlib

        import numpy as np

        out = np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:16], dtype=np.uint8).astype(np.float32)
                        + 1.0 for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)
