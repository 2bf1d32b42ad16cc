r"""The evidence check: the decoded kernel against plain smooth alternatives, by marginal likelihood.

A network reading data unlike its training tasks can return a spectrum that explains the data
worse than a plain smooth kernel would, with nothing downstream to notice: the calibration only
dilates the spectrum it is given. This stage scores the decoded kernel against two families of
alternatives:

- isotropic RBF kernels,

  .. math::
      k_\ell(\boldsymbol\tau) = \exp\!\big(-\|\boldsymbol\tau\|^2 / (2 \ell^2 d)\big), \qquad
      \ell \in \text{EVIDENCE\_LENGTHSCALES}

  (lengthscales :math:`\ell\sqrt d` per dimension, as BoTorch's default lengthscale prior grows
  with :math:`\sqrt d`);
- the decoded spectrum *folded* to frequency 0 (:func:`fold_to_zero_frequency`): the same
  weights and second moments, no peaks. A network that reads a rough function (a Matérn-like
  or multi-scale kernel) as a sum of spectral peaks is caught by this one: the peaks make the
  kernel oscillate where the function does not.

Each candidate is scored at the decoded noise-to-signal ratio and at those of
:data:`EVIDENCE_NOISE`, by :func:`~pfn_kernels.exact_gp.profile_log_likelihood` of the data
(outputscale profiled out). When the best alternative beats the decoded kernel by more than
``margin`` nats per point, it replaces it (the calibration then refines it per dimension);
otherwise the decoded kernel stays, bit for bit. The candidates share one batched Cholesky
factorization; no gradients, no learned weights.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from pfn_kernels.exact_gp import profile_log_likelihood
from pfn_kernels.inference.bounds import OutputRanges
from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.spectral_params import SpectralEstimate

#: Lengthscales of the RBF alternatives, per unit input and per :math:`\sqrt d`.
EVIDENCE_LENGTHSCALES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
#: Noise-to-signal ratios tried for every candidate besides the decoded one.
EVIDENCE_NOISE = (1e-6, 1e-4, 1e-2, 1e-1, 0.5)
#: Default margin, in nats per point, an alternative must win by.
EVIDENCE_MARGIN = 0.02


@torch.no_grad()
def evidence_check(
    x: Tensor,
    y: Tensor,
    est: SpectralEstimate,
    ranges: OutputRanges | None = None,
    margin: float = EVIDENCE_MARGIN,
    max_points: int = 128,
    folded: bool = True,
) -> tuple[SpectralEstimate, Tensor]:
    r"""Keep the decoded kernel, or replace it by the alternative (an RBF kernel, or with
    ``folded`` the folded spectrum) with the best evidence.

    :param x: `(B, n, d)` inputs in the unit cube.
    :param y: `(B, n)` standardized targets, or `(B, n, M)` realizations.
    :param est: the decoder's estimate (batch `(B,)`).
    :param ranges: noise ratios and bandwidths stay inside these.
    :param margin: nats per point by which an alternative must beat the decoded kernel.
    :param max_points: points read (a strided subsample beyond).
    :param folded: also try the decoded spectrum folded to frequency 0
        (:func:`fold_to_zero_frequency`).
    :return: the estimate (replaced where an alternative won) and `(B,)` booleans saying where.
    """
    ranges = ranges or OutputRanges()
    stride = max(1, math.ceil(x.shape[-2] / max_points))
    xs, ys = x[:, ::stride], y[:, ::stride]
    b, n, d = xs.shape
    lo, hi = ranges.log_noise_ratio_range
    noise = torch.tensor(EVIDENCE_NOISE, dtype=est.log_noise_ratio.dtype,
                         device=est.log_noise_ratio.device).log().clamp(lo, hi)
    log_r = torch.cat([est.log_noise_ratio[None], noise[:, None].expand(-1, b)])  # (R, B)

    k_dec = spectral_mixture_covariance(xs, xs, est.weights, est.means, est.scales)  # (B, n, n)
    ll_dec = profile_log_likelihood(k_dec.expand(len(log_r), -1, -1, -1), ys, log_r).amax(0)

    ell = torch.tensor(EVIDENCE_LENGTHSCALES, dtype=xs.dtype, device=xs.device) * math.sqrt(d)
    sq = (xs.unsqueeze(-2) - xs.unsqueeze(-3)).pow(2).sum(-1)  # (B, n, n)
    k_rbf = torch.exp(-0.5 * sq / ell[:, None, None, None] ** 2)  # (L, B, n, n)
    fold = fold_to_zero_frequency(est, ranges)
    k_alt = k_rbf
    if folded:
        k_fold = spectral_mixture_covariance(xs, xs, fold.weights, fold.means, fold.scales)
        k_alt = torch.cat([k_rbf, k_fold[None]])  # (L + 1, B, n, n)
    ll = profile_log_likelihood(k_alt.unsqueeze(1), ys, log_r[None])  # (L + 1, R, B)
    flat = ll.reshape(-1, b)
    best = flat.argmax(0)
    ll_alt = flat.gather(0, best[None])[0]
    better = ll_alt > ll_dec + margin * n
    if not bool(better.any()):
        return est, better

    cand, r_best = best // len(log_r), log_r.gather(0, (best % len(log_r))[None])[0]
    is_fold = cand == len(ell)
    scale = 1 / (2 * math.pi * ell[cand.clamp_max(len(ell) - 1)])  # (B,) the RBF's spectral bandwidth
    scale = scale.clamp(ranges.min_scale, ranges.max_scale).to(est.scales)
    weights = torch.zeros_like(est.weights)
    weights[..., 0] = 1.0
    per_b = lambda t: t.view(-1, *([1] * (est.weights.dim() - 1)))  # noqa: E731
    alt = SpectralEstimate(
        weights=torch.where(per_b(is_fold), fold.weights, weights),
        means=torch.zeros_like(est.means),
        scales=torch.where(per_b(is_fold), fold.scales, scale[:, None, None].expand_as(est.scales)),
        log_noise_ratio=r_best,
        log_outputscale=est.log_outputscale,
    )
    pick = lambda a, c: torch.where(better.view(-1, *([1] * (a.dim() - 1))), c, a)  # noqa: E731
    return replace(
        est,
        weights=pick(est.weights, alt.weights),
        means=pick(est.means, alt.means),
        scales=pick(est.scales, alt.scales),
        log_noise_ratio=pick(est.log_noise_ratio, alt.log_noise_ratio),
    ), better


def fold_to_zero_frequency(est: SpectralEstimate, ranges: OutputRanges | None = None) -> SpectralEstimate:
    r"""The decoded spectrum with every component moved to frequency 0, its bandwidth widened to
    keep its second moment: :math:`(w, \mu, s) \to (w, 0, \sqrt{s^2 + \mu^2})`.

    The bandwidths are clamped to ``ranges`` (at most ``max_scale``, 30 by default, so a
    component beyond that keeps less than its second moment). The folded kernel is smooth and
    non-oscillating, with the same curvature at
    :math:`\tau = 0` as the decoded one (:math:`k_j''(0) = -4\pi^2 \sum_q w_q (s_q^2 + \mu_q^2)`):
    the decoder's reading of how fast the function varies, without the peaks. It is the
    evidence check's alternative for a network that reads a rough function as a sum of peaks.
    """
    ranges = ranges or OutputRanges()
    scales = (est.scales.pow(2) + est.means.pow(2)).sqrt().clamp(ranges.min_scale, ranges.max_scale)
    return replace(est, means=torch.zeros_like(est.means), scales=scales)


__all__ = [
    "EVIDENCE_LENGTHSCALES", "EVIDENCE_MARGIN", "EVIDENCE_NOISE", "evidence_check", "fold_to_zero_frequency",
]
