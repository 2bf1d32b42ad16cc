"""The GLS mean, the profile outputscale given a mean, and the evidence check."""

import math

import pytest
import torch

from pfn_kernels.exact_gp import PROFILE_JITTER
from pfn_kernels.inference import InferenceConfig, decode_spectral_params
from pfn_kernels.inference.evidence import (
    EVIDENCE_LENGTHSCALES, EVIDENCE_NOISE, PERIODOGRAM_OVERSAMPLING, PERIODOGRAM_RELATIVE_BANDWIDTHS,
    PERIODOGRAM_ZERO_WEIGHTS, evidence_check, fold_to_zero_frequency, periodogram_candidates,
)
from pfn_kernels.inference.outputscale import gls_mean, gls_mean_and_outputscale, profile_outputscale
from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.spectral_params import SpectralEstimate

DTYPE = torch.float64


def rbf_task(n=40, d=2, ell=0.15, noise=1e-3, offset=0.0, seed=0):
    """x `(1, n, d)` and y `(1, n)` from a GP with an RBF kernel of lengthscale ``ell``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, n, d, generator=g, dtype=DTYPE)
    sq = (x.unsqueeze(-2) - x.unsqueeze(-3)).pow(2).sum(-1)[0]
    K = torch.exp(-0.5 * sq / ell**2) + noise * torch.eye(n, dtype=DTYPE)
    y = torch.linalg.cholesky(K) @ torch.randn(n, generator=g, dtype=DTYPE) + offset
    return x, y[None]


def estimate(d, weights, means, scales, log_r=math.log(1e-3)):
    """A one-task estimate whose dimensions all share the given (Q,) mixture."""
    t = lambda v: torch.tensor(v, dtype=DTYPE).expand(1, d, len(v)).clone()  # noqa: E731
    return SpectralEstimate(t(weights), t(means), t(scales), torch.tensor([log_r], dtype=DTYPE),
                            torch.zeros(1, dtype=DTYPE))


def profile_ll(K, y, r):
    """An independent profile log likelihood: log N(y; 0, a (K + rI)) at its best a, + const."""
    n = K.shape[-1]
    A = K + (r + PROFILE_JITTER) * torch.eye(n, dtype=DTYPE)
    a = float(y @ torch.linalg.solve(A, y)) / n
    mvn = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=DTYPE), a * A)
    return float(mvn.log_prob(y)) + 0.5 * n * (1 + math.log(2 * math.pi))


def test_gls_mean_finds_an_offset_and_the_outputscale_uses_the_residual():
    x, y = rbf_task(offset=2.5)
    s = 1 / (2 * math.pi * 0.15)
    est = estimate(2, [1.0], [0.0], [s])
    c = gls_mean(x, y, est)
    assert abs(c.item() - 2.5) < 1.0 and abs(c.item() - 2.5) < abs(y.mean().item() - 2.5) + 0.5
    K = spectral_mixture_covariance(x, x, est.weights, est.means, est.scales)[0]
    A = K + (1e-3 + PROFILE_JITTER) * torch.eye(40, dtype=DTYPE)
    resid = y[0] - c
    expected = float(resid @ torch.linalg.solve(A, resid)) / 40
    got = profile_outputscale(x, y, est, prior_count=0.0, mean=c).item()
    assert got == pytest.approx(expected, rel=1e-9)
    # GLS shifts with the data: y + 1 has mean c + 1
    assert gls_mean(x, y + 1.0, est).item() == pytest.approx(c.item() + 1.0, rel=1e-9)
    # one factorization for both gives the same mean and outputscale (with the guess's shrinkage)
    for n0 in (0.0, 3.0):
        c2, os2 = gls_mean_and_outputscale(x, y, est, prior_count=n0)
        assert c2.item() == pytest.approx(c.item(), rel=1e-12)
        guess = est.log_outputscale.exp().item()
        assert os2.item() == pytest.approx((expected * 40 + n0 * guess) / (40 + n0), rel=1e-9)


def test_evidence_check_replaces_a_wrong_spectrum_by_the_best_rbf():
    x, y = rbf_task(n=50, d=2, ell=0.15, seed=1)
    wrong = estimate(2, [0.5, 0.5], [7.0, 11.0], [0.05, 0.05])  # a periodic kernel: wrong
    out, replaced = evidence_check(x, y, wrong)
    assert replaced.tolist() == [True]
    assert out.weights[0, :, 0].tolist() == [1.0, 1.0] and float(out.means.abs().max()) == 0.0
    # the chosen lengthscale and noise are the grid point of highest independent profile likelihood
    sq = (x.unsqueeze(-2) - x.unsqueeze(-3)).pow(2).sum(-1)[0]
    grid = [(ell * math.sqrt(2), r) for ell in EVIDENCE_LENGTHSCALES for r in (1e-3, *EVIDENCE_NOISE)]
    best = max(grid, key=lambda g: profile_ll(torch.exp(-0.5 * sq / g[0] ** 2), y[0], g[1]))
    assert float(out.scales[0, 0, 0]) == pytest.approx(1 / (2 * math.pi * best[0]), rel=1e-9)
    assert float(out.log_noise_ratio.exp()) == pytest.approx(best[1], rel=1e-9)


def test_evidence_check_keeps_a_good_spectrum_bit_for_bit():
    x, y = rbf_task(n=50, d=2, ell=0.15, seed=2)
    good = estimate(2, [1.0, 0.0], [0.0, 3.0], [1 / (2 * math.pi * 0.15), 0.2])
    out, replaced = evidence_check(x, y, good)
    assert replaced.tolist() == [False]
    for f in ("weights", "means", "scales", "log_noise_ratio"):
        assert torch.equal(getattr(out, f), getattr(good, f))


def test_pipeline_reports_the_gls_mean_and_the_model_uses_it(small_decoder):
    from pfn_kernels import AmortizedSingleTaskGP, fit_amortized

    x, y = rbf_task(n=30, d=2, seed=3)
    y = (y - y.mean()) / y.std()
    config = InferenceConfig(mean_mode="gls", evidence_check=True)
    p = decode_spectral_params(x[0], y[0], small_decoder, config)
    assert p.constant_mean.shape == () and p.constant_mean.item() != 0.0
    plain = decode_spectral_params(x[0], y[0], small_decoder, InferenceConfig(mean_mode="sample"))
    assert plain.constant_mean.item() == 0.0
    Y = 10.0 + 3.0 * y[0, :, None]  # raw units: Standardize maps them back to y
    model = fit_amortized(AmortizedSingleTaskGP(x[0], Y, decoder=small_decoder, inference=config,
                                                input_transform=None))
    assert model.mean_module.constant.item() == pytest.approx(p.constant_mean.item(), rel=1e-6)


def test_folding_keeps_each_dimensions_curvature_at_zero():
    est = estimate(2, [0.3, 0.7], [2.0, 4.0], [0.4, 0.1])
    fold = fold_to_zero_frequency(est)
    assert float(fold.means.abs().max()) == 0.0 and torch.equal(fold.weights, est.weights)
    tau = torch.tensor([[[-1e-4, 0.0], [0.0, 0.0], [1e-4, 0.0]]], dtype=DTYPE)  # (1, 3, d)
    zero = torch.zeros(1, 1, 2, dtype=DTYPE)
    curvature = lambda e: (  # noqa: E731  k''(0) along dimension 0, by central differences
        spectral_mixture_covariance(tau, zero, e.weights, e.means, e.scales)[0, :, 0]
        * torch.tensor([1.0, -2.0, 1.0], dtype=DTYPE)).sum() / 1e-8
    expected = -4 * math.pi**2 * (0.3 * (0.4**2 + 2.0**2) + 0.7 * (0.1**2 + 4.0**2))
    assert float(curvature(est)) == pytest.approx(expected, rel=1e-4)
    assert float(curvature(fold)) == pytest.approx(expected, rel=1e-4)


def test_evidence_check_picks_the_folded_spectrum_by_independent_likelihoods():
    """Data from a smooth two-scale kernel; the estimate reads it as two peaks with the same
    second moments. The folded estimate is that kernel: it must win, and the choice must be the
    argmax of independently computed profile likelihoods over every alternative."""
    n, d = 60, 2
    truth = estimate(d, [0.5, 0.5], [0.0, 0.0], [1.5, 4.0])
    g = torch.Generator().manual_seed(7)
    x = torch.rand(1, n, d, generator=g, dtype=DTYPE)
    K = spectral_mixture_covariance(x, x, truth.weights, truth.means, truth.scales)[0]
    y = (torch.linalg.cholesky(K + 1e-4 * torch.eye(n, dtype=DTYPE))
         @ torch.randn(n, generator=g, dtype=DTYPE))[None]
    peaks = estimate(d, [0.5, 0.5], [1.4, 3.9], [math.sqrt(1.5**2 - 1.4**2), math.sqrt(4.0**2 - 3.9**2)])
    out, replaced = evidence_check(x, y, peaks)
    assert replaced.tolist() == [True]
    torch.testing.assert_close(out.scales, truth.scales, rtol=1e-9, atol=0)
    assert float(out.means.abs().max()) == 0.0
    sq = (x.unsqueeze(-2) - x.unsqueeze(-3)).pow(2).sum(-1)[0]
    rbfs = [torch.exp(-0.5 * sq / (ell * math.sqrt(d)) ** 2) for ell in EVIDENCE_LENGTHSCALES]
    ratios = (1e-3, *EVIDENCE_NOISE)
    scores = {(i, r): profile_ll(k, y[0], r) for i, k in enumerate([*rbfs, K]) for r in ratios}
    best = max(scores, key=scores.get)
    assert best[0] == len(rbfs)  # the folded kernel
    assert float(out.log_noise_ratio.exp()) == pytest.approx(best[1], rel=1e-9)
    k_peaks = spectral_mixture_covariance(x, x, peaks.weights, peaks.means, peaks.scales)[0]
    assert scores[best] > profile_ll(k_peaks, y[0], 1e-3) + 0.02 * n  # by more than the margin
    kept, replaced = evidence_check(x, y, peaks, folded=False)  # without the folded alternative
    assert not torch.allclose(kept.scales, truth.scales)  # the true kernel is out of reach
    if replaced.item():  # then by the best RBF of the grid
        assert kept.weights[0, :, 0].tolist() == [1.0] * d


def periodic_series(n=200, freqs=(23.0, 6.0), amps=(1.0, 0.5), noise=0.05, seed=0):
    """x `(1, n, 1)` on a random design and y `(1, n)`: a sum of sinusoids (cycles per unit)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, n, 1, generator=g, dtype=DTYPE)
    y = sum(a * torch.sin(2 * math.pi * f * x[..., 0] + 1.0) for f, a in zip(freqs, amps))
    y = y + noise * torch.randn(1, n, generator=g, dtype=DTYPE)
    return x, (y - y.mean()) / y.std()


