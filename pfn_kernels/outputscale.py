r"""Outputscale (signal variance) estimators given a kernel *shape*.

With :math:`\mathbf y \sim \mathcal N(0, \alpha K)` and :math:`K` the unit-outputscale kernel
matrix, :math:`\mathbb E\,\|\mathbf y\|^2 = \alpha\, \mathrm{tr}\, K`, so

.. math::
    \hat\alpha = \frac{\|\mathbf y\|^2}{\mathrm{tr}\, K}

is unbiased (arXiv 2601.21731, Prop. 4.2). For standardized targets and a unit-variance shape
(:math:`K_{ii} = 1`) it is identically :math:`(n-1)/n \approx 1`: it carries information only for
unnormalized realizations, and with several realizations sharing one kernel.

For noisy, standardized data the maximum-likelihood ("profile") outputscale given a
noise-to-signal ratio :math:`r` is

.. math::
    \hat\alpha = \frac{1}{n}\, \mathbf y^\top (K + r I)^{-1} \mathbf y ,

which maximizes :math:`\log \mathcal N(\mathbf y; 0, \alpha (K + rI))` over :math:`\alpha`.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
    y: Tensor, kernel_shape: Tensor, noise_ratio: Tensor, jitter: float = 1e-6
) -> Tensor:
    r"""Profile-likelihood outputscale :math:`\mathbf y^\top (K + rI)^{-1}\mathbf y / n`.

    :param y: `(*batch, n)` targets, or `(*batch, n, M)` realizations (averaged over M).
    :param kernel_shape: `(*batch, n, n)` unit-outputscale kernel matrix.
    :param noise_ratio: `(*batch)` noise-to-signal variance ratio :math:`r \ge 0`.
    :param jitter: added to the diagonal for numerical stability (relative to unit variance).
    :return: `(*batch)` outputscales. Computed in float64 and returned in ``y``'s dtype.
    """
    n = kernel_shape.shape[-1]
    eye = torch.eye(n, dtype=torch.float64, device=kernel_shape.device)
    a = kernel_shape.double() + (noise_ratio.double()[..., None, None] + jitter) * eye
    chol = torch.linalg.cholesky(a)
    rhs = y.double() if y.dim() == kernel_shape.dim() else y.double().unsqueeze(-1)
    sol = torch.cholesky_solve(rhs, chol)
    quad = (rhs * sol).sum(-2).mean(-1)
    return (quad / n).to(y.dtype)
