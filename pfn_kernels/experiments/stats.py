"""Summary statistics shared by the BO harness and the benchmark scripts."""

from __future__ import annotations

import math
from collections.abc import Iterable


def mean_stderr(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for one value, NaN for none)."""
    v = [float(x) for x in values]
    if not v:
        return math.nan, math.nan
    mean = sum(v) / len(v)
    if len(v) < 2:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in v) / (len(v) - 1)
    return mean, math.sqrt(var / len(v))


__all__ = ["mean_stderr"]
