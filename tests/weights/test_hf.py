"""A Hugging Face repo id as a base: downloaded once at its commit sha (config, tokenizer, chat template and
safetensors only), served; a repo or revision that does not exist, a repo that is not a causal LM, pickle-only
weights or no network: a clear error and nothing registered. Against the fake Hub (a real HTTP server)."""

from __future__ import annotations

import json

import pytest

from hub.core.errors import AuthenticationError, InvalidInputError, NotFoundError, UpstreamError
from tests.hf_sync.fixtures import TOKEN
from tests.weights.conftest import hf_greedy, served_greedy

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
REPO = "loom-org/tiny-llama"


@pytest.fixture
def hub_on_fake(make_hub, fake_hub):  # noqa: F811
    return make_hub(hf_endpoint=fake_hub.url)


def _seed_base(fake_hub, folder, repo: str = REPO) -> str:
    fake_hub.create_repo(repo)
    files = {p.name: p for p in folder.iterdir()}
    files["pytorch_model.bin"] = b"\x80\x04 a pickle that must never be downloaded"
    files["README.md"] = "---\nlicense: apache-2.0\n---\n# a tiny llama\n"
    files["extra/notes.safetensors"] = b"not at the top level"
    return fake_hub.commit(repo, files)


def _downloads(fake_hub) -> list[str]:
    return [p for m, p in fake_hub.requests if m == "GET" and "/resolve/" in p]


def test_hf_id_downloads_once_pinned_and_serves(hub_on_fake, fake_hub, tiny_base):
    from transformers import AutoTokenizer

    model, folder = tiny_base
    sha = _seed_base(fake_hub, folder)
    fake_hub.tag(REPO, "v1")
    hub = hub_on_fake
    row = hub.base_models.register("loom-test/hf-llama", weights=f"{REPO}@v1")  # no config: the repo's own
    assert row.revision == sha  # pinned to the commit the tag named
    assert row.source == {"kind": "hf", "repo_id": REPO, "revision": "v1", "sha": sha}
    local = hub.settings.weights_dir / "hf" / "loom-org--tiny-llama" / sha
    assert row.weights == str(local.resolve())
    got = {p.name for p in local.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= got
    assert not got & {"pytorch_model.bin", "README.md", "extra"}  # only what a base needs, never a pickle
    assert not any("pytorch_model.bin" in p or "extra/" in p for p in _downloads(fake_hub))
    assert row.config == json.loads((folder / "config.json").read_text())

    prompt = "hello | shout this\n"
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert served_greedy(hub, "loom-test/hf-llama", prompt) == hf_greedy(model, tok, prompt)

    before = len(_downloads(fake_hub))
    again = hub.base_models.register("loom-test/hf-llama-2", weights=REPO)  # main is the same commit
    assert again.weights == row.weights and again.revision == sha and len(_downloads(fake_hub)) == before


def test_hf_errors_register_nothing(hub_on_fake, fake_hub, tiny_base, tmp_path, make_hub):
    _, folder = tiny_base
    _seed_base(fake_hub, folder)
    hub = hub_on_fake
    # anonymous, the Hub answers 401 for a repo that does not exist (or is private); with a token, 404
    with pytest.raises(AuthenticationError, match="loom-org/missing is not visible without a token: it does not exist"):
        hub.base_models.register("x/missing", weights="loom-org/missing")
    with pytest.raises(NotFoundError, match="repository loom-org/missing not found"):
        make_hub(hf_endpoint=fake_hub.url, hf_token=TOKEN).base_models.register("x/missing", weights="loom-org/missing")
    with pytest.raises(NotFoundError, match="revision 'nope'"):
        hub.base_models.register("x/norev", weights=f"{REPO}@nope")

    fake_hub.create_repo("loom-org/t5")
    fake_hub.commit("loom-org/t5", {"config.json": json.dumps({"model_type": "t5", "d_model": 16}),
                                    "model.safetensors": b"0" * 64, "tokenizer.json": b"{}"})
    n = len(_downloads(fake_hub))
    with pytest.raises(InvalidInputError, match="loom-org/t5.*not describe a causal LM"):
        hub.base_models.register("x/t5", weights="loom-org/t5")
    assert [p for p in _downloads(fake_hub)[n:] if not p.endswith("config.json")] == []  # no weights fetched

    fake_hub.create_repo("loom-org/pickles")
    fake_hub.commit("loom-org/pickles", {"config.json": (folder / "config.json").read_bytes(),
                                         "pytorch_model.bin": b"\x80\x04", "tokenizer.json": b"{}"})
    with pytest.raises(InvalidInputError, match="only pickle weights"):
        hub.base_models.register("x/pickles", weights="loom-org/pickles")
    with pytest.raises(InvalidInputError, match="neither an existing folder, a .gguf file nor a Hugging Face"):
        hub.base_models.register("x/bad", weights="not a repo id")

    offline = make_hub(hf_endpoint="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(UpstreamError, match="network failure"):
        offline.base_models.register("x/offline", weights=REPO)
    assert hub.base_models.list() == []
    root = hub.settings.weights_dir / "hf"
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))  # no staging left behind
