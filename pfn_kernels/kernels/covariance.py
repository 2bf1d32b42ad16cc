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

Rows that every batch member shares are evaluated once (:func:`_with_shared_heads`, whenever
that saves at least :data:`SHARED_MIN_TERMS` terms): an acquisition function over the joint
posterior of a fixed baseline and q candidates asks, for each of its restarts, for the covariance
of the same baseline rows with the same training points, and those rows are most of the work
(30 baseline rows, 20 restarts, 150 points at d = 6: forward and candidate gradient 7 ms instead
of 93 ms; 17 baseline rows, 4 restarts, 50 points: a whole qLogNEI evaluation 9 ms instead of
14 ms). Values are unchanged, and so are the gradients of every input, each batch member's its
own.

Cosines are taken per input row and component, not per entry, wherever that is cheaper (the
tiles always, the broadcast expression from :data:`SEPARABLE_MIN_TERMS` terms):
:math:`\cos(a(x - x')) = \cos(ax)\cos(ax') + \sin(ax)\sin(ax')` leaves one exponential per
entry, dimension and component.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from gpytorch.kernels.kernel import sq_dist
from torch import Tensor

from pfn_kernels.kernels.bochner import (
    TWO_PI,
    TWO_PI_SQ,
    dimension_factor,
    exclusive_products,
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

#: From this many terms on, the broadcast expression takes its cosines per input row
#: (:func:`_broadcast_covariance`): measured break-even about 1e4 terms (value and candidate
#: gradient, 1 thread; 4 x 18 x 50 x 6 x 4 terms 2.0 ms against 3.1 ms).
SEPARABLE_MIN_TERMS = 1 << 14

#: The shared rows of a batch (:func:`_shared_heads`) are evaluated once when that saves at least
#: this many (entry, dimension, component) terms.
SHARED_MIN_TERMS = 1 << 13


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
    plain_batch = w.dim() == 2 and (outputscale is None or outputscale.dim() == 0)
    if not diag and plain_batch and not _functorch_active():
        heads = _shared_heads(x1, x2, w)
        if heads is not None:
            shortcuts = {"min_weight": min_weight, "unit_frequency": unit_frequency}
            return _with_shared_heads(x1, x2, w, mu, s, outputscale, shortcuts, skip, unit, *heads)
    return _evaluate(x1, x2, w, mu, s, outputscale, diag, skip, unit)


def _evaluate(
    x1: Tensor, x2: Tensor, w: Tensor, mu: Tensor, s: Tensor, outputscale: Tensor | None, diag: bool,
    skip: list[frozenset[int]] | None, unit: list[frozenset[int]] | None,
) -> Tensor:
    """The kernel without shared rows: the merged RBF dimensions (with shortcuts, ``skip`` and
    ``unit`` not ``None``) times the mixture of the others, by :func:`_mixture_covariance`."""
    d = x1.shape[-1]
    if skip is not None and unit is not None:
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


def _shared_heads(x1: Tensor, x2: Tensor, w: Tensor) -> tuple[int, int] | None:
    """``(k1, k2)``: the leading rows of ``x1`` and of ``x2`` that every batch member shares, if
    the block they span is worth computing once (``None`` otherwise).

    An acquisition function over the joint posterior of a fixed baseline and candidates (BoTorch's
    ``qLogNoisyExpectedImprovement``: ``cat([X_baseline, X])`` for every restart) asks for the
    covariance of the same baseline rows with the same training points once per batch member;
    those rows are compared by value (rows with NaN never match).
    """
    batch = _broadcast_shape(x1.shape[:-2], x2.shape[:-2])
    members = math.prod(batch)
    if members < 2 or _terms(x1, x2, w, False) < SHARED_MIN_TERMS:
        return None
    k1, k2 = _leading_shared_rows(x1, batch), _leading_shared_rows(x2, batch)
    if k1 == 0 or k2 == 0 or k1 * k2 * (members - 1) * w.shape[-1] * w.shape[-2] < SHARED_MIN_TERMS:
        return None  # too little to save for the extra operations
    return k1, k2


def _leading_shared_rows(x: Tensor, batch: torch.Size) -> int:
    """The number of leading rows of `(*b, r, d)` that are equal in every member of ``batch``."""
    r = x.shape[-2]
    if math.prod(x.shape[:-2]) == 1:  # broadcast over the batch: every row is shared
        return r
    flat = x.reshape(-1, *x.shape[-2:])
    same = (flat == flat[:1]).all(-1).all(0)  # (r,)
    return int(same.cumprod(0).sum())


def _with_shared_heads(
    x1: Tensor, x2: Tensor, w: Tensor, mu: Tensor, s: Tensor, outputscale: Tensor | None,
    shortcuts: dict[str, float], skip: list[frozenset[int]] | None, unit: list[frozenset[int]] | None,
    k1: int, k2: int,
) -> Tensor:
    r"""The kernel with its shared block (the first ``k1`` rows of every batch member against the
    first ``k2`` columns, the same in all of them) computed once (:class:`_SharedBlockCache`,
    :class:`_SharedBlock` for the parameters' gradients, :class:`_SharedBlockInputs` for the
    inputs'); the other blocks (whose rows or columns are not shared, by the choice of ``k1`` and
    ``k2``) are evaluated per member as usual (:func:`_evaluate`, with the components ``skip``
    and ``unit`` of ``shortcuts``). Values are those of the plain evaluation (to rounding), and so
    are the gradients of every input."""
    batch = _broadcast_shape(x1.shape[:-2], x2.shape[:-2])
    (r, d), m = x1.shape[-2:], x2.shape[-2]
    a, b = x1.expand(*batch, r, d), x2.to(x1).expand(*batch, m, d)
    h1 = a.reshape(-1, r, d)[0, :k1].detach()
    h2 = b.reshape(-1, m, d)[0, :k2].detach()
    a1, b2 = a[..., :k1, :], b[..., :k2, :]
    wants_inputs = torch.is_grad_enabled() and (a1.requires_grad or b2.requires_grad)
    values, D = _SharedBlockCache.get(h1, h2, w, mu, s, outputscale, shortcuts, derivatives=wants_inputs)
    block = _SharedBlock.apply(values, w, mu, s, outputscale, h1, h2, shortcuts)
    top = block.expand(*batch, k1, k2)
    if wants_inputs:
        top = top + _SharedBlockInputs.apply(a1, b2, D)
    else:
        top = top.contiguous()  # not an expanded view of one block: callers may write into it
    if k2 < m:
        rest = _evaluate(a1, b[..., k2:, :], w, mu, s, outputscale, False, skip, unit)
        top = torch.cat([top, rest], -1)
    if k1 == r:
        return top
    bottom = _evaluate(a[..., k1:, :], b, w, mu, s, outputscale, False, skip, unit)
    return torch.cat([top, bottom], -2)


class _SharedBlock(torch.autograd.Function):
    r"""The block :math:`K_{hh}` every batch member shares, from :class:`_SharedBlockCache`, as a
    function of the kernel parameters: its backward pass (which autograd runs only when the
    parameters' gradient is asked for; an acquisition optimizer asks for the candidates' alone)
    re-evaluates the block with autograd for their vector-Jacobian product. The output gradient
    it receives is already summed over the batch members, as for separate copies."""

    @staticmethod
    def forward(ctx, values, w, mu, s, outputscale, h1, h2, shortcuts):
        ctx.save_for_backward(w, mu, s, outputscale if outputscale is not None else torch.empty(0))
        ctx.has_outputscale, ctx.h, ctx.shortcuts = outputscale is not None, (h1, h2), shortcuts
        return values.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        need = ctx.needs_input_grad[1:5]
        leaves = [t.detach().requires_grad_() for t in ctx.saved_tensors]
        if not ctx.has_outputscale:
            leaves[3] = None
        wanted = [i for i in range(4) if need[i] and leaves[i] is not None]
        out: list[Tensor | None] = [None, None, None, None]
        if wanted:
            with torch.enable_grad():
                block = spectral_mixture_covariance(*ctx.h, *leaves, **ctx.shortcuts)
                got = torch.autograd.grad(block, [leaves[i] for i in wanted], grad, allow_unused=True)
            for i, g in zip(wanted, got):
                out[i] = torch.zeros_like(leaves[i]) if g is None else g
        return (None, *out, None, None, None)


class _SharedBlockInputs(torch.autograd.Function):
    r"""Zeros in the forward pass; in the backward pass every batch member's input gradients of
    the shared block from its derivatives :math:`D_{rmj} = \partial K_{rm} / \partial \tau_j`
    `(k1, k2, d)` (:func:`_tau_gradient`): :math:`\partial L / \partial x_{1,rj} = \sum_m G_{rm}
    D_{rmj}` and :math:`\partial L / \partial x_{2,mj} = -\sum_r G_{rm} D_{rmj}`."""

    @staticmethod
    def forward(ctx, x1: Tensor, x2: Tensor, D: Tensor) -> Tensor:
        ctx.save_for_backward(D)
        return x1.new_zeros(*x1.shape[:-1], x2.shape[-2])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        (D,) = ctx.saved_tensors
        (r, m, d), batch = D.shape, grad.shape[:-2]
        G = grad.reshape(-1, r, m)  # as batched matrix products (einsum's path here is slower)
        g1 = g2 = None
        if ctx.needs_input_grad[0]:
            g1 = torch.bmm(G.transpose(0, 1), D).transpose(0, 1).reshape(*batch, r, d)
        if ctx.needs_input_grad[1]:
            g2 = -torch.bmm(G.permute(2, 0, 1), D.transpose(0, 1)).transpose(0, 1).reshape(*batch, m, d)
        return g1, g2, None


class _SharedBlockCache:
    """Values and derivatives of the last few shared blocks, with the inputs and parameters they
    were computed for (compared by value): one acquisition optimization evaluates the same few
    blocks (the baseline against the training points, and against itself) at every step."""

    size = 4
    #: Blocks with more derivative entries than this are computed once per call, not kept.
    max_entries = 1 << 21
    entries: ClassVar[list[list]] = []  # [key, block, derivatives or None], most recent first

    @classmethod
    def get(cls, h1: Tensor, h2: Tensor, w: Tensor, mu: Tensor, s: Tensor, outputscale: Tensor | None,
            shortcuts: dict[str, float], derivatives: bool) -> tuple[Tensor, Tensor | None]:
        os = torch.ones((), dtype=h1.dtype, device=h1.device) if outputscale is None else outputscale.to(h1)
        key = (h1, h2, w, mu, s, os, shortcuts["min_weight"], shortcuts["unit_frequency"])
        entry = next((e for e in cls.entries if _same(e[0], key)), None)
        if entry is None:
            with torch.no_grad():
                block = spectral_mixture_covariance(h1, h2, w, mu, s, outputscale, **shortcuts)
            entry = [tuple(t.detach().clone() if isinstance(t, Tensor) else t for t in key), block, None]
        if derivatives and entry[2] is None:
            with torch.no_grad():
                entry[2] = _tau_gradient(h1, h2, w, mu, s) * os
        others = [e for e in cls.entries if e is not entry]
        kept = h1.shape[0] * h2.shape[0] * h1.shape[1] <= cls.max_entries
        cls.entries = ([entry] if kept else []) + others[: cls.size - 1]
        return entry[1], entry[2]


def _same(saved: tuple, key: tuple) -> bool:
    return all(
        (a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b))
        if isinstance(a, Tensor) else a == b
        for a, b in zip(saved, key)
    )


