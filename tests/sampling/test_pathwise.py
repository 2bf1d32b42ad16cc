"""Tests for the exact random Fourier features of AmortizedSpectralKernel in BoTorch's pathwise API.

Tolerances come from the Monte Carlo sizes: a feature-map estimate of k averages L/2 cosines
(std at most ``outputscale / sqrt(L/2)``), and an empirical covariance of S paths has std about
``outputscale * sqrt(2 / S)``.
"""

from __future__ import annotations

import math

import pytest
import torch
from botorch.exceptions.errors import UnsupportedError
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.sampling.pathwise import draw_kernel_feature_paths, draw_matheron_paths
from botorch.sampling.pathwise.features import gen_kernel_features
from botorch.sampling.pathwise.posterior_samplers import get_matheron_path_model
from torch import Size

from pfn_kernels import AmortizedSingleTaskGP, AmortizedSpectralKernel, SpectralParams, fit_amortized
from pfn_kernels.network import SpectralDecoder
from pfn_kernels.sampling import sample_spectral_frequencies

DTYPE = torch.float64


@pytest.fixture(scope="module")
def decoder(tiny_decoder) -> SpectralDecoder:
    return tiny_decoder  # tests/conftest.py


def oscillating_params(batch=(), d=2) -> SpectralParams:
    """Two components per dimension, one RBF-like and one oscillating: a product kernel whose
    features need an independent random sign per dimension."""
    shape = (*batch, d, 2)
    w = torch.tensor([0.4, 0.6], dtype=DTYPE).expand(shape)
    means = torch.tensor([0.0, 1.5], dtype=DTYPE).expand(shape).clone()
    means[..., -1, 1] = 2.5  # dimensions differ
    scales = torch.tensor([0.6, 0.2], dtype=DTYPE).expand(shape)
    outputscale = torch.linspace(1.5, 0.7, max(1, math.prod(batch)), dtype=DTYPE).reshape(batch)
    return SpectralParams(w, means, scales, outputscale, torch.full(batch, 0.01, dtype=DTYPE))


def kernel_with(params: SpectralParams, **kwargs) -> AmortizedSpectralKernel:
    kernel = AmortizedSpectralKernel(batch_shape=params.batch_shape, **kwargs).to(DTYPE)
    kernel.set_spectral_params(params)
    return kernel


