"""The calibration stage: it only dilates spectra and scales the noise, and never lowers the
profile likelihood."""

import math

import torch

from pfn_kernels.exact_gp import profile_log_likelihood
from pfn_kernels.inference.bounds import OutputRanges
from pfn_kernels.inference.calibration import CALIBRATION_GRID, NARROW_STEPS, calibrate
from pfn_kernels.kernels import spectral_mixture_covariance


def _data(*batch, n=20, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(*batch, n, d, generator=g)
    y = torch.sin(6 * X[..., 0]) + 0.1 * torch.randn(*batch, n, generator=g)
    return X, (y - y.mean(-1, keepdim=True)) / y.std(-1, keepdim=True)


def _profile(X, y, est):
    k = spectral_mixture_covariance(X, X, est.weights, est.means, est.scales)
    return profile_log_likelihood(k, y, est.log_noise_ratio)


def test_calibration_raises_profile_likelihood_and_only_dilates(small_decoder):
    X, y = _data(4, n=30, d=3, seed=3)
    sweeps, ranges = 2, OutputRanges.of(small_decoder)
    with torch.no_grad():
        out = small_decoder(X, y)
        cal = calibrate(X, y, out, ranges, sweeps=sweeps, steps=NARROW_STEPS, prior_std=None)
    before, after = _profile(X, y, out), _profile(X, y, cal)
    assert (after >= before - 1e-9).all() and (after > before + 1e-3).any()
    assert torch.equal(cal.weights, out.weights)
    r = (cal.log_noise_ratio - out.log_noise_ratio).exp()  # a product of CALIBRATION_NOISE factors
    assert (r >= 0.1 ** (1 + sweeps) * (1 - 1e-4)).all() and (r <= 10.0 ** (1 + sweeps) * (1 + 1e-4)).all()
    assert (cal.log_noise_ratio.exp() >= ranges.min_noise_ratio * (1 - 1e-4)).all()
    assert (cal.log_noise_ratio.exp() <= ranges.max_noise_ratio * (1 + 1e-4)).all()
    # one factor per (task, dimension) multiplies every component's mean and bandwidth
    ratio = cal.scales / out.scales
    torch.testing.assert_close(ratio, ratio[..., :1].expand_as(ratio), rtol=1e-4, atol=0)
    lo, hi = min(CALIBRATION_GRID) * 0.7**sweeps, max(CALIBRATION_GRID) * 1.4**sweeps
    assert (ratio >= lo * (1 - 1e-4)).all() and (ratio <= hi * (1 + 1e-4)).all()


def test_calibration_finds_the_lengthscale_of_an_rbf():
    """An RBF estimate twice too smooth is dilated back: the grid holds the right factor."""
    g = torch.Generator().manual_seed(0)
    n, s_true = 60, 1.5
    X = torch.rand(1, n, 1, generator=g, dtype=torch.float64)
    K = torch.exp(-2 * math.pi**2 * s_true**2 * (X - X.transpose(-1, -2)).pow(2))[0]
    L = torch.linalg.cholesky(K + 1e-6 * torch.eye(n, dtype=torch.float64))
    y = (L @ torch.randn(n, 1, generator=g, dtype=torch.float64)).T
    from pfn_kernels.spectral_params import SpectralEstimate

    est = SpectralEstimate(
        weights=torch.ones(1, 1, 1, dtype=torch.float64),
        means=torch.zeros(1, 1, 1, dtype=torch.float64),
        scales=torch.full((1, 1, 1), s_true / 2, dtype=torch.float64),
        log_noise_ratio=torch.full((1,), math.log(1e-4), dtype=torch.float64),
        log_outputscale=torch.zeros(1, dtype=torch.float64),
    )
    cal = calibrate(X, y, est, steps=NARROW_STEPS, prior_std=None)
    assert 1.4 <= float(cal.scales) / (s_true / 2) <= 2.0
    assert 1.4 <= float(calibrate(X, y, est).scales) / (s_true / 2) <= 2.6  # the default MAP steps


def test_calibration_reads_a_strided_subsample(small_decoder):
    X, y = _data(1, n=64, d=2, seed=5)
    with torch.no_grad():
        out = small_decoder(X, y)
    a = calibrate(X, y, out, max_points=16)
    b = calibrate(X[:, ::4], y[:, ::4], out)
    assert torch.equal(a.means, b.means) and torch.equal(a.log_noise_ratio, b.log_noise_ratio)


def _rbf_task(s_true, n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(1, n, 2, generator=g, dtype=torch.float64)
    K = torch.exp(-2 * math.pi**2 * s_true**2 * (X[..., :1] - X[..., :1].transpose(-1, -2)).pow(2))[0]
    L = torch.linalg.cholesky(K + 1e-6 * torch.eye(n, dtype=torch.float64))
    return X, (L @ torch.randn(n, 1, generator=g, dtype=torch.float64)).T


def _rbf_estimate(scale, d=2):
    from pfn_kernels.spectral_params import SpectralEstimate

    return SpectralEstimate(
        weights=torch.ones(1, d, 1, dtype=torch.float64),
        means=torch.zeros(1, d, 1, dtype=torch.float64),
        scales=torch.full((1, d, 1), scale, dtype=torch.float64),
        log_noise_ratio=torch.full((1,), math.log(1e-4), dtype=torch.float64),
        log_outputscale=torch.zeros(1, dtype=torch.float64),
    )


def test_wide_steps_reach_a_far_lengthscale_and_a_tight_prior_holds_them_back():
    """Dimension 0 varies at s = 2, dimension 1 not at all; the estimate says s = 0.2 for both."""
    X, y = _rbf_task(2.0)
    est = _rbf_estimate(0.2)
    wide = calibrate(X, y, est, steps=(0.1, 0.3, 0.6, 1.6, 3.0, 10.0), sweeps=2, prior_std=None)
    assert float(wide.scales[0, 0]) / 0.2 > 4.0  # beyond what the default steps can reach
    assert float(wide.scales[0, 1]) <= 0.2  # the irrelevant dimension gets no shorter lengthscale
    narrow = calibrate(X, y, est, sweeps=2, steps=NARROW_STEPS, prior_std=None)
    assert float(narrow.scales[0, 0]) / 0.2 <= 2.0 * 1.4**2 * (1 + 1e-9)
    held = calibrate(X, y, est, steps=(0.1, 10.0), sweeps=2, prior_std=1e-3)
    assert torch.equal(held.scales, est.scales)  # any dilation costs more prior than it gains


def test_a_noise_prior_holds_the_noise_back(small_decoder):
    X, y = _data(2, n=30, d=2, seed=5)
    with torch.no_grad():
        est = small_decoder(X, y)
    free = calibrate(X, y, est, noise_prior_std=None)  # maximum likelihood
    assert not torch.equal(free.log_noise_ratio, est.log_noise_ratio)  # the data move it
    held = calibrate(X, y, est, noise_prior_std=1e-3)
    assert torch.equal(held.log_noise_ratio, est.log_noise_ratio)  # any factor costs > it gains
    # one noise step with the dilations fixed (no sweeps, no grid move: narrow steps of 1): the
    # prior's pull is the only difference, so the prior never moves the noise further
    fixed = dict(sweeps=0, steps=(1.0,))
    moved = lambda e: (e.log_noise_ratio - est.log_noise_ratio).abs()  # noqa: E731
    ml, mapped = calibrate(X, y, est, noise_prior_std=None, **fixed), calibrate(X, y, est, **fixed)
    assert torch.equal(ml.means, mapped.means)
    assert (moved(mapped) <= moved(ml) + 1e-12).all()
