"""``model="auto"`` uses the search's match threshold when ``semantic_router_threshold`` is unset."""

from __future__ import annotations

from tests.inference.conftest import BASE_ID


def test_auto_defaults_to_the_search_match_threshold(ihub):
    from hub.services.inference.auto import AutoRouter

    ihub.settings.semantic_router_threshold = None
    router = AutoRouter(ihub.settings, ihub.adapters, ihub.search)
    on_topic = "Translate this sentence into French: the cat sleeps."
    assert [n for n, _ in router.choose(None, BASE_ID, on_topic).chosen] == ["alice/french"]
    off = router.choose(None, BASE_ID, "my cat keeps scratching the sofa")
    assert off.chosen == [] and max(off.scores.values()) < ihub.search.match_threshold  # the base answers
    ihub.settings.search_match_threshold = 0.99  # the same setting moves the router's line
    strict = router.choose(None, BASE_ID, on_topic)
    assert strict.chosen == [] and max(strict.scores.values()) > 0.3
