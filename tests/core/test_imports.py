"""Thread-safe lazy imports: concurrent first uses of transformers in a fresh interpreter all succeed."""

from __future__ import annotations

import json

import pytest

from tests.helpers import fresh_python

CONCURRENT_FIRST_SHAPES = """
import json, threading
from hub.services.base_models import linear_shapes

cfg = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
       "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 128}
errors, shapes = [], []
start = threading.Barrier(8)

def publish_like():
    start.wait()
    try:
        shapes.append(len(linear_shapes(cfg)))
    except Exception as e:
        errors.append(repr(e))

threads = [threading.Thread(target=publish_like) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"errors": errors, "shapes": shapes}))
"""


def test_concurrent_first_linear_shapes_do_not_fail_to_import():
    """8 threads ask for a base's shapes at once right after start (the first transformers import): before the
    lock, most failed with ``cannot import name 'AutoConfig' from 'transformers'``."""
    out = json.loads(fresh_python(CONCURRENT_FIRST_SHAPES).strip().splitlines()[-1])
    assert out["errors"] == []
    assert out["shapes"] == [15] * 8  # 2 layers x (q, k, v, o, gate, up, down) + lm_head


def test_import_once_returns_the_names_and_caches_them():
    from hub.core.imports import import_once

    (dumps,) = import_once("json", "dumps")
    assert dumps is json.dumps
    assert import_once("json") == (json,)
    assert import_once("json", "dumps", "loads") == (json.dumps, json.loads)


def test_import_once_raises_import_error_for_a_missing_name():
    from hub.core.imports import import_once

    with pytest.raises(ImportError, match="no_such_name"):
        import_once("json", "no_such_name")
    with pytest.raises(ImportError):
        import_once("no_such_module_of_loom")
