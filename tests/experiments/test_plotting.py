"""Log-regret curves: the floor and the standard error."""

from __future__ import annotations

import math

import pytest

from pfn_kernels.experiments import REGRET_FLOOR, log_regret_curves


def test_log_regret_curves_floor_and_stderr():
    runs = [{"regret": [1.0, 0.1, 0.0]}, {"regret": [1.0, 0.01, -1e-3]}]
    mean, se = log_regret_curves(runs)
    assert mean[0] == 0 and se[0] == 0
    assert mean[1] == pytest.approx(-1.5)
    assert mean[2] == pytest.approx(math.log10(REGRET_FLOOR))
