r"""Cache-tiled evaluation of the product spectral-mixture kernel, with its own backward pass.

The kernel matrix

.. math::

    K_{ab} = \prod_{j=1}^{d} F_j(\tau_{abj}), \qquad
    F_j(\tau) = \sum_{q} w_{jq}\, e^{c_{jq} \tau^2} \cos(a_{jq} \tau), \qquad
    c_{jq} = -2\pi^2 s_{jq}^2,\; a_{jq} = 2\pi\mu_{jq},

costs :math:`O(n m d Q)` exponentials and cosines. Written as ordinary tensor expressions, every
one of the roughly ten elementwise steps per component streams an `(n, m)` tensor through main
memory, and autograd keeps (and later streams) each intermediate: at the sizes of an acquisition
optimization the time goes into memory traffic, not arithmetic. :class:`SpectralProduct` instead
walks over tiles of about :data:`TILE_ELEMENTS` entries, whose few work buffers stay in a core's
cache, with in-place operations, and computes the gradients in closed form:

.. math::

    \frac{\partial K}{\partial \tau_j} = \Big(\prod_{i \ne j} F_i\Big) \sum_q w_{jq} e^{c_{jq}\tau_j^2}
        \big(2 c_{jq} \tau_j \cos(a_{jq}\tau_j) - a_{jq} \sin(a_{jq}\tau_j)\big),

and likewise for :math:`w, \mu, s`, only for the inputs that need them (an acquisition function
needs the candidates' gradient alone). The backward pass recomputes the factors tile by tile
rather than storing them.

No tile takes a cosine or a sine: with :math:`\tau = x - x'`,

.. math::

    \cos(a\tau) = \cos(ax)\cos(ax') + \sin(ax)\sin(ax'), \qquad
    \sin(a\tau) = \sin(ax)\cos(ax') - \cos(ax)\sin(ax'),

so the trigonometric functions are taken once per input row and component (:class:`_Phases`,
:math:`O((n + m) d Q)`), and a tile pays two multiplications for each, where a cosine costs about
ten (one exponential per entry, dimension and component remains). Measured by
``benchmarks/kernel_speed.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pfn_kernels.kernels.bochner import TWO_PI, TWO_PI_SQ


#: Kernel entries per tile and per thread: a tile's float64 work buffers (a few hundred KiB each)
#: stay in a core's L2 cache.
TILE_ELEMENTS = 32768


def _tiles(batch: int, n: int, m: int, size: int) -> Iterator[tuple[slice, slice]]:
    """(batch slice, row slice) pairs covering a `(batch, n, m)` array, about ``size`` entries each."""
    if n * m >= size:
        rows = max(1, size // m)
        for b in range(batch):
            for r0 in range(0, n, rows):
                yield slice(b, b + 1), slice(r0, min(n, r0 + rows))
    else:
        per = max(1, size // (n * m))
        for b0 in range(0, batch, per):
            yield slice(b0, min(batch, b0 + per)), slice(0, n)


class _Coefficients:
    """Per-component coefficients, as Python floats (shared by the batch) or `(cb, 1, 1)` views."""

    def __init__(self, weights: Tensor, means: Tensor, scales: Tensor) -> None:
        self.shared = weights.shape[0] == 1
        coef = -TWO_PI_SQ * scales.square()
        freq = TWO_PI * means
        if self.shared:
            self.w, self.c, self.a, self.s = (t[0].tolist() for t in (weights, coef, freq, scales))
        else:
            self.w, self.c, self.a, self.s = (t[..., None, None] for t in (weights, coef, freq, scales))

    def at(self, tile: slice, j: int, q: int) -> tuple:
        if self.shared:
            return self.w[j][q], self.c[j][q], self.a[j][q], self.s[j][q]
        return tuple(t[tile, j, q] for t in (self.w, self.c, self.a, self.s))


class _Phases:
    r""":math:`\cos(a_{jq} x)` and :math:`\sin(a_{jq} x)` of every row of ``x1`` and ``x2``
    (stored `(d, Q, B, rows)`), from which a tile's :math:`\cos(a\tau)` and :math:`\sin(a\tau)`
    are two products each (module docstring)."""

    def __init__(self, x1: Tensor, x2: Tensor, means: Tensor) -> None:
        a = TWO_PI * means.unsqueeze(-3)  # (P, 1, d, Q)
        p1 = (x1.unsqueeze(-1) * a).permute(2, 3, 0, 1).contiguous()  # (d, Q, B, n)
        p2 = (x2.unsqueeze(-1) * a).permute(2, 3, 0, 1).contiguous()  # (d, Q, B, m)
        self.rows = torch.cos(p1).unsqueeze(-1), torch.sin(p1).unsqueeze(-1)  # (d, Q, B, n, 1)
        self.cols = torch.cos(p2).unsqueeze(-2), torch.sin(p2).unsqueeze(-2)  # (d, Q, B, 1, m)

    def tile(self, tile: slice, rows: slice) -> "_TilePhases":
        return _TilePhases([t[:, :, tile, rows] for t in self.rows] + [t[:, :, tile] for t in self.cols])


class _TilePhases:
    """One tile's row and column phases as nested lists of views, ``[j][q]`` (indexing a list costs
    nothing; indexing a tensor, microseconds per call in a loop over dimensions and components)."""

    def __init__(self, parts: list[Tensor]) -> None:
        self.c1, self.s1, self.c2, self.s2 = ([list(t.unbind(0)) for t in part.unbind(0)] for part in parts)

    def cos(self, out: Tensor, j: int, q: int) -> Tensor:
        r""":math:`\cos(a_{jq}\tau)` into ``out``."""
        return torch.mul(self.c1[j][q], self.c2[j][q], out=out).addcmul_(self.s1[j][q], self.s2[j][q])

    def sin(self, out: Tensor, j: int, q: int) -> Tensor:
        r""":math:`\sin(a_{jq}\tau)` into ``out``."""
        return torch.mul(self.s1[j][q], self.c2[j][q], out=out).addcmul_(self.c1[j][q], self.s2[j][q], value=-1.0)


class _Buffers:
    """Work buffers of one tile's shape, carved from flat storage allocated once per call."""

    def __init__(self, count: int, size: int, like: Tensor) -> None:
        self.flat = [like.new_empty(size) for _ in range(count)]

    def view(self, shape: tuple[int, ...]) -> list[Tensor]:
        numel = math.prod(shape)
        return [f[:numel].view(shape) for f in self.flat]


