"""Outputscale estimators: the unbiased trace estimator and the profile-likelihood stage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pfn_kernels import SpectralParams
from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.exact_gp import PROFILE_JITTER
from pfn_kernels.inference.outputscale import alpha_estimator, profile_outputscale
from pfn_kernels.spectral_params import SpectralEstimate

DTYPE = torch.float64


def kernel_shape(n=25, d=2, seed=0, batch=()) -> torch.Tensor:
    """A unit-outputscale (unit-diagonal) spectral-mixture kernel matrix, `(*batch, n, n)`."""
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, d, 2)
    w = torch.rand(shape, generator=g, dtype=DTYPE) + 0.1
    p = SpectralParams(
        weights=w / w.sum(-1, keepdim=True),
        means=2 * torch.rand(shape, generator=g, dtype=DTYPE),
        scales=0.3 + torch.rand(shape, generator=g, dtype=DTYPE),
        outputscale=torch.ones(batch, dtype=DTYPE),
        noise=torch.zeros(batch, dtype=DTYPE),
    )
    x = torch.rand(*batch, n, d, generator=g, dtype=DTYPE)
    return spectral_mixture_covariance(x, x, p.weights, p.means, p.scales)


def sample(cov: torch.Tensor, num: int, seed: int) -> torch.Tensor:
    """`(n, num)` draws from N(0, cov)."""
    n = cov.shape[-1]
    chol = torch.linalg.cholesky(cov + 1e-10 * torch.eye(n, dtype=cov.dtype))
    z = torch.randn(n, num, generator=torch.Generator().manual_seed(seed), dtype=cov.dtype)
    return chol @ z


def gaussian_loglik(alpha: float, y: np.ndarray, a: np.ndarray) -> float:
    """sum over columns of log N(y_m; 0, alpha * a), written out in numpy."""
    y = y.reshape(a.shape[0], -1)
    n, m = y.shape
    _, logdet = np.linalg.slogdet(alpha * a)
    quad = np.einsum("im,im->", y, np.linalg.solve(alpha * a, y))
    return -0.5 * (m * n * math.log(2 * math.pi) + m * logdet + quad)


# ---------------------------------------------------------------------------- alpha_estimator
def test_alpha_estimator_is_unbiased():
    alpha, n, draws = 2.7, 25, 4000
    K = kernel_shape(n=n, seed=1)
    y = sample(alpha * K, draws, seed=0)  # (n, draws)
    # One estimate per realization, batched: y (draws, n) with K (draws, n, n).
    estimates = alpha_estimator(y.T, K.expand(draws, n, n))
    assert estimates.shape == torch.Size([draws])
    mean, stderr = estimates.mean().item(), estimates.std().item() / math.sqrt(draws)
    assert abs(mean - alpha) < 3 * stderr, (mean, stderr)
    # The spread is the one the theory predicts: Var(y^T y) = 2 alpha^2 tr(K^2).
    predicted_std = alpha * math.sqrt(2 * torch.trace(K @ K).item()) / torch.trace(K).item()
    assert estimates.std().item() == pytest.approx(predicted_std, rel=0.1)


def test_alpha_estimator_multi_column_averages_columns():
    alpha, n, draws = 0.4, 20, 3000
    K = kernel_shape(n=n, seed=2)
    y = sample(alpha * K, draws, seed=1)  # (n, M) realizations sharing K
    pooled = alpha_estimator(y, K)
    assert pooled.shape == torch.Size([])
    singles = alpha_estimator(y.T, K.expand(draws, n, n))
    torch.testing.assert_close(pooled, singles.mean(), rtol=1e-12, atol=0)
    assert abs(pooled.item() - alpha) < 3 * singles.std().item() / math.sqrt(draws)


def test_alpha_estimator_closed_form_and_batches():
    K = kernel_shape(n=6, seed=3, batch=(2,))
    K = K * torch.tensor([1.0, 3.0], dtype=DTYPE)[:, None, None]  # traces 6 and 18
    y = torch.arange(12, dtype=DTYPE).reshape(2, 6)
    expected = torch.stack([(y[0] ** 2).sum() / 6, (y[1] ** 2).sum() / 18])
    torch.testing.assert_close(alpha_estimator(y, K), expected, rtol=1e-12, atol=0)
    y3 = torch.randn(2, 6, 4, dtype=DTYPE, generator=torch.Generator().manual_seed(0))
    out = alpha_estimator(y3, K)
    assert out.shape == torch.Size([2])
    torch.testing.assert_close(
        out, y3.pow(2).sum(-2).mean(-1) / K.diagonal(dim1=-2, dim2=-1).sum(-1)
    )


# ---------------------------------------------------------------------------- profile_outputscale
def estimate(n=15, d=2, seed=4, batch=1, log_r=-3.0, log_os=0.0):
    """Inputs x `(B, n, d)`, an estimate with batch `(B,)`, and its unit-outputscale K."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, d, 2)
    w = torch.rand(shape, generator=g, dtype=DTYPE) + 0.1
    est = SpectralEstimate(
        weights=w / w.sum(-1, keepdim=True),
        means=2 * torch.rand(shape, generator=g, dtype=DTYPE),
        scales=0.3 + torch.rand(shape, generator=g, dtype=DTYPE),
        log_noise_ratio=torch.full((batch,), log_r, dtype=DTYPE),
        log_outputscale=torch.full((batch,), log_os, dtype=DTYPE),
    )
    x = torch.rand(batch, n, d, generator=g, dtype=DTYPE)
    return x, est, spectral_mixture_covariance(x, x, est.weights, est.means, est.scales)


