r"""Calibration: a per-dimension dilation of a decoded spectrum and a factor on its noise, chosen
by the profile marginal likelihood of the data.

A decoder's spectrum is a point estimate read from n points; its frequency scale (the lengthscale,
for a smooth kernel) is what a marginal likelihood pins down best. :func:`calibrate` multiplies
the means and bandwidths of dimension j by a factor :math:`c_j`, chosen by
:func:`~pfn_kernels.exact_gp.profile_log_likelihood` among :math:`c_j = 1` (the decoder's own
output, kept on ties), a grid shared by all dimensions (:data:`CALIBRATION_GRID`), then, for
``sweeps`` sweeps over the dimensions, per-dimension steps (:data:`CALIBRATION_STEPS`), each
candidate scored with a Normal prior on its log dilations (:data:`CALIBRATION_PRIOR_STD`). After the
grid and after each sweep, the noise-to-signal ratio r is likewise multiplied by the best of
:data:`CALIBRATION_NOISE` (or kept), within the decoder's noise range. Since the kernel is a
product over dimensions, a step in dimension j recomputes only that dimension's factor; the
candidates of a step share one batched Cholesky factorization. No gradients, no learned weights:
it works on the estimate of any decoder.

What it gains and costs is measured by ``benchmarks/calibration.py`` (see ``BENCHMARKS.md``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from pfn_kernels.exact_gp import profile_log_likelihood
from pfn_kernels.inference.bounds import OutputRanges
from pfn_kernels.inference.subsample import strided_subsample
from pfn_kernels.kernels.bochner import dimension_factor, negligible_components
from pfn_kernels.spectral_params import SpectralEstimate

#: Frequency dilations: a grid shared by all dimensions, then per-dimension steps, wide enough to
#: turn a dimension the network misjudged from relevant to irrelevant (or back) in two sweeps.
CALIBRATION_GRID = (0.5, 0.6, 0.7, 0.85, 1.2, 1.4, 1.7, 2.0)
CALIBRATION_STEPS = (0.1, 0.3, 0.6, 1.6, 3.0, 10.0)
#: Std of the Normal prior on the log dilations: wide steps need strong evidence.
CALIBRATION_PRIOR_STD = 1.0
#: Std of the Normal prior on the log noise factor: without one, the noise steps (up to 1000x
#: over the sweeps) drive the noise of a near-interpolating kernel to the floor and the
#: predictions become overconfident (test NLL on held-out prior tasks: benchmarks/one_pass.py).
CALIBRATION_NOISE_PRIOR_STD = 2.0
#: The steps of earlier versions (no prior), for comparisons.
NARROW_STEPS = (0.7, 1.4)
#: Points the calibration and the evidence check read (a strided subsample beyond). Every point
#: of a context up to the network's trained size: on a quarter of 512 points the noise factor
#: came out at the floor on some prior tasks, and the GP on all points was badly overconfident.
MAX_CALIBRATION_POINTS = 256
#: Factors of the noise-to-signal ratio tried after the grid and after each sweep.
CALIBRATION_NOISE = (0.1, 0.25, 0.5, 2.0, 4.0, 10.0)


def keep_best(ll: Tensor, cand: Tensor, current: Tensor, best: Tensor) -> tuple[Tensor, Tensor]:
    """Per batch member, the candidate with the highest log likelihood if it beats ``best``.

    :param ll: `(C, B)` log likelihoods of C candidates.
    :param cand: `(C, B, ...)` the candidates; ``current`` `(B, ...)` is kept where none is better.
    :return: the chosen values `(B, ...)` and their log likelihoods `(B,)` (ties keep ``current``).
    """
    i, better, best = _argmax_over(ll, best)
    return _pick(cand, current, i, better), best


def _argmax_over(ll: Tensor, best: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The best of C candidates `(C, B)` per batch member, whether it beats ``best`` `(B,)`
    (ties do not), and the updated best log likelihoods."""
    i = ll.argmax(0)
    top = ll.gather(0, i[None])[0]
    better = top > best
    return i, better, torch.where(better, top, best)


def _pick(cand: Tensor, current: Tensor, i: Tensor, better: Tensor) -> Tensor:
    """``cand[i[b], b]`` where ``better[b]``, else ``current[b]``: cand `(C, B, ...)`."""
    extra = (1,) * (cand.dim() - 2)
    pick = cand.gather(0, i.view(1, -1, *extra).expand(1, *cand.shape[1:]))[0]
    return torch.where(better.view(-1, *extra), pick, current)