def test_periodogram_candidates_sit_on_the_cycles_of_the_data():
    x, y = periodic_series()
    w, m, s = periodogram_candidates(x, y, num_components=4)
    p = len(PERIODOGRAM_ZERO_WEIGHTS) * len(PERIODOGRAM_RELATIVE_BANDWIDTHS)
    assert w.shape == m.shape == s.shape == (p, 1, 1, 4)
    torch.testing.assert_close(w.sum(-1), torch.ones(p, 1, 1, dtype=DTYPE))
    assert (m[..., 0] == 0).all()  # the zero-frequency component
    span = float(x.max() - x.min())
    step = 1 / (PERIODOGRAM_OVERSAMPLING * span)  # the grid's spacing, about
    top2 = m[0, 0, 0, 1:3].tolist()  # the two highest peaks, by power
    assert abs(top2[0] - 23.0) < step and abs(top2[1] - 6.0) < step
    assert w[0, 0, 0, 1] > w[0, 0, 0, 2]  # the larger amplitude has the larger weight
    # the peaks' bandwidths are their frequencies times the documented factors
    for i, rel in enumerate(PERIODOGRAM_RELATIVE_BANDWIDTHS):
        torch.testing.assert_close(s[i, 0, 0, 1:], rel * m[i, 0, 0, 1:])
    # realizations: the averaged periodogram of two copies is the periodogram of one
    w2, m2, _ = periodogram_candidates(x, torch.stack([y, y], -1), num_components=4)
    torch.testing.assert_close(m2, m)


