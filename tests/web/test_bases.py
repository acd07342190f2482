"""The base-models page in the browser: the registered bases with where their weights came from, and the form
that registers one from a .gguf file (no config needed); bad weights are shown next to the Weights field and
register nothing. On a hub of its own (registering a base on the shared one would change other pages)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.helpers import serve_in_thread
from tests.web.conftest import sign_in


@pytest.fixture
def own_page(browser, tmp_path):
    from hub.api import create_app
    from hub.settings import get_settings

    app = create_app(get_settings(data_dir=tmp_path / "data", hf_endpoint="http://127.0.0.1:9",
                                  weights_roots=[tmp_path]), warm_index=False)
    hub = app.state.hub
    _, token = hub.users.create_token("alice")
    with serve_in_thread(app) as url:
        ctx = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(20_000)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page, hub, token
        ctx.close()
        hub.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def test_add_a_base_from_a_gguf_file(own_page, tmp_path, artifacts):
    from tests.helpers import byte_llama
    from tests.weights.gguf_files import write_llama_gguf

    page, hub, token = own_page
    sign_in(page, token)
    page.goto("/bases")
    expect(page.locator("#bases-table")).to_contain_text("No base model is registered yet.")
    page.get_by_label("Id").fill("alice/tiny-gguf")
    page.get_by_label("Weights").fill(str(tmp_path / "missing.gguf"))
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#err-b-weights")).to_contain_text("does not exist")
    expect(page.get_by_label("Weights")).to_be_focused()
    assert hub.base_models.list() == []

    gguf = write_llama_gguf(tmp_path / "tiny.gguf", byte_llama(seed=5))
    page.get_by_label("Weights").fill(str(gguf))
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#base-result")).to_contain_text("Registered alice/tiny-gguf@main (dequantized from")
    expect(page.locator("#err-b-weights")).to_be_hidden()
    page.reload()
    row = page.locator("#bases-table tbody tr").filter(has_text="alice/tiny-gguf")
    expect(row).to_contain_text("GGUF (dequantized)")
    expect(row).to_contain_text("llama")
    page.screenshot(path=str(artifacts / "bases.png"), full_page=True)
    assert [b.source["kind"] for b in hub.base_models.list()] == ["gguf"]
