"""Semantic search route."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hub.api.deps import HubDep, UserDep
from hub.api.guards import INT64_MAX
from hub.api.routes.adapters import filters_dep
from hub.api.schemas import AdapterOut, SearchHitOut, SearchOut

router = APIRouter(prefix="/api/v1", tags=["search"])


@router.get("/search", response_model=SearchOut, operation_id="search_adapters",
            summary="Find adapters by describing the task; filters never cut the result short")
def search(
    hub: HubDep, user: UserDep,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="what the adapter should do")],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    base_model: str | None = None, tag: str | None = None, license: str | None = None, owner: str | None = None,
    min_rank: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    max_rank: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    kind: str | None = None,
    rerank: Annotated[bool | None, Query(description="reorder the best hits with the reranker (slower: a small LM "
                                                     "reads each; default: when the hub has one, "
                                                     "LOOM_SEARCH_RERANK, and the first hit leads the second by less "
                                                     "than LOOM_SEARCH_RERANK_MARGIN; true: whatever the lead)")] = None,
) -> SearchOut:
    f = filters_dep(base_model, tag, license, owner, min_rank, max_rank, kind)
    hits = hub.search.search(user, q, k, f, rerank=rerank)
    hub.metrics.searches.inc()
    results = [SearchHitOut(adapter=AdapterOut.of(h.adapter), score=h.score, exact=h.exact, match=h.match,
                            rerank_score=h.rerank_score) for h in hits]
    overall = "good" if any(h.match == "good" for h in hits) else "weak"
    reranked = any(h.rerank_score is not None for h in hits)
    return SearchOut(query=q, k=k, match=overall, threshold=hub.search.match_threshold, reranked=reranked,
                     results=results)
