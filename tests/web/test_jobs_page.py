"""The jobs page in a real browser (#18.12, #18.4, #18.5): no cell wraps ("succeed ed"), a queued job says where
it stands in line, router results are named and linked."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.web.conftest import sign_in

WRAPPED_CELLS = """() => [...document.querySelectorAll("table.jobs th, table.jobs td")].map((cell) => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
  return [cell.textContent.trim(), lines.size];
}).filter(([, lines]) => lines > 1)"""


def test_jobs_page_cells_stay_on_one_line(browser, live, artifacts):
    hub = live.hub
    alice = hub.users.ensure_user("alice")
    done, _ = hub.queue.submit("web_test_kind", alice.id, {"n": 1})  # a kind no worker runs: stays where put
    hub.queue.finish(done.id, "succeeded", result={"router": "alice/a-rather-long-router-name", "version": 12})
    waiting, _ = hub.queue.submit("web_test_kind", alice.id, {"n": 2})
    ctx = browser.new_context(base_url=live.url, viewport={"width": 640, "height": 800})
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    try:
        sign_in(page, live.alice)
        page.goto("/jobs")
        expect(page.locator("table.jobs")).to_be_visible()
        expect(page.locator("table.jobs")).to_contain_text("alice/a-rather-long-router-name@12")
        expect(page.locator("table.jobs a", has_text="alice/a-rather-long-router-name@12")).to_have_attribute(
            "href", "/a/alice/a-rather-long-router-name?version=12")
        expect(page.locator("table.jobs")).to_contain_text("queued #")
        page.screenshot(path=str(artifacts / "jobs-640.png"), full_page=True)
        assert page.evaluate(WRAPPED_CELLS) == []
        # the job's own page names what it published, a router too (it showed nothing but "succeeded")
        page.locator("table.jobs th a", has_text=done.id[:8]).click()
        expect(page.locator("#job-result-link")).to_have_attribute("href", "/a/alice/a-rather-long-router-name?version=12")
        expect(page.locator("#job-result")).to_contain_text("Published alice/a-rather-long-router-name@12")
    finally:
        hub.queue.cancel(waiting.id, alice.id)
        ctx.close()
