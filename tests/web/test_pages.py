"""The pages over plain HTTP (no browser): sign-in cookie, security headers, static files, search errors and
paging, lineage, and the Markdown sanitiser of model cards."""

from __future__ import annotations

import re

import httpx
import pytest

from web.render import render_markdown, split_front_matter


@pytest.fixture
def http(live):
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


def _publish(live, user_token: str, name: str, d, **kw):
    from hub.services.publish import PublishFiles

    user = live.hub.users.authenticate(user_token)
    return live.hub.publisher.publish(user, name, PublishFiles(config=(d / "adapter_config.json").read_bytes(),
                                                              weights=d / "adapter_model.safetensors"), **kw)


def test_signin_sets_httponly_lax_cookie_and_checks_the_token(http, live):
    r = http.post("/signin", data={"token": live.alice})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"loom_token={live.alice};")
    assert "HttpOnly" in cookie and re.search(r"SameSite=lax", cookie, re.I) and "Path=/" in cookie
    home = http.get("/", cookies={"loom_token": live.alice})
    assert 'Signed in as <strong data-user>alice</strong>' in home.text

    bad = http.post("/signin", data={"token": "loom_wrong"})
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    assert re.search(r'<p class="error" id="token-error"\s*>the API token is not valid</p>', bad.text)
    empty = http.post("/signin", data={"token": "  "})
    assert empty.status_code == 401 and "paste an API token" in empty.text
    # a stale cookie reads as signed out, with a notice, never a 500
    stale = http.get("/publish", cookies={"loom_token": "loom_revoked"})
    assert stale.status_code == 200 and "no longer valid" in stale.text and "Signed in as" not in stale.text

    private = http.get("/", cookies={"loom_token": live.alice})
    assert private.headers["cache-control"] == "private, no-store"
    assert "cache-control" not in httpx.get(f"{live.url}/").headers  # a fresh client: no cookie
    # login CSRF: a form posted from another site is refused, and no cookie is set
    for origin in ("http://evil.example", "null"):
        cross = http.post("/signin", data={"token": live.alice}, headers={"Origin": origin})
        assert cross.status_code == 403 and "set-cookie" not in cross.headers
    same = http.post("/signin", data={"token": live.alice}, headers={"Origin": live.url})
    assert same.status_code == 303

    out = http.post("/signout", cookies={"loom_token": live.alice})
    assert out.status_code == 303 and 'loom_token=""' in out.headers["set-cookie"]


