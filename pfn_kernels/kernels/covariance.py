r"""The product spectral-mixture covariance matrix, evaluated the fastest way for its inputs.

A small kernel (at most :data:`SMALL_ELEMENTS` entry-dimension-component terms: the cross
covariance of a few acquisition candidates with the training points) is one broadcast expression,
a handful of tensor operations, because at that size each operation's fixed cost is the whole
cost. Above that, on the CPU the full matrix goes through the cache-tiled autograd Function of
:mod:`pfn_kernels.kernels.tiled_kernel`; diagonals, accelerators and ``torch.func`` transforms use
plain tensor operations, one dimension factor (:func:`~pfn_kernels.kernels.bochner.dimension_factor`)
at a time. All compute the same numbers (to rounding; the broadcast path evaluates every
component exactly, without the ``min_weight`` and ``unit_frequency`` shortcuts, which change
each factor by at most their documented bounds).

With those shortcuts, the dimensions whose spectrum is one zero-frequency Gaussian (an RBF
factor, e.g. those collapsed by :func:`pfn_kernels.inference.sparsity.sparsify`) are merged
first: together they are one exponential of a weighted squared distance
(:func:`_rbf_covariance`, GPyTorch's ``sq_dist`` as in its ``RBFKernel``), so a kernel whose
every dimension is collapsed costs what an RBF costs; the other dimensions take the paths above.
A small kernel with only some dimensions collapsed stays one broadcast expression (selecting
the columns of each group would cost more than the merge saves).
"""

from __future__ import annotations

import math

import torch
from gpytorch.kernels.kernel import sq_dist
from torch import Tensor

from pfn_kernels.kernels.bochner import (
    TWO_PI,
    TWO_PI_SQ,
    dimension_factor,
    negligible_components,
    rbf_dimensions,
)
from pfn_kernels.kernels.tiled_kernel import SpectralProduct

