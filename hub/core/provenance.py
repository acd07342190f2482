"""Provenance of generated artifacts: method, version, frozen recipe, parents, library version."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


def library_version() -> str:
    """The installed loom-hub version, or "dev" in a source checkout without metadata."""
    try:
        from importlib.metadata import version

        return version("loom-hub")
    except Exception:  # noqa: BLE001 - metadata missing in an uninstalled checkout
        return "dev"


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that recipe hashes are taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ParentRef:
    """One input of a generated artifact: ``ns/name``, its version (number or hub revision), weight."""

    name: str
    version: str | None = None
    weight: float | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "weight": self.weight, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParentRef:
        return cls(name=d["name"], version=d.get("version"), weight=d.get("weight"), sha256=d.get("sha256"))


@dataclass(frozen=True)
class Provenance:
    """How an artifact was made. ``recipe`` is kept as canonical JSON so the dataclass stays frozen."""

    method: str
    method_version: str = "1"
    recipe_json: str = "{}"
    parents: tuple[ParentRef, ...] = ()
    library_version: str = field(default_factory=library_version)

    @classmethod
    def create(
        cls,
        method: str,
        recipe: dict[str, Any] | None = None,
        parents: list[ParentRef] | tuple[ParentRef, ...] = (),
        method_version: str = "1",
    ) -> Provenance:
        return cls(
            method=method,
            method_version=method_version,
            recipe_json=canonical_json(recipe or {}),
            parents=tuple(parents),
        )

    @property
    def recipe(self) -> dict[str, Any]:
        return json.loads(self.recipe_json)

    def recipe_hash(self) -> str:
        """sha256 over method, version, recipe and parents: equal recipes give equal hashes."""
        body = canonical_json(
            {
                "method": self.method,
                "method_version": self.method_version,
                "recipe": self.recipe,
                "parents": [p.to_dict() for p in self.parents],
            }
        )
        return hashlib.sha256(body.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "method_version": self.method_version,
            "recipe": self.recipe,
            "parents": [p.to_dict() for p in self.parents],
            "library_version": self.library_version,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Provenance:
        return cls(
            method=d["method"],
            method_version=str(d.get("method_version", "1")),
            recipe_json=canonical_json(d.get("recipe", {})),
            parents=tuple(ParentRef.from_dict(p) for p in d.get("parents", [])),
            library_version=d.get("library_version", "unknown"),
        )
