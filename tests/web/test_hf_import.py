"""Import from the Hugging Face Hub on the publish page: each error next to its field, the server's own
answer for an unreachable Hub, and the message of a hub without the import API."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from playwright.sync_api import expect

from hub.api.errors import error_body
from tests.web.conftest import sign_in


def test_hf_import_errors_next_to_fields(page, live):
    sign_in(page, live.alice)
    page.goto("/publish")
    form = page.locator("#hf-form")
    form.get_by_role("button", name="Import").click()
    expect(page.locator("#err-h-repo")).to_have_text("Give the repository, e.g. org/my-lora.")

    form.get_by_label("Repository").fill("bad repo")
    form.get_by_role("button", name="Import").click()
    expect(page.locator("#err-h-repo")).to_contain_text("repo_id must look like 'namespace/name'")

    form.get_by_label("Repository").fill("some-org/some-lora")
    form.get_by_label("Name on this hub").fill("Bad Name")
    form.get_by_role("button", name="Import").click()
    expect(page.locator("#err-h-name")).to_contain_text("name must be 'namespace/name'")
    expect(page.locator("#err-h-repo")).to_be_hidden()

    # the Hub is unreachable from this hub: the server's own message, about the repository
    direct = httpx.post(f"{live.url}/api/v1/hf/import", json={"repo": "some-org/some-lora"},
                        headers={"Authorization": f"Bearer {live.alice}"}, timeout=60)
    assert direct.status_code >= 400
    form.get_by_label("Name on this hub").fill("")
    form.get_by_role("button", name="Import").click()
    expect(page.locator("#err-h-repo")).to_have_text(direct.json()["error"]["message"])
    expect(page.locator("#h-repo")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#err-h-name")).to_be_hidden()
    # the upload form above is untouched
    expect(page.locator("#form-errors")).to_be_hidden()


def test_hf_import_absent_api(page, live):
    def absent(route):
        req = route.request
        route.fulfill(status=404, json=error_body("not_found", f"no route {req.method} {urlsplit(req.url).path}"))

    page.route("**/api/v1/hf/import", absent)
    sign_in(page, live.alice)
    page.goto("/publish")
    page.get_by_label("Repository").fill("org/repo")
    page.locator("#hf-form").get_by_role("button", name="Import").click()
    expect(page.locator("#hf-errors")).to_have_text(
        "Importing from the Hugging Face Hub is not available on this hub yet.")