#: Below this many (entry, dimension, component) terms the kernel is one broadcast expression
#: (:func:`_broadcast_covariance`); above, the tiles or the per-dimension loop. The two cost the
#: same (value and candidate gradient, 1 thread) between about 1e5 and 3e5 terms; below, the
#: broadcast expression is up to 2x faster (the cross covariance of an acquisition step's
#: candidates and pruned baseline with 100 training points at d = 6, 4 × 5 × 100 × 6 × 4 terms:
#: 2.1 ms against 4.5 ms); above, the tiles are (``benchmarks/kernel_speed.py``; BENCHMARKS.md,
#: "Kernel evaluation and acquisition time").
SMALL_ELEMENTS = 1 << 17


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
        With either threshold > 0, the dimensions left with one zero-frequency component are
        merged into one exponential (see the module docstring).
    :return: `(*batch, n, m)` covariance, or `(*batch, n)` with ``diag``.
    """
    d = x1.shape[-1]
    if weights.shape[-2] != d:
        raise ValueError(f"Kernel has d={weights.shape[-2]} dimensions but inputs have d={d}.")
    w, mu, s = (t.to(x1) for t in (weights, means, scales))
    skip = unit = None
    if min_weight > 0 or unit_frequency > 0:
        skip, unit = negligible_components(w, mu, min_weight, unit_frequency)
        rbf = rbf_dimensions(skip, unit, w.shape[-1])
        # merged: always when every dimension is an RBF factor; for a few of them, only in a
        # large kernel (in a small one, splitting the columns costs more than it saves)
        if len(rbf) == d or (rbf and not _is_small(x1, x2, w, diag)):
            out = _rbf_covariance(x1, x2.to(x1), w, s, rbf, diag)
            rest = [j for j in range(d) if j not in rbf]
            if rest:
                out = out * _mixture_covariance(
                    x1[..., rest], x2[..., rest], w[..., rest, :], mu[..., rest, :], s[..., rest, :],
                    diag, [skip[j] for j in rest], [unit[j] for j in rest],
                )
            return _scaled(out, outputscale, diag)
    return _scaled(_mixture_covariance(x1, x2, w, mu, s, diag, skip, unit), outputscale, diag)


def _is_small(x1: Tensor, x2: Tensor, w: Tensor, diag: bool) -> bool:
    """Whether the kernel has at most :data:`SMALL_ELEMENTS` entry-dimension-component terms."""
    batch = _broadcast_numel(x1.shape[:-2], x2.shape[:-2], w.shape[:-2])
    entries = batch * x1.shape[-2] * (1 if diag else x2.shape[-2])
    return entries * w.shape[-2] * w.shape[-1] <= SMALL_ELEMENTS


def _scaled(out: Tensor, outputscale: Tensor | None, diag: bool) -> Tensor:
    """``out`` times the outputscale `(*kbatch)` (broadcast over the entries), if there is one."""
    if outputscale is None:
        return out
    os = outputscale.to(out)
    return out * (os[..., None] if diag else os[..., None, None])


def _mixture_covariance(
    x1: Tensor, x2: Tensor, w: Tensor, mu: Tensor, s: Tensor, diag: bool,
    skip: list[frozenset[int]] | None, unit: list[frozenset[int]] | None,
) -> Tensor:
    """The unit-outputscale kernel by the broadcast expression (small), the tiles (CPU) or the
    per-dimension loop; ``skip`` and ``unit`` (``None``: no shortcuts) apply to the latter two."""
    if _is_small(x1, x2, w, diag):
        return _broadcast_covariance(x1, x2.to(x1), w, mu, s, diag)
    d = x1.shape[-1]
    if skip is None or unit is None:
        skip = unit = [frozenset()] * d
    if x1.device.type == "cpu" and not diag and not _functorch_active():
        return _tiled_covariance(x1, x2, w, mu, s, tuple(skip), tuple(unit))
    # an accelerator (a few large operations per component suit it better than tiles),
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
    return out


def _rbf_covariance(x1: Tensor, x2: Tensor, w: Tensor, s: Tensor, rbf: dict[int, int], diag: bool) -> Tensor:
    r"""The product of the RBF factors :math:`w_{jq_j} e^{-2\pi^2 s_{jq_j}^2 \tau_j^2}` over the
    dimensions ``rbf`` (``{j: q_j}``): :math:`\prod_j w_{jq_j}\, e^{-\lVert z - z' \rVert^2}` with
    :math:`z_j = \sqrt2\,\pi s_{jq_j} x_j`, the squared distances by GPyTorch's ``sq_dist``."""
    dims, comps = list(rbf), list(rbf.values())
    if len(dims) == x1.shape[-1] and not any(comps):  # the common case: no copies of the inputs
        wk, sk = w[..., 0], s[..., 0]
    else:
        idx = torch.tensor(dims, device=x1.device)
        wk, sk = w[..., idx, comps], s[..., idx, comps]  # (*kb, r)
        x1, x2 = x1[..., dims], x2[..., dims]
    coef = wk.prod(-1)  # (*kb)
    root = (math.sqrt(TWO_PI_SQ) * sk).unsqueeze(-2)  # (*kb, 1, r)
    z1, z2 = x1 * root, x2 * root
    if diag:
        return coef[..., None] * torch.exp(-(z1 - z2).square().sum(-1))
    if z1.shape[:-2] != z2.shape[:-2]:  # sq_dist concatenates: the batch shapes must agree
        batch = torch.broadcast_shapes(z1.shape[:-2], z2.shape[:-2])
        z1, z2 = z1.expand(*batch, *z1.shape[-2:]), z2.expand(*batch, *z2.shape[-2:])
    return coef[..., None, None] * torch.exp(-sq_dist(z1, z2))


def _broadcast_covariance(x1: Tensor, x2: Tensor, w: Tensor, mu: Tensor, s: Tensor, diag: bool) -> Tensor:
    """The product over dimensions and the sum over components as one broadcast expression, on a
    `(*batch, n, m, d, Q)` tensor (`(*batch, n, d, Q)` with ``diag``): a few operations in all,
    which beats the per-dimension loops and the tiles when the kernel matrix is small (the cost
    there is per operation, not per entry). Autograd gives every gradient."""
    if diag:
        tau = (x1 - x2).unsqueeze(-1)  # (*b, n, d, 1)
        wq, mq, sq = (t.unsqueeze(-3) for t in (w, mu, s))  # (*kb, 1, d, Q)
    else:
        tau = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).unsqueeze(-1)  # (*b, n, m, d, 1)
        wq, mq, sq = (t.unsqueeze(-3).unsqueeze(-3) for t in (w, mu, s))  # (*kb, 1, 1, d, Q)
    comp = torch.exp(-TWO_PI_SQ * sq.square() * tau.square()) * torch.cos(TWO_PI * mq * tau)
    return (wq * comp).sum(-1).prod(-1)


def _broadcast_numel(*shapes: tuple[int, ...]) -> int:
    """The number of elements of the shapes' broadcast (plain Python: this runs on every call)."""
    total = 1
    for i in range(1, max(map(len, shapes), default=0) + 1):
        total *= max(shape[-i] if len(shape) >= i else 1 for shape in shapes)
    return total


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
