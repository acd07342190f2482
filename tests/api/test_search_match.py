"""``GET /api/v1/search`` says when nothing fits: ``"match": "weak"`` on each hit and on the response."""

from __future__ import annotations

from tests.services.util import files_of


def test_search_response_says_weak_below_the_threshold(api, adapter_dirs):
    hub = api.hub
    alice = hub.users.ensure_user("alice")
    hub.publisher.publish(alice, "alice/sql", files_of(adapter_dirs[0]),
                          description="Translates English questions into SQL database queries.", tags=["code"])
    hub.publisher.publish(alice, "alice/news", files_of(adapter_dirs[1]),
                          description="Summarizes long news articles into a few short sentences.", tags=["text"])
    c = api.client
    off = c.get("/api/v1/search", params={"q": "what is the weather in Paris tomorrow"}).json()
    assert off["match"] == "weak" and off["threshold"] == 0.3 and len(off["results"]) == 2
    assert all(h["match"] == "weak" and h["score"] < 0.3 for h in off["results"])
    on = c.get("/api/v1/search", params={"q": "turn my questions into database queries", "k": 2}).json()
    assert on["match"] == "good" and on["results"][0]["adapter"]["id"] == "alice/sql"
    assert [h["match"] for h in on["results"]] == ["good", "weak"]
    schema = c.get("/openapi.json").json()["components"]["schemas"]
    assert schema["SearchOut"]["properties"]["match"]["enum"] == ["good", "weak"]
