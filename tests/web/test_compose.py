"""Compose and jobs in the browser: a real merge job queued from the form, followed live to its published
result with lineage; errors next to their fields; the pages' message when the hub has no composition API."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from playwright.sync_api import expect

from hub.api.errors import error_body
from tests.web.conftest import sign_in


def test_compose_from_chosen_adapters(page, live, artifacts):
    sign_in(page, live.alice)
    page.goto("/a/alice/news-summariser")
    page.get_by_role("link", name="Compose with this adapter").click()
    page.wait_for_url(re.compile(r"/compose\?source="))
    sources = page.locator("#c-sources")
    expect(sources).to_have_value("alice/news-summariser@1")
    sources.fill("alice/news-summariser@1\nalice/french-english@1")
    page.get_by_label("Weights").fill("0.6, 0.4")
    page.get_by_label("Method").select_option("linear")
    expect(page.locator("#c-method-help")).to_contain_text("paper")
    page.get_by_text("Name and publishing options").click()
    page.get_by_label("Result name").fill("alice/news-and-french")
    page.get_by_role("button", name="Start job").click()

    link = page.locator("#job-result-link")
    expect(link).to_have_text("alice/news-and-french@1", timeout=90_000)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#job-progress")).to_have_attribute("value", "1")
    expect(page.locator("#job-log")).to_contain_text("published alice/news-and-french@1")
    expect(page.locator("#job-cancel")).to_be_hidden()
    assert re.search(r"/compose\?job=[\w-]+$", page.url)
    page.screenshot(path=str(artifacts / "compose-done.png"), full_page=True)

    link.click()
    parents = page.locator(".lin-col").first
    expect(parents.get_by_role("link", name="alice/news-summariser@1")).to_be_visible()
    expect(parents.get_by_role("link", name="alice/french-english@1")).to_be_visible()
    expect(parents).to_contain_text("linear · w=0.6")
    page.get_by_text("How v1 was made: linear").click()
    expect(page.locator(".recipe pre")).to_contain_text('"name": "alice/news-summariser"')
    page.locator("#lineage-heading").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "lineage.png"))
    # the job is in the jobs list, with its result
    page.goto("/jobs")
    row = page.locator("table.jobs tbody tr", has=page.get_by_role("link", name="alice/news-and-french@1"))
    expect(row).to_contain_text("succeeded")
    page.screenshot(path=str(artifacts / "jobs.png"), full_page=True)


def test_compose_errors_next_to_fields(page, live):
    sign_in(page, live.bob)
    page.goto("/compose")
    page.get_by_label("Base model").fill("")
    page.get_by_role("button", name="Start job").click()  # task mode, nothing filled: checked in the page
    expect(page.locator("#err-task")).to_have_text("Describe the task.")
    expect(page.locator("#err-base_model")).to_be_visible()
    # the server's answers: no similar adapter for this base -> about the task
    page.get_by_role("textbox", name="Task").fill("summarise legal contracts")
    page.get_by_label("Base model").fill("nobody/no-such-base")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-task")).to_contain_text("no adapter for base model nobody/no-such-base")
    expect(page.locator("#err-base_model")).to_be_hidden()
    # chosen adapters: a malformed reference -> about the sources; bad params JSON -> about the params
    page.get_by_label("Adapters I choose").check()
    page.locator("#c-sources").fill("not a reference")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-sources")).to_contain_text("sources must be 'namespace/name[@version]'")
    page.locator("#c-sources").fill("alice/news-summariser")
    page.get_by_label("Parameters").fill("{density: }")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-params")).to_contain_text("JSON object")
    expect(page.locator("#err-sources")).to_be_hidden()


def test_pages_say_when_the_hub_has_no_composition_api(page, live):
    """A hub without the jobs API answers its unknown-route 404; the pages say so instead of failing."""
    def absent(route):
        req = route.request
        route.fulfill(status=404, json=error_body("not_found", f"no route {req.method} {urlsplit(req.url).path}"))

    for path in ("/api/v1/compositions", "/api/v1/jobs", "/api/v1/jobs/*"):
        page.route(f"**{path}", absent)
    sign_in(page, live.alice)
    page.goto("/jobs")
    expect(page.locator("#jobs")).to_contain_text("Jobs are not available on this hub yet.")
    page.goto("/compose")
    page.get_by_role("textbox", name="Task").fill("anything")
    page.get_by_label("Base model").fill("loom-test/pico-llama")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#form-errors")).to_have_text("Composition is not available on this hub yet.")
    page.goto("/compose?job=abc")
    expect(page.locator("#form-errors")).to_have_text("Jobs are not available on this hub yet.")
