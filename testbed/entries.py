"""What a built zoo is: its bases, checkpoints and adapters, read from its ``manifest.json`` (:class:`Zoo`).

:mod:`testbed.zoo` builds zoos; the real zoo (:mod:`testbed.real.zoo`) writes the same manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.core.errors import NotFoundError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class BaseEntry:
    """A base model of the zoo: hub id, folder (model + tokenizer), size and config."""

    id: str
    arch: str
    dir: Path
    params: int
    role: str  # "A" hosts every task; "B" hosts the transfer tasks
    config: dict[str, Any]


@dataclass(frozen=True)
class Checkpoint:
    """An intermediate (or the final) PEFT folder of one training run."""

    step: int
    fraction: float
    dir: Path
    sha256: str


@dataclass(frozen=True)
class AdapterEntry:
    """One task adapter: PEFT folder, suggested registry name, model-card facts and samples."""

    task: str
    base_id: str
    dir: Path
    name: str
    description: str
    tags: tuple[str, ...]
    license: str
    samples: Path
    sha256: str
    checkpoints: tuple[Checkpoint, ...] = ()
    family: str | None = None
    param: int | None = None
    held_out: bool = False

    def sample_rows(self) -> list[dict[str, str]]:
        """The ``{"input", "output"}`` examples of ``samples.jsonl``."""
        return [json.loads(line) for line in self.samples.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Zoo:
    """A built zoo, as read from its manifest."""

    root: Path
    size: str
    seed: int
    recipe_hash: str
    bases: tuple[BaseEntry, ...]
    adapters: tuple[AdapterEntry, ...]
    tasks: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def base_a(self) -> BaseEntry:
        return self.bases[0]

    def base(self, base_id: str | None = None) -> BaseEntry:
        """The base called ``base_id`` (default: base A)."""
        if base_id is None:
            return self.bases[0]
        for b in self.bases:
            if b.id == base_id:
                return b
        raise NotFoundError(f"no base {base_id!r} in this zoo; bases: {[b.id for b in self.bases]}")

    def adapter(self, task: str, base_id: str | None = None) -> AdapterEntry:
        """The adapter of ``task`` on ``base_id`` (default: base A)."""
        bid = self.base(base_id).id
        for a in self.adapters:
            if a.task == task and a.base_id == bid:
                return a
        raise NotFoundError(f"no adapter for task {task!r} on {bid!r}")

    def adapters_on(self, base_id: str | None = None) -> list[AdapterEntry]:
        bid = self.base(base_id).id
        return [a for a in self.adapters if a.base_id == bid]

    def tokenizer_dir(self) -> Path:
        return self.base_a.dir

    @classmethod
    def load(cls, root: str | Path) -> Zoo:
        """Read ``root/manifest.json`` (paths in it are relative to ``root``).

        A zoo cached before the tokenizer put ``<s>`` first itself and had a chat template gets its bases'
        tokenizer files rewritten (:func:`testbed.tokenizer.upgrade_tokenizer`; weights are unchanged).
        """
        from testbed.tokenizer import upgrade_tokenizer

        r = Path(root)
        m = json.loads((r / MANIFEST).read_text())
        for b in m["bases"]:
            if b.get("tokenizer", "byte") == "byte":
                upgrade_tokenizer(r / b["dir"])
        bases = tuple(
            BaseEntry(
                id=b["id"],
                arch=b["arch"],
                dir=r / b["dir"],
                params=b["params"],
                role=b["role"],
                config=b["config"],
            )
            for b in m["bases"]
        )
        adapters = tuple(
            AdapterEntry(
                task=a["task"],
                base_id=a["base_id"],
                dir=r / a["dir"],
                name=a["name"],
                description=a["description"],
                tags=tuple(a["tags"]),
                license=a["license"],
                samples=r / a["samples"],
                sha256=a["sha256"],
                family=a.get("family"),
                param=a.get("param"),
                held_out=a.get("held_out", False),
                checkpoints=tuple(
                    Checkpoint(c["step"], c["fraction"], r / c["dir"], c["sha256"]) for c in a["checkpoints"]
                ),
            )
            for a in m["adapters"]
        )
        return cls(
            root=r,
            size=m["size"],
            seed=m["seed"],
            recipe_hash=m["recipe_hash"],
            bases=bases,
            adapters=adapters,
            tasks=tuple(m["tasks"]),
            timings=m.get("timings", {}),
        )
