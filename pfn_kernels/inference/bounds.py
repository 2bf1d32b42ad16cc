r"""The documented ranges of decoded hyperparameters, and the last inference stage that enforces them.

A decoder's heads keep its outputs in these ranges by construction for finite activations; this
stage replaces what is non-finite or out of range (inputs far outside the training data can make
activations overflow) by documented fallbacks, with a warning. For finite in-range values it
changes no bit.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from pfn_kernels.spectral_params import WEIGHT_SUM_ATOL, SpectralEstimate
from pfn_kernels.validation import DecoderWarning

#: Range of the decoded outputscale, in the units of a standardized y (never reached for such y).
OUTPUTSCALE_RANGE = (1e-8, 1e8)
#: Relative slack of the documented output ranges (float32 rounding at the bounds).
BOUND_RTOL = 1e-4
#: Noise-to-signal ratio that replaces a non-finite one.
FALLBACK_NOISE_RATIO = 1e-2


@dataclass(frozen=True)
class OutputRanges:
    """Ranges of decoded values (standardized units; frequencies in cycles per unit input).

    :param max_frequency: largest frequency :math:`\\mu`.
    :param min_scale: smallest bandwidth :math:`s`; ``max_scale`` the largest.
    :param min_noise_ratio: smallest noise-to-signal ratio; ``max_noise_ratio`` the largest.
    """

    max_frequency: float = 64.0
    min_scale: float = 1e-3
    max_scale: float = 30.0
    min_noise_ratio: float = 1e-6
    max_noise_ratio: float = 10.0

    @classmethod
    def of(cls, decoder: object) -> "OutputRanges":
        """The ranges of a :class:`~pfn_kernels.network.SpectralDecoder` (its config and filter
        bank); the defaults for any other decoder."""
        from pfn_kernels.network import SpectralDecoder

        if not isinstance(decoder, SpectralDecoder):
            return cls()
        cfg, fb = decoder.config, decoder.filter_bank
        return cls(
            max_frequency=cfg.max_frequency,
            min_scale=math.exp(fb.log_min_scale),
            max_scale=math.exp(fb.log_max_scale),
            min_noise_ratio=cfg.min_noise_ratio,
            max_noise_ratio=cfg.max_noise_ratio,
        )

    @property
    def log_noise_ratio_range(self) -> tuple[float, float]:
        return math.log(self.min_noise_ratio), math.log(self.max_noise_ratio)


def bound_estimate(
    est: SpectralEstimate, outputscale: Tensor, ranges: OutputRanges, stacklevel: int = 3
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""``(weights, means, scales, outputscale, log_noise_ratio)`` inside ``ranges``.

    Replacements: weights that are not a distribution (negative, non-finite, or not summing to 1
    within :data:`~pfn_kernels.spectral_params.WEIGHT_SUM_ATOL`) become uniform; a non-finite
    mean becomes 0 and a non-finite bandwidth the RBF bandwidth :math:`1 / (2\pi \cdot 0.25
    \sqrt d)`; a non-finite outputscale becomes the estimate's guess; a non-finite noise ratio
    :data:`FALLBACK_NOISE_RATIO`. Everything is then clamped to ``ranges`` (up to
    :data:`BOUND_RTOL`) and the outputscale to :data:`OUTPUTSCALE_RANGE`. Any change gives one
    :class:`~pfn_kernels.validation.DecoderWarning`.

    :return: the bounded values; bit for bit the inputs where they were finite and in range.
    """
    lo, hi = 1 - BOUND_RTOL, 1 + BOUND_RTOL
    w = est.weights
    w_ok = (torch.isfinite(w) & (w >= 0)).all(-1, keepdim=True)
    w_ok &= (w.sum(-1, keepdim=True) - 1).abs() <= WEIGHT_SUM_ATOL
    s_rbf = 1 / (2 * math.pi * 0.25 * math.sqrt(w.shape[-2]))
    guess = est.log_outputscale.exp().nan_to_num(1.0)
    lo_r, hi_r = ranges.log_noise_ratio_range
    bounded = (
        torch.where(w_ok, w, torch.full_like(w, 1.0 / w.shape[-1])),
        est.means.nan_to_num(0.0).clamp(0.0, ranges.max_frequency * hi),
        est.scales.nan_to_num(s_rbf).clamp(ranges.min_scale * lo, ranges.max_scale * hi),
        torch.where(torch.isfinite(outputscale), outputscale, guess).clamp(*OUTPUTSCALE_RANGE),
        est.log_noise_ratio.nan_to_num(math.log(FALLBACK_NOISE_RATIO)).clamp(
            lo_r - BOUND_RTOL, hi_r + BOUND_RTOL
        ),
    )
    raw = (w, est.means, est.scales, outputscale, est.log_noise_ratio)
    fixed = sum(int((a != b).sum()) for a, b in zip(raw, bounded))  # NaN != NaN counts
    if fixed:
        warnings.warn(
            f"The decoder produced {fixed} non-finite or out-of-range values (inputs far from its "
            "training data?); they were replaced by the documented fallbacks.",
            DecoderWarning, stacklevel=stacklevel,
        )
    return bounded


__all__ = ["BOUND_RTOL", "FALLBACK_NOISE_RATIO", "OUTPUTSCALE_RANGE", "OutputRanges", "bound_estimate"]
