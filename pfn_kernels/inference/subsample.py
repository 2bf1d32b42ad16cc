"""The strided subsample that the likelihood-based stages read (evidence check, sparse spectra,
calibration, outputscale and mean), so that their cost stays bounded whatever n."""

from __future__ import annotations

import math

from torch import Tensor


def strided_subsample(x: Tensor, y: Tensor, max_points: int) -> tuple[Tensor, Tensor]:
    """Every ``ceil(n / max_points)``-th point of x `(B, n, d)` and y `(B, n)` or `(B, n, M)`:
    at most ``max_points`` points, spread over the data's order; all of them for n ≤ max_points."""
    stride = max(1, math.ceil(x.shape[-2] / max_points))
    return x[:, ::stride], y[:, ::stride]


__all__ = ["strided_subsample"]
