"""Weighted job phases (#18.4): progress never goes back when an engine switches between phases in turns (as
Trans-LoRA's synthesize/filter loop does), and the log says each phase once, with its counts."""

from __future__ import annotations

import pytest

from generation.trans_lora import PHASES
from hub.jobs.phases import Phases
from hub.services.generation_jobs import TRANSFER_PHASE_WEIGHTS


class Recorder:
    """A Reporter that keeps what it was told."""

    def __init__(self) -> None:
        self.progress: list[float] = []
        self.lines: list[str] = []

    def __call__(self, progress=None, message=None, *, force=False):
        if progress is not None:
            self.progress.append(progress)

    def log(self, line):
        self.lines.append(line)


def _transfer_like(phases: Phases) -> None:
    """The call pattern of ``generation.trans_lora.transfer`` (synthesize and filter alternate)."""
    for s in range(1, 16):
        phases("discriminator", s / 15)
    n_cand = kept = 0
    while kept < 96:
        n_cand += 128
        phases("synthesize", min(1.0, n_cand / 2048), f"{n_cand} candidates")
        kept += 24
        phases("filter", min(1.0, kept / 96), f"{kept} accepted")
    phases("synthesize", 1.0, f"{n_cand} candidates")
    phases("filter", 1.0, f"{kept} accepted")
    phases("label", 0.0, f"labelling {kept} prompts")
    phases("label", 1.0)
    for s in range(1, 11):
        phases("distil", s / 10)
    phases.close()


def test_interleaved_phases_give_monotonic_progress_and_one_line_per_phase():
    rec = Recorder()
    phases = Phases(rec, [(p, TRANSFER_PHASE_WEIGHTS[p]) for p in PHASES], 0.05, 0.9)
    _transfer_like(phases)
    assert rec.progress == sorted(rec.progress), rec.progress
    assert rec.progress[0] >= 0.05 and rec.progress[-1] == pytest.approx(0.9)
    assert len(rec.lines) == len(PHASES), rec.lines
    for phase in PHASES:
        assert sum(line.startswith(f"phase {phase}: ") for line in rec.lines) == 1, rec.lines
    assert next(ln for ln in rec.lines if "synthesize" in ln).startswith("phase synthesize: 512 candidates, ")
    assert next(ln for ln in rec.lines if "filter" in ln).startswith("phase filter: 96 accepted, ")


def test_a_phase_weighs_its_share_and_bad_phases_are_refused():
    rec = Recorder()
    phases = Phases(rec, [("a", 1.0), ("b", 3.0)])
    phases("a", 1.0)
    phases("b", 0.5)
    assert rec.progress == [pytest.approx(0.25), pytest.approx(0.625)]
    with pytest.raises(ValueError, match="unknown phase 'c'"):
        phases("c", 0.1)
    with pytest.raises(ValueError, match="add up to > 0"):
        Phases(rec, [("a", 0.0)])
