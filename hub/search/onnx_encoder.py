"""A faster query encoder: the search embedder exported once to ONNX and run by ONNX Runtime.

The export wraps the sentence-transformers model's transformer and its pooling (mean or CLS, read from
the model's own pooling config) in one graph, so a query costs one ONNX Runtime call plus the fast
tokenizer; vectors are L2-normalised here, like :class:`~hub.search.embedder.SentenceTransformerEmbedder`'s,
and equal them to float rounding (``tests/search/test_onnx_encoder.py``). The ``.onnx`` file is written
once (atomically) under a cache folder (the service uses ``<data_dir>/models``), keyed by the model's
files, and reused by every later process; nothing is downloaded. ``torch``, ``onnx`` and
``onnxruntime`` are imported lazily.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hub.core.errors import InvalidInputError
from hub.search.arrays import normalize
from hub.search.embedder import SentenceTransformerEmbedder, checked_texts

EXPORT_VERSION = 1  # bump when the exported graph changes
OPSET = 17
_CACHE: dict[str, OnnxQueryEncoder] = {}
_CACHE_LOCK = threading.Lock()


class OnnxQueryEncoder:
    """An :class:`~hub.search.embedder.Embedder` running an exported model with ONNX Runtime.

    Args:
        onnx_path: the exported graph (inputs ``input_ids``, ``attention_mask``, ``token_type_ids``; output
            the pooled ``(batch, dim)`` embedding).
        tokenizer_file: the model's ``tokenizer.json``.
        name, dim: as the torch embedder reports them. max_length: the model's ``max_seq_length``.
        threads: ONNX Runtime intra-op threads (1 suits a server answering many queries at once).
    """

    def __init__(self, onnx_path: Path, tokenizer_file: Path, name: str, dim: int, max_length: int,
                 threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.enable_padding()
        self.name, self.dim, self.path = name, int(dim), onnx_path
        self._lock = threading.Lock()  # the tokenizer's padding/truncation state is shared

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; ``(n, dim)`` float32 unit rows (raises InvalidInputError on a bare str)."""
        items = checked_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            encodings = self._tokenizer.encode_batch(items)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)  # (n, T)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)  # (n, T)
        types = np.asarray([e.type_ids for e in encodings], dtype=np.int64)  # (n, T)
        (out,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        return normalize(np.asarray(out, dtype=np.float32).reshape(len(items), self.dim))  # (n, dim)


def _model_dir(embedder: SentenceTransformerEmbedder) -> Path:
    folder = Path(str(embedder.model[0].auto_model.config.name_or_path))
    if not (folder / "tokenizer.json").is_file():
        raise InvalidInputError(f"no tokenizer.json in {str(folder)!r} (model {embedder.name!r}); "
                                "use search_encoder=torch", setting="LOOM_SEARCH_ENCODER", value="onnx")
    return folder


def _key(folder: Path) -> str:
    """A cache key from the model's files (name, size, mtime) and the export version."""
    h = hashlib.sha256(f"{EXPORT_VERSION}:{OPSET}:{folder.resolve()}".encode())
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _pooling(st: Any) -> str:
    """``"mean"`` or ``"cls"`` from the model's Pooling module; anything else cannot be exported here."""
    for module in st:
        cfg = getattr(module, "get_config_dict", lambda: {})()
        mode = cfg.get("pooling_mode")  # sentence-transformers 5+; older releases: one flag per mode
        if mode == "mean" or cfg.get("pooling_mode_mean_tokens"):
            return "mean"
        if mode == "cls" or cfg.get("pooling_mode_cls_token"):
            return "cls"
    raise InvalidInputError("the search model's pooling is neither mean nor CLS; use search_encoder=torch",
                            setting="LOOM_SEARCH_ENCODER", value="onnx")


def export(embedder: SentenceTransformerEmbedder, target: Path) -> None:
    """Write ``embedder``'s transformer + pooling as one ONNX graph to ``target`` (atomically)."""
    import torch

    st = embedder.model
    pooling = _pooling(st)
    model = st[0].auto_model

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            h = self.model(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state  # (B, T, E)
            if pooling == "cls":
                return h[:, 0]  # (B, E)
            m = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, E)

    ids = torch.ones(2, 8, dtype=torch.long)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "token_type_ids": {0: "batch", 1: "seq"}, "embedding": {0: "batch"}}
    try:
        with embedder.lock, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's tracer and deprecation notes
            torch.onnx.export(Pooled().eval(), (ids, torch.ones_like(ids), torch.zeros_like(ids)), tmp,
                              input_names=list(axes)[:3], output_names=["embedding"], dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def quantize(source: Path, target: Path) -> None:
    """Write an int8 copy of ``source`` (ONNX Runtime dynamic quantization of the weights) to ``target``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(prefix=".quantize-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        quantize_dynamic(source, tmp, weight_type=QuantType.QInt8)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_onnx_encoder(embedder: Any, cache_dir: Path, threads: int = 1, int8: bool = False) -> OnnxQueryEncoder:
    """The ONNX query encoder of ``embedder`` (a sentence-transformers embedder), exported on first use.

    Loaded once per process per model; the ``.onnx`` file lives in ``cache_dir`` and is reused across runs.
    ``int8``: weights quantized to int8 (dynamic quantization of the exported graph): faster, and no longer
    equal to the torch vectors (``benchmarks/search_bench.py --quality`` measures what it costs).

    Raises:
        InvalidInputError: ``embedder`` is not a sentence-transformers embedder, or its model cannot be
            exported (pooling other than mean/CLS, no fast tokenizer).
    """
    if not isinstance(embedder, SentenceTransformerEmbedder):
        raise InvalidInputError(f"cannot export {type(embedder).__name__} to ONNX; use search_encoder=torch",
                                setting="LOOM_SEARCH_ENCODER", value="onnx")
    folder = _model_dir(embedder)
    key = _key(folder) + ("-int8" if int8 else "")
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        target = cache_dir / f"query-encoder-{key.removesuffix('-int8')}.onnx"
        if not target.is_file():
            export(embedder, target)
        if int8:
            source, target = target, cache_dir / f"query-encoder-{key}.onnx"
            if not target.is_file():
                quantize(source, target)
        st = embedder.model
        encoder = OnnxQueryEncoder(target, folder / "tokenizer.json", embedder.name, embedder.dim,
                                   int(st.max_seq_length), threads)
        _CACHE[key] = encoder
        return encoder


def clear_cache() -> None:
    """Forget the loaded encoders (tests)."""
    with _CACHE_LOCK:
        _CACHE.clear()
