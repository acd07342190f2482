"""Model cards: the README generated for an adapter published without one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


def model_card(full_name: str, description: str, base_model: str, license: str | None, tags: Sequence[str],
               provenance: dict[str, Any] | None = None) -> str:
    """A Hugging Face style model card with PEFT front matter (``base_model_relation: adapter``)."""
    meta: dict[str, Any] = {
        "library_name": "peft",
        "base_model": base_model,
        "base_model_relation": "adapter",
        "pipeline_tag": "text-generation",
        "tags": ["lora", "peft", f"base_model:adapter:{base_model}", *tags],
    }
    if license:
        meta["license"] = license
    if provenance and provenance.get("parents"):
        meta["merged_from"] = [
            {"id": p.get("name"), "revision": p.get("version"), "weight": p.get("weight")} for p in provenance["parents"]
        ]
        meta["merge"] = {"method": provenance.get("method"), "params": provenance.get("recipe", {})}
    front = yaml.safe_dump(meta, sort_keys=False).strip()
    body = f"# {full_name}\n\n{description or 'A LoRA adapter.'}\n\nBase model: `{base_model}`.\n"
    return f"---\n{front}\n---\n\n{body}"