@torch.no_grad()
def calibrate(
    x: Tensor,
    y: Tensor,
    est: SpectralEstimate,
    ranges: OutputRanges | None = None,
    sweeps: int = 2,
    max_points: int = MAX_CALIBRATION_POINTS,
    steps: tuple[float, ...] = CALIBRATION_STEPS,
    prior_std: float | None = CALIBRATION_PRIOR_STD,
    noise_prior_std: float | None = CALIBRATION_NOISE_PRIOR_STD,
) -> SpectralEstimate:
    r"""Dilate each dimension's decoded spectrum, and scale the noise, by profile likelihood.

    :param x: `(B, n, d)` inputs in the unit cube.
    :param y: `(B, n)` standardized targets, or `(B, n, M)` realizations sharing the kernel.
    :param est: the decoder's estimate (batch `(B,)`).
    :param ranges: frequencies, bandwidths and noise ratios are kept inside these (default
        :class:`~pfn_kernels.inference.bounds.OutputRanges`).
    :param sweeps: per-dimension sweeps after the shared grid (0: the grid only).
    :param max_points: points read (a strided subsample beyond).
    :param steps: the per-dimension factors tried in each sweep (default
        :data:`CALIBRATION_STEPS`).
    :param prior_std: if given, candidates are scored by the profile likelihood plus a Normal
        log prior :math:`-\sum_j (\log c_j)^2 / (2\sigma^2)` on the dilations (MAP rather than
        maximum likelihood: wide steps then need strong evidence; default
        :data:`CALIBRATION_PRIOR_STD`); ``None``: no prior.
    :param noise_prior_std: if given, a Normal log prior
        :math:`-(\log r - \log r_0)^2 / (2\sigma_r^2)` on the noise ratio's departure from the
        estimate's own :math:`r_0` (default :data:`CALIBRATION_NOISE_PRIOR_STD`); ``None``: none.
    :return: the estimate with dilated ``means`` and ``scales`` and the chosen
        ``log_noise_ratio``; deterministic.
    """
    ranges = ranges or OutputRanges()
    x, y = strided_subsample(x, y, max_points)  # x (B, n, d); y (B, n) or (B, n, M)
    w, mu, s, log_r = est.weights, est.means, est.scales, est.log_noise_ratio
    b, d = mu.shape[0], mu.shape[-2]
    lo_s, hi_s = ranges.min_scale, ranges.max_scale
    tau = (x.unsqueeze(-2) - x.unsqueeze(-3)).unsqueeze(-1)  # (B, n, n, d, 1)

    def dilate(c: Tensor) -> tuple[Tensor, Tensor]:  # c (..., B, d, 1)
        return (mu * c).clamp(0.0, ranges.max_frequency), (s * c).clamp(lo_s, hi_s)

    # exact zeros only: a zero weight adds nothing, a zero frequency (dilated: still 0) has cos 1
    skip, unit = negligible_components(w, mu)

    def factor(j: int, c: Tensor) -> Tensor:  # dimension j's kernel for factors c (..., B)
        m = (mu[:, j] * c[..., None]).clamp(0.0, ranges.max_frequency)[..., None, None, :]
        sc = (s[:, j] * c[..., None]).clamp(lo_s, hi_s)[..., None, None, :]
        # tau (B, n, n, 1); cosines per point (the coordinates), not per pair
        coords = (x[:, :, None, j, None], x[:, None, :, j, None])
        return dimension_factor(tau[..., j, :], w[:, j, None, None, :], m, sc, skip[j], unit[j], coords)

    def penalty(c: Tensor) -> Tensor:  # c (..., B, d, 1) -> (..., B) log prior of the dilations
        if prior_std is None:
            return torch.zeros(c.shape[:-2], dtype=torch.float64, device=c.device)
        return -0.5 * (c.double().log() / prior_std).pow(2).sum((-2, -1))

    log_r0 = log_r

    def noise_penalty(log_r: Tensor) -> Tensor:  # (..., B) log prior of the noise ratio
        if noise_prior_std is None:
            return torch.zeros(log_r.shape, dtype=torch.float64, device=log_r.device)
        return -0.5 * ((log_r - log_r0).double() / noise_prior_std).pow(2)

    def noise_step(k: Tensor, log_r: Tensor, best: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = ranges.log_noise_ratio_range
        cand = (log_r + noise[:, None]).clamp(lo, hi)  # (F, B)
        ll = profile_log_likelihood(k, y, cand) + penalty(c) + noise_penalty(cand)
        return keep_best(ll, cand, log_r, best)

    noise = torch.tensor(CALIBRATION_NOISE, dtype=log_r.dtype, device=log_r.device).log()
    c = torch.ones(b, d, 1, dtype=mu.dtype, device=mu.device)
    dims = [factor(j, c[:, j, 0]) for j in range(d)]  # per-dimension kernel matrices (B, n, n)
    best = profile_log_likelihood(torch.stack(dims).prod(0), y, log_r)
    grid = torch.tensor(CALIBRATION_GRID, dtype=mu.dtype, device=mu.device)
    cand = c * grid[:, None, None, None]  # (G, B, d, 1)
    grid_dims = [factor(j, cand[:, :, j, 0]) for j in range(d)]  # (G, B, n, n) each
    ll = profile_log_likelihood(torch.stack(grid_dims).prod(0), y, log_r) + penalty(cand)  # r = r0
    # the chosen candidate's factors are taken from those computed, not recomputed
    i, better, best = _argmax_over(ll, best)
    c = _pick(cand, c, i, better)
    dims = [_pick(kj, dims[j], i, better) for j, kj in enumerate(grid_dims)]
    log_r, best = noise_step(torch.stack(dims).prod(0), log_r, best)
    steps = torch.tensor(steps, dtype=mu.dtype, device=mu.device)
    for _ in range(sweeps if d > 1 else 0):
        for j in range(d):
            others = torch.stack(dims[:j] + dims[j + 1 :]).prod(0)  # (B, n, n)
            cand = c.repeat(len(steps), 1, 1, 1)
            cand[:, :, j, 0] *= steps[:, None]
            kj = factor(j, cand[:, :, j, 0])  # (S, B, n, n)
            ll = profile_log_likelihood(others * kj, y, log_r) + penalty(cand) + noise_penalty(log_r)
            i, better, best = _argmax_over(ll, best)
            c = _pick(cand, c, i, better)
            dims[j] = _pick(kj, dims[j], i, better)
        log_r, best = noise_step(torch.stack(dims).prod(0), log_r, best)
    means, scales = dilate(c)
    return replace(est, means=means, scales=scales, log_noise_ratio=log_r)


__all__ = [
    "CALIBRATION_GRID", "CALIBRATION_NOISE", "CALIBRATION_NOISE_PRIOR_STD", "CALIBRATION_PRIOR_STD",
    "CALIBRATION_STEPS",
    "NARROW_STEPS", "calibrate", "keep_best",
]
