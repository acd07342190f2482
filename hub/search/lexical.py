"""A lexical tie-break for dense search: BM25 among the dense top candidates, added with a small weight.

The dense cosine decides the ranking; among the best ``depth`` candidates a query's words found in a card (its
short name as words, description and tags) add ``weight`` x the candidate's BM25 score divided by the best BM25
score among them, so near-ties go to the card that says what the query says ("kcal", "swagger", "slug") while a
clear dense lead is kept (weight 0.01 against cosine gaps of 0.05-0.3). BM25's statistics (document frequency,
average length) are taken over the candidates themselves, so no corpus-wide index is kept: a word shared by
every candidate does not discriminate among them and scores little. Chosen on the dev sets only
(``benchmarks/search_ranking_cv.py``). Tokens: lowercase words and numbers, English stop words dropped, a small
suffix-stripping stemmer (plurals, -ing, -ed, -ly, -er, -ion).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from hub.core.errors import InvalidInputError

#: BM25 parameters (the usual ones)
K1 = 1.2
B = 0.75
STOP_WORDS = frozenset("""a an and are as at be but by can could do does for from has have how i if in into is it
its me my of on or our please so some than that the their them then there these this to up us want was we what
when which who will with would you your need make turn get give help text""".split())
_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ed", "ies", "es", "ly", "er", "ers", "ions", "ion", "s")
_WORD = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """``word`` without its first matching suffix (if at least 3 letters remain); ``-ies`` becomes ``-y``."""
    for suf in _SUFFIXES:
        if len(word) > len(suf) + 2 and word.endswith(suf):
            return word[: -len(suf)] + ("y" if suf == "ies" else "")
    return word


def tokens(text: str) -> list[str]:
    """The stemmed, lowercase words and numbers of ``text`` without stop words."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


def card_text(name: str, description: str, tags: Sequence[str]) -> str:
    """What the lexical score reads of an adapter: its short name as words, description and tags."""
    words = name.replace("-", " ").replace("_", " ").replace(".", " ")
    return " ".join((words, description, " ".join(tags)))


def bm25(query: str, docs: Sequence[str]) -> list[float]:
    """BM25 scores of ``docs`` for ``query``, with document frequencies and lengths taken over ``docs``."""
    q = set(tokens(query))
    toks = [tokens(d) for d in docs]
    n = len(toks)
    if not q or n == 0:
        return [0.0] * n
    df = Counter(t for d in toks for t in set(d) if t in q)
    avg = sum(map(len, toks)) / n or 1.0
    out = []
    for d in toks:
        tf = Counter(t for t in d if t in q)
        norm = K1 * (1 - B + B * len(d) / avg)
        out.append(sum(math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) * f * (K1 + 1) / (f + norm)
                       for t, f in tf.items()))
    return out


def rerank(query: str, hits: Sequence[tuple[int, float]], texts: dict[int, str], weight: float,
           depth: int) -> list[tuple[int, float]]:
    """``hits`` (``(id, cosine)``, best first) with the first ``depth`` reordered by cosine + ``weight`` x their
    max-normalised BM25 (:func:`bm25` among them; an id without a text scores 0); the rest follow as they were.

    The scores returned are the cosines (the weak-match threshold is calibrated on them). Ties keep the dense order.

    Raises:
        InvalidInputError: a negative weight or a depth below 1.
    """
    if weight < 0 or depth < 1:
        raise InvalidInputError(f"weight must be >= 0 and depth >= 1, got weight={weight}, depth={depth}")
    head, tail = list(hits[:depth]), list(hits[depth:])
    if weight == 0 or len(head) < 2:
        return head + tail
    lex = bm25(query, [texts.get(i, "") for i, _ in head])
    top = max(lex)
    if top <= 0:
        return head + tail
    fused = [(cos + weight * s / top, -pos) for pos, ((_, cos), s) in enumerate(zip(head, lex, strict=True))]
    order = sorted(range(len(head)), key=lambda p: fused[p], reverse=True)
    return [head[p] for p in order] + tail
