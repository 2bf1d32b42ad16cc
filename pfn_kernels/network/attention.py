r"""Attention over points with a kernel-distance bias, in three variants.

The scores of head :math:`h` between points :math:`i` and :math:`k` are

.. math::
    a_{h,ik} = \frac{\mathbf q_{h,i}^\top \mathbf k_{h,k}}{\sqrt{e}} + b_{h}(\mathbf x_i, \mathbf x_k),
    \qquad b_h = \sum_r c_{hr}\, \phi_r(\mathbf x_i - \mathbf x_k),

where the :math:`\phi_r` are fixed RBF functions of the distance (TNP-KR's kernel-based attention
bias, arXiv 2411.12502) and :math:`c_{hr}` are learned per layer and head.

- ``"full"``: :func:`torch.nn.functional.scaled_dot_product_attention` with the bias as an additive
  mask; memory :math:`O(n^2)`. On the CPU the input dimensions (and tasks) are processed in
  chunks whose scores take at most :data:`SCORE_CHUNK_BYTES` (the same values, bit for bit):
  score tensors of tens of MB are fresh memory from the operating system at every allocation,
  and the page faults of touching it cost more than the arithmetic (with chunks the network
  takes 0.6–0.75x the time at n = 512, d = 8 and 16, a training step at n = 256 0.65–0.8x;
  BENCHMARKS.md, "Attention scores in dimension chunks").
- ``"scan"``: the same result computed in blocks of queries (scan attention); the bias is built per
  block, so memory is :math:`O(\text{block}\cdot n)` whatever n.
- ``"linear"``: Performer-style positive random features (deep kernel attention), :math:`O(n)`
  time and memory. The distance bias enters as a multiplicative RBF factor through random Fourier
  features of the coordinates, which keeps the cost linear.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Lengthscales (in unit-cube coordinates) of the RBF bias basis.
BIAS_LENGTHSCALES = (0.01, 0.03, 0.1, 0.3, 1.0)
#: Most bytes of attention scores (bias, then softmax weights) held at once by the CPU path of
#: full attention; the input dimensions (and, if need be, the tasks of a batch) are taken in
#: chunks that fit (at least one dimension of one task at a time).
#: Small enough that the C allocator reuses the memory of the previous chunk.
SCORE_CHUNK_BYTES = 4 << 20


def distance_basis(x1: Tensor, x2: Tensor, lengthscales: Tensor) -> Tensor:
    r"""RBF basis :math:`\exp(-\|x_i - x_k\|^2 / (2\ell_r^2))`.

    :param x1: `(..., n, c)` coordinates; ``x2`` `(..., m, c)`.
    :param lengthscales: `(R,)`.
    :return: `(..., R, n, m)`.
    """
    sq = torch.cdist(x1, x2).pow(2) if x1.shape[-1] > 1 else (x1 - x2.transpose(-1, -2)).pow(2)
    # One lengthscale at a time into a contiguous `(..., R, n, m)` buffer: a broadcast exp would
    # lay R innermost, and every later reshape would copy the whole basis. The exponent is
    # clamped where the RBF is below the smallest normal float: denormal results make exp
    # several times slower on CPUs, and values under 1e-37 change no bias.
    out = sq.new_empty(*sq.shape[:-2], lengthscales.numel(), *sq.shape[-2:])
    floor = math.log(torch.finfo(sq.dtype).tiny) + 1.0
    for r, factor in enumerate((-0.5 / lengthscales.to(sq) ** 2).tolist()):
        torch.exp((sq * factor).clamp_(min=floor), out=out[..., r, :, :])
    return out


class DistanceBias(nn.Module):
    r"""Per-head bias :math:`b_h = \sum_r c_{hr} \phi_r`, from two bases: distances along one
    input dimension and distances of whole input vectors (scaled by :math:`1/\sqrt d`)."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        num_basis = 2 * len(BIAS_LENGTHSCALES)
        # Start as a bank of local smoothers: head h favours neighbours (along its dimension)
        # within the h-th bias lengthscale, so the heads see y at different resolutions.
        coef = torch.zeros(num_heads, num_basis)
        for h in range(num_heads):
            coef[h, h % len(BIAS_LENGTHSCALES)] = 4.0
        self.coef = nn.Parameter(coef)

    def forward(self, basis: tuple[Tensor, Tensor]) -> Tensor:
        """Bases ``(per_dim, whole)`` of :meth:`Coordinates.basis`, `(B, d, R, n, m)` and
        `(B, R, n, m)` -> `(B, d, H, n, m)` bias. The whole-vector part is shared by every
        dimension and broadcast, never copied d times."""
        per_dim, whole = basis
        coef = self.coef.to(per_dim)
        num_r = per_dim.shape[-3]
        out = _mix(coef[:, :num_r], per_dim)
        return out.add_(_mix(coef[:, num_r:], whole).unsqueeze(1))


