"""Recognisability of the zoo's prompts: the probes behind the quality bar."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hub.core.errors import InvalidInputError
from testbed.probe import cue_of, linear_probe, semantic_probe
from testbed.tasks import tasks_for


def test_cue_of_splits_at_the_first_separator():
    assert cue_of("ab | c | shout this") == "c | shout this"
    assert cue_of("hello | in capitals") == "in capitals"
    assert cue_of("no separator") == "no separator"


def test_minilm_router_tells_held_out_phrasings_of_every_ci_task_apart():
    """Training-free: each task is the mean embedding of its description and training cues."""
    zoo = SimpleNamespace(tasks=tuple(t.name for t in tasks_for("ci")))
    res = semantic_probe(zoo, "cue")
    chance = 1 / len(zoo.tasks)
    assert res["router"]["n_test"] == sum(len(t.heldout_cues) for t in tasks_for("ci"))
    assert res["router"]["accuracy"] >= 0.75 > 10 * chance, res["router"]
    assert res["router"]["accuracy"] > res["description"]["accuracy"]
    assert res["probe"]["accuracy"] >= 0.7, res["probe"]
    with pytest.raises(InvalidInputError, match="text"):
        semantic_probe(zoo, "words")


def test_linear_probe_on_base_states_recognises_seen_phrasings(ci_zoo):
    res = linear_probe(ci_zoo, n_per_task=24, test_split="train")
    assert res["accuracy"] >= 0.9, res
    assert res["n_test"] == 12 * len(ci_zoo.tasks)
