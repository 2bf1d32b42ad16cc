r"""Input designs and input warping of the task prior.

Every task draws its N = n + m inputs (context and targets together) from one design, then
splits them at random, so targets come from the same distribution as the context:

- ``uniform``: i.i.d. uniform on :math:`[0, 1]^d`;
- ``sobol``: a scrambled Sobol sequence (:class:`torch.quasirandom.SobolEngine`, seeded from the
  generator);
- ``clustered``: like data collected by Bayesian optimization: a fraction of the points uniform,
  the rest Gaussian clusters around a few random centres, clipped to the cube;
- ``grid``: for d = 1 a regular grid over a random sub-interval (a time series); for d > 1
  distinct random points of a regular lattice over a random sub-box.

A design that follows a BO run (most points around the best values of the first ones) depends on
the function, so it is drawn with it, in :func:`~pfn_kernels.prior.sample_tasks`
(``PriorConfig.optimum_design_prob``).

An optional Kumaraswamy warping :math:`F(x) = 1 - (1 - x^a)^b` per dimension makes a task
non-stationary in :math:`x` (it is stationary in :math:`F(x)`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Generator, Tensor
from torch.quasirandom import SobolEngine

from pfn_kernels.prior._random import DTYPE, categorical, log_uniform, uniform

if TYPE_CHECKING:
    from pfn_kernels.prior.config import PriorConfig

#: Names of the input designs; ``TaskBatch.design`` indexes this tuple.
DESIGNS: tuple[str, ...] = ("uniform", "sobol", "clustered", "grid")
UNIFORM, SOBOL, CLUSTERED, GRID = range(len(DESIGNS))

#: Lattices with at most this many points are subsampled with an exact ``randperm``.
_RANDPERM_MAX = 65536


def sample_inputs(
    cfg: PriorConfig, batch_size: int, num_points: int, num_dims: int, generator: Generator | None
) -> tuple[Tensor, Tensor]:
    """Draw the inputs of ``batch_size`` tasks, each from its own design.

    :param cfg: the prior configuration (``design_probs`` and the design ranges).
    :param batch_size: number of tasks B.
    :param num_points: points per task N (context and targets together).
    :param num_dims: input dimension d.
    :param generator: source of all randomness.
    :return: ``(X, design)``: `(B, N, d)` float64 inputs in :math:`[0, 1]^d`, in random order
        (so any split into context and targets is a random split), and `(B,)` long design indices
        into :data:`DESIGNS`.
    """
    B, N, d, g = batch_size, num_points, num_dims, generator
    design = categorical(cfg.design_weights(), B, g)  # (B,)
    x = torch.empty(B, N, d, dtype=DTYPE)
    for code, draw in (
        (UNIFORM, _uniform),
        (SOBOL, _sobol),
        (CLUSTERED, _clustered),
        (GRID, _grid),
    ):
        rows = (design == code).nonzero().squeeze(-1)
        if rows.numel():
            x[rows] = draw(cfg, rows.numel(), N, d, g)
    order = torch.rand(B, N, generator=g).argsort(dim=-1)  # random context/target split
    x = x.gather(1, order[..., None].expand(B, N, d))
    return x, design


def _uniform(cfg: PriorConfig, b: int, N: int, d: int, g: Generator | None) -> Tensor:
    return torch.rand(b, N, d, generator=g, dtype=DTYPE)


def _sobol(cfg: PriorConfig, b: int, N: int, d: int, g: Generator | None) -> Tensor:
    seeds = torch.randint(0, 2**31 - 1, (b,), generator=g).tolist()
    return torch.stack(
        [SobolEngine(d, scramble=True, seed=s).draw(N, dtype=DTYPE) for s in seeds]
    )  # (b, N, d)


def _clustered(cfg: PriorConfig, b: int, N: int, d: int, g: Generator | None) -> Tensor:
    kmin, kmax = (int(v) for v in cfg.num_clusters_range)
    centres = torch.rand(b, kmax, d, generator=g, dtype=DTYPE)  # (b, K, d)
    k = torch.randint(kmin, kmax + 1, (b, 1), generator=g)  # (b, 1) clusters in use
    std = log_uniform(*cfg.cluster_std_range, (b, kmax), g)  # (b, K)
    assign = (torch.rand(b, N, generator=g, dtype=DTYPE) * k).long()  # (b, N) in [0, k)
    centre = centres.gather(1, assign[..., None].expand(b, N, d))  # (b, N, d)
    spread = std.gather(1, assign)[..., None]  # (b, N, 1)
    clustered = (centre + spread * torch.randn(b, N, d, generator=g, dtype=DTYPE)).clamp(0.0, 1.0)
    frac = uniform(*cfg.cluster_uniform_fraction_range, (b, 1, 1), g)
    is_uniform = torch.rand(b, N, 1, generator=g, dtype=DTYPE) < frac
    return torch.where(is_uniform, torch.rand(b, N, d, generator=g, dtype=DTYPE), clustered)


def _grid(cfg: PriorConfig, b: int, N: int, d: int, g: Generator | None) -> Tensor:
    span = uniform(*cfg.grid_span_range, (b, 1, d), g)  # (b, 1, d) sub-box side lengths
    start = torch.rand(b, 1, d, generator=g, dtype=DTYPE) * (1.0 - span)
    if d == 1:  # the full regular grid: a time series on [start, start + span]
        steps = torch.linspace(0.0, 1.0, N, dtype=DTYPE)[None, :, None]  # (1, N, 1)
        return start + span * steps
    k0 = _min_levels(N, d)
    levels = torch.randint(k0, k0 + cfg.grid_extra_levels + 1, (b,), generator=g).tolist()
    unit = torch.stack([_lattice_points(k, d, N, g) for k in levels])  # (b, N, d) in [0, 1]
    return start + span * unit


def _min_levels(N: int, d: int) -> int:
    """Smallest k with k**d >= N."""
    k = max(1, round(N ** (1.0 / d)))
    while k**d < N:
        k += 1
    while k > 1 and (k - 1) ** d >= N:
        k -= 1
    return k


def _lattice_points(k: int, d: int, N: int, g: Generator | None) -> Tensor:
    """`(N, d)` distinct random points of the lattice :math:`\\{0, 1/(k-1), \\dots, 1\\}^d`."""
    total = k**d
    if total <= _RANDPERM_MAX or total < 4 * N:
        flat = torch.randperm(total, generator=g)[:N]
    else:  # large lattice: draw with replacement and redraw the (rare) repeats
        flat = torch.randint(0, total, (N,), generator=g)
        while True:
            sorted_, order = flat.sort()
            repeat = torch.zeros(N, dtype=torch.bool)
            repeat[order[1:][sorted_[1:] == sorted_[:-1]]] = True
            if not repeat.any():
                break
            flat[repeat] = torch.randint(0, total, (int(repeat.sum()),), generator=g)
    radix = k ** torch.arange(d)  # (d,)
    digits = (flat[:, None] // radix) % k  # (N, d)
    return digits.to(DTYPE) / max(k - 1, 1)


# --------------------------------------------------------------------- warping
def kumaraswamy_cdf(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    r"""Kumaraswamy CDF :math:`F(x) = 1 - (1 - x^a)^b`, a monotone bijection of :math:`[0, 1]`.

    :param x: `(..., d)` inputs; clipped to :math:`[0, 1]`, where the warping is defined.
    :param a: `(..., d)` positive shape parameters (broadcast against ``x``).
    :param b: `(..., d)` positive shape parameters.
    :return: warped inputs, the shape of ``x``.
    """
    x = x.clamp(0.0, 1.0)
    return -torch.expm1(b * torch.log1p(-x.pow(a)))


def sample_warping(
    cfg: PriorConfig, batch_size: int, num_dims: int, generator: Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw which tasks are warped and their Kumaraswamy parameters.

    :return: ``(warped, a, b)``: `(B,)` bool and `(B, d)` float64 parameters, log-uniform on
        ``cfg.warp_range`` (1 for tasks that are not warped).
    """
    B, d, g = batch_size, num_dims, generator
    warped = torch.rand(B, generator=g, dtype=DTYPE) < cfg.warp_prob
    a = log_uniform(*cfg.warp_range, (B, d), g)
    b = log_uniform(*cfg.warp_range, (B, d), g)
    one = torch.ones((), dtype=DTYPE)
    return warped, torch.where(warped[:, None], a, one), torch.where(warped[:, None], b, one)


__all__ = ["DESIGNS", "kumaraswamy_cdf", "sample_inputs", "sample_warping"]
