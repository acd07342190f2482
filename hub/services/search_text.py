"""What search embeds for an adapter and how a row records it: the text recipe, its key, vector hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from hub.db.models import utcnow

#: the version of :func:`embedding_text`'s recipe; bump it when the text changes, so stored vectors are redone
#: (2: "words description tags", chosen on benchmarks/data/search_dev.json by benchmarks/search_variants.py;
#: 1 was "words: description Tags: a, b.")
EMBEDDING_TEXT_VERSION = 2
RECIPE = "+text"


def embedding_text(namespace: str, name: str, description: str, tags: Sequence[str]) -> str:
    """The text embedded for an adapter: its short name as words, its description and tags, space-joined.

    ``namespace`` is accepted (callers pass the full name's parts) but not embedded: it names the owner.
    """
    words = name.replace("-", " ").replace("_", " ").replace(".", " ")
    return " ".join(part for part in (words, description, " ".join(tags)) if part)


def embedding_key(model: str) -> str:
    """What an adapter row records as its ``embedding_model``: the model and the text recipe's version."""
    return f"{model}{RECIPE}{EMBEDDING_TEXT_VERSION}"


def is_old_recipe(stored: str | None, model: str) -> bool:
    """Whether ``stored`` (a row's ``embedding_model``) is ``model`` with an older text recipe (or none)."""
    return stored is not None and stored != embedding_key(model) and (
        stored == model or stored.startswith(model + RECIPE))


def vector_hash(blob: bytes) -> str:
    """The short hash of a stored vector that a row records (``embedding_hash``)."""
    return hashlib.sha256(blob).hexdigest()[:16]


def stored_vector(blob: bytes, model: str) -> dict[str, Any]:
    """The adapter columns that store vector ``blob`` made by ``model`` (its key): the vector, its hash, the model
    and ``embedded_at``, the stamp other processes' search indexes follow (``updated_at`` is left to the caller:
    it says when the adapter itself changed). Every writer of a vector uses it."""
    return {"embedding": blob, "embedding_hash": vector_hash(blob), "embedding_model": model, "embedded_at": utcnow()}