#: Most (entry, dimension, component) terms :func:`_tau_gradient` holds at once (rows in chunks).
_GRADIENT_CHUNK = 1 << 21


def _tau_gradient(x1: Tensor, x2: Tensor, w: Tensor, mu: Tensor, s: Tensor) -> Tensor:
    r"""`(n, m, d)` derivatives :math:`\partial K_{ab} / \partial \tau_j` of the unit-outputscale
    kernel of x1 `(n, d)` and x2 `(m, d)` (parameters `(d, Q)`), by the closed form of
    :mod:`pfn_kernels.kernels.tiled_kernel`: :math:`(\prod_{i \ne j} F_i)\, F_j'(\tau_j)`
    (:func:`~pfn_kernels.kernels.bochner.exclusive_products`)."""
    n, m, d = x1.shape[0], x2.shape[0], x1.shape[1]
    c, a = -TWO_PI_SQ * s.square(), TWO_PI * mu  # (d, Q)
    rows = max(1, _GRADIENT_CHUNK // max(1, m * d * w.shape[-1]))
    out = []
    for r0 in range(0, n, rows):
        tau = (x1[r0 : r0 + rows, None, :] - x2[None]).unsqueeze(-1)  # (r, m, d, 1)
        e = w * torch.exp(c * tau.square())
        phase = a * tau
        cos, sin = torch.cos(phase), torch.sin(phase)
        f = (e * cos).sum(-1)  # (r, m, d)
        df = (e * (2 * c * tau * cos - a * sin)).sum(-1)
        out.append(exclusive_products(f, -1) * df)
    return torch.cat(out) if out else x1.new_zeros(0, m, d)


def _terms(x1: Tensor, x2: Tensor, w: Tensor, diag: bool) -> int:
    """The number of (entry, dimension, component) terms of the kernel of ``x1`` and ``x2``."""
    batch = math.prod(_broadcast_shape(x1.shape[:-2], x2.shape[:-2], w.shape[:-2]))
    entries = batch * x1.shape[-2] * (1 if diag else x2.shape[-2])
    return entries * w.shape[-2] * w.shape[-1]


def _is_small(x1: Tensor, x2: Tensor, w: Tensor, diag: bool) -> bool:
    """Whether the kernel has at most :data:`SMALL_ELEMENTS` entry-dimension-component terms."""
    return _terms(x1, x2, w, diag) <= SMALL_ELEMENTS


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
        batch = _broadcast_shape(z1.shape[:-2], z2.shape[:-2])
        z1, z2 = z1.expand(*batch, *z1.shape[-2:]), z2.expand(*batch, *z2.shape[-2:])
    return coef[..., None, None] * torch.exp(-sq_dist(z1, z2))


def _broadcast_covariance(x1: Tensor, x2: Tensor, w: Tensor, mu: Tensor, s: Tensor, diag: bool) -> Tensor:
    r"""The product over dimensions and the sum over components as one broadcast expression, on a
    `(*batch, n, m, d, Q)` tensor (`(*batch, n, d, Q)` with ``diag``): a few operations in all,
    which beats the per-dimension loops and the tiles when the kernel matrix is small (the cost
    there is per operation, not per entry). Autograd gives every gradient.

    From :data:`SEPARABLE_MIN_TERMS` terms on, the cosines are taken per input row,
    :math:`\cos(a\tau) = \cos(ax)\cos(ax') + \sin(ax)\sin(ax')` (as in the tiles), which
    leaves one exponential per term and no sine in the backward pass; below, the extra operations
    cost more than the cosines they save."""
    if diag:
        tau = (x1 - x2).unsqueeze(-1)  # (*b, n, d, 1)
        wq, mq, sq = (t.unsqueeze(-3) for t in (w, mu, s))  # (*kb, 1, d, Q)
    elif _terms(x1, x2, w, False) >= SEPARABLE_MIN_TERMS:
        tau2 = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).square().unsqueeze(-1)  # (*b, n, m, d, 1)
        decay = torch.exp(tau2 * (-TWO_PI_SQ * s.square()).unsqueeze(-3).unsqueeze(-3))
        a = (TWO_PI * mu).unsqueeze(-3)  # (*kb, 1, d, Q)
        p1, p2 = x1.unsqueeze(-1) * a, x2.unsqueeze(-1) * a  # (*b, n, d, Q), (*b, m, d, Q)
        wa = w.unsqueeze(-3)
        c1, s1 = torch.cos(p1).unsqueeze(-3), torch.sin(p1).unsqueeze(-3)  # (*b, n, 1, d, Q)
        c2, s2 = (wa * torch.cos(p2)).unsqueeze(-4), (wa * torch.sin(p2)).unsqueeze(-4)  # (*b, 1, m, d, Q)
        return (decay * torch.addcmul(c1 * c2, s1, s2)).sum(-1).prod(-1)
    else:
        tau = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).unsqueeze(-1)  # (*b, n, m, d, 1)
        wq, mq, sq = (t.unsqueeze(-3).unsqueeze(-3) for t in (w, mu, s))  # (*kb, 1, 1, d, Q)
    comp = torch.exp(-TWO_PI_SQ * sq.square() * tau.square()) * torch.cos(TWO_PI * mq * tau)
    return (wq * comp).sum(-1).prod(-1)


