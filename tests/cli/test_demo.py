"""``loom demo`` before it builds anything: a port clash is one line naming the setting; progress in a log is
plain lines."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from testbed.commands import line_progress

LOOM = Path(sys.executable).with_name("loom")


def test_a_port_in_use_is_one_line_naming_loom_port_before_any_build(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {**os.environ, "LOOM_DATA_DIR": str(tmp_path / "data"), "LOOM_PORT": str(port)}
        proc = subprocess.run([str(LOOM), "demo", "--size", "ci"], capture_output=True, text=True, env=env,
                              timeout=120)
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and f"port {port}" in err and "LOOM_PORT" in err, err
    assert not (tmp_path / "data" / "testbed").exists()  # nothing was built


def test_line_progress_says_each_phase_start_tenths_and_end_once():
    lines: list[str] = []
    t = iter(range(100))
    progress = line_progress(lines.append, clock=lambda: float(next(t)))
    for done in range(0, 101):
        progress("train", done, 100)
    progress("train", 100, 100)  # repeated: said once
    progress("publish", 0, 3)
    progress("publish", 3, 3)
    said = [ln.split("] ", 1)[1] for ln in lines]
    assert said == [f"train: {d}/100" for d in range(0, 101, 10)] + ["publish: 0/3", "publish: 3/3"]
