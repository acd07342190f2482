"""Fixtures of the router-job tests: a tiny Llama with the testbed byte tokenizer saved to a folder and
registered as a base, two experts published with distinct sample data, one without samples, one for
another base, and an app/server with the router routes and CLI plugin wired in.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import byte_llama as tiny_llama
from tests.helpers import save_byte_base
from tests.services.fixtures import db_templates  # noqa: F401

BASE_ID = "loom-test/router-llama"
OTHER_BASE_ID = "loom-test/router-other"
#: expert -> (input, output) pairs; inputs of the two tasks look nothing alike, so gates can learn them.
SAMPLES = {
    "alice/upper": [(f"up: {w}", w.upper()) for w in ("cat", "dog", "sun", "map", "pen", "cup", "hat", "box")],
    "bob/digits": [(f"#{n} {n + 1}", str(2 * n + 1)) for n in range(10, 18)],
}
EXPERTS = ["alice/upper@1", "bob/digits@1"]




@pytest.fixture(scope="session")
def base_dir(tmp_path_factory):
    return save_byte_base(tmp_path_factory.mktemp("rbase"))


@pytest.fixture(scope="session")
def expert_dirs(tmp_path_factory, base_dir):
    """PEFT folders: two experts (with samples), one without samples, one for another base."""
    from transformers import AutoModelForCausalLM

    from tests.helpers import make_peft_adapter

    root = tmp_path_factory.mktemp("rexperts")
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    out = {}
    for i, name in enumerate([*SAMPLES, "carol/nosamples"]):
        out[name] = make_peft_adapter(model, root / name.replace("/", "_"), seed=30 + i, r=4, alpha=8,
                                      targets=("q_proj", "v_proj", "down_proj"), base_id=BASE_ID)
    out["carol/other"] = make_peft_adapter(tiny_llama(seed=5, layers=3), root / "other", seed=40,
                                           base_id=OTHER_BASE_ID)
    return out


def publish(hub, folder, name, samples=None, description=""):
    from hub.services.publish import PublishFiles

    user = hub.users.ensure_user(name.split("/")[0])
    raw = ("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in samples).encode()
           if samples else None)
    files = PublishFiles(config=(folder / "adapter_config.json").read_bytes(),
                         weights=folder / "adapter_model.safetensors", samples=raw)
    return hub.publisher.publish(user, name, files, description=description)


@pytest.fixture(params=["sqlite"])
def db_kind(request):
    return request.param


@pytest.fixture
def rhub(tmp_path, db_templates, db_kind, base_dir, expert_dirs):  # noqa: F811
    """A hub with the tiny base registered (local weights) and the experts published."""
    from hub.services.container import Hub
    from hub.settings import get_settings

    with db_templates.database(db_kind, tmp_path) as url:
        hub = Hub(get_settings(data_dir=tmp_path / "data", database_url=url), migrate=False)
        hub.base_models.register(BASE_ID, (base_dir / "config.json").read_bytes(), weights=str(base_dir))
        hub.base_models.register(OTHER_BASE_ID, tiny_llama(layers=3).config.to_dict())  # no local weights
        for name, rows in SAMPLES.items():
            publish(hub, expert_dirs[name], name, rows, description=f"expert {name}")
        publish(hub, expert_dirs["carol/nosamples"], "carol/nosamples")
        publish(hub, expert_dirs["carol/other"], "carol/other", SAMPLES["alice/upper"])
        try:
            yield hub
        finally:
            hub.close()


def make_app(hub):
    """The hub's app (create_app includes the router routes)."""
    from hub.api import create_app

    return create_app(hub=hub)


@pytest.fixture
def api(rhub):
    """(TestClient, alice's token header)."""
    from fastapi.testclient import TestClient

    _, token = rhub.users.create_token("alice")
    with TestClient(make_app(rhub)) as c:
        yield c, {"Authorization": f"Bearer {token}"}
