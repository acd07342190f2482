"""One ci-size zoo per test session, on a subset of tasks, built into a tmp data dir."""

from __future__ import annotations

import pytest

SUBSET = ("upper", "caesar_1", "digit_add_2", "mask_first_2")  # one task of each ci family


@pytest.fixture(scope="session")
def ci_zoo(tmp_path_factory):
    from testbed.zoo import build_zoo

    return build_zoo("ci", tmp_path_factory.mktemp("tb_data"), seed=0, tasks=SUBSET)
