"""Plain functions behind ``loom demo`` and ``loom eval`` (no typer here: hub/cli/testbed.py wires them).

- :func:`run_demo` builds the zoo (or reuses the cache) with a rich progress bar per phase, registers
  the bases and publishes the adapters through caller-supplied functions, then calls ``serve``.
- :func:`run_eval` evaluates configurations, prints the table and writes JSON.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hub.core.errors import InvalidInputError
from testbed.entries import AdapterEntry, BaseEntry, Zoo
from testbed.zoo import ProgressFn, build_zoo, publish_zoo, register_bases


def line_progress(write: Callable[[str], Any], clock: Callable[[], float] | None = None) -> ProgressFn:
    """A ``progress(phase, done, total)`` callback writing plain lines (for logs and pipes, where a progress
    bar would print nothing until the end): a phase's start, each tenth of it, and its end, with the time."""
    import time

    now = clock or time.monotonic
    t0 = now()
    said: dict[str, int] = {}

    def update(phase: str, done: int, total: int) -> None:
        step = 10 * done // total if total > 0 else 10
        if said.get(phase, -1) >= step:
            return
        said[phase] = step
        write(f"[{now() - t0:6.0f} s] {phase}: {done}/{total}")

    return update


@contextlib.contextmanager
def rich_progress(console: Any = None) -> Iterator[ProgressFn]:
    """A ``progress(phase, done, total)`` callback drawing one rich progress bar per phase (plain lines,
    :func:`line_progress`, when the console is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if console is not None and not console.is_terminal:
        yield line_progress(lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True))
        return

    bars: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as prog:

        def update(phase: str, done: int, total: int) -> None:
            if phase not in bars:
                bars[phase] = prog.add_task(phase, total=total)
            prog.update(bars[phase], completed=done, total=total)

        yield update


def build_with_progress(size: str, data_dir: str | Path, seed: int = 0, console: Any = None) -> Zoo:
    """``build_zoo`` with a rich progress bar per phase (instant when cached)."""
    with rich_progress(console) as progress:
        return build_zoo(size, data_dir, seed=seed, progress=progress)


def build_real_with_progress(data_dir: str | Path, seed: int = 0, console: Any = None) -> Zoo:
    """:func:`testbed.real.zoo.build_real_zoo` with a rich progress bar per phase (seconds when cached; an
    interrupted build resumes with the adapters it has not finished)."""
    from testbed.real.zoo import build_real_zoo

    with rich_progress(console) as progress:
        return build_real_zoo(data_dir, seed=seed, progress=progress)


def run_demo(
    settings: Any,
    size: str = "full",
    *,
    seed: int = 0,
    register_base: Callable[[BaseEntry], Any] | None = None,
    publish: Callable[[AdapterEntry], Any] | None = None,
    serve: Callable[[], Any] | None = None,
    console: Any = None,
) -> Zoo:
    """Build or reuse the zoo under ``settings.data_dir``, register/publish it, then serve.

    Args:
        settings: Loom settings (only ``data_dir`` is read here).
        register_base: called once per base model (e.g. the hub's base-model service).
        publish: called once per adapter (e.g. the hub's adapter service); skip if None.
        serve: called last (e.g. uvicorn on ``create_app(settings)``); skip if None.
    """
    from rich.console import Console

    console = console or Console()
    zoo = build_with_progress(size, settings.data_dir, seed, console)
    console.print(f"zoo [bold]{size}[/]: {len(zoo.bases)} bases, {len(zoo.adapters)} adapters at {zoo.root}")
    if register_base:
        register_bases(zoo, register_base)
    if publish:
        publish_zoo(zoo, publish)
        console.print(f"published {len(zoo.adapters)} adapters")
    if serve:
        serve()
    return zoo


def parse_config_arg(arg: str, zoo: Zoo) -> Any:
    """CLI form of a configuration: ``base``, ``oracle``, ``base:<id>``, ``oracle:<id>``,
    ``zoo:<task>`` (that task's adapter applied to every task) or a PEFT folder path."""
    from testbed.eval import Adapter, BaseModel, Oracle

    if arg in ("base", "oracle"):
        return arg
    kind, _, rest = arg.partition(":")
    if kind == "base" and rest:
        return BaseModel(zoo.base(rest).id)
    if kind == "oracle" and rest:
        return Oracle(zoo.base(rest).id)
    if kind == "zoo" and rest:
        return Adapter(zoo.adapter(rest))
    if Path(arg).is_dir():
        return Adapter(Path(arg))
    raise InvalidInputError(
        f"configuration {arg!r}: expected base, oracle, base:<id>, oracle:<id>, zoo:<task> or a PEFT folder"
    )


def run_eval(
    settings: Any,
    size: str = "ci",
    configs: Sequence[str] = ("base", "oracle"),
    *,
    extra: Mapping[str, Any] | None = None,
    tasks: Sequence[str] | None = None,
    n: int = 50,
    split: str = "all",
    seed: int = 1234,
    json_out: str | Path | None = None,
    console: Any = None,
    zoo: Zoo | None = None,
) -> Any:
    """Evaluate CLI-named ``configs`` plus ``extra`` ones (name -> config, e.g. a merge or router
    callable); print the table and write JSON to ``json_out``. Returns the ``EvalResult``.

    ``zoo`` skips the build (otherwise ``build_zoo(size, settings.data_dir)``, cached)."""
    from rich.console import Console

    from testbed.eval import evaluate

    console = console or Console()
    zoo = zoo or build_with_progress(size, settings.data_dir, console=console)
    named: dict[str, Any] = {c: parse_config_arg(c, zoo) for c in configs}
    named.update(extra or {})
    result = evaluate(named, zoo=zoo, tasks=tasks, n=n, split=split, seed=seed)
    console.print(result.rich_table())
    if json_out:
        Path(json_out).write_text(result.to_json())
        console.print(f"wrote {json_out}")
    return result
