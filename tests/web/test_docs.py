"""The OpenAPI docs page renders offline: its assets are served by the hub, not a CDN."""

from __future__ import annotations


def test_docs_page_renders_the_api_without_network(page, live):
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"{live.url}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    assert page.locator(".opblock").count() > 10  # one block per operation
    assert "/api/v1/adapters" in page.locator(".opblock-summary-path").all_inner_texts()
    assert requested and all(u.startswith(live.url) for u in requested), [u for u in requested
                                                                          if not u.startswith(live.url)]
