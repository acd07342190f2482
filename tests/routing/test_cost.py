"""The forward cost model of continuous batching: the fit, the padding it allows, the ski-rental join rule."""

from __future__ import annotations

import pytest

from routing.cost import ForwardCost


def fitted(fixed: float, per_token: float, sizes=(10, 20, 40, 80, 10, 20, 40, 80)) -> ForwardCost:
    cost = ForwardCost()
    for n in sizes:
        cost.prefill(n, fixed + per_token * n)
    return cost


def test_the_fit_recovers_fixed_and_per_token_cost():
    cost = fitted(0.008, 0.0001)
    fixed, per_token = cost.fit()
    assert fixed == pytest.approx(0.008) and per_token == pytest.approx(0.0001)
    assert cost.pad_tokens() == 80  # a forward's fixed cost is worth 80 tokens: pad up to that much


def test_defaults_until_the_samples_tell_fixed_from_per_token_cost():
    cost = ForwardCost(default_pad=16)
    for _ in range(ForwardCost.MIN_SAMPLES - 1):
        cost.prefill(30, 0.01)
    assert cost.fit() is None and cost.pad_tokens() == 16 and cost.join_now(0, 0, 8)
    cost.prefill(30, 0.01)  # enough samples, but all of one size: no fit
    assert cost.fit() is None and cost.pad_tokens() == 16


def test_padding_is_capped_and_noise_never_makes_a_cost_negative():
    assert fitted(0.01, 0.0).pad_tokens() == ForwardCost.MAX_PAD  # tokens look free: still capped
    assert fitted(1.0, 0.0001).pad_tokens() == ForwardCost.MAX_PAD
    falling = ForwardCost()
    for n in (10, 20, 40, 80) * 2:
        falling.prefill(n, 0.02 - 0.0001 * n)  # noise can make big forwards look cheaper
    assert falling.fit() == (pytest.approx(0.02 - 0.0001 * 37.5), 0.0)
    grows = ForwardCost()
    for n in (10, 20, 40, 80) * 2:
        grows.prefill(n, 0.001 * n - 0.005)  # no fixed cost at all: never pad
    assert grows.fit()[0] == 0.0 and grows.pad_tokens() == 0


def test_join_when_the_output_lost_by_free_slots_pays_for_a_prefill():
    cost = fitted(0.008, 0.0001)  # a prefill's fixed cost: 8 ms
    assert cost.join_now(0, 0, 16)  # no decode step timed yet: join at once
    cost.step(0.016)  # 16 rows: a free slot loses 1 ms of output per step
    assert not cost.join_now(0, 0, 16)
    assert not cost.join_now(7, 3, 16)  # 7 ms lost < 8 ms
    assert cost.join_now(8, 3, 16)  # 8 ms lost: join
    assert cost.join_now(1, cost.max_wait_steps, 16)  # never held longer than max_wait_steps
    assert cost.join_now(0, 0, 0)  # nothing running: nothing to wait for
    cost.step(0.032)  # an exponential average of the steps
    assert cost.step_seconds == pytest.approx(0.0176)
