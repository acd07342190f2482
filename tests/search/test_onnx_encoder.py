"""The ONNX Runtime query encoder equals the torch embedder, is exported once, and queries are cached."""

from __future__ import annotations

import numpy as np
import pytest

from hub.search.onnx_encoder import OnnxQueryEncoder, clear_cache, load_onnx_encoder

TEXTS = [
    "make everything capital letters",
    "hi",
    "I need something that can boil down legal contracts for banking, in plain English, step by step.",
    "Übersetze diesen Satz ins Englische, bitte!",
    "word " * 400,  # longer than the model's 256 tokens: both truncate the same way
]


@pytest.fixture(scope="module")
def onnx_encoder(embedder, tmp_path_factory):
    clear_cache()
    enc = load_onnx_encoder(embedder, tmp_path_factory.mktemp("models"))
    yield enc
    clear_cache()


def test_onnx_encoder_equals_torch_within_tolerance(embedder, onnx_encoder):
    assert isinstance(onnx_encoder, OnnxQueryEncoder) and onnx_encoder.dim == embedder.dim == 384
    got = onnx_encoder.embed(TEXTS)  # one padded batch
    want = embedder.embed(TEXTS)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    for t, w in zip(TEXTS, want, strict=True):  # one at a time (no padding) as well
        np.testing.assert_allclose(onnx_encoder.embed([t])[0], w, atol=2e-5)
    assert onnx_encoder.embed([]).shape == (0, 384)


def test_export_is_cached_on_disk_and_in_process(embedder, onnx_encoder):
    path = onnx_encoder.path
    stamp = path.stat().st_mtime_ns
    assert load_onnx_encoder(embedder, path.parent) is onnx_encoder  # this process: the loaded one
    clear_cache()
    again = load_onnx_encoder(embedder, path.parent)  # a new process: the file, not a new export
    assert again is not onnx_encoder and again.path == path and path.stat().st_mtime_ns == stamp
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind


class Counting:
    """Counts the texts an embedder is asked for (wraps the real one)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim, self.calls = inner, inner.name, inner.dim, 0

    def embed(self, texts):
        self.calls += len(texts)
        return self.inner.embed(texts)


def test_service_uses_onnx_by_default_and_caches_recent_queries(embedder, tmp_path):
    from hub.db.engine import make_engine, make_session_factory
    from hub.db.migrate import upgrade
    from hub.services.search import SearchService
    from hub.settings import get_settings

    settings = get_settings(data_dir=tmp_path, search_query_cache=2)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    svc = SearchService(settings, make_session_factory(engine), embedder_factory=lambda _m: embedder)
    assert isinstance(svc.query_encoder, OnnxQueryEncoder)  # the default encoder
    assert svc.query_encoder.path.is_file()
    counting = Counting(svc.query_encoder)
    svc.encoders._query_encoder = counting  # count the encoder calls behind the cache
    a = svc.embed_query("turn questions into SQL")
    b = svc.embed_query("turn questions into SQL")
    assert counting.calls == 1 and svc.query_cache_hits == 1 and b is a
    np.testing.assert_allclose(a, embedder.embed(["turn questions into SQL"])[0], atol=2e-5)
    svc.embed_query("second")
    svc.embed_query("third")  # evicts the least recently used ("turn questions into SQL")
    assert counting.calls == 3
    svc.embed_query("turn questions into SQL")
    assert counting.calls == 4 and svc.query_cache_hits == 1
    torch_svc = SearchService(get_settings(data_dir=tmp_path, search_encoder="torch"), svc.sessions,
                              embedder_factory=lambda _m: embedder)
    assert torch_svc.query_encoder is embedder


def test_int8_encoder_stays_close_to_torch(embedder, onnx_encoder):
    int8 = load_onnx_encoder(embedder, onnx_encoder.path.parent, int8=True)
    assert int8.path != onnx_encoder.path and int8.path.stat().st_size < onnx_encoder.path.stat().st_size / 2
    got, want = int8.embed(TEXTS), embedder.embed(TEXTS)
    cos = (got * want).sum(1)
    assert cos.min() > 0.85 and np.abs(got - want).max() > 1e-3, cos  # near, yet really quantized (not equal)
