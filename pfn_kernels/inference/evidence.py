r"""The evidence check: the decoded kernel against plain smooth alternatives, by marginal likelihood.

A network reading data unlike its training tasks can return a spectrum that explains the data
worse than a plain smooth kernel would, with nothing downstream to notice: the calibration only
dilates the spectrum it is given. This stage scores the decoded kernel against these
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

- for one-dimensional data, spectra on the periodogram's highest peaks
  (:func:`periodogram_candidates`, the data-driven start of spectral-mixture fits): a network
  that misses strong cycles beyond the frequencies of its training tasks (a yearly cycle in
  decades of monthly data) is caught by these. They must win by a wider margin
  (:data:`PERIODOGRAM_MARGIN`) plus a selection penalty.

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
from pfn_kernels.inference.calibration import MAX_CALIBRATION_POINTS
from pfn_kernels.inference.subsample import strided_subsample
from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.spectral_params import SpectralEstimate

#: Lengthscales of the RBF alternatives, per unit input and per :math:`\sqrt d`.
EVIDENCE_LENGTHSCALES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
#: Noise-to-signal ratios tried for every candidate besides the decoded one.
EVIDENCE_NOISE = (1e-6, 1e-4, 1e-2, 1e-1, 0.5)
#: Default margin, in nats per point, an alternative must win by.
EVIDENCE_MARGIN = 0.02
#: Periodogram candidates (d = 1): bandwidths of the peaks relative to their frequencies, and
#: weights of the zero-frequency component that carries the rest of the variance.
PERIODOGRAM_RELATIVE_BANDWIDTHS = (0.02, 0.08, 0.3)
PERIODOGRAM_ZERO_WEIGHTS = (0.05, 0.3)
#: Nats per point a periodogram candidate must win by (at least; plus its selection penalty):
#: on small smooth data sets a spurious peak can win the evidence narrowly and predict worse.
PERIODOGRAM_MARGIN = 0.1
#: Bandwidth (cycles per unit) of that zero-frequency component: an RBF of lengthscale ~0.16.
PERIODOGRAM_ZERO_SCALE = 1.0
#: Oversampling of the periodogram's frequency grid (points per 1/span) and its largest size.
PERIODOGRAM_OVERSAMPLING = 4
PERIODOGRAM_MAX_FREQUENCIES = 4096


@torch.no_grad()
def evidence_check(
    x: Tensor,
    y: Tensor,
    est: SpectralEstimate,
    ranges: OutputRanges | None = None,
    margin: float = EVIDENCE_MARGIN,
    max_points: int = MAX_CALIBRATION_POINTS,
    folded: bool = True,
    periodogram: bool = True,
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
    :param periodogram: for d = 1, also try spectra built from the periodogram's highest peaks
        (:func:`periodogram_candidates`). The best of them must win by
        :data:`PERIODOGRAM_MARGIN` (or ``margin`` if larger) per point plus :math:`\log C`
        nats for its C (candidate, noise ratio) pairs: a selection penalty, as the best of
        many candidates beats the decoded kernel by chance too.
    :return: the estimate (replaced where an alternative won) and `(B,)` booleans saying where.
    """
    ranges = ranges or OutputRanges()
    xs, ys = strided_subsample(x, y, max_points)
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
    replaced = torch.zeros_like(better)  # where a periodogram spectrum replaced the decoded one
    if periodogram and d == 1:
        pw, pm, ps = periodogram_candidates(xs, ys, est.weights.shape[-1], ranges)  # (P, B, 1, Q)
        k_per = spectral_mixture_covariance(xs, xs, pw, pm, ps)  # (P, B, n, n)
        ll_per = profile_log_likelihood(k_per.unsqueeze(1), ys, log_r[None]).reshape(-1, b)
        best_per = ll_per.argmax(0)
        ll_best_per = ll_per.gather(0, best_per[None])[0]
        # the best of many candidates wins by chance too: its margin adds log(candidates)
        wins = ll_best_per > ll_dec + max(margin, PERIODOGRAM_MARGIN) * n + math.log(ll_per.shape[0])
        wins &= ll_best_per > ll_alt
        if bool(wins.any()):
            c, r = best_per // len(log_r), log_r.gather(0, (best_per % len(log_r))[None])[0]
            take = lambda t: t.gather(0, c.view(1, -1, 1, 1).expand(1, *t.shape[1:]))[0]  # noqa: E731
            per_est = replace(est, weights=take(pw).to(est.weights), means=take(pm).to(est.means),
                              scales=take(ps).to(est.scales), log_noise_ratio=r)
            est = _pick_where(wins, est, per_est)
            ll_dec = torch.where(wins, ll_best_per, ll_dec)
            better = ll_alt > ll_dec + margin * n  # an RBF or the folded spectrum may still win
            replaced = wins
    if not bool(better.any()):
        return est, replaced

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
    return _pick_where(better, est, alt), better | replaced