def test_evidence_check_replaces_a_flat_spectrum_by_the_periodogram_one():
    """A 1-D series with 23 cycles per unit, decoded as a smooth RBF (the network's reading of
    data beyond its prior): the periodogram candidate must win, by independently computed
    profile likelihoods, and put a component on the cycle."""
    x, y = periodic_series()
    flat = estimate(1, [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0])
    out, replaced = evidence_check(x, y, flat, periodogram=True)
    assert replaced.tolist() == [True]
    main = int(out.weights[0, 0, 1:].argmax()) + 1
    assert abs(float(out.means[0, 0, main]) - 23.0) < 0.5
    k = lambda e: spectral_mixture_covariance(x, x, e.weights, e.means, e.scales)[0]  # noqa: E731
    chosen = profile_ll(k(out), y[0], float(out.log_noise_ratio.exp()))
    sq = (x.unsqueeze(-2) - x.unsqueeze(-3)).pow(2).sum(-1)[0]
    for ell in EVIDENCE_LENGTHSCALES:  # better than every RBF alternative and the flat kernel
        for r in (1e-3, *EVIDENCE_NOISE):
            assert chosen > profile_ll(torch.exp(-0.5 * sq / ell**2), y[0], r)
    assert chosen > profile_ll(k(flat), y[0], 1e-3) + 0.02 * x.shape[1]
    # without the option the periodogram candidates are not tried
    kept, _ = evidence_check(x, y, flat, periodogram=False)
    assert float(kept.means.abs().max()) == 0.0


def test_periodogram_candidates_leave_multi_input_data_alone():
    x, y = rbf_task(d=2)
    est = estimate(2, [0.6, 0.4], [0.0, 2.0], [1.0, 0.5])
    a, ra = evidence_check(x, y, est, periodogram=True)
    b, rb = evidence_check(x, y, est, periodogram=False)
    for f in ("weights", "means", "scales", "log_noise_ratio"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert torch.equal(ra, rb)