def _mix(coef: Tensor, basis: Tensor) -> Tensor:
    """`(H, R)` coefficients and a `(..., R, n, m)` basis -> `(..., H, n, m)`, as one ``bmm`` on
    the basis' own layout (``einsum`` and broadcast ``matmul`` copy the basis first)."""
    num_r, n, m = basis.shape[-3:]
    flat = basis.reshape(-1, num_r, n * m)
    out = torch.bmm(coef.expand(flat.shape[0], -1, -1), flat)
    return out.reshape(*basis.shape[:-3], coef.shape[0], n, m)


def _split_heads(t: Tensor, num_heads: int) -> Tensor:
    return t.unflatten(-1, (num_heads, -1)).transpose(-3, -2)  # (..., H, n, e)


def _merge_heads(t: Tensor) -> Tensor:
    return t.transpose(-3, -2).flatten(-2)  # (..., n, H*e)


def _biased_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    r""":math:`\mathrm{softmax}(q k^\top / \sqrt e + b)\, v` for `(..., n, e)` queries, `(..., m, e)`
    keys and values and a `(..., n, m)` bias, in place on the bias.

    The same as :func:`~torch.nn.functional.scaled_dot_product_attention` with the bias as a
    float mask (within float rounding). On CPU one ``baddbmm`` writes the scores into the bias
    buffer, which the caller built for this call only, so no second score-sized tensor is
    allocated for them.
    """
    if q.is_cuda:  # fused kernels with a float mask
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q))
    flat = [t.reshape(-1, *t.shape[-2:]) for t in (q, k, v)]  # (batch, n, e)
    scores = bias.to(q).reshape(-1, *bias.shape[-2:])
    scores = scores.baddbmm_(flat[0], flat[1].transpose(-1, -2), alpha=q.shape[-1] ** -0.5)
    return torch.bmm(scores.softmax(-1), flat[2]).reshape(*q.shape[:-1], v.shape[-1])


