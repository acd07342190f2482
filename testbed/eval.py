"""Exact-match evaluation of configurations on the zoo's tasks.

A *configuration* is anything that answers prompts:

- ``"base"`` / :class:`BaseModel` - the base model alone;
- ``"oracle"`` / :class:`Oracle` - each task's own adapter (chosen per task);
- a PEFT folder path, an :class:`~testbed.zoo.AdapterEntry` or a :class:`~hub.core.adapter.LoraAdapter`
  / :class:`Adapter` - one adapter applied to every task (merged into the base weights);
- any callable ``generate(prompts: list[str]) -> list[str]`` / :class:`Function` - merges,
  routers, generated or transferred adapters plug in this way.

``evaluate`` returns an :class:`EvalResult` with accuracy per task per configuration and means.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hub.core.errors import InvalidInputError, NotFoundError
from testbed.entries import AdapterEntry, Zoo
from testbed.tasks import Example, composite_tasks, get_task
from testbed.zoo import build_zoo

Answer = Callable[[str, list[str]], list[str]]  # (task, prompts) -> answers


class Config(Protocol):
    """Something that, given the zoo, returns an answer function ``(task, prompts) -> answers``."""

    def prepare(self, zoo: Zoo, batch_size: int) -> Answer: ...


@dataclass(frozen=True)
class BaseModel:
    """The base model with no adapter."""

    base_id: str | None = None

    def prepare(self, zoo: Zoo, batch_size: int) -> Answer:
        from testbed.generate import greedy
        from testbed.train import load_base

        model = load_base(zoo.base(self.base_id).dir)
        return lambda _task, prompts: greedy(
            model, prompts, batch_size=batch_size, max_new_tokens=_max_new(prompts)
        )


@dataclass(frozen=True)
class Oracle:
    """Each task answered by its own adapter (loaded with PEFT); tasks without one get no score."""

    base_id: str | None = None

    def prepare(self, zoo: Zoo, batch_size: int) -> Answer:
        from peft import PeftModel

        from testbed.generate import greedy
        from testbed.train import load_base

        entries = zoo.adapters_on(self.base_id)
        if not entries:
            raise NotFoundError(f"the zoo has no adapters on {zoo.base(self.base_id).id!r}")
        base = load_base(zoo.base(self.base_id).dir)
        model = PeftModel.from_pretrained(base, str(entries[0].dir), adapter_name=entries[0].task)
        for e in entries[1:]:
            model.load_adapter(str(e.dir), adapter_name=e.task)
        model.eval()
        names = {e.task for e in entries}

        def answer(task: str, prompts: list[str]) -> list[str] | None:
            if task not in names:
                return None
            return greedy(
                model,
                prompts,
                batch_size=batch_size,
                max_new_tokens=_max_new(prompts),
                adapter_names=[task] * len(prompts),
            )

        return answer  # type: ignore[return-value]


@dataclass(frozen=True)
class Adapter:
    """One adapter (PEFT folder or ``LoraAdapter``) merged into its own base (or ``base_id``) and used for every
    task."""

    source: Any
    base_id: str | None = None

    def own_base(self, lora: Any, zoo: Zoo) -> str | None:
        """The base to evaluate on: ``base_id`` if given, else the adapter's own base (a zoo entry's base, or the
        ``base_model_name_or_path`` of its config), else the zoo's base A.

        Raises:
            NotFoundError: the adapter names a base this zoo does not have.
        """
        if self.base_id is not None:
            return self.base_id
        if isinstance(self.source, AdapterEntry):
            return self.source.base_id
        own = getattr(lora, "base_model", None)
        if own and own not in {b.id for b in zoo.bases}:
            raise NotFoundError(f"the adapter is for base {own!r}, which this zoo does not have; its bases: "
                                f"{[b.id for b in zoo.bases]} (another --size?)")
        return own or None

    def prepare(self, zoo: Zoo, batch_size: int) -> Answer:
        import torch

        from hub.core.adapter import LoraAdapter
        from hub.core.compat import check_against_base
        from hub.core.peft_io import load_peft
        from testbed.generate import greedy
        from testbed.train import load_base

        src = self.source.dir if isinstance(self.source, AdapterEntry) else self.source
        lora = src if isinstance(src, LoraAdapter) else load_peft(src)
        base = zoo.base(self.own_base(lora, zoo))
        model = load_base(base.dir)
        modules = dict(model.named_modules())
        shapes = {
            m: tuple(mod.weight.shape) for m, mod in modules.items() if isinstance(mod, torch.nn.Linear)
        }
        check_against_base(lora, shapes, base.id)
        with torch.no_grad():
            for path, delta in lora.deltas().items():
                modules[path].weight += delta.to(modules[path].weight.dtype)  # (out, in)
        return lambda _task, prompts: greedy(
            model, prompts, batch_size=batch_size, max_new_tokens=_max_new(prompts)
        )


@dataclass(frozen=True)
class Function:
    """Any ``generate(prompts) -> answers`` callable."""

    fn: Callable[[list[str]], list[str]]

    def prepare(self, zoo: Zoo, batch_size: int) -> Answer:
        return lambda _task, prompts: list(self.fn(prompts))


def as_config(value: Any) -> Config:
    """Normalise the shorthand forms (``"base"``, ``"oracle"``, a path, an adapter, a callable)."""
    from hub.core.adapter import LoraAdapter

    if hasattr(value, "prepare"):
        return value  # type: ignore[no-any-return]
    if value == "base":
        return BaseModel()
    if value == "oracle":
        return Oracle()
    if isinstance(value, AdapterEntry | LoraAdapter | Path):
        return Adapter(value)
    if isinstance(value, str):
        if Path(value).is_dir():
            return Adapter(Path(value))
        raise InvalidInputError(f"configuration {value!r} is not 'base', 'oracle' or an adapter folder")
    if callable(value):
        return Function(value)
    raise InvalidInputError(f"cannot evaluate a configuration of type {type(value).__name__}")


def _max_new(prompts: Sequence[str]) -> int:
    # the longest answer in the zoo is 4x its input (repeat_4); inputs are the text before " | "
    return max(len(p.split(" | ")[0].encode()) for p in prompts) * 4 + 4


@dataclass
class EvalResult:
    """Exact-match accuracy per configuration per task (``None``: the configuration has no answer)."""

    accuracy: dict[str, dict[str, float | None]]
    n: dict[str, int]
    tasks: list[str]
    split: str
    samples: dict[str, dict[str, list[dict[str, str]]]] = field(default_factory=dict)

    def mean(self, config: str, composite: bool | None = False) -> float | None:
        """Mean over single tasks (``composite=False``), composites (``True``) or all (``None``)."""
        vals = [
            v
            for t, v in self.accuracy[config].items()
            if v is not None and (composite is None or t.startswith("composite") == composite)
        ]
        return sum(vals) / len(vals) if vals else None

    def to_json(self) -> str:
        body = {
            "split": self.split,
            "tasks": self.tasks,
            "n": self.n,
            "accuracy": self.accuracy,
            "mean": {c: self.mean(c) for c in self.accuracy},
            "mean_composite": {c: self.mean(c, True) for c in self.accuracy},
            "samples": self.samples,
        }
        return json.dumps(body, indent=2, sort_keys=True)

    def rich_table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"exact match ({self.split} cues)")
        table.add_column("task")
        table.add_column("n", justify="right")
        for c in self.accuracy:
            table.add_column(c, justify="right")
        fmt = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        for t in self.tasks:
            table.add_row(t, str(self.n[t]), *(fmt(self.accuracy[c][t]) for c in self.accuracy))
        table.add_section()
        table.add_row("mean (tasks)", "", *(fmt(self.mean(c)) for c in self.accuracy))
        if any(t.startswith("composite") for t in self.tasks):
            table.add_row("mean (composite)", "", *(fmt(self.mean(c, True)) for c in self.accuracy))
        return table

    def table(self) -> str:
        """The table as plain text."""
        import io

        from rich.console import Console

        console = Console(width=200, record=True, file=io.StringIO())
        console.print(self.rich_table())
        return console.export_text()


def evaluate(
    configs: Mapping[str, Any],
    *,
    zoo: Zoo | None = None,
    size: str = "ci",
    data_dir: str | Path = "loom-data",
    tasks: Sequence[str] | None = None,
    n: int = 50,
    seed: int = 1234,
    split: str = "all",
    composites: bool = True,
    batch_size: int = 64,
    keep_samples: int = 3,
) -> EvalResult:
    """Exact-match accuracy of each configuration on each task.

    Args:
        configs: display name -> configuration (see the module docstring for accepted forms).
        zoo: a built zoo; default: ``build_zoo(size, data_dir)`` (reuses the cache).
        tasks: task names (default: the zoo's tasks); ``composite2`` / ``composite3`` are accepted.
        n: examples per task, drawn with ``seed`` (disjoint streams from training).
        split: cue phrasings to use: ``"train"``, ``"heldout"`` or ``"all"``.
        composites: add ``composite2`` and ``composite3`` when ``tasks`` is not given.

    Raises:
        InvalidInputError: no configurations, bad ``n`` or an unusable configuration.
        UnknownNameError: an unknown task.
    """
    if not configs:
        raise InvalidInputError("configs must name at least one configuration")
    if n < 1:
        raise InvalidInputError(f"n must be >= 1, got {n}")
    zoo = zoo or build_zoo(size, data_dir)
    names = (
        list(tasks)
        if tasks is not None
        else list(zoo.tasks) + (["composite2", "composite3"] if composites else [])
    )
    comps = composite_tasks(n, seed, zoo.size) if any(t.startswith("composite") for t in names) else {}
    data: dict[str, list[Example]] = {}
    for t in names:
        if t in ("composite2", "composite3"):
            data[t] = comps[t]
        else:
            data[t] = get_task(t).examples(n, 1_000_003 + seed, split)
    acc: dict[str, dict[str, float | None]] = {}
    samples: dict[str, dict[str, list[dict[str, str]]]] = {}
    for cname, value in configs.items():
        answer = as_config(value).prepare(zoo, batch_size)
        acc[cname], samples[cname] = {}, {}
        for t, exs in data.items():
            outs = answer(t, [e.prompt for e in exs])
            if outs is None:
                acc[cname][t] = None
                continue
            if len(outs) != len(exs):
                raise InvalidInputError(
                    f"configuration {cname!r} returned {len(outs)} answers for {len(exs)} prompts"
                )
            scorer = (
                get_task(t).score if not t.startswith("composite") else (lambda p, y: p.strip() == y.strip())
            )
            acc[cname][t] = sum(scorer(o, e.output) for o, e in zip(outs, exs, strict=True)) / len(exs)
            samples[cname][t] = [
                {"prompt": e.prompt, "expected": e.output, "got": o}
                for o, e in list(zip(outs, exs, strict=True))[:keep_samples]
            ]
    return EvalResult(
        accuracy=acc, n={t: len(d) for t, d in data.items()}, tasks=names, split=split, samples=samples
    )
