"""Weighted phases of a long job: one monotonic progress bar, and one log line per phase.

An engine reports ``progress(phase, fraction, message)`` as it goes, and may go back and forth between
phases (Trans-LoRA synthesises and filters in turns). :class:`Phases` maps that to the job's overall
progress, ``start + (end - start) * (weights of the finished phases + weight * fraction) / total``,
never lower than what it reported before, and logs each phase once, when it reports itself done (fraction 1) or at :meth:`close`, with its last
message (its counts) and the seconds spent in it (the time before each report counts to the phase reported).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from hub.jobs.reporter import Reporter


class Phases:
    """The progress callback of an engine whose work is a sequence of weighted phases.

    Args:
        report: the job's reporter.
        weights: ``(phase, weight)`` in order; a weight is the phase's expected share of the time.
        start, end: the share of the job's progress bar the phases fill (e.g. 0.05 to 0.9).

    Raises:
        ValueError: no phases, a negative weight, or weights that add up to 0.
    """

    def __init__(self, report: Reporter, weights: Sequence[tuple[str, float]], start: float = 0.0,
                 end: float = 1.0) -> None:
        if not weights or any(w < 0 for _, w in weights) or sum(w for _, w in weights) <= 0:
            raise ValueError(f"phase weights must be >= 0 and add up to > 0, got {list(weights)}")
        self.report, self.start, self.end = report, start, end
        self.names = [n for n, _ in weights]
        total = sum(w for _, w in weights)
        self.weight = {n: w / total for n, w in weights}
        self.offset: dict[str, float] = {}
        acc = 0.0
        for n, _ in weights:
            self.offset[n] = acc
            acc += self.weight[n]
        self.progress = start
        self.logged: set[str] = set()
        self.last: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self._since = time.monotonic()

    def __call__(self, phase: str, frac: float, message: str = "") -> None:
        """Record that ``phase`` is ``frac`` done (``message``: its counts so far)."""
        if phase not in self.weight:
            raise ValueError(f"unknown phase {phase!r}; phases are {self.names}")
        now = time.monotonic()
        # engines report after a piece of work: the time since the last report was spent in this phase
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._since
        self._since = now
        frac = min(1.0, max(0.0, float(frac)))
        if message:
            self.last[phase] = message
        if frac >= 1.0:
            self._log(phase)
        overall = self.start + (self.end - self.start) * (self.offset[phase] + self.weight[phase] * frac)
        self.progress = max(self.progress, overall)
        self.report(self.progress, f"{phase}: {message}" if message else phase, force=frac >= 1.0)

    def _log(self, phase: str) -> None:
        if phase in self.logged or phase not in self.seconds and phase not in self.last:
            return
        self.logged.add(phase)
        counts = self.last.get(phase, "")
        self.report.log(f"phase {phase}: {counts + ', ' if counts else ''}{self.seconds.get(phase, 0.0):.1f} s")

    def close(self) -> None:
        """Log the phases not logged yet (the last one, and any the engine skipped logging)."""
        for name in self.names:
            self._log(name)
