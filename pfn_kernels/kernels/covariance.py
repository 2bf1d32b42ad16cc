r"""The product spectral-mixture covariance matrix, evaluated the fastest way for its inputs.

On the CPU the full matrix goes through the cache-tiled autograd Function of
:mod:`pfn_kernels.kernels.tiled_kernel`; diagonals, accelerators and ``torch.func`` transforms use
plain tensor operations, one dimension factor (:func:`~pfn_kernels.kernels.bochner.dimension_factor`)
at a time. Both compute the same numbers (to rounding).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pfn_kernels.kernels.bochner import dimension_factor, negligible_components
from pfn_kernels.kernels.tiled_kernel import SpectralProduct


def spectral_mixture_covariance(
    x1: Tensor,
    x2: Tensor,
    weights: Tensor,
    means: Tensor,
    scales: Tensor,
    outputscale: Tensor | None = None,
    diag: bool = False,
    min_weight: float = 0.0,
    unit_frequency: float = 0.0,
) -> Tensor:
    r"""Closed-form product spectral-mixture kernel.

    .. math::
        k(\mathbf x, \mathbf x') = \sigma_f^2 \prod_j \sum_q w_{jq}
            e^{-2\pi^2 \tau_j^2 s_{jq}^2} \cos(2\pi \mu_{jq} \tau_j)

    :param x1: `(*batch, n, d)` inputs.
    :param x2: `(*batch, m, d)` inputs (`m == n` when ``diag``).
    :param weights: `(*kbatch, d, Q)`; ``means`` and ``scales`` likewise. ``kbatch`` broadcasts
        against the inputs' batch dimensions from the right, as in GPyTorch.
    :param outputscale: `(*kbatch)` or ``None`` (unit outputscale: the kernel *shape*).
    :param diag: return only the diagonal `(*batch, n)` of :math:`k(x1_i, x2_i)`.
    :param min_weight: leave out components whose weight is at most this in every batch member
        (each factor changes by at most ``min_weight``; see :func:`negligible_components`).
    :param unit_frequency: take the cosine of components with frequency at most this as 1.
    :return: `(*batch, n, m)` covariance, or `(*batch, n)` with ``diag``.
    """
    d = x1.shape[-1]
    if weights.shape[-2] != d:
        raise ValueError(f"Kernel has d={weights.shape[-2]} dimensions but inputs have d={d}.")
    w, mu, s = (t.to(x1) for t in (weights, means, scales))
    if min_weight > 0 or unit_frequency > 0:
        skip, unit = negligible_components(w, mu, min_weight, unit_frequency)
    else:
        skip = unit = [frozenset()] * d
    if x1.device.type == "cpu" and not diag and not _functorch_active():
        out = _tiled_covariance(x1, x2, w, mu, s, tuple(skip), tuple(unit))
    else:  # an accelerator (a few large operations per component suit it better than tiles),
        # diagonals, and torch.func transforms (vmap, jacrev, ...), which need plain tensor ops
        out = None
        for j in range(d):
            if diag:
                tau = (x1[..., :, j] - x2[..., :, j]).unsqueeze(-1)  # (*b, n, 1)
                wj, mj, sj = w[..., None, j, :], mu[..., None, j, :], s[..., None, j, :]  # (*kb, 1, Q)
            else:
                tau = (x1[..., :, None, j] - x2[..., None, :, j]).unsqueeze(-1)  # (*b, n, m, 1)
                wj, mj, sj = (t[..., None, None, j, :] for t in (w, mu, s))  # (*kb, 1, 1, Q)
            comp = dimension_factor(tau, wj, mj, sj, skip[j], unit[j])
            out = comp if out is None else out * comp
    if outputscale is not None:
        os = outputscale.to(x1)
        out = out * (os[..., None] if diag else os[..., None, None])
    return out


def _functorch_active() -> bool:
    """Whether a ``torch.func`` transform is running (the tiled Function has no rules for them)."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False


def _tiled_covariance(x1: Tensor, x2: Tensor, w: Tensor, mu: Tensor, s: Tensor, skip: tuple, unit: tuple) -> Tensor:
    """The full matrix through :class:`~pfn_kernels.kernels.tiled_kernel.SpectralProduct` (flat batches)."""
    (n, d), (m, q) = x1.shape[-2:], (x2.shape[-2], w.shape[-1])
    kbatch = w.shape[:-2]
    batch = torch.broadcast_shapes(x1.shape[:-2], x2.shape[:-2], kbatch)
    flat = math.prod(batch)
    a = x1.expand(*batch, n, d).reshape(flat, n, d)
    b = x2.to(x1).expand(*batch, m, d).reshape(flat, m, d)
    if kbatch:
        w, mu, s = (t.expand(*batch, d, q).reshape(flat, d, q) for t in (w, mu, s))
    else:
        w, mu, s = (t.unsqueeze(0) for t in (w, mu, s))
    return SpectralProduct.apply(a, b, w, mu, s, skip, unit).reshape(*batch, n, m)
