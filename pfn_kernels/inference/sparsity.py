r"""Sparse spectra: dimensions collapsed to one zero-frequency Gaussian where the data allow it.

A dimension whose spectrum is a single Gaussian at frequency 0 is an RBF factor,
:math:`k_j(\tau) = e^{-2\pi^2 \bar s_j^2 \tau^2}`, and all such dimensions of a product kernel
together cost one exponential per kernel entry
(:func:`~pfn_kernels.kernels.covariance.spectral_mixture_covariance` merges them), where a full
dimension costs Q exponentials and cosines. In a BO step the kernel is evaluated thousands of
times by the acquisition optimizer, so every collapsed dimension makes the step cheaper.

The decoder's spectra are rarely sparse: on smooth objectives a zero-frequency peak carries most
of the weight and one to three small low-frequency components the rest. :func:`sparsify`
collapses dimension j to the Gaussian with the same weight-averaged second moment,

.. math::
    \bar s_j^2 = \sum_q w_{jq} (s_{jq}^2 + \mu_{jq}^2),

(the same curvature at :math:`\tau = 0`,
:math:`k_j''(0) = -4\pi^2 \sum_q w_{jq}(s_{jq}^2 + \mu_{jq}^2)`, as
:func:`~pfn_kernels.inference.evidence.fold_to_zero_frequency`), wherever the profile log
marginal likelihood of the data loses at most ``margin`` nats per point by it:

1. each dimension alone is collapsed, and the dimensions are ordered by what that costs;
2. the nested sets "the k cheapest dimensions" (k = 1..d) are scored together (one batched
   Cholesky factorization), and the largest set within the margin is collapsed.

Where the data favour a dimension's peaks (a periodic dimension, a rough function read as a sum
of peaks), it keeps its full spectrum. The calibration that follows tunes the collapsed
dimensions' bandwidths as it tunes any spectrum: for them, a lengthscale fit.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from pfn_kernels.exact_gp import profile_log_likelihood
from pfn_kernels.inference.bounds import OutputRanges
from pfn_kernels.inference.calibration import MAX_CALIBRATION_POINTS
from pfn_kernels.inference.subsample import strided_subsample
from pfn_kernels.kernels.bochner import TWO_PI_SQ, dimension_factor, exclusive_products
from pfn_kernels.spectral_params import SpectralEstimate

#: Default margin, in nats per point, that collapsing dimensions may cost in evidence.
SPARSITY_MARGIN = 0.01
#: Most float64 entries of the per-dimension factor stacks held at once; larger batches are
#: processed in chunks of tasks.
MAX_FACTOR_ENTRIES = 1 << 23


def collapsed_scales(est: SpectralEstimate, ranges: OutputRanges | None = None) -> Tensor:
    r"""`(B, d)` bandwidths :math:`\bar s_j = (\sum_q w_{jq}(s_{jq}^2 + \mu_{jq}^2))^{1/2}` of the
    one-Gaussian spectra with the same second moments, within ``ranges``."""
    ranges = ranges or OutputRanges()
    second = (est.weights * (est.scales.pow(2) + est.means.pow(2))).sum(-1)
    return second.sqrt().clamp(ranges.min_scale, ranges.max_scale)


def collapse_dimensions(est: SpectralEstimate, collapse: Tensor, ranges: OutputRanges | None = None) -> SpectralEstimate:
    """``est`` with the dimensions ``collapse`` `(B, d)` (booleans) replaced by one zero-frequency
    Gaussian of the same second moment (weights ``[1, 0, ..., 0]``, exact zeros); the other
    dimensions and the noise ratio unchanged, bit for bit."""
    s_bar = collapsed_scales(est, ranges)  # (B, d)
    first = torch.zeros_like(est.weights)
    first[..., 0] = 1.0
    scales = est.scales.clone()
    scales[..., 0] = s_bar
    where = collapse.unsqueeze(-1)
    return replace(
        est,
        weights=torch.where(where, first, est.weights),
        means=torch.where(where, torch.zeros_like(est.means), est.means),
        scales=torch.where(where, scales, est.scales),
    )


def is_collapsed(weights: Tensor, means: Tensor, tol: float = 1e-16) -> Tensor:
    """`(..., d)` booleans: the dimensions whose spectrum is one zero-frequency component (all
    other weights at most ``tol``; its frequency at most :data:`~pfn_kernels.kernels.ZERO_FREQUENCY`)."""
    from pfn_kernels.kernels.amortized_spectral_kernel import ZERO_FREQUENCY

    top = weights.argmax(-1, keepdim=True)
    others = weights.scatter(-1, top, torch.zeros_like(top, dtype=weights.dtype))
    return (others <= tol).all(-1) & (means.gather(-1, top).squeeze(-1) <= ZERO_FREQUENCY)


@torch.no_grad()
def sparsify(
    x: Tensor,
    y: Tensor,
    est: SpectralEstimate,
    ranges: OutputRanges | None = None,
    margin: float = SPARSITY_MARGIN,
    max_points: int = MAX_CALIBRATION_POINTS,
) -> tuple[SpectralEstimate, Tensor]:
    r"""Collapse the dimensions whose peaks the data do not need (see the module docstring).

    :param x: `(B, n, d)` inputs in the unit cube.
    :param y: `(B, n)` standardized targets, or `(B, n, M)` realizations.
    :param est: the estimate so far (batch `(B,)`).
    :param ranges: the collapsed bandwidths stay inside these.
    :param margin: nats per point of profile log marginal likelihood (at the estimate's noise
        ratio) that the collapse may cost; 0 collapses only where it costs nothing.
    :param max_points: points read (a strided subsample beyond).
    :return: the sparse estimate and `(B, d)` booleans marking the collapsed dimensions.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}.")
    ranges = ranges or OutputRanges()
    xs, ys = strided_subsample(x, y, max_points)
    b, n, d = xs.shape
    chunk = max(1, MAX_FACTOR_ENTRIES // max(1, d * n * n))
    masks = [
        _collapse_mask(xs[i : i + chunk], ys[i : i + chunk], _rows(est, slice(i, i + chunk)), ranges, margin)
        for i in range(0, b, chunk)
    ]
    collapse = torch.cat(masks) if masks else torch.zeros(b, d, dtype=torch.bool, device=x.device)
    already = is_collapsed(est.weights, est.means)
    collapse = collapse & ~already
    if not bool(collapse.any()):
        return est, already
    return collapse_dimensions(est, collapse, ranges), collapse | already


def _rows(est: SpectralEstimate, rows: slice) -> SpectralEstimate:
    return SpectralEstimate(est.weights[rows], est.means[rows], est.scales[rows],
                            est.log_noise_ratio[rows], est.log_outputscale[rows])


def _collapse_mask(xs: Tensor, ys: Tensor, est: SpectralEstimate, ranges: OutputRanges, margin: float) -> Tensor:
    """`(B, d)` the dimensions to collapse, for one chunk of tasks."""
    n, d = xs.shape[-2:]
    s_bar = collapsed_scales(est, ranges).to(xs)  # (B, d)
    w, mu, s = (t.to(xs)[:, None, None] for t in (est.weights, est.means, est.scales))  # (B, 1, 1, d, Q)
    full, rbf = [], []
    for j in range(d):
        tau = (xs[:, :, None, j] - xs[:, None, :, j]).unsqueeze(-1)  # (B, n, n, 1)
        coords = (xs[:, :, None, j, None], xs[:, None, :, j, None])
        full.append(dimension_factor(tau, w[..., j, :], mu[..., j, :], s[..., j, :], coordinates=coords))
        rbf.append(torch.exp(-TWO_PI_SQ * s_bar[:, None, None, j] ** 2 * tau.squeeze(-1).square()))
    full_k, rbf_k = torch.stack(full), torch.stack(rbf)  # (d, B, n, n)
    log_r = est.log_noise_ratio.to(xs)
    k_full = full_k.prod(0)
    ll_full = profile_log_likelihood(k_full, ys, log_r)  # (B,)

    # 1. each dimension alone: the full kernel with factor j swapped
    ll_one = profile_log_likelihood(exclusive_products(full_k, 0) * rbf_k, ys, log_r)  # (d, B)
    cost = (ll_full - ll_one).nan_to_num(math.inf, math.inf, math.inf)  # -inf ll (failed) -> never
    order = cost.argsort(0)  # (d, B), cheapest first

    # 2. nested sets: the k cheapest collapsed, the rest full, k = 1..d
    idx = order[:, :, None, None].expand_as(full_k)
    full_sorted, rbf_sorted = full_k.gather(0, idx), rbf_k.gather(0, idx)
    head = rbf_sorted.cumprod(0)  # (d, B, n, n): head[k], the first k + 1 collapsed
    tail = torch.cat([full_sorted.flip(0)[:-1].cumprod(0).flip(0), torch.ones_like(full_k[:1])])
    # tail[k]: the product of the full factors after the first k + 1 (ones for k = d - 1)
    ll_nested = profile_log_likelihood(head * tail, ys, log_r)  # (d, B)
    ok = (ll_full - ll_nested) <= margin * n  # (d, B) collapsing the first k + 1 is within the margin
    ok &= torch.isfinite(ll_nested)
    ranks = torch.arange(1, d + 1, device=xs.device)[:, None]
    k = torch.where(ok, ranks, torch.zeros_like(ranks)).amax(0)  # (B,) how many to collapse
    position = torch.empty_like(order)
    position.scatter_(0, order, torch.arange(d, device=xs.device)[:, None].expand_as(order))
    return (position < k[None]).T  # (B, d)


__all__ = ["SPARSITY_MARGIN", "collapse_dimensions", "collapsed_scales", "is_collapsed", "sparsify"]
