"""The web UI in a real browser (headless Chromium) against a live hub: sign in -> publish through the form ->
search by describing the task in other words -> open the adapter -> versions, files, sha256, snippets, try it;
errors next to their fields; private adapters; phone width. Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import hashlib
import re

import httpx
from playwright.sync_api import expect

from tests.web.conftest import sign_in

README = """# SQL writer

Turns a question in English into a **SQL** query.

<script>window.__pwned = 1</script>

[docs](https://example.org/docs) and [bad](javascript:window.__pwned=2)
"""


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _settled(page) -> None:
    """Wait for what a page's script renders after load (the jobs list)."""
    if page.locator("#jobs").count():
        expect(page.locator("#jobs")).to_have_attribute("aria-busy", "false")


def test_publish_search_open(page, live, artifacts, tmp_path):
    ad = live.adapters[0]
    readme = tmp_path / "README.md"
    readme.write_text(README)
    sign_in(page, live.alice)
    expect(page.locator("[data-user]")).to_have_text("alice")

    page.goto("/publish")
    page.locator("#f-name").fill("alice/sql-writer")
    page.set_input_files("#f-config", ad / "adapter_config.json")
    page.set_input_files("#f-weights", ad / "adapter_model.safetensors")
    page.set_input_files("#f-readme", readme)
    page.get_by_label("Description").fill("Translates questions asked in plain English into SQL queries.")
    page.get_by_label("Tags").fill("sql, text-to-sql")
    page.get_by_label("License").fill("mit")
    page.get_by_role("button", name="Publish").click()
    link = page.locator("#published-link")
    expect(link).to_have_text("alice/sql-writer version 1")
    page.screenshot(path=str(artifacts / "publish-done.png"), full_page=True)

    # search by describing the task in other words
    page.goto("/")
    page.get_by_label("Describe the task").fill("generate database queries from natural language")
    page.get_by_role("button", name="Search").click()
    first = page.locator("li.result").first
    expect(first.locator("h3")).to_have_text("alice/sql-writer")
    expect(first.locator(".score")).to_have_text(re.compile(r"score 0\.\d{3}"))
    expect(first).to_contain_text("loom-test/pico-llama")
    page.screenshot(path=str(artifacts / "search.png"), full_page=True)

    first.get_by_role("link", name="alice/sql-writer").click()
    page.wait_for_url("**/a/alice/sql-writer")
    expect(page.get_by_role("heading", level=1)).to_have_text("alice/sql-writer")
    # the model card: rendered Markdown, raw HTML shown as text and never run, unsafe links dropped
    card = page.locator(".markdown")
    expect(card.locator("h3")).to_have_text("SQL writer")  # the card's h1, under the page's h2
    expect(card.locator("strong")).to_have_text("SQL")
    expect(card).to_contain_text("<script>window.__pwned = 1</script>")
    assert page.evaluate("window.__pwned") is None
    expect(card.get_by_role("link", name="docs")).to_have_attribute("href", "https://example.org/docs")
    assert card.locator("a", has_text="bad").get_attribute("href") is None
    # versions, files with sizes and sha256
    expect(page.locator(".versions li")).to_have_count(1)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        expect(page.locator(f'code[data-sha256="{name}"]')).to_have_text(_sha(ad / name))
    row = page.locator("tr", has=page.locator('code[data-sha256="adapter_model.safetensors"]'))
    expect(row.locator("td")).to_have_attribute("data-size", str((ad / "adapter_model.safetensors").stat().st_size))
    expect(page.locator('code[data-sha256="README.md"]')).to_have_text(_sha(readme))
    # snippets
    expect(page.locator("#snip-peft")).to_contain_text("loom pull alice/sql-writer@1 ./alice-sql-writer")
    expect(page.locator("#snip-peft")).to_contain_text('PeftModel.from_pretrained(base, "./alice-sql-writer")')
    expect(page.locator("#snip-curl")).to_contain_text(
        f"{live.url}/api/v1/adapters/alice/sql-writer/files/$f?version=1")
    expect(page.locator("#snip-openai")).to_contain_text('model="alice/sql-writer"')
    expect(page.locator("#snip-openai")).to_contain_text(f'base_url="{live.url}/v1"')
    # a download link serves the exact bytes
    with page.expect_download() as dl:
        page.get_by_role("link", name="adapter_model.safetensors").click()
    assert hashlib.sha256(open(dl.value.path(), "rb").read()).hexdigest() == _sha(ad / "adapter_model.safetensors")
    # try it: the pico base has no weights on this hub, so the endpoint (or its absence) answers with an
    # error; the box shows the server's own message, cleanly
    prompt = "How many users signed up in May?"
    direct = httpx.post(f"{live.url}/v1/completions", json={"model": "alice/sql-writer", "prompt": prompt,
                                                             "max_tokens": 32}, timeout=60)
    assert direct.status_code >= 400, direct.text
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_role("button", name="Run").click()
    out = page.locator("#try-output")
    expect(out).to_have_class(re.compile("error-box"))
    expect(out.locator(".server-msg")).to_have_text(direct.json()["error"]["message"])
    if direct.status_code == 404 and direct.json()["error"]["message"].startswith("no route"):
        expect(out).to_contain_text("Inference is not available on this hub yet.")
    page.screenshot(path=str(artifacts / "adapter.png"), full_page=True)


def test_publish_errors_next_to_fields(page, live, artifacts, tmp_path):
    ad = live.adapters[2]
    bad = tmp_path / "adapter_config.json"
    bad.write_text("{not json")
    sign_in(page, live.bob)
    page.goto("/publish")
    # client-side: nothing chosen
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#err-config")).to_have_text("Choose the adapter_config.json file.")
    expect(page.locator("#err-weights")).to_be_visible()

    # server-side: a config that is not JSON -> next to the config field, nothing else flagged
    page.locator("#f-name").fill("bob/broken")
    page.set_input_files("#f-config", bad)
    page.set_input_files("#f-weights", ad / "adapter_model.safetensors")
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#err-config")).to_contain_text("adapter_config.json is not valid JSON")
    expect(page.locator("#f-config")).to_have_attribute("aria-invalid", "true")
    for other in ("name", "weights", "tags", "license"):
        expect(page.locator(f"#err-{other}")).to_be_hidden()
    expect(page.locator("#form-errors")).to_be_hidden()
    page.screenshot(path=str(artifacts / "publish-error-config.png"), full_page=True)

    # a bad name and a bad tag: each next to its own field
    page.set_input_files("#f-config", ad / "adapter_config.json")
    page.locator("#f-name").fill("Bob/Has Spaces")
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#err-name")).to_contain_text("is not allowed")
    expect(page.locator("#err-config")).to_be_hidden()
    page.locator("#f-name").fill("bob/fine")
    page.get_by_label("Tags").fill("ok, no spaces allowed")
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#err-tags")).to_contain_text("tag 'no spaces allowed' is not allowed")
    expect(page.locator("#err-name")).to_be_hidden()
    # someone else's name: the ownership error is about the name
    page.get_by_label("Tags").fill("")
    page.locator("#f-name").fill("alice/news-summariser")
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#err-name")).to_contain_text("belongs to alice")
    # nothing was half-written
    names = {a.full_name for a in live.hub.adapters.list(None, None)[0]}
    assert not {"bob/broken", "bob/fine"} & names


def test_general_error_on_top_when_signed_out(page, live):
    ad = live.adapters[2]
    page.goto("/publish")
    page.locator("#f-name").fill("bob/x")
    page.set_input_files("#f-config", ad / "adapter_config.json")
    page.set_input_files("#f-weights", ad / "adapter_model.safetensors")
    page.get_by_role("button", name="Publish").click()  # no token at all: the hub's 401, on top
    expect(page.locator("#form-errors")).to_contain_text("this needs an API token")
    # a stored token that is not valid (revoked, mistyped)
    page.evaluate("localStorage.setItem('loom_token', 'loom_not-a-real-token')")
    page.locator("#f-name").fill("bob/x")
    page.set_input_files("#f-config", ad / "adapter_config.json")
    page.set_input_files("#f-weights", ad / "adapter_model.safetensors")
    page.get_by_role("button", name="Publish").click()
    top = page.locator("#form-errors")
    expect(top).to_contain_text("the API token is not valid")
    expect(top.get_by_role("link", name="Sign in with a token")).to_be_visible()
    expect(page.locator("#err-name")).to_be_hidden()


def test_private_adapter_only_for_owner(browser, live, artifacts):
    from hub.services.publish import PublishFiles

    ad = live.adapters[0]
    alice = live.hub.users.authenticate(live.alice)
    live.hub.publisher.publish(alice, "alice/secret-sql", PublishFiles(
        config=(ad / "adapter_config.json").read_bytes(), weights=ad / "adapter_model.safetensors"),
        description="Private text-to-SQL adapter for internal database questions.", visibility="private")
    query = "/?q=" + "private text to SQL for database questions"

    def fresh():
        ctx = browser.new_context(base_url=live.url)
        ctx.set_default_timeout(20_000)
        return ctx, ctx.new_page()

    # signed out, then signed in as bob: not listed, and the page is a 404
    for token in (None, live.bob):
        ctx, pg = fresh()
        if token:
            sign_in(pg, token)
        pg.goto(query)
        expect(pg.locator("li.result").first).to_be_visible()
        expect(pg.locator("li.result h3", has_text="alice/secret-sql")).to_have_count(0)
        pg.goto("/")
        expect(pg.locator("li.result h3", has_text="alice/secret-sql")).to_have_count(0)
        resp = pg.goto("/a/alice/secret-sql")
        assert resp.status == 404
        expect(pg.get_by_role("heading", level=1)).to_have_text("Not found")
        if token is None:
            pg.screenshot(path=str(artifacts / "private-signed-out.png"), full_page=True)
        ctx.close()

    # the owner sees it in search and on its page, and can download through the token-carrying link
    ctx, pg = fresh()
    sign_in(pg, live.alice)
    pg.goto(query)
    expect(pg.locator("li.result h3", has_text="alice/secret-sql")).to_have_count(1)
    pg.goto("/a/alice/secret-sql")
    expect(pg.locator(".badge.warn")).to_have_text("private")
    with pg.expect_download() as dl:
        pg.get_by_role("link", name="adapter_config.json").click()
    assert open(dl.value.path(), "rb").read() == (ad / "adapter_config.json").read_bytes()
    # signing out forgets both the cookie and the stored token
    pg.get_by_role("button", name="Sign out").click()
    pg.wait_for_url("**/")
    assert pg.evaluate("localStorage.getItem('loom_token')") is None
    assert pg.goto("/a/alice/secret-sql").status == 404
    ctx.close()


def test_phone_width_and_pages(browser, live, artifacts):
    ctx = browser.new_context(base_url=live.url, viewport={"width": 390, "height": 844}, is_mobile=True,
                              has_touch=True)
    ctx.set_default_timeout(20_000)
    pg = ctx.new_page()
    pg.goto("/?q=summaries of news")
    expect(pg.locator("li.result").first).to_be_visible()
    pages = {"search": "/?q=summaries of news", "adapter": "/a/alice/news-summariser", "publish": "/publish",
             "signin": "/signin", "jobs": "/jobs", "compose": "/compose", "playground": "/playground", "missing": "/a/alice/nope"}
    for label, url in pages.items():
        pg.goto(url)
        _settled(pg)
        width = pg.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width[0] <= width[1], f"{label} scrolls horizontally at 390px: {width}"
        pg.screenshot(path=str(artifacts / f"phone-{label}.png"), full_page=True)
    # signed out, the jobs page asks for a token instead of showing a list
    pg.goto("/jobs")
    expect(pg.locator("#jobs")).to_contain_text("Sign in to see your jobs.")
    # keyboard: the skip link is the first stop and moves to the content
    pg.keyboard.press("Tab")
    expect(pg.locator("a.skip")).to_be_focused()
    ctx.close()


A11Y_AUDIT = """() => {
  const problems = [];
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    const named = el.labels && el.labels.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!named) problems.push("unlabelled " + el.outerHTML.slice(0, 80));
  }
  for (const img of document.querySelectorAll("img")) if (!img.hasAttribute("alt")) problems.push("img without alt");
  const levels = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")].filter((h) => h.offsetParent !== null)
    .map((h) => Number(h.tagName[1]));
  if (levels.filter((l) => l === 1).length !== 1) problems.push("h1 count " + levels.filter((l) => l === 1).length);
  levels.forEach((l, i) => { if (i && l > levels[i - 1] + 1) problems.push(`heading jumps h${levels[i - 1]} -> h${l}`); });
  const ids = [...document.querySelectorAll("[id]")].map((e) => e.id);
  if (new Set(ids).size !== ids.length) problems.push("duplicate ids");
  for (const el of document.querySelectorAll("[aria-describedby]"))
    for (const id of el.getAttribute("aria-describedby").split(/\\s+/))
      if (!document.getElementById(id)) problems.push("aria-describedby points to missing #" + id);
  if (!document.documentElement.lang) problems.push("no lang");
  return problems;
}"""


def test_accessibility_basics(page, live):
    """Labels on every control, alt on images, one h1 and no skipped heading levels, valid references."""
    sign_in(page, live.alice)
    for url in ("/", "/?q=translate french", "/a/alice/news-summariser", "/publish", "/signin", "/compose",
                "/playground", "/jobs", "/a/alice/does-not-exist"):
        page.goto(url)
        _settled(page)
        assert page.evaluate(A11Y_AUDIT) == [], url
    # a visible focus ring on keyboard focus
    page.goto("/publish")
    page.locator("#f-name").focus()
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline


def test_owner_manages_and_deletes(browser, page, live, artifacts):
    from hub.services.publish import PublishFiles

    ad = live.adapters[1]
    alice = live.hub.users.authenticate(live.alice)
    live.hub.publisher.publish(alice, "alice/editable", PublishFiles(
        config=(ad / "adapter_config.json").read_bytes(), weights=ad / "adapter_model.safetensors"),
        description="Before the edit.", tags=["one"])
    # only the owner gets the panel
    ctx = browser.new_context(base_url=live.url)
    other = ctx.new_page()
    sign_in(other, live.bob)
    other.goto("/a/alice/editable")
    expect(other.locator("#manage-form")).to_have_count(0)

    sign_in(page, live.alice)
    page.goto("/a/alice/editable")
    page.locator("#m-tags").fill("one, not valid tag")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#err-m-tags")).to_contain_text("tag 'not valid tag' is not allowed")
    page.locator("section[aria-labelledby=manage-heading]").screenshot(path=str(artifacts / "manage-error.png"))
    assert live.hub.adapters.get(alice, "alice", "editable").tags == ["one"]  # nothing half-written

    page.locator("#m-tags").fill("one, two")
    page.locator("#m-description").fill("After the edit.")
    page.get_by_label("Visibility", exact=True).select_option("private")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".badge.warn")).to_have_text("private")
    expect(page.locator(".lead")).to_have_text("After the edit.")
    expect(page.locator("header .tags li")).to_have_text(["one", "two"])
    assert other.goto("/a/alice/editable").status == 404  # private now: bob no longer sees it

    page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete this adapter…").click()
    page.wait_for_url("**/?deleted=*")
    expect(page.get_by_role("status")).to_have_text("Deleted alice/editable and all its versions.")
    assert page.goto("/a/alice/editable").status == 404
    ctx.close()
