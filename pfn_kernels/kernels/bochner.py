r"""Bochner's theorem for per-dimension spectral mixtures.

A stationary kernel is the Fourier transform of a non-negative spectral density. With frequencies
:math:`\omega` in cycles per unit input,

.. math::

    k(\tau) = \int_{-\infty}^{\infty} S(\omega)\, e^{2\pi i \omega \tau}\, d\omega
            = \int_{-\infty}^{\infty} S(\omega) \cos(2\pi \omega \tau)\, d\omega,
    \qquad
    S(\omega) = \int_{-\infty}^{\infty} k(\tau) \cos(2\pi \omega \tau)\, d\tau .

For the symmetrized Gaussian mixture
:math:`S_j(\omega) = \sum_q \tfrac{w_{jq}}{2}\,[\mathcal N(\omega; \mu_{jq}, s_{jq}^2) +
\mathcal N(\omega; -\mu_{jq}, s_{jq}^2)]` the transform is closed-form,
:math:`k_j(\tau) = \sum_q w_{jq} e^{-2\pi^2 \tau^2 s_{jq}^2} \cos(2\pi \mu_{jq} \tau)`, and the
product over dimensions of these is the kernel of :class:`~pfn_kernels.AmortizedSpectralKernel`.

This module holds the closed forms (one dimension's factor, the density, numerical transforms
both ways); :func:`~pfn_kernels.kernels.covariance.spectral_mixture_covariance` evaluates the
full matrix.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pfn_kernels.spectral_params import SpectralParams

#: :math:`2\pi` and :math:`2\pi^2`: a frequency in cycles per unit times :math:`2\pi` is an angular
#: frequency; :math:`e^{-2\pi^2\tau^2 s^2}` is the transform of a Gaussian of std :math:`s`.
TWO_PI = 2.0 * math.pi
TWO_PI_SQ = 2.0 * math.pi**2


def dimension_factor(
    tau: Tensor, weights: Tensor, means: Tensor, scales: Tensor, skip: frozenset[int] = frozenset(),
    unit_cosine: frozenset[int] = frozenset(), coordinates: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    r"""One dimension's factor of the product kernel,
    :math:`\sum_q w_q e^{-2\pi^2 \tau^2 s_q^2} \cos(2\pi \mu_q \tau)`.

    The components are added one at a time (about six elementwise passes over ``tau``'s shape
    each, three without the cosine), never materializing a tensor with a component dimension: the
    cost of a kernel evaluation is in these passes.

    :param tau: differences with a trailing singleton component dimension, e.g. `(*b, n, m, 1)`.
    :param weights: `(..., Q)`, broadcastable against ``tau``; ``means`` and ``scales`` likewise.
    :param skip: components left out (see :func:`negligible_components`).
    :param unit_cosine: components whose cosine is taken as 1 (frequency at the floor).
    :param coordinates: ``(x1, x2)`` with ``tau = x1 - x2`` (e.g. `(*b, n, 1, 1)` and
        `(*b, 1, m, 1)`): the cosines are then taken per coordinate,
        :math:`\cos(a\tau) = \cos(ax_1)\cos(ax_2) + \sin(ax_1)\sin(ax_2)`, two products per
        entry instead of a cosine (same values to rounding).
    :return: the sum over the Q components, ``tau``'s shape without its last dimension (broadcast).
    """
    t = tau.squeeze(-1)
    t2 = t.square()
    decay, omega = -TWO_PI_SQ * scales.square(), TWO_PI * means  # all components at once
    if coordinates is not None:
        x1, x2 = (x.squeeze(-1) for x in coordinates)
    out = None
    for q in range(weights.shape[-1]):
        if q in skip:
            continue
        term = torch.exp(t2 * decay[..., q])
        if q not in unit_cosine:
            if coordinates is None:
                term = term * torch.cos(t * omega[..., q])
            else:
                p1, p2 = x1 * omega[..., q], x2 * omega[..., q]
                term = term * torch.addcmul(torch.cos(p1) * torch.cos(p2), torch.sin(p1), torch.sin(p2))
        out = term * weights[..., q] if out is None else torch.addcmul(out, term, weights[..., q])
    if out is None:  # every component skipped: the factor is 0
        out = torch.zeros_like(t2 * weights[..., 0])
    return out


def exclusive_products(factors: Tensor, dim: int = -1) -> Tensor:
    r""":math:`\prod_{i \ne j} F_i` for every j along ``dim``, without division (a factor of an
    oscillating kernel can be 0): the product of the factors before j times that of those after.
    The derivative of a product kernel with respect to one dimension's lag is this times that
    dimension's own derivative."""
    ones = torch.ones_like(factors.narrow(dim, 0, 1))
    before = torch.cat([ones, factors.narrow(dim, 0, factors.shape[dim] - 1)], dim).cumprod(dim)
    flipped = factors.flip(dim)
    after = torch.cat([ones, flipped.narrow(dim, 0, factors.shape[dim] - 1)], dim).cumprod(dim).flip(dim)
    return before * after


