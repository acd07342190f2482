"""The query-likelihood reranker of search results (``LOOM_SEARCH_RERANK``), with the real SmolLM2-135M-Instruct."""

from __future__ import annotations

import pytest

from hub.core.errors import InvalidInputError
from tests.services.test_search_match import _fill

#: dev-set cards (benchmarks/data/search_dev.json) around a dev-set-2 query that MiniLM alone ranks wrong
CATALOG = [
    ("dev/workout", "Builds a weekly strength training plan for a fitness goal.", ["fitness", "health", "planning"]),
    ("dev/cover-letter", "Writes a cover letter for a job application from a CV and a job posting.", ["writing", "jobs"]),
    ("dev/press-release", "Writes a press release announcing a product launch.", ["marketing", "writing"]),
    ("dev/meeting-minutes", "Turns a meeting transcript into minutes with decisions and action items.",
     ["meetings", "summarization"]),
]
QUERY = "persuade a recruiter I am a good fit for the role"


def test_the_likelihood_equals_a_forward_of_the_whole_prompt(smollm2_dir):
    """The oracle: one plain forward of the whole prompt as one text, for cards encoded now and for cards whose
    prompts come from the card cache (only the query's tokens run then), and with no card cache."""
    import torch

    from hub.search.rerank import MAX_CARD_TOKENS, PROMPT, QueryLikelihoodReranker

    r = QueryLikelihoodReranker(smollm2_dir, device="cpu")
    tok, model = r.tokenizer, r.model

    def plain(query: str, card: str) -> float:
        q = len(tok(query, add_special_tokens=False)["input_ids"])
        text = tok.apply_chat_template([{"role": "user", "content": PROMPT.format(card)}], add_generation_prompt=True,
                                       tokenize=False)
        ids = tok(text + query, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0].float(), -1)
        return lp[-q - 1:-1].gather(-1, ids[0, -q:, None]).mean().item()

    cards = [d for _, d, _ in CATALOG]
    got = r.log_likelihoods(QUERY, cards)
    for card, ll in zip(cards, got, strict=True):
        assert ll == pytest.approx(plain(QUERY, card), abs=1e-4)
    assert r.scored == 4 and r.cards_encoded == 4
    assert list(r.log_likelihoods(QUERY, cards[::-1])) == list(got[::-1]) and r.scored == 4  # from the cache
    other = "write to a hiring manager about a job opening"  # a longer query, the same cards: from the card cache
    again = r.log_likelihoods(other, cards[1:] + cards[:1])
    assert r.scored == 8 and r.cards_encoded == 4
    for card, ll in zip(cards[1:] + cards[:1], again, strict=True):
        assert ll == pytest.approx(plain(other, card), abs=1e-4)
    none = QueryLikelihoodReranker(smollm2_dir, device="cpu", card_cache_mb=0)  # nothing kept: encoded each time
    assert none.log_likelihoods(other, cards[1:] + cards[:1]) == pytest.approx(again, abs=1e-5)
    none.log_likelihoods(QUERY, cards)
    assert none.cards_encoded == 8
    long = " ".join([cards[0]] * 200)  # a whole model card as the description: cut, still scored
    assert len(r.body_ids(long)) <= MAX_CARD_TOKENS + len(r.body_ids(""))
    assert r.log_likelihoods(QUERY, [long])[0] < 0 and r.scored == 9
    with pytest.raises(InvalidInputError, match="depth >= 1"):
        r.rerank(QUERY, [(1, 0.5)], {1: cards[0]}, 0.3, 0)


