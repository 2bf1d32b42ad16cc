r"""Test problems of the BO harness: functions to maximize on a box, by name.

:func:`make_problem` returns a :class:`Problem`: a BoTorch test function (negated, so that it is
maximized) or a GP sample drawn from the task prior (:func:`gp_prior_problem`), whose optimum is
estimated by a dense search and L-BFGS-B.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from botorch.utils.transforms import unnormalize
from torch import Tensor

#: Problems by name; ``gp_prior2`` and ``gp_prior4`` are drawn from the task prior per seed.
PROBLEMS = (
    "branin", "hartmann6", "ackley4", "levy4", "rosenbrock4", "gp_prior2", "gp_prior4",
    # smooth, polynomial-like objectives with a large dynamic range, and one at d = 8
    "dixonprice4", "powell4", "styblinskitang3", "cosine8",
    # beyond the shipped decoder's trained d <= 8
    "levy12",
)
#: Base seed of the GP-sample objectives (independent of the BO seeds' other streams).
GP_PROBLEM_SEED = 4242


@dataclass
class Problem:
    """A function to maximize on a box.

    :param name: problem name (one of :data:`PROBLEMS`).
    :param dim: input dimension d.
    :param bounds: `(2, d)` float64 lower and upper bounds.
    :param function: maps `(n, d)` points inside ``bounds`` to `(n,)` values (to maximize).
    :param optimal_value: the maximum of ``function`` (known, or estimated for GP samples).
    :param description: one line saying what the function is.
    """

    name: str
    dim: int
    bounds: Tensor
    function: Callable[[Tensor], Tensor]
    optimal_value: float
    description: str = ""

    def evaluate_unit(self, U: Tensor) -> Tensor:
        """Values at `(n, d)` points of the unit cube (scaled to ``bounds`` first)."""
        with torch.no_grad():
            return self.function(self.to_bounds(U)).reshape(-1)

    def to_bounds(self, U: Tensor) -> Tensor:
        """Unit-cube points `(n, d)` mapped into ``bounds`` (BoTorch's ``unnormalize``)."""
        return unnormalize(U, self.bounds)


def make_problem(name: str, seed: int = 0) -> Problem:
    """The problem ``name`` (see :data:`PROBLEMS`); ``seed`` matters for GP-sample problems only.

    Test functions come from :mod:`botorch.test_functions`, negated so that they are maximized
    (their known optimum likewise); ``cosine8`` is a maximization problem already.
    """
    from botorch.test_functions import (
        Ackley, Branin, Cosine8, DixonPrice, Hartmann, Levy, Powell, Rosenbrock, StyblinskiTang,
    )

    synthetic = {
        "branin": lambda: Branin(negate=True),
        "hartmann6": lambda: Hartmann(dim=6, negate=True),
        "ackley4": lambda: Ackley(dim=4, negate=True),
        "levy4": lambda: Levy(dim=4, negate=True),
        "rosenbrock4": lambda: Rosenbrock(dim=4, negate=True),
        "dixonprice4": lambda: DixonPrice(dim=4, negate=True),
        "powell4": lambda: Powell(dim=4, negate=True),
        "styblinskitang3": lambda: StyblinskiTang(dim=3, negate=True),
        "cosine8": lambda: Cosine8(),  # a maximization problem already
        "levy12": lambda: Levy(dim=12, negate=True),
    }
    if name in synthetic:
        fn = synthetic[name]().to(torch.float64)
        return Problem(
            name=name,
            dim=fn.dim,
            bounds=fn.bounds.to(torch.float64),
            function=fn,
            optimal_value=float(fn.optimal_value),
            description=f"botorch.test_functions.{type(fn).__name__}(dim={fn.dim})"
            + ("" if name == "cosine8" else ", negated"),
        )
    if name.startswith("gp_prior") and name[len("gp_prior"):].isdigit():
        return gp_prior_problem(int(name[len("gp_prior"):]), seed)
    raise ValueError(f"Unknown problem {name!r}; choose from {', '.join(PROBLEMS)}.")


class GPSampleFunction:
    r"""A deterministic function drawn (approximately) from a GP: a random-feature sample path.

    .. math::

        f(\mathbf x) = \sqrt{2/L}\,\sum_{i=1}^{L/2} a_i \sin\big(2\pi\boldsymbol\omega_i^\top
            F(\mathbf x)\big) + b_i \cos\big(2\pi\boldsymbol\omega_i^\top F(\mathbf x)\big),
        \qquad a_i, b_i \sim \mathcal N(0, 1),

    with frequency vectors :math:`\boldsymbol\omega_i` drawn from the spectral density of the
    kernel's spectral mixture (:func:`pfn_kernels.sampling.sample_spectral_frequencies`) and
    :math:`F` the kernel's input warping (identity unless warped). As :math:`L \to \infty` it is
    a draw of a zero-mean, unit-variance GP with that kernel.

    :param omega: `(L/2, d)` frequencies (cycles per unit input).
    :param coeffs: `(L,)` coefficients, sine then cosine.
    :param warp: maps `(n, d)` -> `(n, d)` (the identity when ``None``).
    """

    def __init__(
        self, omega: Tensor, coeffs: Tensor, warp: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        self.omega = omega
        self.coeffs = coeffs
        self.warp = warp

    def __call__(self, X: Tensor) -> Tensor:
        Z = X if self.warp is None else self.warp(X)
        phase = 2 * math.pi * Z @ self.omega.T  # (n, L/2)
        feats = torch.cat([phase.sin(), phase.cos()], dim=-1)  # (n, L)
        return math.sqrt(2.0 / feats.shape[-1]) * feats @ self.coeffs


def gp_prior_problem(
    dim: int, seed: int, num_features: int = 4096, search_points: int | None = None,
    num_polish: int = 10,
) -> Problem:
    r"""A GP sample from the task prior on :math:`[0, 1]^d`, with its estimated optimum.

    The kernel is one draw of :func:`pfn_kernels.prior.families.sample_kernels` under the default
    :class:`~pfn_kernels.prior.PriorConfig` (family, spectrum, irrelevant dimensions, warping),
    with generator seed ``GP_PROBLEM_SEED + 1000 * dim + seed``; the function is a
    :class:`GPSampleFunction` with ``num_features`` random features of its spectral mixture (exact
    for the spectral-mixture and RBF families, the prior's closed-form spectral approximation for
    Matérn and periodic ones), with unit variance and no observation noise.

    The optimum is estimated by a dense scrambled-Sobol search (``search_points``, default
    :math:`2^{12 + d}` capped at :math:`2^{16}`), then L-BFGS-B (``scipy.optimize.minimize`` with
    autograd gradients) from the ``num_polish`` best points; the largest value found is
    ``optimal_value``. It is an estimate from below: a BO run may (rarely) find a slightly larger
    value, giving a small negative regret.
    """
    from scipy.optimize import minimize

    from pfn_kernels import AmortizedSpectralKernel, SpectralParams
    from pfn_kernels.prior import PriorConfig
    from pfn_kernels.prior.families import sample_kernels
    from pfn_kernels.sampling import sample_spectral_frequencies

    g = torch.Generator().manual_seed(GP_PROBLEM_SEED + 1000 * dim + seed)
    cfg = PriorConfig()
    gt = sample_kernels(cfg, 1, dim, cfg.max_peaks, g)
    one = torch.ones(1, dtype=torch.float64)
    kernel = AmortizedSpectralKernel(num_mixtures=cfg.num_mixtures, batch_shape=torch.Size([1]))
    kernel = kernel.double()
    kernel.set_spectral_params(SpectralParams(gt.weights, gt.means, gt.scales, one, 1e-6 * one))
    omega = sample_spectral_frequencies(kernel, num_features // 2, generator=g)[0]  # (L/2, d)
    coeffs = torch.randn(2 * (num_features // 2), generator=g, dtype=torch.float64)
    warp = (lambda X: gt.warp(X[None])[0]) if bool(gt.warped.any()) else None
    fn = GPSampleFunction(omega, coeffs, warp)

    # Dense search, then L-BFGS-B from the best points.
    n_search = search_points or min(2 ** (12 + dim), 2**16)
    sobol = torch.quasirandom.SobolEngine(dim, scramble=True, seed=GP_PROBLEM_SEED + seed)
    X = sobol.draw(n_search, dtype=torch.float64)
    with torch.no_grad():
        values = torch.cat([fn(chunk) for chunk in X.split(8192)])
    best = float(values.max())
    for x0 in X[values.topk(min(num_polish, n_search)).indices]:
        def negative(x: Any) -> tuple[float, Any]:
            xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            value = -fn(xt[None])[0]
            (grad,) = torch.autograd.grad(value, xt)
            return float(value.detach()), grad.numpy()

        try:
            res = minimize(negative, x0.numpy(), jac=True, method="L-BFGS-B",
                           bounds=[(0.0, 1.0)] * dim)
        except (ValueError, RuntimeError):  # a non-finite warping gradient at the boundary
            continue
        with torch.no_grad():
            value = float(fn(torch.tensor(res.x, dtype=torch.float64).clamp(0, 1)[None])[0])
        if math.isfinite(value):
            best = max(best, value)
    from pfn_kernels.prior import FAMILIES

    family = FAMILIES[int(gt.family[0])]
    return Problem(
        name=f"gp_prior{dim}",
        dim=dim,
        bounds=torch.stack([torch.zeros(dim), torch.ones(dim)]).to(torch.float64),
        function=fn,
        optimal_value=best,
        description=f"GP sample from the task prior, d={dim}, seed {seed}: {family} kernel"
        + (", warped" if bool(gt.warped.any()) else "")
        + f", {int(gt.relevant.sum())} relevant dims, {num_features} random features",
    )


__all__ = [
    "GP_PROBLEM_SEED",
    "PROBLEMS",
    "GPSampleFunction",
    "Problem",
    "gp_prior_problem",
    "make_problem",
]
