"""``loom search`` marks weak matches and says when no adapter fits (against a real server)."""

from __future__ import annotations

import json

from hub.cli import main
from tests.services.util import files_of


def test_cli_search_shows_weak_matches(server, capsys, monkeypatch, adapter_dirs):
    url, hub = server
    monkeypatch.setenv("LOOM_SERVER_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    alice = hub.users.ensure_user("alice")
    hub.publisher.publish(alice, "alice/sql", files_of(adapter_dirs[0]),
                          description="Translates English questions into SQL database queries.", tags=["code"])

    def run(*args):
        capsys.readouterr()
        rc = main(list(args))
        return rc, capsys.readouterr().out

    rc, out = run("search", "how do I repot an orchid")
    assert rc == 0 and "alice/sql" in out and "weak" in out
    assert "No good match" in out and "threshold 0.30" in out
    rc, out = run("search", "turn my questions into database queries")
    assert rc == 0 and "alice/sql" in out and "weak" not in out and "No good match" not in out
    rc, out = run("search", "how do I repot an orchid", "--json")
    res = json.loads(out)
    assert res["match"] == "weak" and res["results"][0]["match"] == "weak"


def test_rerank_through_the_api_the_cli_and_the_page(make_hub, adapter_dirs, smollm2_dir, capsys, monkeypatch):
    import time

    import httpx

    from hub.api import create_app
    from tests.helpers import serve_in_thread
    from tests.services.test_search_match import _fill
    from tests.services.test_search_rerank import CATALOG, QUERY

    plain_hub = make_hub()
    _fill(plain_hub, adapter_dirs, CATALOG)
    hub = make_hub(search_rerank=str(smollm2_dir))
    _fill(hub, adapter_dirs, CATALOG)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args):
        capsys.readouterr()
        rc = main(list(args))
        out = capsys.readouterr()
        return rc, out.out, out.err

    with serve_in_thread(create_app(hub=plain_hub)) as url:  # a hub without a reranker
        res = httpx.get(f"{url}/api/v1/search", params={"q": QUERY, "rerank": "true"})
        assert res.status_code == 422 and "LOOM_SEARCH_RERANK=smollm2" in res.text
        assert httpx.get(f"{url}/api/v1/search", params={"q": QUERY, "rerank": "maybe"}).status_code == 422
        body = httpx.get(f"{url}/api/v1/search", params={"q": QUERY}).json()
        assert body["reranked"] is False and body["results"][0]["adapter"]["name"] == "workout"
        monkeypatch.setenv("LOOM_SERVER_URL", url)
        rc, out, err = run("search", QUERY, "--rerank")
        assert rc != 0 and "LOOM_SEARCH_RERANK=smollm2" in err and len(err.strip().splitlines()) == 1
        page = httpx.get(f"{url}/", params={"q": QUERY})
        assert page.status_code == 200 and 'id="rank"' not in page.text  # no choice to offer
        page = httpx.get(f"{url}/", params={"q": QUERY, "rank": "rerank"})
        assert page.status_code == 422 and "LOOM_SEARCH_RERANK=smollm2" in page.text

    with serve_in_thread(create_app(hub=hub)) as url:
        deadline = time.monotonic() + 120
        while not hub.search.encoders.reranker_loaded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.search.encoders.reranker_loaded  # the server loaded it at start, before any search asked
        body = httpx.get(f"{url}/api/v1/search", params={"q": QUERY, "k": 4}, timeout=120).json()
        assert body["reranked"] is True and body["results"][0]["adapter"]["name"] == "cover-letter"
        assert all(h["rerank_score"] is not None for h in body["results"])
        body = httpx.get(f"{url}/api/v1/search", params={"q": QUERY, "k": 4, "rerank": "false"}).json()
        assert body["reranked"] is False and body["results"][0]["adapter"]["name"] == "workout"
        monkeypatch.setenv("LOOM_SERVER_URL", url)
        rc, out, _ = run("search", QUERY, "--k", "2", "--json")
        assert rc == 0 and json.loads(out)["results"][0]["adapter"]["name"] == "cover-letter"
        rc, out, _ = run("search", QUERY, "--k", "2", "--no-rerank", "--json")
        assert json.loads(out)["results"][0]["adapter"]["name"] == "workout"
        rc, out, _ = run("search", QUERY, "--k", "4")
        assert rc == 0 and "(reranked)" in out and out.index("dev/cover-letter") < out.index("dev/workout")
        page = httpx.get(f"{url}/", params={"q": QUERY}).text
        assert 'id="rank"' in page and 'id="reranked"' in page
        assert page.index("dev/cover-letter") < page.index("dev/workout")
        page = httpx.get(f"{url}/", params={"q": QUERY, "rank": "cosine"}).text
        assert 'id="reranked"' not in page and page.index("dev/workout") < page.index("dev/cover-letter")
        bad = httpx.get(f"{url}/", params={"q": QUERY, "rank": "loudest"})
        assert bad.status_code == 422 and "must be &#39;rerank&#39; or &#39;cosine&#39;" in bad.text
