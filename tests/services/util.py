"""Helpers of the registry tests."""

from __future__ import annotations

from pathlib import Path

from hub.services.publish import PublishFiles


def files_of(folder: Path, **extra) -> PublishFiles:
    """PublishFiles for a PEFT folder."""
    return PublishFiles(
        config=(folder / "adapter_config.json").read_bytes(),
        weights=folder / "adapter_model.safetensors",
        **extra,
    )


def registry_state(hub) -> tuple[list, int, list[str], list]:
    """(adapter names, version count, blob keys, temp files): what a refused upload must leave unchanged."""
    from sqlalchemy import func, select

    from hub.db.models import Adapter, AdapterVersion

    with hub.sessions() as s:
        n_versions = s.scalar(select(func.count()).select_from(AdapterVersion))
        names = sorted(f"{a.namespace}/{a.name}" for a in s.scalars(select(Adapter)))
    tmp = sorted(p.name for p in (hub.blobs.root / "tmp").iterdir())
    return names, n_versions, sorted(hub.blobs.keys()), tmp