@pytest.mark.parametrize("batch", [(), (2,)])
def test_features_reproduce_the_kernel(batch):
    torch.manual_seed(0)
    kernel = kernel_with(oscillating_params(batch))
    num = 2**14
    fmap = gen_kernel_features(kernel, num_inputs=2, num_outputs=num)
    assert fmap.weight.shape == (*batch, num // 2, 2) and fmap.num_outputs == num
    x = torch.rand(6, 2, dtype=DTYPE)
    phi = fmap(x)  # (*batch, 6, L)
    assert phi.shape == (*batch, 6, num)
    approx = phi @ phi.transpose(-1, -2)
    exact = kernel(x).to_dense()
    tol = 5 * kernel.outputscale.max().item() / math.sqrt(num / 2)
    assert (approx - exact).abs().max() < tol


def test_features_respect_active_dims():
    torch.manual_seed(1)
    kernel = kernel_with(oscillating_params(), active_dims=(0, 2))
    num = 2**14
    fmap = gen_kernel_features(kernel, num_inputs=3, num_outputs=num)
    x = torch.rand(5, 3, dtype=DTYPE)
    approx = fmap(x) @ fmap(x).T
    assert (approx - kernel(x).to_dense()).abs().max() < 5 * 1.5 / math.sqrt(num / 2)


def test_frequencies_follow_the_mixture():
    torch.manual_seed(2)
    kernel = kernel_with(oscillating_params())
    omega = sample_spectral_frequencies(kernel, 40000)  # (L, d)
    assert omega.shape == (40000, 2)
    # Second moment of the symmetrized mixture: sum_q w_q (mu_q^2 + s_q^2).
    expected = 0.4 * 0.6**2 + 0.6 * (1.5**2 + 0.2**2)
    assert omega[:, 0].pow(2).mean().item() == pytest.approx(expected, rel=0.03)
    assert abs(omega[:, 1].mean().item()) < 0.05  # symmetric: random signs


def test_odd_number_of_features_is_rejected():
    with pytest.raises(UnsupportedError, match="even"):
        gen_kernel_features(kernel_with(oscillating_params()), num_inputs=2, num_outputs=7)


def test_prior_paths_have_the_kernel_covariance():
    """Through a SingleTaskGP with Normalize and Standardize: the paths apply both transforms."""
    g = torch.Generator().manual_seed(3)
    X = 4 * torch.rand(10, 2, generator=g, dtype=DTYPE)
    Y = torch.sin(X[:, :1]) * 3 + 1
    model = SingleTaskGP(X, Y, covar_module=AmortizedSpectralKernel(), input_transform=Normalize(2))
    model.covar_module.set_spectral_params(oscillating_params())
    model.eval()
    torch.manual_seed(4)
    S, L = 4000, 1024
    paths = draw_kernel_feature_paths(model, sample_shape=Size([S]), num_features=L)
    x = 4 * torch.rand(5, 2, generator=g, dtype=DTYPE)
    with torch.no_grad():
        values = paths(x)  # (S, 5), original units
        z = model.input_transform(x)
        kernel = model.covar_module(z).to_dense()
        phi = paths.feature_map(z)  # (5, L)
    std = model.outcome_transform.stdvs.squeeze()
    cov = torch.cov(values.T) / std**2
    sample_tol = 5 * 1.5 * math.sqrt(2 / S)  # paths around their own features
    feature_tol = 5 * 1.5 / math.sqrt(L / 2)  # the features around the kernel
    assert (cov - phi @ phi.T).abs().max() < sample_tol
    assert (cov - kernel).abs().max() < sample_tol + feature_tol
    mean = values.mean(0)
    offset = model.outcome_transform.means.squeeze()
    assert (mean - offset).abs().max() < 5 * std * math.sqrt(1.5 / S)


@pytest.mark.parametrize("m", [1, 2])
def test_posterior_paths_match_the_posterior(decoder, m):
    g = torch.Generator().manual_seed(5)
    X = torch.rand(15, 2, generator=g, dtype=DTYPE)
    Y = torch.cat([torch.sin(6 * X[:, :1]) + k * X[:, 1:] for k in range(m)], -1)
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    fit_amortized(model)
    torch.manual_seed(6)
    S = 2000
    paths = draw_matheron_paths(model, sample_shape=Size([S]))
    x = torch.rand(6, 2, generator=g, dtype=DTYPE)
    with torch.no_grad():
        values = paths(x)  # (S, 6) or (S, m, 6)
        post = model.posterior(x)
    assert values.shape == ((S, 6) if m == 1 else (S, m, 6))
    mean = post.mean.squeeze(-1) if m == 1 else post.mean.T
    var = post.variance.squeeze(-1) if m == 1 else post.variance.T
    sample_mean = values.mean(0)
    assert ((sample_mean - mean).abs() < 5 * (var / S).sqrt() + 1e-6).all()
    # Variances are approximate (finite features); a loose check that they are the right size.
    ratio = values.var(0) / var
    assert ((ratio > 0.6) & (ratio < 1.6)).all(), ratio


def test_thompson_sampling_step(decoder):
    g = torch.Generator().manual_seed(7)
    bounds = torch.tensor([[-2.0, 0.0], [2.0, 3.0]], dtype=DTYPE)
    X = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(12, 2, generator=g, dtype=DTYPE)
    Y = -(X**2).sum(-1, keepdim=True) + 0.1 * torch.cos(4 * X[:, :1])
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    fit_amortized(model)
    candidates = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(256, 2, generator=g, dtype=DTYPE)
    # One path: a deterministic model, evaluated over the candidate set.
    path_model = get_matheron_path_model(model)
    values = path_model(candidates)
    assert values.shape == (256, 1)
    best = candidates[values.squeeze(-1).argmax()]
    assert ((best >= bounds[0]) & (best <= bounds[1])).all()
    # A batch of 4 Thompson samples, and gradients for gradient-based path optimization.
    batch_model = get_matheron_path_model(model, sample_shape=Size([4]))
    x = candidates[:8].clone().requires_grad_(True)
    out = batch_model(x)
    assert out.shape == (4, 8, 1)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    picks = candidates[batch_model(candidates).squeeze(-1).argmax(-1)]
    assert picks.shape == (4, 2)
