"""Bochner's theorem, numerically: the spectral density and the kernel are a Fourier pair."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pfn_kernels import AmortizedSpectralKernel, SpectralParams
from pfn_kernels.kernels.bochner import (
    density_from_kernel,
    exclusive_products,
    kernel_from_density,
    spectral_density,
)
from pfn_kernels.kernels.covariance import spectral_mixture_covariance

DTYPE = torch.float64
TAUS = torch.tensor([0.0, 0.05, 0.17, 0.4, 0.9, 1.6, 2.5], dtype=DTYPE)


def params(batch=(), d=3, q=3, seed=0, min_scale=0.1) -> SpectralParams:
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, d, q)
    w = torch.rand(shape, generator=g, dtype=DTYPE) + 0.05
    return SpectralParams(
        weights=w / w.sum(-1, keepdim=True),
        means=4.0 * torch.rand(shape, generator=g, dtype=DTYPE),
        scales=min_scale + 0.8 * torch.rand(shape, generator=g, dtype=DTYPE),
        outputscale=1.0 + torch.rand(batch, generator=g, dtype=DTYPE),
        noise=torch.zeros(batch, dtype=DTYPE),
    )


def per_dimension_kernel(p: SpectralParams, tau: torch.Tensor) -> torch.Tensor:
    """`(*batch, d, T)` shape-kernel factors k_j(tau), evaluated through AmortizedSpectralKernel."""
    out = []
    for j in range(p.num_dims):
        pj = SpectralParams(
            p.weights[..., j : j + 1, :],
            p.means[..., j : j + 1, :],
            p.scales[..., j : j + 1, :],
            torch.ones_like(p.outputscale),
            p.noise,
        )
        kernel = AmortizedSpectralKernel().double()
        kernel.set_spectral_params(pj)
        with torch.no_grad():
            k = kernel(tau[:, None], torch.zeros(1, 1, dtype=DTYPE)).to_dense()  # (*b, T, 1)
        out.append(k[..., 0])
    return torch.stack(out, dim=-2)


def numpy_density(omega: np.ndarray, w, mu, s) -> np.ndarray:
    """(d, L) symmetrized Gaussian mixture, written independently of the library."""
    w, mu, s = (np.asarray(t, dtype=float)[..., None] for t in (w, mu, s))

    def gauss(m):
        return np.exp(-0.5 * ((omega - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))

    return (0.5 * w * (gauss(mu) + gauss(-mu))).sum(-2)


def frequency_limit(p: SpectralParams) -> float:
    return float((p.means + 12 * p.scales).max())


# ---------------------------------------------------------------------------- density -> kernel
def test_density_integrates_to_kernel_symmetric_grid():
    p = params(d=3, q=3, seed=1)
    limit = frequency_limit(p)
    omega = torch.linspace(-limit, limit, 40001, dtype=DTYPE)
    density = spectral_density(omega, p)  # (d, L)
    numeric = kernel_from_density(TAUS, omega, density)  # (d, T)
    exact = per_dimension_kernel(p, TAUS)
    torch.testing.assert_close(numeric, exact, rtol=0, atol=1e-6)
    # The full kernel is the outputscale times the product of the per-dimension transforms.
    kernel = AmortizedSpectralKernel().double()
    kernel.set_spectral_params(p)
    x1 = torch.stack([TAUS, 0.5 * TAUS, -TAUS], dim=-1)  # (T, 3): lag tau_j in dimension j
    x2 = torch.zeros(1, 3, dtype=DTYPE)
    with torch.no_grad():
        full = kernel(x1, x2).to_dense()[:, 0]
    lags = torch.stack([TAUS, 0.5 * TAUS, -TAUS])  # (d, T)
    per_dim = torch.stack(
        [kernel_from_density(lags[j], omega, density[j : j + 1])[0] for j in range(3)]
    )
    torch.testing.assert_close(p.outputscale * per_dim.prod(0), full, rtol=0, atol=1e-6)


def test_density_integrates_to_kernel_one_sided_grid():
    p = params(d=2, q=4, seed=2)
    omega = torch.linspace(0.0, frequency_limit(p), 20001, dtype=DTYPE)
    numeric = kernel_from_density(TAUS, omega, spectral_density(omega, p))
    torch.testing.assert_close(numeric, per_dimension_kernel(p, TAUS), rtol=0, atol=1e-6)


def test_independent_numpy_trapezoid():
    p = params(d=2, q=3, seed=3)
    limit = frequency_limit(p)
    omega = np.linspace(-limit, limit, 40001)
    density = numpy_density(omega, p.weights, p.means, p.scales)  # (d, L)
    np.testing.assert_allclose(
        density, spectral_density(torch.from_numpy(omega), p).numpy(), rtol=1e-12, atol=1e-14
    )
    exact = per_dimension_kernel(p, TAUS).numpy()
    for t, tau in enumerate(TAUS.tolist()):
        for j in range(p.num_dims):
            value = np.trapezoid(density[j] * np.cos(2 * np.pi * omega * tau), omega)
            assert value == pytest.approx(exact[j, t], abs=1e-6)


def test_kernel_from_density_batched():
    p = params(batch=(2, 3), d=2, q=2, seed=4)
    omega = torch.linspace(0.0, frequency_limit(p), 10001, dtype=DTYPE)
    density = spectral_density(omega, p)
    assert density.shape == torch.Size([2, 3, 2, 10001])
    numeric = kernel_from_density(TAUS, omega, density)
    assert numeric.shape == torch.Size([2, 3, 2, len(TAUS)])
    torch.testing.assert_close(numeric, per_dimension_kernel(p, TAUS), rtol=0, atol=1e-6)


def test_kernel_from_density_of_single_gaussian_is_closed_form():
    # S = N(0, s^2) (symmetric, mean 0)  ->  k(tau) = exp(-2 pi^2 s^2 tau^2).
    s = 0.7
    omega = torch.linspace(-12 * s, 12 * s, 8001, dtype=DTYPE)
    density = torch.exp(-0.5 * (omega / s) ** 2) / (s * math.sqrt(2 * math.pi))
    numeric = kernel_from_density(TAUS, omega, density)
    torch.testing.assert_close(
        numeric, torch.exp(-2 * math.pi**2 * s**2 * TAUS**2), rtol=0, atol=1e-9
    )


# ---------------------------------------------------------------------------- kernel -> density
def test_density_from_kernel_recovers_spectral_density():
    p = params(d=2, q=3, seed=5, min_scale=0.25)
    # k_j(tau) decays like exp(-2 pi^2 s^2 tau^2): below 1e-15 for tau >= 7.5 when s >= 0.25.
    tau = torch.linspace(0.0, 8.0, 8001, dtype=DTYPE)
    k = per_dimension_kernel(p, tau)  # (d, T)
    omega = torch.linspace(-6.0, 6.0, 121, dtype=DTYPE)
    recovered = density_from_kernel(omega, tau, k)
    expected = spectral_density(omega, p)
    torch.testing.assert_close(recovered, expected, rtol=0, atol=1e-6)
    # Same from a symmetric lag grid.
    tau_sym = torch.linspace(-8.0, 8.0, 16001, dtype=DTYPE)
    recovered_sym = density_from_kernel(omega, tau_sym, per_dimension_kernel(p, tau_sym))
    torch.testing.assert_close(recovered_sym, expected, rtol=0, atol=1e-6)


def test_round_trip_density_kernel_density():
    p = params(d=1, q=2, seed=6, min_scale=0.3)
    omega = torch.linspace(0.0, frequency_limit(p), 3001, dtype=DTYPE)
    tau = torch.linspace(0.0, 6.0, 2401, dtype=DTYPE)
    k = kernel_from_density(tau, omega, spectral_density(omega, p))
    back = density_from_kernel(omega[::50], tau, k)
    torch.testing.assert_close(back, spectral_density(omega[::50], p), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- density properties
@pytest.mark.parametrize("seed", range(3))
def test_density_is_normalized_symmetric_and_nonnegative(seed):
    p = params(batch=(2,), d=3, q=4, seed=seed)
    limit = frequency_limit(p)
    omega = torch.linspace(-limit, limit, 40001, dtype=DTYPE)
    density = spectral_density(omega, p)
    assert (density >= 0).all()
    mass = torch.trapezoid(density, omega, dim=-1)
    torch.testing.assert_close(mass, torch.ones(2, 3, dtype=DTYPE), rtol=0, atol=1e-10)
    torch.testing.assert_close(density, density.flip(-1), rtol=1e-12, atol=1e-15)
    # Mass 1 is k_j(0) = 1, the unit-outputscale kernel shape.
    torch.testing.assert_close(
        kernel_from_density(torch.zeros(1, dtype=DTYPE), omega, density)[..., 0], mass
    )


def test_density_peaks_at_the_mixture_means():
    p = SpectralParams(
        weights=torch.tensor([[1.0]], dtype=DTYPE),
        means=torch.tensor([[2.5]], dtype=DTYPE),
        scales=torch.tensor([[0.1]], dtype=DTYPE),
        outputscale=torch.tensor(1.0, dtype=DTYPE),
        noise=torch.tensor(0.0, dtype=DTYPE),
    )
    omega = torch.linspace(-5, 5, 1001, dtype=DTYPE)
    density = spectral_density(omega, p)[0]
    peaks = omega[density > 0.99 * density.max()]
    torch.testing.assert_close(peaks.abs(), torch.full_like(peaks, 2.5), rtol=0, atol=0.02)
    # Height of each half-Gaussian peak: 0.5 / (s sqrt(2 pi)).
    assert density.max().item() == pytest.approx(0.5 / (0.1 * math.sqrt(2 * math.pi)), rel=1e-9)


# ---------------------------------------------------------------------------- closed form helper
def test_spectral_mixture_covariance_outputscale_none_is_shape():
    p = params(d=2, q=2, seed=7)
    x = torch.rand(5, 2, dtype=DTYPE, generator=torch.Generator().manual_seed(0))
    shape = spectral_mixture_covariance(x, x, p.weights, p.means, p.scales)
    full = spectral_mixture_covariance(x, x, p.weights, p.means, p.scales, p.outputscale)
    torch.testing.assert_close(full, p.outputscale * shape)
    torch.testing.assert_close(shape.diagonal(), torch.ones(5, dtype=DTYPE))
    with pytest.raises(ValueError, match="d=2 dimensions but inputs have d=3"):
        spectral_mixture_covariance(
            torch.rand(4, 3), torch.rand(4, 3), p.weights, p.means, p.scales
        )


def test_exclusive_products_without_division():
    f = torch.tensor([[2.0, 0.0, 3.0, -1.5], [0.5, 4.0, 1.0, 2.0]], dtype=torch.float64)
    want = torch.stack([torch.cat([f[:, :j], f[:, j + 1:]], -1).prod(-1) for j in range(4)], -1)
    torch.testing.assert_close(exclusive_products(f, -1), want, rtol=0, atol=0)
    assert exclusive_products(f, -1)[0, 1] == -9.0  # the zero factor's own slot is not 0
    torch.testing.assert_close(exclusive_products(f.T, 0), want.T, rtol=0, atol=0)
    assert torch.equal(exclusive_products(f[:, :1], -1), torch.ones(2, 1, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dimension_factor_per_coordinate_cosines(dtype):
    """With the coordinates given, cos(a(x1 - x2)) = cos(a x1) cos(a x2) + sin(a x1) sin(a x2):
    the same factor (and gradients) as with one cosine per entry, skipped and unit-cosine
    components included."""
    from pfn_kernels.kernels.bochner import dimension_factor

    g = torch.Generator().manual_seed(3)
    x1 = torch.rand(2, 6, generator=g, dtype=dtype).requires_grad_()
    x2 = torch.rand(2, 5, generator=g, dtype=dtype)
    a, b = x1[:, :, None, None], x2[:, None, :, None]  # (2, 6, 1, 1), (2, 1, 5, 1)
    tau = a - b
    w = torch.softmax(torch.randn(4, generator=g, dtype=dtype), -1)
    mu = 4 * torch.rand(4, generator=g, dtype=dtype)
    s = 0.05 + torch.rand(4, generator=g, dtype=dtype)
    for skip, unit in [(frozenset(), frozenset()), (frozenset({2}), frozenset({0}))]:
        plain = dimension_factor(tau, w, mu, s, skip, unit)
        split = dimension_factor(tau, w, mu, s, skip, unit, coordinates=(a, b))
        tol = dict(rtol=1e-12, atol=1e-13) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(split, plain, **tol)
        gk = torch.randn(plain.shape, generator=g, dtype=dtype)
        (g_plain,) = torch.autograd.grad(plain, x1, gk)
        (g_split,) = torch.autograd.grad(split, x1, gk)
        torch.testing.assert_close(g_split, g_plain, **(tol if dtype == torch.float64 else dict(rtol=1e-4, atol=3e-5)))