def _axpy(out: Tensor, x: Tensor, alpha, first: bool) -> None:
    """``out = alpha * x`` when ``first``, else ``out += alpha * x`` (alpha a float or a tensor)."""
    if first:
        torch.mul(x, alpha, out=out)
    elif isinstance(alpha, float):
        out.add_(x, alpha=alpha)
    else:
        out.addcmul_(x, alpha)


def _component(t2: Tensor, cq, periodic: bool, e: Tensor, c: Tensor,  # noqa: ANN001
               phases: _TilePhases, j: int, q: int) -> Tensor:
    r"""Component q's term :math:`e^{c\tau^2}\cos(a\tau)` of dimension j: ``e`` gets the
    exponential and the term is returned (``e`` itself without the cosine, else ``c``)."""
    torch.mul(t2, cq, out=e).exp_()
    if not periodic:
        return e
    return phases.cos(c, j, q).mul_(e)


def _factor(out: Tensor, t2: Tensor, e: Tensor, c: Tensor, coefs: _Coefficients, phases: _TilePhases,
            tile: slice, j: int, comps: list[int], unit: frozenset[int]) -> None:
    """``out = F_j(tau)`` over the components ``comps`` (0 when there are none)."""
    if not comps:
        out.zero_()
    for i, q in enumerate(comps):
        w, cq, _, _ = coefs.at(tile, j, q)
        _axpy(out, _component(t2, cq, q not in unit, e, c, phases, j, q), w, i == 0)


def _differences(tau: Tensor, t2: Tensor, x1: Tensor, x2: Tensor, j: int) -> None:
    torch.sub(x1[..., :, None, j], x2[..., None, :, j], out=tau)
    torch.mul(tau, tau, out=t2)


