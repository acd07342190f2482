"""Temp files of uploads in progress, named so that the ones a dead process left behind can be found.

A temp file is named ``up-<host>-<pid>-<run>-<random>``: the host name, the process id, and a token
drawn once per process (so a restarted server that got the same pid, e.g. pid 1 in a container, does
not take the files of its previous life for its own). A temp file is *stale* when its writer is gone
(same host, and that pid no longer runs or is now a different run of ours) or when it is older than
a grace period (files of other hosts on a shared folder are judged by age only). Cleaning stale files
at start-up and in ``loom fsck`` removes what a ``kill -9`` during an upload leaves.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

PREFIX = "up-"
_RUN = secrets.token_hex(4)


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def new_temp_file(folder: Path) -> tuple[BinaryIO, Path]:
    """An open, empty temp file in ``folder`` named after this process (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=f"{PREFIX}{_host()}-{os.getpid()}-{_RUN}-")
    return os.fdopen(fd, "wb"), Path(name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def writer_is_gone(name: str) -> bool:
    """True when the temp file ``name`` was written by a process of this host that no longer runs."""
    parts = name.split("-")
    if len(parts) < 5 or parts[0] + "-" != PREFIX or parts[1] != _host() or not parts[2].isdigit():
        return False  # another host's file, or not ours: judged by age only
    pid, run = int(parts[2]), parts[3]
    if pid == os.getpid():
        return run != _RUN
    return not _pid_alive(pid)


def stale_files(folder: Path, older_than_s: float) -> list[Path]:
    """Files in ``folder`` whose writer is gone, or that are at least ``older_than_s`` seconds old."""
    if not folder.is_dir():
        return []
    now = time.time()
    out = []
    for f in sorted(folder.iterdir()):
        try:
            age = now - f.stat().st_mtime
        except FileNotFoundError:  # finished meanwhile
            continue
        if age >= older_than_s or writer_is_gone(f.name):
            out.append(f)
    return out


def remove(files: list[Path]) -> int:
    """Delete ``files`` (ignoring ones already gone); returns how many this call removed."""
    n = 0
    for f in files:
        try:
            f.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n
