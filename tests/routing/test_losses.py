"""Aux-loss values on hand-made gate records (spec §9 T9)."""

from __future__ import annotations

import math

import torch

from routing import losses
from routing.context import GateRecord, GroupWeights

N = 4


def rec(probs: torch.Tensor, idx: torch.Tensor, logits: torch.Tensor | None = None) -> dict[str, list[GateRecord]]:
    return {"s": [GateRecord(GroupWeights(idx, torch.ones_like(idx, dtype=torch.float)), logits=logits, probs=probs)]}


def test_switch_balance_uniform_and_collapsed():
    m = 8
    uniform = rec(torch.full((m, N), 1 / N), torch.arange(m)[:, None] % N)
    collapsed = rec(torch.eye(N)[[0] * m], torch.zeros(m, 1, dtype=torch.long))
    assert math.isclose(float(losses.switch_balance(uniform)), 1.0, rel_tol=1e-6)
    assert math.isclose(float(losses.switch_balance(collapsed)), N, rel_tol=1e-6)
    assert math.isclose(float(losses.switch_balance(uniform, n_factor=False)), 1 / N, rel_tol=1e-6)
    assert math.isclose(float(losses.switch_balance(collapsed, n_factor=False)), 1.0, rel_tol=1e-6)


def test_padding_is_ignored():
    probs = torch.cat([torch.full((4, N), 1 / N), torch.eye(N)[[0] * 4]])
    idx = torch.cat([torch.arange(4)[:, None], torch.zeros(4, 1, dtype=torch.long)])
    mask = torch.tensor([True] * 4 + [False] * 4)
    assert math.isclose(float(losses.switch_balance(rec(probs, idx), mask)), 1.0, rel_tol=1e-6)
    assert float(losses.entropy(rec(probs, idx), ~mask)) < 1e-6
    assert math.isclose(float(losses.entropy(rec(probs, idx), mask)), math.log(N), rel_tol=1e-6)


def test_wu_balance_uniform_is_n_log_n_and_grows_when_collapsed():
    idx = torch.arange(N).expand(3, N)
    uniform = float(losses.wu_balance(rec(torch.full((3, N), 1 / N), idx)))
    assert math.isclose(uniform, N * math.log(N), rel_tol=1e-6)
    peaked = torch.tensor([[0.85, 0.05, 0.05, 0.05]] * 3)
    assert float(losses.wu_balance(rec(peaked, idx))) > uniform


def test_supervised_ce_goes_to_zero_with_matched_large_logits_and_ignores_minus_100():
    labels = torch.tensor([0, 2, 3, -100])
    logits = torch.full((4, N), -20.0)
    logits[torch.arange(3), labels[:3]] = 20.0
    logits[3, 1] = 20.0  # wrong but ignored
    r = rec(torch.softmax(logits, -1), labels.clamp_min(0)[:, None], logits)
    assert float(losses.supervised_ce(r, labels)) < 1e-6
    bad = rec(torch.softmax(-logits, -1), labels.clamp_min(0)[:, None], -logits)
    assert float(losses.supervised_ce(bad, labels)) > 10
    one_hot = rec(torch.eye(N)[[1, 2]], torch.tensor([[1], [2]]))
    assert float(losses.entropy(one_hot)) == 0.0


def test_supervised_bce_is_the_per_expert_binary_ce_to_the_one_hot_label():
    labels = torch.tensor([0, 2, -100])
    logits = torch.tensor([[3.0, -1.0, 0.0, -2.0], [0.5, -0.5, 1.0, 2.0], [9.0, 9.0, 9.0, 9.0]])
    r = rec(torch.sigmoid(logits), labels.clamp_min(0)[:, None], logits)
    target = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0]])
    p = torch.sigmoid(logits[:2])
    want = -(target * p.log() + (1 - target) * (1 - p).log()).mean()  # the ignored row does not count
    assert math.isclose(float(losses.supervised_bce(r, labels)), float(want), rel_tol=1e-5)
    sure = torch.full((2, N), -30.0)
    sure[0, 0] = sure[1, 2] = 30.0
    assert float(losses.supervised_bce(rec(torch.sigmoid(sure), labels[:2, None], sure), labels[:2])) < 1e-6


def test_supervised_bce_takes_multi_hot_targets_for_requests_naming_several_tasks():
    logits = torch.tensor([[3.0, -1.0, 0.0, -2.0], [0.5, -0.5, 1.0, 2.0], [9.0, 9.0, 9.0, 9.0]])
    r = rec(torch.sigmoid(logits), torch.zeros(3, 1, dtype=torch.long), logits)
    target = torch.tensor([[1.0, 0, 1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 0]])  # two tasks; one; a row ignored
    p = torch.sigmoid(logits[:2])
    want = -(target[:2] * p.log() + (1 - target[:2]) * (1 - p).log()).mean()
    assert math.isclose(float(losses.supervised_bce(r, target)), float(want), rel_tol=1e-5)
    one_hot = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0]])  # the same loss as the index labels
    r2 = rec(torch.sigmoid(logits[:2]), torch.zeros(2, 1, dtype=torch.long), logits[:2])
    assert math.isclose(float(losses.supervised_bce(r2, one_hot)), float(losses.supervised_bce(r2, torch.tensor([0, 2]))),
                        rel_tol=1e-6)
    assert torch.equal(losses.token_labels(target[:2], 3), target[:2].repeat_interleave(3, dim=0))
