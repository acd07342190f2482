"""``loom demo``'s background zoo build runs in a process group of its own: stopping the demo (SIGTERM, Ctrl-C, or
the demo killed outright) ends the build AND the training processes it started (they outlived a demo stopped
with SIGTERM, at 70% of a core each). Real processes: a child that starts a spawn worker, as the build does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hub.cli.testbed import start_in_group, stop_group

CHILD = """
import multiprocessing as mp, pathlib, sys, time

def sleep():
    time.sleep(120)

if __name__ == "__main__":
    if len(sys.argv) > 2:
        from hub.cli.testbed import watch_parent
        watch_parent(int(sys.argv[2]))
    mp.set_start_method("spawn")
    worker = mp.Process(target=sleep)
    worker.start()
    pathlib.Path(sys.argv[1]).write_text(str(worker.pid))
    time.sleep(120)
"""

PARENT = """
import pathlib, sys, time
from hub.cli.testbed import start_in_group
import os
child = start_in_group([sys.executable, sys.argv[1], sys.argv[2], str(os.getpid())], pathlib.Path(sys.argv[3]))
pathlib.Path(sys.argv[4]).write_text(str(child.pid))
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie waiting for a reaper has ended


def wait_for(path: Path, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.05)
    return int(path.read_text())


def gone(*pids: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_stopping_the_build_ends_its_workers(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = start_in_group([sys.executable, str(script), str(tmp_path / "worker.pid")], tmp_path / "log")
    worker = wait_for(tmp_path / "worker.pid")
    assert alive(worker) and os.getpgid(worker) == proc.pid != os.getpgrp()  # a group of its own, the worker in it
    stop_group(proc, timeout=10)
    assert proc.returncode is not None and gone(worker), "the worker outlived the build"
    stop_group(proc)  # stopping it again is a no-op


def test_a_build_whose_parent_died_ends_with_its_workers(tmp_path):
    child, parent = tmp_path / "child.py", tmp_path / "parent.py"
    child.write_text(CHILD)
    parent.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    demo = subprocess.Popen([sys.executable, str(parent), str(child), str(tmp_path / "worker.pid"), str(tmp_path / "log"),
                             str(tmp_path / "child.pid")], env=env)
    try:
        build, worker = wait_for(tmp_path / "child.pid"), wait_for(tmp_path / "worker.pid")
        assert alive(build) and alive(worker)
        demo.send_signal(signal.SIGKILL)  # the demo is killed outright: no finally runs in it
        demo.wait()
        assert gone(build, worker), "the build or its worker outlived the demo"
    finally:
        demo.kill()
