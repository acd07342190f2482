"""The page of a router or a generator (``/a/ns/name`` for an artifact that is not an adapter).

A router answers prompts (``model="ns/router"``); a generator writes adapters. Neither has a PEFT model card,
a rank, or the adapter page's Compose / Move / PEFT / Try-it actions: each gets its own card, built from how it
was made (its recipe and parents), and the actions that work for its kind.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from hub.db.models import User

#: what the card calls the parents of each kind
PARENTS_LABEL = {"router": "Experts", "generator": "Trained on"}


def card_rows(kind: str, provenance: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The card of a router or generator as (label, value) rows, from its provenance."""
    prov = provenance or {}
    recipe = prov.get("recipe") or {}
    if isinstance(recipe, str):
        recipe = json.loads(recipe)
    rows: list[tuple[str, str]] = [("Method", str(prov.get("method", "—")))]
    if kind == "router":
        rows.append(("Preset", str(recipe.get("preset", "—"))))
        if "steps" in recipe:
            rows.append(("Training steps", str(recipe["steps"])))
        for k, v in sorted((recipe.get("config") or {}).items()):
            rows.append((f"config.{k}", json.dumps(v) if not isinstance(v, str) else v))
        for k, v in sorted((recipe.get("train") or {}).items()):
            rows.append((f"train.{k}", json.dumps(v) if not isinstance(v, str) else v))
    else:
        for k, v in sorted((recipe.get("config") or {}).items()):
            rows.append((f"config.{k}", json.dumps(v) if not isinstance(v, str) else v))
    n = len(prov.get("parents") or [])
    rows.append((PARENTS_LABEL.get(kind, "Parents"), f"{n} adapter{'s' if n != 1 else ''}"))
    return rows


def artifact_context(request: Request, user: User | None, artifact: Any, versions: list[Any], selected: Any,
                     parents: list[dict[str, Any]], children: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``artifact.html`` shows for a router or generator."""
    full_name = f"{artifact.namespace}/{artifact.name}"
    files = [{"name": fn, "size": int(info["size"]), "sha256": info["key"],
              "url": f"/api/v1/adapters/{full_name}/files/{fn}?version={selected.number}"}
             for fn, info in sorted((selected.files or {}).items())]
    return {
        "adapter": artifact, "kind": artifact.kind, "versions": versions, "selected": selected, "files": files,
        "card": card_rows(artifact.kind, selected.provenance), "parents": parents, "children": children,
        "parents_label": PARENTS_LABEL.get(artifact.kind, "Parents"),
        "base_url": str(request.base_url).rstrip("/"), "full_name": full_name,
        "is_owner": user is not None and user.id == artifact.owner_id,
    }
