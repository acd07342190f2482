"""Fixtures of the web UI tests: one live hub (uvicorn in a thread, SQLite in a temp dir) and one headless
Chromium (Debian's, driven by Playwright) shared by the whole session; a fresh browser context per test."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
CHROMIUM = "/usr/bin/chromium"
SERVED_BASE = "loom-test/web-llama"  # registered with weights: the /v1 endpoints really answer for it
SERVED_ADAPTER = "alice/web-french"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@dataclass
class Live:
    """A running hub: its URL, the service container, two users' tokens and PEFT folders on disk."""

    url: str
    hub: object
    alice: str
    bob: str
    adapters: list[Path]


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> Live:
    """Start the app on a free 127.0.0.1 port and seed two public decoy adapters through the services."""
    import uvicorn

    from hub.api import create_app
    from hub.jobs.worker import Worker
    from hub.services.publish import PublishFiles
    from hub.settings import get_settings
    from tests.helpers import make_peft_adapter, pico_llama

    root = tmp_path_factory.mktemp("web")
    # the Hugging Face endpoint is a closed local port: nothing leaves the machine
    app = create_app(get_settings(data_dir=root / "data", hf_endpoint="http://127.0.0.1:9"), warm_index=False)
    hub = app.state.hub
    alice_user, alice = hub.users.create_token("alice")
    _, bob = hub.users.create_token("bob")
    model = pico_llama()
    dirs = [make_peft_adapter(model, root / f"ad{i}", seed=10 + i, r=4 + 4 * (i % 2)) for i in range(3)]
    decoys = [("alice/news-summariser", "Summarises long news articles into three short bullet points.",
               ["summarization"]),
              ("alice/french-english", "Translates French sentences into fluent English.", ["translation"])]
    for (name, desc, tags), d in zip(decoys, dirs[1:], strict=True):
        hub.publisher.publish(alice_user, name, PublishFiles(config=(d / "adapter_config.json").read_bytes(),
                                                            weights=d / "adapter_model.safetensors"),
                             description=desc, tags=tags, license="apache-2.0")

    _serve_a_base(hub, alice_user, root)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="web-test-server")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    stop = threading.Event()  # one job worker, in a thread here (``loom serve`` runs them as processes)
    worker = threading.Thread(target=Worker(hub.queue, hub.handlers, name="web-test").run_forever,
                              kwargs={"poll": 0.2, "should_stop": stop.is_set}, daemon=True, name="web-test-worker")
    worker.start()
    yield Live(f"http://127.0.0.1:{port}", hub, alice, bob, dirs)
    stop.set()
    worker.join(timeout=30)
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


def _serve_a_base(hub, user, root: Path) -> None:
    """Register a tiny Llama (byte tokenizer, weights on disk) and publish an adapter for it."""
    import json

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hub.services.publish import PublishFiles
    from testbed.tokenizer import save_tokenizer
    from tests.helpers import make_peft_adapter

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=96,
                      bos_token_id=257, eos_token_id=258, pad_token_id=256)
    model = LlamaForCausalLM(cfg).eval()
    base_dir = root / "served-base"
    model.save_pretrained(str(base_dir))
    save_tokenizer(base_dir)
    hub.base_models.register(SERVED_BASE, json.loads((base_dir / "config.json").read_text()), weights=str(base_dir))
    d = make_peft_adapter(model, root / "served-adapter", seed=7, base_id=SERVED_BASE)
    hub.publisher.publish(user, SERVED_ADAPTER, PublishFiles(config=(d / "adapter_config.json").read_bytes(),
                                                            weights=d / "adapter_model.safetensors"),
                         description="Translate English sentences into French.", tags=["translation"])


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def context(browser, live):
    """A fresh browser context (own cookies and localStorage) on the live hub."""
    ctx = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def sign_in(page, token: str) -> None:
    """Sign in through the sign-in form (stores the token and sets the session cookie)."""
    page.goto("/signin")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
