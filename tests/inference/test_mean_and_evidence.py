"""The GLS mean, the profile outputscale given a mean, and the evidence check."""

import math

import pytest
import torch

from pfn_kernels.exact_gp import PROFILE_JITTER
from pfn_kernels.inference import InferenceConfig, decode_spectral_params
from pfn_kernels.inference.evidence import EVIDENCE_LENGTHSCALES, EVIDENCE_NOISE, evidence_check
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
