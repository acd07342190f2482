"""Bases get owners: only the user who registered a base id adds revisions of it, only they see where its weights
are on the server, and inference errors do not echo server paths (both databases)."""

from __future__ import annotations

import pytest

from hub.core.errors import InvalidInputError
from tests.api.util import assert_error


def test_a_base_id_belongs_to_who_registered_it(api, tiny_model, tmp_path):
    c = api.client
    tiny_model.save_pretrained(tmp_path / "w")
    folder = str(tmp_path / "w")
    body = {"id": "loom-test/pico-llama", "config": tiny_model.config.to_dict(), "weights": folder}
    assert c.post("/api/v1/base-models", headers=api.alice, json=body).status_code == 201
    err = assert_error(c.post("/api/v1/base-models", headers=api.bob, json={**body, "revision": "v2"}), 403,
                       "forbidden", "registered by another user")
    assert err["details"]["field"] == "id" and folder not in str(err)
    assert [b["revision"] for b in c.get("/api/v1/base-models").json()["items"]] == ["main"]
    assert c.post("/api/v1/base-models", headers=api.alice, json={**body, "revision": "v2"}).status_code == 201
    for who, shown in ((api.alice, True), (api.bob, False), ({}, False)):
        listing = c.get("/api/v1/base-models", headers=who).json()["items"]
        one = c.get("/api/v1/base-models/loom-test/pico-llama", headers=who).json()
        for b in [*listing, one]:
            assert (b["weights"] is not None) == shown, (who, b)
            assert shown or folder not in str(b)


def test_operator_bases_are_not_open_to_api_users(api, tiny_model):
    api.hub.base_models.register("op/base", tiny_model.config.to_json_string().encode())  # a local command
    body = {"id": "op/base", "config": tiny_model.config.to_dict(), "revision": "v2"}
    assert_error(api.client.post("/api/v1/base-models", headers=api.alice, json=body), 403, "forbidden")


def test_inference_errors_do_not_echo_server_paths(tmp_path):
    from hub.services.inference.models import load_base

    (tmp_path / "weights").mkdir()
    with pytest.raises(InvalidInputError) as e:
        load_base("x/y", "main", str(tmp_path / "weights"), device="cpu")
    assert str(tmp_path) not in str(e.value) and "x/y" in str(e.value)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_api_weights_are_confined_to_the_allowed_roots(make_api, tiny_model, tmp_path):
    api = make_api(weights_roots=[])  # only the data directory
    c, data = api.client, api.hub.settings.data_dir
    tiny_model.save_pretrained(tmp_path / "outside")
    tiny_model.save_pretrained(data / "inside")
    (data / "link").symlink_to(tmp_path / "outside")
    for weights in (str(tmp_path / "outside"), "/etc", "/no/such/dir", "../../etc", str(data / "link"),
                    str(tmp_path / "x.gguf")):
        r = c.post("/api/v1/base-models", headers=api.alice, json={"id": "a/b", "weights": weights})
        err = assert_error(r, 422, "invalid_input", "LOOM_WEIGHTS_ROOTS")
        assert weights not in err["message"] and "exist" not in err["message"]  # no existence oracle
    r = c.post("/api/v1/base-models", headers=api.alice, json={"id": "a/b", "weights": str(data / "inside")})
    assert r.status_code == 201, r.text
    api.hub.base_models.register("op/b", weights=str(tmp_path / "outside"))  # local commands are not confined