def negligible_components(
    weights: Tensor, means: Tensor, min_weight: float = 0.0, unit_frequency: float = 0.0
) -> tuple[list[frozenset[int]], list[frozenset[int]]]:
    r"""Per dimension, the components that can be left out and those whose cosine is 1.

    A component with :math:`w_{jq} \le` ``min_weight`` in every batch member changes each factor
    (a weighted sum of terms of modulus at most 1) by at most ``min_weight``; one with
    :math:`\mu_{jq} \le` ``unit_frequency`` has :math:`1 - \cos(2\pi\mu\tau) \le
    2\pi^2\mu^2\tau^2`. With both thresholds 0 (the default) nothing is dropped but exact zeros.

    :param weights: `(*batch, d, Q)`; ``means`` likewise.
    :return: two lists of d sets of component indices.
    """
    d = weights.shape[-2]
    if min_weight < 0 or unit_frequency < 0:
        raise ValueError("min_weight and unit_frequency must be >= 0.")
    w_max = weights.detach().reshape(-1, *weights.shape[-2:]).amax(0)  # (d, Q)
    mu_max = means.detach().reshape(-1, *means.shape[-2:]).amax(0)
    small = (w_max <= min_weight).tolist()
    flat = (mu_max <= unit_frequency).tolist()
    skip = [frozenset(q for q, s in enumerate(small[j]) if s) for j in range(d)]
    unit = [frozenset(q for q, f in enumerate(flat[j]) if f) for j in range(d)]
    return skip, unit


def rbf_dimensions(skip: list[frozenset[int]], unit: list[frozenset[int]], num_components: int) -> dict[int, int]:
    r"""The dimensions whose factor is one zero-frequency Gaussian once ``skip`` is left out.

    Such a factor is :math:`w_{jq} e^{-2\pi^2 s_{jq}^2 \tau_j^2}`, an RBF factor; all of them
    together are one exponential of a weighted squared distance,
    :math:`\prod_j w_{jq_j} \exp(-2\pi^2 \sum_j s_{jq_j}^2 \tau_j^2)`.

    :param skip: per dimension, the components left out (:func:`negligible_components`).
    :param unit: per dimension, the components whose cosine is 1.
    :param num_components: Q.
    :return: ``{dimension: the one component kept}``.
    """
    out = {}
    for j, (sk, un) in enumerate(zip(skip, unit)):
        kept = [q for q in range(num_components) if q not in sk]
        if len(kept) == 1 and kept[0] in un:
            out[j] = kept[0]
    return out


def spectral_density(omega: Tensor, params: SpectralParams) -> Tensor:
    r"""Per-dimension spectral density :math:`S_j(\omega)` of the *shape* kernel (outputscale 1).

    :param omega: `(L,)` frequencies in cycles per unit input (negative values allowed; the density
        is symmetric).
    :param params: spectral parameters with batch shape `(*batch)`.
    :return: `(*batch, d, L)` densities; each integrates to 1 over :math:`\omega \in \mathbb R`.
        Multiply by ``params.outputscale`` for the power spectral density of the full kernel
        (in a product kernel, only the product of the per-dimension integrals is identifiable).
    """
    omega = omega.to(params.weights)
    w, mu, s = (t[..., None] for t in (params.weights, params.means, params.scales))  # (*b, d, Q, 1)
    norm = 1.0 / (s * math.sqrt(2 * math.pi))
    pos = torch.exp(-0.5 * ((omega - mu) / s) ** 2)
    neg = torch.exp(-0.5 * ((omega + mu) / s) ** 2)
    return (0.5 * w * norm * (pos + neg)).sum(-2)


def kernel_from_density(tau: Tensor, omega: Tensor, density: Tensor) -> Tensor:
    r"""Numerical Bochner transform :math:`k(\tau) = \int S(\omega) \cos(2\pi\omega\tau) d\omega`.

    :param tau: `(T,)` lags.
    :param omega: `(L,)` increasing frequency grid covering the density's support. A grid on
        :math:`[0, \Omega]` is treated as one half of a symmetric density (the integral is doubled).
    :param density: `(..., L)` density values on ``omega``.
    :return: `(..., T)` kernel values (trapezoidal rule).
    """
    integrand = density[..., None, :] * torch.cos(2 * math.pi * tau[:, None] * omega[None, :])
    value = torch.trapezoid(integrand, omega, dim=-1)
    return 2.0 * value if bool(omega[0] >= 0) else value


def density_from_kernel(omega: Tensor, tau: Tensor, kernel_values: Tensor) -> Tensor:
    r"""Numerical inverse transform :math:`S(\omega) = \int k(\tau) \cos(2\pi\omega\tau) d\tau`.

    :param omega: `(L,)` frequencies.
    :param tau: `(T,)` increasing lag grid covering the kernel's support; a grid on :math:`[0, T]`
        is treated as one half of the even kernel.
    :param kernel_values: `(..., T)` kernel values on ``tau``.
    :return: `(..., L)` density values (trapezoidal rule).
    """
    integrand = kernel_values[..., None, :] * torch.cos(2 * math.pi * omega[:, None] * tau[None, :])
    value = torch.trapezoid(integrand, tau, dim=-1)
    return 2.0 * value if bool(tau[0] >= 0) else value