@pytest.mark.parametrize("log_r", [-12.0, -3.0, 0.0])
def test_profile_outputscale_is_the_likelihood_argmax(log_r):
    """With no prior weight the stage returns argmax_alpha N(y; 0, alpha (K + (r + 1e-6) I))."""
    n = 15
    x, est, K = estimate(n=n, log_r=log_r)
    a = K[0] + (math.exp(log_r) + PROFILE_JITTER) * torch.eye(n, dtype=DTYPE)
    y = sample(1.8 * a, 1, seed=2)[:, 0]
    value = profile_outputscale(x, y[None], est, prior_count=0.0).item()
    a_np, y_np = a.numpy(), y.numpy()
    # Closed form of the maximizer: d/dalpha [-n/2 log alpha - q/(2 alpha)] = 0  =>  alpha = q / n.
    assert value == pytest.approx(y_np @ np.linalg.solve(a_np, y_np) / n, rel=1e-8)
    # Brute force: a fine log-spaced grid around the estimate.
    grid = np.exp(np.linspace(math.log(value) - 2, math.log(value) + 2, 4001))
    values = np.array([gaussian_loglik(g, y_np, a_np) for g in grid])
    assert grid[values.argmax()] == pytest.approx(value, rel=1e-3)
    assert values.max() <= gaussian_loglik(value, y_np, a_np) + 1e-9


def test_profile_outputscale_shrinks_towards_the_guess():
    """(q + n0 * guess) / (n + n0): the inverse-gamma posterior mode; finite at n = 1, y = 0."""
    n, n0, guess = 10, 3.0, 2.5
    x, est, K = estimate(n=n, log_os=math.log(guess))
    y = sample(K[0] + 0.1 * torch.eye(n, dtype=DTYPE), 1, seed=5)[:, 0]
    q = (profile_outputscale(x, y[None], est, prior_count=0.0) * n).item()
    value = profile_outputscale(x, y[None], est, prior_count=n0).item()
    assert value == pytest.approx((q + n0 * guess) / (n + n0), rel=1e-12)
    x1, est1, _ = estimate(n=1, log_os=math.log(guess))
    zero = torch.zeros(1, 1, dtype=DTYPE)
    assert profile_outputscale(x1, zero, est1).item() == pytest.approx(guess / 2, rel=1e-12)


def test_profile_outputscale_multi_column_and_unbiased():
    alpha, n, draws = 0.6, 12, 2000
    x, est, K = estimate(n=n, seed=5, log_r=math.log(0.1))
    a = K[0] + (0.1 + PROFILE_JITTER) * torch.eye(n, dtype=DTYPE)
    y = sample(alpha * a, draws, seed=3)  # (n, M)
    pooled = profile_outputscale(x, y[None], est, prior_count=0.0)
    many = SpectralEstimate(*(t.expand(draws, *t.shape[1:]) for t in (
        est.weights, est.means, est.scales, est.log_noise_ratio, est.log_outputscale)))
    singles = profile_outputscale(x.expand(draws, n, 2), y.T, many, prior_count=0.0)
    torch.testing.assert_close(pooled[0], singles.mean(), rtol=1e-10, atol=0)
    # E[y^T (K + rI)^{-1} y] = alpha n under the model, so the estimate is unbiased.
    assert abs(singles.mean().item() - alpha) < 3 * singles.std().item() / math.sqrt(draws)


def test_profile_outputscale_dtype_and_subsample():
    n = 40
    x, est, K = estimate(n=n, seed=6)
    y = sample(K[0] + 0.05 * torch.eye(n, dtype=DTYPE), 1, seed=4)[:, 0][None]
    est32 = SpectralEstimate(*(t.float() for t in (
        est.weights, est.means, est.scales, est.log_noise_ratio, est.log_outputscale)))
    out32 = profile_outputscale(x.float(), y.float(), est32)
    out64 = profile_outputscale(x, y, est)
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=0)
    # Beyond max_points: exactly the value of the strided subsample.
    torch.testing.assert_close(
        profile_outputscale(x, y, est, max_points=13), profile_outputscale(x[:, ::4], y[:, ::4], est)
    )


# ---------------------------------------------------------------------------- standardized data
def test_standardized_targets_with_unit_diagonal_kernel():
    """What the unbiased estimator says about standardized y with a unit-diagonal kernel shape.

    ``alpha_estimator`` = ||y||^2 / tr K = ||y||^2 / n. Standardizing with the unbiased standard
    deviation (``torch.std``, ddof=1) fixes ||y||^2 = n - 1, so the estimate is identically
    (n - 1) / n whatever K and y are; with ddof=0 it is identically 1. It carries no information
    here, which is why the profile likelihood, not this estimator, supplies the outputscale.
    """
    n = 30
    K = kernel_shape(n=n, seed=7, batch=(5,))
    assert torch.allclose(K.diagonal(dim1=-2, dim2=-1), torch.ones(5, n, dtype=DTYPE))
    raw = 3.0 + 5.0 * torch.randn(5, n, dtype=DTYPE, generator=torch.Generator().manual_seed(8))
    y1 = (raw - raw.mean(-1, keepdim=True)) / raw.std(-1, keepdim=True)  # ddof=1
    y0 = (raw - raw.mean(-1, keepdim=True)) / raw.std(-1, correction=0, keepdim=True)
    torch.testing.assert_close(alpha_estimator(y1, K), torch.full((5,), (n - 1) / n, dtype=DTYPE))
    torch.testing.assert_close(alpha_estimator(y0, K), torch.ones(5, dtype=DTYPE))