def test_a_reranking_hub_puts_the_card_the_query_asks_for_first(make_hub, adapter_dirs, smollm2_dir):
    hub = make_hub(search_rerank=str(smollm2_dir))
    _fill(hub, adapter_dirs, CATALOG)
    assert hub.search.rerank_available
    plain = hub.search.search(None, QUERY, k=4, rerank=False)
    assert plain[0].adapter.full_name == "dev/workout" and all(h.rerank_score is None for h in plain)
    hits = hub.search.search(None, QUERY, k=4)  # a hub with a reranker reranks unless told not to
    assert hits[0].adapter.full_name == "dev/cover-letter", [(h.adapter.full_name, h.rerank_score) for h in hits]
    cosine = {h.adapter.full_name: h.score for h in plain}
    assert {h.adapter.full_name: h.score for h in hits} == cosine  # the scores shown stay the cosines
    assert all(h.rerank_score is not None and h.rerank_score < 0 for h in hits)
    assert hits[0].rerank_score > next(h.rerank_score for h in hits if h.adapter.full_name == "dev/workout")
    no_lexical = make_hub(search_rerank=str(smollm2_dir), search_lexical_weight=0.0)  # rows read for the reranker
    _fill(no_lexical, adapter_dirs, CATALOG)
    assert no_lexical.search.search(None, QUERY, k=4)[0].adapter.full_name == "dev/cover-letter"
    depth1 = make_hub(search_rerank=str(smollm2_dir), search_rerank_depth=1)  # reorders only what it scores
    _fill(depth1, adapter_dirs, CATALOG)
    one = depth1.search.search(None, QUERY, k=4)
    assert [h.adapter.full_name for h in one] == [h.adapter.full_name for h in plain]
    assert [h.rerank_score is not None for h in one] == [True, False, False, False]


def test_a_search_with_a_clear_first_hit_is_not_reranked_unless_asked(make_hub, adapter_dirs, smollm2_dir):
    """``search_rerank_margin``: a search that does not ask is reranked only when its two best cosines are close
    (QUERY: the wrong card leads by little), so one with a clear first hit costs no forward of the model."""
    clear = "a weekly strength training plan for my fitness goal"
    hub = make_hub(search_rerank=str(smollm2_dir))
    _fill(hub, adapter_dirs, CATALOG)
    ranker = hub.search.encoders.reranker
    plain = {q: hub.search.search(None, q, k=4, rerank=False) for q in (clear, QUERY)}
    lead = {q: hits[0].score - hits[1].score for q, hits in plain.items()}
    margin = hub.settings.search_rerank_margin
    assert lead[QUERY] < margin <= lead[clear], lead
    hits = hub.search.search(None, clear, k=4)
    assert all(h.rerank_score is None for h in hits) and ranker.scored == 0  # the model did not run
    assert [h.adapter.full_name for h in hits] == [h.adapter.full_name for h in plain[clear]]
    assert hub.search.search(None, QUERY, k=4)[0].rerank_score is not None and ranker.scored == 4
    forced = hub.search.search(None, clear, k=4, rerank=True)  # asked: reranked whatever the lead
    assert all(h.rerank_score is not None for h in forced) and forced[0].adapter.full_name == "dev/workout"
    every = make_hub(search_rerank=str(smollm2_dir), search_rerank_margin=0.0)  # 0: every search
    _fill(every, adapter_dirs, CATALOG)
    assert all(h.rerank_score is not None for h in every.search.search(None, clear, k=4))


def test_rerank_without_a_reranker_is_refused_and_the_setting_is_checked(make_hub, adapter_dirs, tmp_path):
    from pydantic import ValidationError

    from hub.settings import get_settings

    hub = make_hub()
    _fill(hub, adapter_dirs, CATALOG)
    assert not hub.search.rerank_available
    assert all(h.rerank_score is None for h in hub.search.search(None, QUERY, k=2))
    with pytest.raises(InvalidInputError, match="LOOM_SEARCH_RERANK=smollm2"):
        hub.search.search(None, QUERY, k=2, rerank=True)
    with pytest.raises(ValidationError, match="search_rerank"):
        get_settings(search_rerank=str(tmp_path / "no-such-model"))
    assert get_settings(search_rerank=" SmolLM2 ").search_rerank == "smollm2"
