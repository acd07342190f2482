"""What routers read of a request besides its tokens: its printable text, a sentence embedding, and a
hashed bag of words (spec routers §7.6, §8.2). The same functions serve training and serving, so the
gates read at serving time exactly what they were trained on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from hub.core.errors import InvalidInputError

Embed = Callable[[list[str]], Any]


def request_text(text: str) -> str:
    """What an external embedding reads of a prompt: printable text, trimmed (special-token marks and the
    trailing newline dropped), identical at training and at serving time."""
    return "".join(ch for ch in text if ch.isprintable()).strip()


def embed_texts(embed: Embed, texts: Sequence[str], batch: int = 256) -> torch.Tensor:
    """``embed`` over ``texts`` (after :func:`request_text`) -> a float32 (N, D) tensor."""
    out = []
    for i in range(0, len(texts), batch):
        out.append(torch.as_tensor(embed([request_text(t) for t in texts[i:i + batch]])).float())
    return torch.cat(out) if out else torch.zeros(0, 0)


@functools.lru_cache(maxsize=8)
def _hasher(dim: int) -> Any:
    """The word hasher of ``dim`` buckets (stateless; built once per width, not per request)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=dim, ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
                             alternate_sign=False, norm="l2", dtype=np.float32)


def lexical_features(texts: Sequence[str], dim: int) -> torch.Tensor:
    """A hashed, L2-normalised bag of the lower-cased words and word pairs of each text (after
    :func:`request_text`) -> float32 (N, dim). Stateless (MurmurHash3 buckets), so training and serving
    agree with nothing stored; single characters count as words (the "3" of "shift by 3")."""
    return torch.from_numpy(_hasher(dim).transform([request_text(t) for t in texts]).toarray())


def request_features(embed: Embed, texts: Sequence[str], config: Any) -> torch.Tensor:
    """What gates with ``features="embedding"`` read for each request: its sentence embedding
    (``config.embedding_dim`` wide), then ``config.lexical_dim`` hashed word features when set."""
    feats = embed_texts(embed, texts)
    if feats.shape[1] != config.embedding_dim:
        raise InvalidInputError(f"the embed function gives {feats.shape[1]} dimensions; the config says "
                                f"embedding_dim={config.embedding_dim}")
    if getattr(config, "lexical_dim", 0):
        feats = torch.cat([feats, lexical_features(texts, config.lexical_dim)], dim=1)
    return feats
