"""routing stays light and independent: only hub.core of Loom, no web/db/hub-client libraries."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("fastapi", "sqlalchemy", "huggingface_hub", "hub.db", "hub.api", "hub.services", "hub.search",
             "hub.storage", "hub.settings", "faiss", "sentence_transformers", "testbed")


def test_routing_imports_only_hub_core_and_loads_torch_lazily():
    code = (
        "import sys, routing\n"
        "assert 'torch' not in sys.modules, 'import routing must not load torch'\n"
        "import routing.routers, routing.batching, routing.train, routing.checkpoint\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert len(routing.ROUTERS) == 6\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
