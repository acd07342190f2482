"""Fixtures of the inference tests: a tiny Llama with the testbed byte tokenizer saved to a folder and
registered as a base model, three adapters published with task descriptions, and an inference service.
"""

from __future__ import annotations

import pytest

from tests.helpers import byte_llama as tiny_llama
from tests.helpers import save_byte_base, serve_in_thread
from tests.services.fixtures import db_templates  # noqa: F401

BASE_ID = "loom-test/infer-llama"
OTHER_BASE_ID = "loom-test/other-llama"
DESCRIPTIONS = {
    "alice/french": ("Translate English sentences into French.", ["translation", "french"]),
    "alice/math": ("Solve arithmetic math word problems: addition, subtraction, multiplication.", ["math"]),
    "bob/python": ("Write Python code: functions, loops and classes for programming tasks.", ["code"]),
}




@pytest.fixture(scope="session")
def base_dir(tmp_path_factory):
    """The tiny base saved with save_pretrained, tokenizer included."""
    return save_byte_base(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def other_base_dir(tmp_path_factory):
    """A second base (3 layers): adapters for it do not fit the first."""
    return save_byte_base(tmp_path_factory.mktemp("other"), seed=5, layers=3)


@pytest.fixture(scope="session")
def adapter_dirs(tmp_path_factory, base_dir):
    """PEFT folders: name -> folder (three for the base, one for the other base)."""
    from transformers import AutoModelForCausalLM

    from tests.helpers import make_peft_adapter

    root = tmp_path_factory.mktemp("adapters")
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    out = {}
    for i, name in enumerate(DESCRIPTIONS):
        out[name] = make_peft_adapter(model, root / name.replace("/", "_"), seed=10 + i, r=4 + 2 * i,
                                      alpha=8, targets=("q_proj", "v_proj", "down_proj"), base_id=BASE_ID,
                                      use_rslora=(i == 2))
    other = tiny_llama(seed=5, layers=3)
    out["carol/other"] = make_peft_adapter(other, root / "other", seed=20, base_id=OTHER_BASE_ID)
    return out


class MemoEmbedder:
    """The real embedder, with each text's vector remembered across tests (the CPU is shared)."""

    def __init__(self, inner):
        self.inner, self.memo = inner, {}

    def embed(self, texts):
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            for t, v in zip(todo, np.asarray(self.inner.embed(todo), dtype=np.float32), strict=True):
                self.memo[t] = v
        return np.stack([self.memo[t] for t in texts])

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="session")
def embedder():
    from hub.search.embedder import load_embedder

    return MemoEmbedder(load_embedder(device="cpu"))


def peft_greedy(base_dir, adapter_dir, prompt_ids, n, stop_at_eos=True):
    """Greedy tokens with PEFT applying the adapter (or the bare base when adapter_dir is None), cut before the
    eos token (258); ``stop_at_eos=False``: generate runs all ``n`` tokens (no eos), eos tokens kept."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                             eos_token_id=258 if stop_at_eos else None, pad_token_id=256)
    new = out[0, ids.shape[1]:].tolist()
    return new[: new.index(258)] if stop_at_eos and 258 in new else new


def stream_events(service, req, viewer=None) -> list:
    """Every event ``service.astream`` gives for ``req``: ``(choice index, text piece)``s, then the result."""
    import asyncio

    async def run() -> list:
        return [ev async for ev in await service.astream(viewer, req)]

    return asyncio.run(run())


def publish(hub, folder, name, description="", tags=()):
    from hub.services.publish import PublishFiles

    user = hub.users.ensure_user(name.split("/")[0])
    files = PublishFiles(config=(folder / "adapter_config.json").read_bytes(),
                         weights=folder / "adapter_model.safetensors")
    return hub.publisher.publish(user, name, files, description=description, tags=list(tags))


@pytest.fixture(params=["sqlite"])
def db_kind(request):
    return request.param


@pytest.fixture
def ihub(tmp_path, db_templates, db_kind, embedder, base_dir, other_base_dir, adapter_dirs):  # noqa: F811
    """A hub with both bases registered and the four adapters published (SQLite unless parametrized)."""
    from hub.services.container import Hub
    from hub.settings import get_settings

    with db_templates.database(db_kind, tmp_path) as url:
        settings = get_settings(data_dir=tmp_path / "data", database_url=url, inference_batch_window_ms=30.0,
                                inference_default_base=BASE_ID, semantic_router_threshold=0.3)
        hub = Hub(settings, migrate=False, embedder_factory=lambda name: embedder)
        hub.base_models.register(BASE_ID, (base_dir / "config.json").read_bytes(), weights=str(base_dir))
        hub.base_models.register(OTHER_BASE_ID, (other_base_dir / "config.json").read_bytes(),
                                 weights=str(other_base_dir))
        for name, (desc, tags) in DESCRIPTIONS.items():
            publish(hub, adapter_dirs[name], name, desc, tags)
        publish(hub, adapter_dirs["carol/other"], "carol/other", "Summarise news articles.")
        try:
            yield hub
        finally:
            hub.close()


@pytest.fixture
def service(ihub):
    from hub.services.container import inference_service

    svc = inference_service(ihub, "cpu")
    yield svc
    svc.close()


@pytest.fixture
def server(ihub):
    """A real server with the hub's app (the OpenAI-compatible routes are part of it); yields (url, app)."""
    from hub.api import create_app

    app = create_app(hub=ihub, warm_index=False)
    with serve_in_thread(app) as url:
        yield url, app
    svc = getattr(app.state, "inference", None)
    if svc is not None:
        svc.close()