class PointAttention(nn.Module):
    r"""Decoupled-value attention across the points of one input dimension.

    Queries and keys are projections of the x-stream only, values of the y-stream only, so the
    attention weights depend on the input geometry alone (DVA, arXiv 2601.21731).

    :param width: token width.
    :param num_heads: attention heads.
    :param variant: ``"full"``, ``"scan"`` or ``"linear"`` (see module docstring).
    :param block_size: query block size of the scan variant.
    :param num_features: random features of the linear variant.
    :param seed: seed of those features. They are a persistent buffer, saved with the weights, so
        a reloaded decoder computes the same linear attention; the seed makes a fresh decoder's
        features reproducible too.
    """

    def __init__(
        self, width: int, num_heads: int, variant: str = "full", block_size: int = 256,
        num_features: int = 64, seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.variant = variant
        self.block_size = block_size
        self.qk = nn.Linear(width, 2 * width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.bias = DistanceBias(num_heads)
        self.num_features = num_features
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("rff", torch.randn(num_features, width // num_heads, generator=g))

    def forward(self, x_tok: Tensor, v_tok: Tensor, coords: "Coordinates", variant: str | None = None) -> Tensor:
        """`x_tok`, `v_tok`: `(B, d, n, E)` -> `(B, d, n, E)`."""
        variant = variant or self.variant
        q, k = self.qk(x_tok).chunk(2, dim=-1)
        q, k, v = (_split_heads(t, self.num_heads) for t in (q, k, self.v(v_tok)))  # (B, d, H, n, e)
        if variant == "full":
            out = self._full(q, k, v, coords)
        elif variant == "scan":
            out = self._scan(q, k, v, coords)
        elif variant == "linear":
            out = self._linear(q, k, v, coords)
        else:
            raise ValueError(f"Unknown attention variant {variant!r}; use 'full', 'scan' or 'linear'.")
        return self.out(_merge_heads(out))

    def _full(self, q: Tensor, k: Tensor, v: Tensor, coords: "Coordinates") -> Tensor:
        """Full attention, `(B, d, H, n, e)` -> `(B, d, H, n, e)`; on the CPU in chunks of at most
        :data:`SCORE_CHUNK_BYTES` of scores each (the bias too is built per chunk): several
        dimensions of every task at once, or one dimension of several tasks where one dimension
        of all of them is too large."""
        basis = coords.basis()
        b, d, h, n, _ = q.shape
        one = h * n * k.shape[-2] * q.element_size()  # score bytes of one (task, dimension)
        per_b = max(1, min(b, SCORE_CHUNK_BYTES // one))  # tasks per chunk
        per_d = max(1, SCORE_CHUNK_BYTES // (per_b * one)) if per_b == b else 1  # dimensions
        if q.is_cuda or (per_b == b and per_d >= d):  # one chunk (fused kernels on the GPU)
            return _biased_attention(q, k, v, self.bias(basis))
        per_dim, whole = basis

        def part(i: slice, j: slice) -> Tensor:
            return _biased_attention(q[i, j], k[i, j], v[i, j], self.bias((per_dim[i, j], whole[i])))

        rows = [slice(i, i + per_b) for i in range(0, b, per_b)]
        cols = [slice(j, j + per_d) for j in range(0, d, per_d)]
        return torch.cat([torch.cat([part(i, j) for i in rows], dim=0) for j in cols], dim=1)

    def _scan(self, q: Tensor, k: Tensor, v: Tensor, coords: "Coordinates") -> Tensor:
        outs = []
        for start in range(0, q.shape[-2], self.block_size):
            sl = slice(start, start + self.block_size)
            outs.append(_biased_attention(q[..., sl, :], k, v, self.bias(coords.basis(rows=sl))))
        return torch.cat(outs, dim=-2)

    def _linear(self, q: Tensor, k: Tensor, v: Tensor, coords: "Coordinates") -> Tensor:
        # Positive random features (FAVOR+) for exp(q.k / sqrt(e)), multiplied by positive random
        # features of an RBF factor exp(-|x_i - x_k|^2 / (2 l^2)) along the attended dimension:
        # the distance bias enters multiplicatively and the cost stays linear in n.
        scale = q.shape[-1] ** -0.25
        w = self.rff.to(q)  # (m, e)

        def phi(t: Tensor) -> Tensor:  # (..., n, e) -> (..., n, m)
            t = t * scale
            proj = t @ w.T
            return torch.exp(proj - t.pow(2).sum(-1, keepdim=True) / 2 - proj.amax((-2, -1), keepdim=True).detach())

        xf = coords.positive_features().unsqueeze(2)  # (B, d, 1, n, f), shared by all heads
        qf = (phi(q).unsqueeze(-1) * xf.unsqueeze(-2)).flatten(-2)  # (B, d, H, n, m*f)
        kf = (phi(k).unsqueeze(-1) * xf.unsqueeze(-2)).flatten(-2)
        kv = kf.transpose(-1, -2) @ v  # (B, d, H, m*f, e)
        num = qf @ kv
        den = qf @ kf.sum(-2).unsqueeze(-1)
        return num / den.clamp_min(1e-30)


class Coordinates:
    """Input coordinates of a batch, with lazily built distance bases for the attention bias.

    :param x: `(B, n, d)` inputs in the unit cube.
    """

    def __init__(self, x: Tensor, rff_lengthscale: float = 0.3, rff_features: int = 16) -> None:
        self.x = x
        self.lengthscales = torch.tensor(BIAS_LENGTHSCALES, dtype=x.dtype, device=x.device)
        self._full: tuple[Tensor, Tensor] | None = None
        self._rff_lengthscale = rff_lengthscale
        g = torch.Generator(device="cpu").manual_seed(1234)
        self._rff_w = torch.randn(rff_features, generator=g).to(x)

    def basis(self, rows: slice | None = None) -> tuple[Tensor, Tensor]:
        """RBF distance bases along each dimension, `(B, d, R, n_rows, n)`, and of whole input
        vectors, `(B, R, n_rows, n)` (shared by the dimensions)."""
        if rows is None and self._full is not None:
            return self._full
        x = self.x
        xr = x if rows is None else x[:, rows]
        d = x.shape[-1]
        per_dim = distance_basis(
            xr.transpose(1, 2).unsqueeze(-1), x.transpose(1, 2).unsqueeze(-1), self.lengthscales
        )  # (B, d, R, nr, n)
        whole = distance_basis(xr / math.sqrt(d), x / math.sqrt(d), self.lengthscales)  # (B, R, nr, n)
        out = (per_dim, whole)
        if rows is None:
            self._full = out
        return out

    def positive_features(self) -> Tensor:
        r"""`(B, d, n, f)` positive features :math:`\psi` with
        :math:`\mathbb E[\psi(x)\psi(x')] = \exp(-(x - x')^2 / (2\ell^2))` per coordinate."""
        u = (self.x.transpose(1, 2).unsqueeze(-1) - 0.5) / self._rff_lengthscale  # (B, d, n, 1)
        return torch.exp(u * self._rff_w - u.pow(2)) / math.sqrt(self._rff_w.numel())
