"""Importing the search package costs nothing heavy: faiss and torch load on first use."""

from __future__ import annotations

import subprocess
import sys


def test_search_modules_import_without_faiss_or_torch() -> None:
    code = (
        "import sys, hub.search.embedder, hub.search.index, hub.search.persist\n"
        "heavy = [m for m in ('faiss', 'torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "hub.search.index.VectorIndex(4)\n"
        "assert 'faiss' in sys.modules and 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