class SpectralProduct(torch.autograd.Function):
    r""":math:`K = \prod_j F_j(x_{1,j} - x_{2,j})` for flat batches.

    Inputs: ``x1`` `(B, n, d)`, ``x2`` `(B, m, d)`, ``weights``/``means``/``scales`` `(P, d, Q)` with
    P = 1 (shared by the batch) or B, and per dimension the components to leave out and those
    whose cosine is 1 (tuples of frozensets). Returns `(B, n, m)`. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, x1, x2, weights, means, scales, skip, unit):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x1, x2, weights, means, scales)
        ctx.skip, ctx.unit = skip, unit
        ctx.phases = _Phases(x1, x2, means)  # O((n + m) d Q): kept for the backward pass
        return _forward(x1, x2, weights, means, scales, skip, unit, ctx.phases)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x1, x2, weights, means, scales = ctx.saved_tensors
        need = _needed(ctx)
        grads = _backward(grad, x1, x2, weights, means, scales, ctx.skip, ctx.unit, ctx.phases, need)
        return (*grads, None, None)


def _needed(ctx) -> tuple[bool, ...]:  # noqa: ANN001
    """Which of the five tensor inputs this backward pass must return a gradient for.

    ``ctx.needs_input_grad`` says which inputs require grad; a GP's kernel parameters always do,
    yet an acquisition function differentiates with respect to the candidates alone
    (``torch.autograd.grad(value, X)``). Asking the engine which next nodes it will run skips
    the parameters' gradients there. Where the engine cannot tell (a leaf tensor under
    ``torch.autograd.grad``), the gradient is computed.
    """
    will_run = getattr(torch._C, "_will_engine_execute_node", None)

    def needed(flag: bool, node) -> bool:  # noqa: ANN001
        if not flag or node is None:
            return False
        try:
            return bool(will_run(node)) if will_run is not None else True
        except RuntimeError:  # a leaf under torch.autograd.grad: the engine cannot say
            return True

    return tuple(needed(f, node) for f, (node, _) in zip(ctx.needs_input_grad[:5], ctx.next_functions[:5]))


def _tile_size() -> int:
    return TILE_ELEMENTS * max(1, torch.get_num_threads())


def _forward(x1: Tensor, x2: Tensor, weights: Tensor, means: Tensor, scales: Tensor,
             skip: tuple, unit: tuple, phases: _Phases) -> Tensor:
    batch, n, d = x1.shape
    m = x2.shape[-2]
    q_all = weights.shape[-1]
    comps = [[q for q in range(q_all) if q not in skip[j]] for j in range(d)]
    coefs = _Coefficients(weights, means, scales)
    out = x1.new_empty(batch, n, m)
    if out.numel() == 0:
        return out
    size = _tile_size()
    buffers = _Buffers(5, min(size, batch * n * m) + m, x1)
    for bt, rt in _tiles(batch, n, m, size):
        a, b = x1[bt, rt], x2[bt]
        o = out[bt, rt]
        tau, t2, e, c, f = buffers.view(o.shape)
        ph = phases.tile(bt, rt)
        for j in range(d):
            _differences(tau, t2, a, b, j)
            _factor(o if j == 0 else f, t2, e, c, coefs, ph, bt, j, comps[j], unit[j])
            if j > 0:
                o.mul_(f)
    return out


def _flat(x):  # noqa: ANN001, ANN202 - a float, or a (cb, 1, 1) coefficient as (cb,)
    return x if isinstance(x, float) else x.reshape(-1)


def _factor_and_slope(f: Tensor, df: Tensor, tau: Tensor, t2: Tensor, bufs: list[Tensor],
                      coefs: _Coefficients, phases: _TilePhases, tile: slice, j: int,
                      comps: list[int], unit: frozenset[int]) -> None:
    r"""``f = F_j(tau)`` and ``df`` = :math:`F_j'(\tau) = \sum_q w_q e^{c_q\tau^2}(2 c_q \tau \cos(a_q\tau) -
    a_q \sin(a_q\tau))`, sharing each component's exponential."""
    e, c, sn, term = bufs
    if not comps:
        f.zero_()
        df.zero_()
    for i, q in enumerate(comps):
        w, cq, aq, _ = coefs.at(tile, j, q)
        periodic = q not in unit
        ec = _component(t2, cq, periodic, e, c, phases, j, q)
        _axpy(f, ec, w, i == 0)
        torch.mul(ec, tau, out=term).mul_(2 * cq)
        if periodic:
            term.sub_(phases.sin(sn, j, q).mul_(e).mul_(aq))  # a E sin
        _axpy(df, term, w, i == 0)


