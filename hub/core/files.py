"""The file names of every registry artifact kind, in one place (no imports: cheap for the CLI and client).

A version of an ``adapter`` is a PEFT folder (config + weights, a model card, optional samples); a
``router`` and a ``generator`` are each a JSON manifest beside a safetensors file (never pickle).
"""

from __future__ import annotations

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
README_NAME = "README.md"
SAMPLES_NAME = "samples.jsonl"

ROUTER_MANIFEST = "router.json"
ROUTER_TENSORS = "router.safetensors"
GENERATOR_MANIFEST = "generator.json"
GENERATOR_TENSORS = "generator.safetensors"

#: what a client uploads for an adapter (the API's multipart field names are these file names)
ADAPTER_UPLOAD_FILES = (CONFIG_NAME, WEIGHTS_NAME, README_NAME, SAMPLES_NAME)

#: the artifact kinds of the registry and the files each version must hold
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "adapter": (CONFIG_NAME, WEIGHTS_NAME),
    "router": (ROUTER_MANIFEST, ROUTER_TENSORS),
    "generator": (GENERATOR_MANIFEST, GENERATOR_TENSORS),
}
KINDS = tuple(REQUIRED_FILES)
