"""The match threshold ("match": "weak" below it) and the ranking fixes, through the service layer."""

from __future__ import annotations

import pytest

from hub.core.errors import NotFoundError
from hub.services.compositions import CompositionRequest
from tests.services.util import files_of

OFF_TOPIC = "what is the weather in Paris tomorrow"
CATALOG = [
    ("alice/upper", "Converts lowercase letters in a sentence to uppercase capitals.", ["text"]),
    ("alice/sql", "Translates English questions into SQL database queries.", ["code"]),
    ("alice/summarize", "Summarizes long news articles into a few short sentences.", ["text"]),
]


def _fill(hub, adapter_dirs, catalog=CATALOG):
    for i, (name, desc, tags) in enumerate(catalog):
        owner = hub.users.ensure_user(name.split("/")[0])  # a namespace belongs to its user
        hub.publisher.publish(owner, name, files_of(adapter_dirs[i % len(adapter_dirs)]), description=desc,
                              tags=tags)
    return hub.users.ensure_user("alice")


def test_hits_below_the_threshold_are_weak(make_hub, adapter_dirs):
    hub = make_hub()
    _fill(hub, adapter_dirs)
    assert hub.search.match_threshold == pytest.approx(0.3)  # the calibrated default
    off = hub.search.search(None, OFF_TOPIC, k=3)
    assert len(off) == 3 and all(h.match == "weak" and h.score < 0.3 for h in off), [(h.score, h.match) for h in off]
    on = hub.search.search(None, "write database queries from my questions", k=3)
    assert on[0].adapter.full_name == "alice/sql" and on[0].match == "good" and on[0].score >= 0.3
    assert [h.match for h in on[1:]] == ["weak", "weak"]
    strict = make_hub(search_match_threshold=0.95)  # the setting moves the line
    assert strict.search.search(None, "write database queries from my questions", k=1)[0].match == "weak"
    code = strict.search.search(None, "code", k=2)  # an exact tag match is a good match whatever its cosine
    assert code[0].exact and code[0].match == "good" and code[0].score < 0.95 and code[1].match == "weak"


def test_capital_letters_rank_the_upper_case_adapter_first(hub, adapter_dirs):
    from testbed.tasks import TASKS

    zoo = [(f"zoo/{n}", TASKS[n].description, list(TASKS[n].tags)) for n in ("lower", "upper", "swapcase")]
    _fill(hub, adapter_dirs, zoo)
    hits = hub.search.search(None, "make everything capital letters", k=3)
    assert [h.adapter.full_name for h in hits][0] == "zoo/upper", [(h.adapter.full_name, h.score) for h in hits]


def test_compose_task_uses_the_match_threshold(make_hub, adapter_dirs):
    hub = make_hub()
    alice = _fill(hub, adapter_dirs)
    with pytest.raises(NotFoundError, match=r"min_score 0\.3\)"):  # nothing close: refused at submit
        hub.compositions.submit(alice, CompositionRequest(task=OFF_TOPIC, base_model="loom-test/pico-llama",
                                                          method="linear"))
    job, _ = hub.compositions.submit(alice, CompositionRequest(task="write database queries from my questions",
                                                               base_model="loom-test/pico-llama", method="linear"))
    assert [s["name"] for s in job.request["sources"]] == ["alice/sql"]  # the weak ones are left out
    strict = make_hub(search_match_threshold=0.95)
    with pytest.raises(NotFoundError, match=r"min_score 0\.95\)"):
        strict.compositions.submit(alice, CompositionRequest(task="write database queries from my questions",
                                                             base_model="loom-test/pico-llama", method="linear"))