def test_pages_are_self_contained_and_send_security_headers(http):
    for url in ("/", "/publish", "/signin", "/jobs"):
        r = http.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        # every asset is served by the hub itself: no CDN, no external script or stylesheet
        for ref in re.findall(r'(?:src|href)="([^"]+)"', r.text):
            assert ref.startswith(("/", "#")), f"{url} references {ref}"
        assert "<script>" not in r.text  # no inline scripts (the CSP would block them)
    css = http.get("/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@import" not in css.text and "url(" not in css.text
    assert http.get("/static/app.js").headers["content-type"] in ("text/javascript; charset=utf-8",
                                                                   "application/javascript")
    for escape in ("/static/%2e%2e/render.py", "/static/..%2Frender.py", "/static/nope.css"):
        assert http.get(escape).status_code == 404


def test_an_unknown_page_is_an_html_404_for_a_browser_and_json_for_the_rest(http, live):
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    for path in ("/no-such-page", "/adapters/x/y/z/extra"):
        r = http.get(path, headers=browser, cookies={"loom_token": live.alice})
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")  # it was a JSON 404
        assert "<h1>Not found</h1>" in r.text and f"There is no page at {path}." in r.text
        assert 'href="/static/style.css"' in r.text and "Signed in as <strong data-user>alice</strong>" in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
        plain = http.get(path)  # a script or curl: the API's one error shape
        assert plain.status_code == 404 and plain.json()["error"]["message"] == f"no route GET {path}"
    for path in ("/api/v1/nope", "/v1/nope", "/api"):
        r = http.get(path, headers=browser)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    # a URL the guard refuses (a NUL byte) is the HTML error page for a browser too, the JSON error for the rest
    nul = http.get("/?q=%00", headers=browser, cookies={"loom_token": live.alice})
    assert nul.status_code == 422 and nul.headers["content-type"].startswith("text/html")
    assert "<h1>Not a valid request</h1>" in nul.text and "query parameter q contains a NUL byte" in nul.text
    assert "Signed in as <strong data-user>alice</strong>" in nul.text
    assert http.get("/?q=%00").json()["error"]["details"] == {"field": "q"}
    assert http.get("/api/v1/search?q=%00", headers=browser).json()["error"]["code"] == "invalid_input"


def test_search_page_validates_filters_and_pages(http, live):
    r = http.get("/", params={"min_rank": "abc", "max_rank": "0"})
    assert r.status_code == 422
    assert re.search(r'id="min_rank-error">must be a whole number, got &#39;abc&#39;<', r.text)
    assert re.search(r'id="max_rank-error">must be at least 1, got 0<', r.text)
    assert 'aria-invalid="true" aria-describedby="min_rank-error"' in r.text
    assert http.get("/", params={"min_rank": "8", "max_rank": "4"}).status_code == 422
    # numbers past the database's int64 are the field's 422, not a 500 (OverflowError in SQLite)
    huge = "99999999999999999999"
    for field in ("min_rank", "max_rank", "page"):
        r = http.get("/", params={field: huge})
        assert r.status_code == 422 and re.search(rf"must be at most \d+, got {huge}<", r.text), field

    d = live.adapters[1]
    for i in range(11):
        _publish(live, live.bob, f"bob/pager-{i:02d}", d, description=f"Paging fixture number {i}.",
                 tags=["pagingtest"])

    def names(resp):
        return re.findall(r'<h3><a href="/a/([^"]+)">', resp.text)

    p1 = http.get("/", params={"tag": "pagingtest"})
    assert len(names(p1)) == 10 and "Newest adapters (11)" in p1.text
    assert 'rel="next" href="/?tag=pagingtest&amp;page=2"' in p1.text and 'rel="prev"' not in p1.text
    p2 = http.get("/", params={"tag": "pagingtest", "page": "2"})
    assert len(names(p2)) == 1 and 'rel="prev"' in p2.text and 'rel="next"' not in p2.text
    assert set(names(p1)) | set(names(p2)) == {f"bob/pager-{i:02d}" for i in range(11)}
    # semantic search pages too, and filters apply before the cut (11 match, none missing)
    s1 = http.get("/", params={"q": "paging fixture", "tag": "pagingtest"})
    s2 = http.get("/", params={"q": "paging fixture", "tag": "pagingtest", "page": "2"})
    assert len(names(s1)) == 10 and len(names(s2)) == 1
    assert set(names(s1)) | set(names(s2)) == {f"bob/pager-{i:02d}" for i in range(11)}
    assert len(re.findall(r'class="score"', s1.text)) == 10
    # rank filter
    ranks = http.get("/", params={"tag": "pagingtest", "min_rank": "9"})
    assert ranks.status_code == 200 and names(ranks) == []


def test_lineage_and_versions(http, live):
    from hub.core.provenance import ParentRef, Provenance

    prov = Provenance.create("ties", {"density": 0.5}, parents=[ParentRef("alice/news-summariser", "1", 0.6),
                                                                 ParentRef("alice/french-english", "1", 0.4)])
    _publish(live, live.alice, "alice/merged-mix", live.adapters[2], description="A merge.", provenance=prov)
    child = http.get("/a/alice/merged-mix")
    assert child.status_code == 200
    parents = child.text.split("<h3>Parents</h3>")[1].split("<h3>This</h3>")[0]
    assert '<a href="/a/alice/news-summariser?version=1">alice/news-summariser@1</a>' in parents
    assert '<a href="/a/alice/french-english?version=1">alice/french-english@1</a>' in parents
    assert "ties · w=0.6" in parents and "ties · w=0.4" in parents
    parent = http.get("/a/alice/news-summariser")
    kids = parent.text.split("<h3>Children</h3>")[1]
    assert '<a href="/a/alice/merged-mix?version=1">alice/merged-mix@1</a>' in kids
    # the generated card records the merge in its front matter, shown as metadata, not as Markdown
    assert "merged_from" not in re.sub(r"<dl class=\"meta\">.*?</dl>", "", child.text, flags=re.S).split(
        '<div class="markdown">')[1].split("</div>")[0]

    # a second version: listed, selectable, the old one still reachable
    _publish(live, live.alice, "alice/merged-mix", live.adapters[0], description="A merge, v2.")
    latest = http.get("/a/alice/merged-mix")
    assert 'aria-current="page">v2</strong>' in latest.text and 'href="/a/alice/merged-mix?version=1">v1</a>' in latest.text
    v1 = http.get("/a/alice/merged-mix", params={"version": "1"})
    assert 'aria-current="page">v1</strong>' in v1.text and "files/$f?version=1" in v1.text
    assert http.get("/a/alice/merged-mix", params={"version": "9"}).status_code == 404
    bad = http.get("/a/alice/merged-mix", params={"version": "x"})
    assert bad.status_code == 422 and "version must be a whole number, got &#39;x&#39;" in bad.text
    assert "<h1>Not a valid request</h1>" in bad.text  # the caller's input, not "Something went wrong"


def test_markdown_is_sanitised():
    html = render_markdown(
        "# Title\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
        "[a](javascript:alert(1)) [b](JaVaScRiPt:alert(1)) [c]( java\tscript:x) [d](data:text/html,x) "
        "[e](https://ok.example/) [f](/a/x/y) [g](#top)\n\n![i](https://img.example/i.png)\n\n```\n<b>x</b>\n```\n"
    )
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "javascript" not in re.sub(r"&lt;.*?&gt;", "", html).lower().replace("java\tscript", "")
    assert re.findall(r'href="([^"]*)"', html) == ["https://ok.example/", "/a/x/y", "#top"]
    assert '<img alt="i" src="https://img.example/i.png"' in html or '<img src="https://img.example/i.png"' in html
    assert "<h3>Title</h3>" in html and "<h1>" not in html
    assert "<code>&lt;b&gt;x&lt;/b&gt;\n</code>" in html
    meta, body = split_front_matter("---\nlicense: mit\ntags: [a]\n---\n\n# Card\n")
    assert meta == {"license": "mit", "tags": ["a"]} and body.strip() == "# Card"
    assert split_front_matter("# No front matter\n") == ({}, "# No front matter\n")
    assert split_front_matter("---\n: [bad\n---\nbody")[0] == {}


def test_search_page_says_when_nothing_fits(http, live):
    off = http.get("/", params={"q": "my cat keeps scratching the sofa"})
    assert off.status_code == 200 and 'id="weak-match"' in off.text and "No good match" in off.text
    assert off.text.count("weak match</span>") == len(re.findall(r'class="score"', off.text)) > 0
    on = http.get("/", params={"q": "condense a newspaper story into a few bullets"})
    assert re.findall(r'<h3><a href="/a/([^"]+)">', on.text)[0] == "alice/news-summariser"
    assert 'id="weak-match"' not in on.text


def test_an_empty_result_says_why_it_is_empty(http, live):
    # the hub has adapters: a filter that excludes them all, or a page past the last, is not "No adapters yet"
    for params in ({"license": "no-such-license"}, {"tag": "no-such-tag"}, {"base_model": "nobody/nothing"}):
        r = http.get("/", params=params)
        assert r.status_code == 200 and "No adapter matches these filters." in r.text, params
        assert "No adapters yet" not in r.text
    past = http.get("/", params={"tag": "translation", "page": "500"})
    assert past.status_code == 200 and "No adapters yet" not in past.text
    assert 'Page 500 is past the last result. <a href="/?tag=translation">Back to the first page</a>' in past.text
    # a search's page past the last says so too, not that nothing reaches the match threshold
    far = http.get("/", params={"q": "translate French into English", "page": "50"})
    assert "Page 50 is past the last result." in far.text and 'id="weak-match"' not in far.text
