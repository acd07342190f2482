"""The lexical tie-break of dense search: tokens, BM25 among candidates, the rerank of the dense top hits."""

from __future__ import annotations

import pytest

from hub.core.errors import InvalidInputError
from hub.search.lexical import bm25, card_text, rerank, stem, tokens


def test_tokens_drop_stop_words_and_strip_suffixes():
    assert tokens("Counting the kcal in 2 meals, please!") == ["count", "kcal", "2", "meal"]
    assert stem("stories") == "story" and stem("bus") == "bus"  # -ies -> -y; 3 letters are left alone
    assert tokens("Translates translated") == ["translat", "translat"]  # word forms meet
    assert card_text("py-to_rust.v2", "Ports code.", ["rust", "code"]) == "py to rust v2 Ports code. rust code"


def test_bm25_prefers_the_document_with_the_rare_query_word():
    docs = ["generates openapi swagger documentation for routes", "writes nginx config for a reverse proxy",
            "documentation for routes of a web app"]
    s = bm25("swagger documentation for my routes", docs)
    assert s[0] > s[2] > s[1] == 0.0
    assert bm25("", docs) == [0.0, 0.0, 0.0] and bm25("the of and", docs) == [0.0, 0.0, 0.0]
    assert bm25("anything", []) == []


def test_rerank_breaks_near_ties_keeps_clear_leads_and_reports_cosines():
    texts = {1: "api docs openapi endpoint documentation", 2: "nginx config reverse proxy port forward",
             3: "gitignore for node", 4: "unrelated"}
    hits = [(1, 0.251), (2, 0.247), (3, 0.10), (4, 0.05)]
    query = "forward /api to port 8080 in the proxy config"
    assert rerank(query, hits, texts, 0.0, 20) == hits  # weight 0: the dense order
    flipped = rerank(query, hits, texts, 0.02, 20)
    assert [i for i, _ in flipped] == [2, 1, 3, 4] and dict(flipped) == dict(hits)  # scores stay the cosines
    lead = [(1, 0.40), (2, 0.30), (3, 0.10), (4, 0.05)]
    assert rerank(query, lead, texts, 0.02, 20) == lead  # a clear dense lead is kept
    assert rerank(query, hits, texts, 0.02, 1) == hits  # depth 1: nothing to reorder
    deep = hits + [(5, 0.01), (6, 0.0)]
    assert rerank(query, deep, texts, 0.02, 4)[4:] == deep[4:]  # below the depth the dense order stays
    assert rerank("zzz", hits, texts, 0.02, 20) == hits  # no query word in any candidate
    with pytest.raises(InvalidInputError, match="weight must be >= 0"):
        rerank(query, hits, texts, -0.1, 20)