def test_filtered_search_caches_allowed_sets_without_leaking(make_hub, adapter_dirs):
    from hub.repositories.adapters import AdapterFilters

    hub, other = make_hub(), make_hub()  # two processes' services on one database
    alice = _fill(hub, adapter_dirs)
    text = AdapterFilters(tag="text")
    names = lambda hits: sorted(h.adapter.full_name for h in hits)  # noqa: E731
    assert names(hub.search.search(None, "capital letters", k=5, filters=text)) == ["alice/summarize", "alice/upper"]
    assert names(hub.search.search(None, "short news", k=5, filters=text)) == ["alice/summarize", "alice/upper"]
    assert hub.search.allowed_cache.hits == 1  # the second query reused the allowed set
    # another process hides an adapter: this one's cached set is stale, yet the hidden row never comes back
    other.adapters.patch(alice, "alice", "upper", visibility="private")
    assert names(hub.search.search(None, "capital letters", k=5, filters=text)) == ["alice/summarize"]
    assert names(hub.search.search(alice, "capital letters", k=5, filters=text)) == ["alice/summarize", "alice/upper"]
    # this process's own change drops the cache at once
    hub.adapters.patch(alice, "alice", "upper", visibility="public")
    assert names(hub.search.search(None, "capital letters", k=5, filters=text)) == ["alice/summarize", "alice/upper"]
    hub.adapters.patch(alice, "alice", "sql", tags=["text"])
    assert len(hub.search.search(None, "capital letters", k=5, filters=text)) == 3


def test_allowed_sets_are_refreshed_in_the_background(make_hub, adapter_dirs):
    import time

    from hub.repositories.adapters import AdapterFilters

    hub, other = make_hub(search_filter_cache_s=0.05), make_hub()
    alice = _fill(hub, adapter_dirs)
    text = AdapterFilters(tag="text")
    assert len(hub.search.search(None, "capital letters", k=5, filters=text)) == 2
    other.adapters.patch(alice, "alice", "sql", tags=["text"])  # another process: this one is not told
    deadline = time.monotonic() + 10
    while len(hub.search.search(None, "capital letters", k=5, filters=text)) < 3:  # stale sets are served...
        assert time.monotonic() < deadline, "the allowed set was never read again"
        time.sleep(0.05)  # ...while a background thread reads the new one
    assert hub.search.allowed_cache.hits >= 1


OPS_CATALOG = [
    ("code/api-docs", "Writes OpenAPI endpoint documentation from a Flask route handler.", ["openapi", "documentation", "api"]),
    ("ops/nginx-config", "Writes nginx server blocks for reverse proxies and TLS.", ["devops", "nginx", "web"]),
    ("code/gitignore", "Generates a .gitignore file for a project's languages and tools.", ["git", "devops"]),
    ("ops/alert-summary", "Summarizes a burst of monitoring alerts into one incident note.", ["devops", "monitoring"]),
]


def test_the_lexical_tie_break_decides_near_ties_and_keeps_cosine_scores(make_hub, adapter_dirs):
    """A dense near-tie goes to the card that shares the query's words (BM25 among the dense top hits); the
    reported scores stay the cosines; ``search_lexical_weight=0`` is the cosine order."""
    query = "web server config to forward /api to port 8080"
    dense = make_hub(search_lexical_weight=0.0)
    _fill(dense, adapter_dirs, OPS_CATALOG)
    by_cosine = dense.search.search(None, query, k=4)
    assert [h.adapter.full_name for h in by_cosine[:2]] == ["code/api-docs", "ops/nginx-config"]
    assert by_cosine[0].score - by_cosine[1].score < 0.01  # a near-tie
    hub = make_hub()  # the default weight, same DB
    hits = hub.search.search(None, query, k=4)
    assert [h.adapter.full_name for h in hits[:2]] == ["ops/nginx-config", "code/api-docs"]
    assert {h.adapter.full_name: h.score for h in hits} == pytest.approx({h.adapter.full_name: h.score
                                                                          for h in by_cosine})
    assert [h.adapter.full_name for h in hub.search.search(None, query, k=1)] == ["ops/nginx-config"]
    assert hub.search.search(None, "nginx", k=1)[0].exact  # an exact tag match still comes first
