"""RWLock: readers share, a writer is alone, a waiting writer holds new readers back."""

from __future__ import annotations

import threading
import time

from hub.search.rwlock import RWLock


def _started(target) -> threading.Thread:
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


def test_readers_share_and_a_writer_waits_for_them_and_goes_before_new_readers() -> None:
    lock = RWLock()
    order: list[str] = []
    first_in, release_first = threading.Event(), threading.Event()

    def reader(name: str, hold: threading.Event | None = None, entered: threading.Event | None = None) -> None:
        with lock.read():
            order.append(name)
            if entered is not None:
                entered.set()
            if hold is not None:
                assert hold.wait(10)

    r1 = _started(lambda: reader("r1", release_first, first_in))
    assert first_in.wait(10)
    second_in = threading.Event()
    r2 = _started(lambda: reader("r2", None, second_in))
    assert second_in.wait(10)  # a second reader enters while the first holds the lock

    def writer() -> None:
        with lock.write():
            order.append("w")

    w = _started(writer)
    deadline = time.monotonic() + 10
    while lock._writers_waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert lock._writers_waiting == 1 and "w" not in order  # waits for r1
    r3 = _started(lambda: reader("r3"))
    time.sleep(0.05)
    assert "r3" not in order  # held back behind the waiting writer
    release_first.set()
    for t in (r1, r2, w, r3):
        t.join(10)
        assert not t.is_alive()
    assert order == ["r1", "r2", "w", "r3"]
