r"""Outputscale (signal variance) estimators given a kernel *shape*.

With :math:`\mathbf y \sim \mathcal N(0, \alpha K)` and :math:`K` the unit-outputscale kernel
matrix, :math:`\mathbb E\,\|\mathbf y\|^2 = \alpha\, \mathrm{tr}\, K`, so

.. math::
    \hat\alpha = \frac{\|\mathbf y\|^2}{\mathrm{tr}\, K}

is unbiased (arXiv 2601.21731, Prop. 4.2). For standardized targets and a unit-variance shape
(:math:`K_{ii} = 1`) it is identically :math:`(n-1)/n \approx 1`: it carries information only for
unnormalized realizations, and with several realizations sharing one kernel.

For noisy, standardized data the maximum-likelihood ("profile") outputscale given a
noise-to-signal ratio :math:`r` is :math:`\mathbf y^\top (K + r I)^{-1} \mathbf y / n`, which
maximizes :math:`\log \mathcal N(\mathbf y; 0, \alpha (K + rI))` over :math:`\alpha`;
:func:`profile_outputscale`, the inference stage, shrinks it towards the decoder's own guess.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pfn_kernels.exact_gp import gls_quadratic_form, profile_quadratic_form
from pfn_kernels.inference.subsample import strided_subsample
from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.spectral_params import SpectralEstimate


def alpha_estimator(y: Tensor, kernel_shape: Tensor) -> Tensor:
    r"""The unbiased scale estimator :math:`\hat\alpha = \|\mathbf y\|^2 / \mathrm{tr}\,K`.

    :param y: `(*batch, n)` one realization, or `(*batch, n, M)` realizations sharing the kernel
        (the estimate averages over the M columns).
    :param kernel_shape: `(*batch, n, n)` unit-outputscale kernel matrix.
    :return: `(*batch)` estimates.
    """
    trace = kernel_shape.diagonal(dim1=-2, dim2=-1).sum(-1)
    if y.dim() == kernel_shape.dim():  # (*batch, n, M)
        energy = y.pow(2).sum(-2).mean(-1)
    else:
        energy = y.pow(2).sum(-1)
    return energy / trace


def profile_outputscale(
    x: Tensor,
    y: Tensor,
    est: SpectralEstimate,
    prior_count: float = 1.0,
    max_points: int = 2048,
    mean: Tensor | None = None,
) -> Tensor:
    r"""Profile-likelihood outputscale, shrunk towards the estimate's own guess.

    .. math::
        \hat\alpha = \frac{\mathbf y^\top (K + rI)^{-1} \mathbf y + n_0 \alpha_{dec}}{n + n_0}

    with K the estimate's unit-outputscale kernel on ``x``, r its noise-to-signal ratio,
    :math:`\alpha_{dec}` its guess and :math:`n_0` = ``prior_count``: the posterior mode under a
    conjugate inverse-gamma prior centred on the guess. It stays finite for n = 1 (where a
    standardized y is 0); a non-finite quadratic form is taken as n, that of :math:`\hat\alpha = 1`.

    :param x: `(B, n, d)` inputs; ``y`` `(B, n)` or `(B, n, M)` standardized targets.
    :param est: the estimate (batch `(B,)`).
    :param prior_count: :math:`n_0`, the guess's weight in points.
    :param max_points: points read (a strided subsample beyond).
    :param mean: `(B,)` a constant mean subtracted from y first (e.g. :func:`gls_mean`'s); default
        none (standardized y is centred already).
    :return: `(B,)` outputscales, in the dtype of the guess.
    """
    xs, ys, k = _kernel_on_subsample(x, y, est, max_points)
    if mean is not None:
        ys = ys - (mean[:, None] if ys.dim() == 2 else mean[:, None, None]).to(ys)
    quad, _, _ = profile_quadratic_form(k, ys, est.log_noise_ratio)
    return _shrunk_outputscale(quad, xs.shape[-2], est, prior_count)


def gls_mean_and_outputscale(
    x: Tensor,
    y: Tensor,
    est: SpectralEstimate,
    prior_count: float = 1.0,
    max_points: int = 2048,
) -> tuple[Tensor, Tensor]:
    r"""The GLS constant mean (:func:`gls_mean`) and the profile outputscale of its residual
    (:func:`profile_outputscale` with ``mean`` = that mean), from one kernel matrix and one
    Cholesky factorization (:func:`~pfn_kernels.exact_gp.gls_quadratic_form`): the joint maximum
    of the likelihood over mean and outputscale, the outputscale shrunk towards the guess.

    :return: ``(mean, outputscale)``, each `(B,)`: the mean in ``y``'s dtype (0 where the
        factorization fails, with the outputscale of :math:`\hat\alpha = 1` there), the
        outputscale in the guess's.
    """
    xs, ys, k = _kernel_on_subsample(x, y, est, max_points)
    c, quad, _ = gls_quadratic_form(k, ys, est.log_noise_ratio)
    return c.to(y.dtype), _shrunk_outputscale(quad, xs.shape[-2], est, prior_count)


def _kernel_on_subsample(
    x: Tensor, y: Tensor, est: SpectralEstimate, max_points: int
) -> tuple[Tensor, Tensor, Tensor]:
    """A strided subsample of at most ``max_points`` points and the estimate's unit kernel on it."""
    xs, ys = strided_subsample(x, y, max_points)  # x (B, n, d); y (B, n) or (B, n, M)
    return xs, ys, spectral_mixture_covariance(xs, xs, est.weights, est.means, est.scales)


def _shrunk_outputscale(quad: Tensor, n: int, est: SpectralEstimate, prior_count: float) -> Tensor:
    """:math:`(q + n_0 \alpha_{dec}) / (n + n_0)`, a non-finite q read as n."""
    guess = est.log_outputscale.exp()
    quad = torch.where(torch.isfinite(quad), quad, torch.full_like(quad, float(n)))
    return ((quad + prior_count * guess.double()) / (n + prior_count)).to(guess.dtype)


def gls_mean(x: Tensor, y: Tensor, est: SpectralEstimate, max_points: int = 2048) -> Tensor:
    r"""The generalized-least-squares constant mean under the estimate's kernel and noise ratio,
    :math:`\hat c = \mathbf 1^\top A^{-1}\mathbf y / \mathbf 1^\top A^{-1}\mathbf 1` with
    :math:`A = K + rI` (:func:`~pfn_kernels.exact_gp.gls_quadratic_form`): the maximum-likelihood
    mean of the GP. Unlike the sample mean it discounts clustered points (a BO design piled up
    near an optimum) and, for a smooth kernel, a trend across the domain.

    :param x: `(B, n, d)` inputs; ``y`` `(B, n)` or `(B, n, M)` targets.
    :param est: the estimate (batch `(B,)`).
    :param max_points: points read (a strided subsample beyond).
    :return: `(B,)` means in ``y``'s dtype (0 where the factorization fails).
    """
    _, ys, k = _kernel_on_subsample(x, y, est, max_points)
    c, _, _ = gls_quadratic_form(k, ys, est.log_noise_ratio)
    return c.to(y.dtype)


__all__ = ["alpha_estimator", "gls_mean", "gls_mean_and_outputscale", "profile_outputscale"]
