"""Routers and generators as registry artifacts: their publishable bundles, and reading them back.

A router version holds ``router.json`` (preset, config, expert ids IN ORDER with content hashes, base
model) and ``router.safetensors`` (gate tensors); a generator version ``generator.json`` (method,
config, layout) and ``generator.safetensors``. Never pickle: readers check the safetensors header
before reading tensors. Both are published through :class:`hub.services.publish.Publisher`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError
from hub.core.files import GENERATOR_MANIFEST, GENERATOR_TENSORS, ROUTER_MANIFEST, ROUTER_TENSORS
from hub.services.publish import BundleFiles

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import AdapterVersion
    from hub.services.adapters import AdapterService


def router_bundle(state: Any, folder: Path) -> BundleFiles:
    """Write a :class:`routing.checkpoint.RouterState` into ``folder`` as a publishable bundle.

    Raises:
        InvalidInputError: a state without experts.
    """
    from routing.checkpoint import RouterState

    if not isinstance(state, RouterState) or not state.expert_ids:
        raise InvalidInputError("a router needs a RouterState with at least one expert")
    d = state.save(folder)
    return BundleFiles("router", (d / ROUTER_MANIFEST).read_bytes(), d / ROUTER_TENSORS, state.base_model,
                       {"preset": state.preset, "config": state.config}, state.base_revision)


def generator_bundle(folder: Path, base_model: str) -> BundleFiles:
    """A saved generator folder (``generator.json`` + ``generator.safetensors``) as a publishable bundle."""
    manifest = (folder / GENERATOR_MANIFEST).read_bytes()
    meta = json.loads(manifest)
    return BundleFiles("generator", manifest, folder / GENERATOR_TENSORS, base_model,
                       {"method": meta["method"], "config": meta["config"]})


def read_router_state(adapters: AdapterService, ver: AdapterVersion, key: str) -> Any:
    """The :class:`routing.checkpoint.RouterState` of a router version (header checked before tensors).

    Raises:
        InvalidInputError: a version without the router files, or files that do not parse.
    """
    from safetensors.torch import load_file

    from hub.core.safetensors_check import check_safetensors_header
    from routing.checkpoint import FORMAT, RouterState

    files = ver.files or {}
    if ROUTER_MANIFEST not in files or ROUTER_TENSORS not in files:
        raise InvalidInputError(f"router {key} has no {ROUTER_MANIFEST} and {ROUTER_TENSORS}; it cannot be served",
                                model=key)
    try:
        man = json.loads(adapters.version_file(ver, ROUTER_MANIFEST))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"router {key}: {ROUTER_MANIFEST} is not valid JSON: {e}") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise InvalidInputError(f"router {key}: {ROUTER_MANIFEST} format must be {FORMAT!r}")
    path = adapters.version_path(ver, ROUTER_TENSORS)
    check_safetensors_header(path)
    try:
        return RouterState(preset=man["preset"], config=man["config"], expert_ids=list(man["expert_ids"]),
                           base_model=man["base_model"], tensors=load_file(str(path), device="cpu"),
                           expert_hashes=list(man.get("expert_hashes", [])), base_revision=man.get("base_revision"),
                           sites=man.get("sites", {}), metrics=man.get("metrics", {}))
    except KeyError as e:
        raise InvalidInputError(f"router {key}: {ROUTER_MANIFEST} lacks field {e}") from None


def generator_manifest(adapters: AdapterService, ver: AdapterVersion) -> dict[str, Any]:
    """The parsed ``generator.json`` of a generator version (method, config, ...)."""
    meta: dict[str, Any] = json.loads(adapters.version_file(ver, GENERATOR_MANIFEST))
    return meta


def write_generator(adapters: AdapterService, ver: AdapterVersion, folder: Path) -> Path:
    """Copy a generator version's two files into ``folder`` (what ``SGLoRA.load`` / ``ICMLoRA.load`` read)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in (GENERATOR_MANIFEST, GENERATOR_TENSORS):
        (folder / f).write_bytes(adapters.version_file(ver, f))
    return folder
