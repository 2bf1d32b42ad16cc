"""Mean and standard error of the mean."""

from __future__ import annotations

import math

import pytest

from pfn_kernels.experiments import mean_stderr


def test_mean_stderr():
    assert mean_stderr([1.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_stderr([2.0]) == (2.0, 0.0)
    assert all(math.isnan(v) for v in mean_stderr([]))