def _broadcast_shape(*shapes: tuple[int, ...]) -> torch.Size:
    """The broadcast of the shapes, as ``torch.broadcast_shapes`` (plain Python: this runs several
    times per kernel call, where ``torch.broadcast_shapes`` costs tens of microseconds)."""
    out = []
    for i in range(max(map(len, shapes), default=0), 0, -1):
        sizes = {shape[-i] for shape in shapes if len(shape) >= i} - {1}
        if len(sizes) > 1:
            raise RuntimeError(f"Shapes {[tuple(t) for t in shapes]} do not broadcast.")
        out.append(sizes.pop() if sizes else 1)
    return torch.Size(out)


def _functorch_active() -> bool:
    """Whether a ``torch.func`` transform is running (the tiled Function has no rules for them)."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False


def _tiled_covariance(x1: Tensor, x2: Tensor, w: Tensor, mu: Tensor, s: Tensor, skip: tuple, unit: tuple) -> Tensor:
    """The full matrix through :class:`~pfn_kernels.kernels.tiled_kernel.SpectralProduct` (flat batches)."""
    (n, d), (m, q) = x1.shape[-2:], (x2.shape[-2], w.shape[-1])
    kbatch = w.shape[:-2]
    batch = _broadcast_shape(x1.shape[:-2], x2.shape[:-2], kbatch)
    flat = math.prod(batch)
    a = x1.expand(*batch, n, d).reshape(flat, n, d)
    b = x2.to(x1).expand(*batch, m, d).reshape(flat, m, d)
    if kbatch:
        w, mu, s = (t.expand(*batch, d, q).reshape(flat, d, q) for t in (w, mu, s))
    else:
        w, mu, s = (t.unsqueeze(0) for t in (w, mu, s))
    return SpectralProduct.apply(a, b, w, mu, s, skip, unit).reshape(*batch, n, m)