def _backward(grad: Tensor, x1: Tensor, x2: Tensor, weights: Tensor, means: Tensor, scales: Tensor,
              skip: tuple, unit: tuple, phases: _Phases, need: tuple[bool, ...]) -> list[Tensor | None]:
    batch, n, d = x1.shape
    m = x2.shape[-2]
    q_all = weights.shape[-1]
    need_x1, need_x2, need_w, need_mu, need_s = need
    need_tau, need_params = need_x1 or need_x2, need_w or need_mu or need_s
    comps = [[q for q in range(q_all) if q not in skip[j]] for j in range(d)]
    coefs = _Coefficients(weights, means, scales)
    g_x1 = torch.zeros_like(x1) if need_x1 else None
    g_x2 = torch.zeros_like(x2) if need_x2 else None
    g_w, g_mu, g_s = (torch.zeros_like(weights) if flag else None for flag in (need_w, need_mu, need_s))
    if grad.numel() == 0:
        return [g_x1, g_x2, g_w, g_mu, g_s]
    size = max(1024, _tile_size() // 2)  # the backward pass holds about three times the buffers
    buffers = _Buffers(3 * d + 7, min(size, batch * n * m) + m, x1)

    def add(total: Tensor, tile: slice, j: int, q: int, value: Tensor, scale) -> None:  # noqa: ANN001
        # total[tile, j, q] += scale * sum of the tile's entries (per batch member unless shared)
        if coefs.shared:
            total[0, j, q] += value.sum() * scale
        else:
            total[tile, j, q] += value.sum((-2, -1)) * _flat(scale)

    for bt, rt in _tiles(batch, n, m, size):
        a, b = x1[bt, rt], x2[bt]
        views = buffers.view(tuple(grad[bt, rt].shape))
        factors, slopes, suffix = views[:d], views[d : 2 * d], views[2 * d : 3 * d]
        tau, t2, e, c, sn, term, prefix = views[3 * d :]
        ph = phases.tile(bt, rt)
        for j in range(d):
            _differences(tau, t2, a, b, j)
            if need_tau:
                _factor_and_slope(factors[j], slopes[j], tau, t2, [e, c, sn, term], coefs, ph, bt, j, comps[j],
                                  unit[j])
            else:
                _factor(factors[j], t2, e, c, coefs, ph, bt, j, comps[j], unit[j])
        # suffix[j] = G * prod_{i > j} F_i and prefix = prod_{i < j} F_i, so r = G * prod_{i != j} F_i.
        suffix[d - 1].copy_(grad[bt, rt])
        for j in range(d - 2, -1, -1):
            torch.mul(suffix[j + 1], factors[j + 1], out=suffix[j])
        for j in range(d):
            r = suffix[j]
            if j > 0:
                r.mul_(prefix)
            if need_tau:
                slopes[j].mul_(r)  # dK/dtau_j, weighted by the incoming gradient
                if need_x1:
                    g_x1[bt, rt, j] += slopes[j].sum(-1)
                if need_x2:
                    g_x2[bt, :, j] -= slopes[j].sum(-2)
            if need_params:
                _differences(tau, t2, a, b, j)
                for q in comps[j]:
                    w, cq, aq, sq = coefs.at(bt, j, q)
                    periodic = q not in unit[j]
                    ec = _component(t2, cq, periodic, e, c, ph, j, q)  # E cos; E in e
                    if need_w:
                        add(g_w, bt, j, q, torch.mul(ec, r, out=term), 1.0)
                    if need_s:  # d/ds e^{-2 pi^2 s^2 tau^2} = -4 pi^2 s tau^2 e^{...}
                        add(g_s, bt, j, q, torch.mul(ec, t2, out=term).mul_(r), w * (-4 * math.pi**2) * sq)
                    if need_mu and periodic:  # d/dmu cos(2 pi mu tau) = -2 pi tau sin(2 pi mu tau)
                        ph.sin(sn, j, q).mul_(e)
                        add(g_mu, bt, j, q, torch.mul(sn, tau, out=term).mul_(r), w * -TWO_PI)
            if j == 0:
                prefix.copy_(factors[0])
            elif j < d - 1:
                prefix.mul_(factors[j])
    return [g_x1, g_x2, g_w, g_mu, g_s]