def _pick_where(where: Tensor, est: SpectralEstimate, alt: SpectralEstimate) -> SpectralEstimate:
    """``alt``'s spectrum and noise ratio for the batch members ``where`` `(B,)`, ``est``'s
    elsewhere (the outputscale guess stays ``est``'s)."""
    pick = lambda a, c: torch.where(where.view(-1, *([1] * (a.dim() - 1))), c, a)  # noqa: E731
    return replace(
        est,
        weights=pick(est.weights, alt.weights),
        means=pick(est.means, alt.means),
        scales=pick(est.scales, alt.scales),
        log_noise_ratio=pick(est.log_noise_ratio, alt.log_noise_ratio),
    )


def periodogram_candidates(
    x: Tensor, y: Tensor, num_components: int, ranges: OutputRanges | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Spectra built from the highest peaks of the periodogram of one-dimensional data.

    The periodogram :math:`P(f) = |\sum_i y_i e^{-2\pi i f x_i}|^2 / n` (of each realization,
    averaged) is evaluated on a grid from :math:`1/(2\,\mathrm{span})` to the mean Nyquist
    frequency :math:`(n - 1) / (2\,\mathrm{span})` (at most ``ranges.max_frequency``), with
    :data:`PERIODOGRAM_OVERSAMPLING` points per :math:`1/\mathrm{span}`. Its
    :math:`Q - 1` highest local maxima become components at those frequencies, weighted by
    their power; one zero-frequency component of bandwidth :data:`PERIODOGRAM_ZERO_SCALE`
    carries a share :math:`w_0` (:data:`PERIODOGRAM_ZERO_WEIGHTS`) of the variance. Each peak's
    bandwidth is its frequency times a factor of :data:`PERIODOGRAM_RELATIVE_BANDWIDTHS`: a
    nearly periodic, a quasi-periodic and a short-lived cycle. This is the data-driven start
    of spectral-mixture fits (GPyTorch's ``initialize_from_data_empspect``), used here as a
    candidate for the evidence check where the network's spectrum misses strong cycles.

    :param x: `(B, n, 1)` inputs; ``y`` `(B, n)` or `(B, n, M)` standardized targets.
    :param num_components: Q, components per candidate (Q - 1 peaks).
    :return: weights, means and scales, each `(P, B, 1, Q)` for the P candidates.
    """
    ranges = ranges or OutputRanges()
    xs = x[..., 0].to(torch.float64)  # (B, n)
    yy = y.to(torch.float64)
    yy = yy.unsqueeze(-1) if yy.dim() == 2 else yy  # (B, n, M)
    b, n = xs.shape
    span = (xs.amax(-1) - xs.amin(-1)).clamp_min(1e-6)  # (B,)
    f_hi = ((n - 1) / (2 * span)).clamp(max=ranges.max_frequency)
    f_lo = 0.5 / span
    num_f = int(min(PERIODOGRAM_MAX_FREQUENCIES,
                    max(8, math.ceil(PERIODOGRAM_OVERSAMPLING * float((f_hi * span).max())))))
    t = torch.linspace(0.0, 1.0, num_f, dtype=torch.float64, device=xs.device)
    freqs = f_lo[:, None] + (f_hi - f_lo).clamp_min(0)[:, None] * t  # (B, F)
    phase = 2 * math.pi * freqs[:, :, None] * (xs - xs[:, :1])[:, None, :]  # (B, F, n)
    re, im = phase.cos() @ yy, phase.sin() @ yy  # (B, F, M)
    power = (re.pow(2) + im.pow(2)).mean(-1) / n  # (B, F)
    is_peak = torch.zeros_like(power, dtype=torch.bool)
    is_peak[:, 1:-1] = (power[:, 1:-1] > power[:, :-2]) & (power[:, 1:-1] >= power[:, 2:])
    num_peaks = num_components - 1
    top = torch.where(is_peak, power, torch.zeros_like(power)).topk(min(num_peaks, num_f), dim=-1)
    peak_f = freqs.gather(-1, top.indices)  # (B, K)
    peak_w = top.values / top.values.sum(-1, keepdim=True).clamp_min(1e-300)  # 0 where no peak
    out_w, out_m, out_s = [], [], []
    for w0 in PERIODOGRAM_ZERO_WEIGHTS:
        for rel in PERIODOGRAM_RELATIVE_BANDWIDTHS:
            w = torch.cat([torch.full_like(peak_w[:, :1], w0), (1 - w0) * peak_w], -1)
            m = torch.cat([torch.zeros_like(peak_f[:, :1]), peak_f], -1)
            sc = torch.cat([torch.full_like(peak_f[:, :1], PERIODOGRAM_ZERO_SCALE), rel * peak_f], -1)
            pad = num_components - w.shape[-1]
            if pad > 0:
                w, m = (torch.cat([v, torch.zeros(b, pad, dtype=v.dtype, device=v.device)], -1) for v in (w, m))
                sc = torch.cat([sc, torch.ones(b, pad, dtype=sc.dtype, device=sc.device)], -1)
            out_w.append(w / w.sum(-1, keepdim=True))
            out_m.append(m)
            out_s.append(sc.clamp(ranges.min_scale, ranges.max_scale))
    stack = lambda v: torch.stack(v).unsqueeze(-2).to(x.dtype)  # noqa: E731  (P, B, 1, Q)
    return stack(out_w), stack(out_m), stack(out_s)


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
    "periodogram_candidates",
]
