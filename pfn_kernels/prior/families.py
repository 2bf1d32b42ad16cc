r"""Stationary kernel families of the task prior, and the ground-truth kernel of a task batch.

Every task's kernel is a product over input dimensions of unit-variance stationary factors
:math:`k_j(\tau_j)`, :math:`\tau_j = F_j(x_j) - F_j(x'_j)` (with :math:`F_j` the identity or a
Kumaraswamy warping). With :math:`r = |\tau| / \ell`, the families are

.. math::

    \text{spectral\_mixture}:&\quad \textstyle\sum_q w_q e^{-2\pi^2\tau^2 s_q^2}
        \cos(2\pi\mu_q\tau) \\
    \text{rbf}:&\quad e^{-r^2/2} \\
    \text{matern12}:&\quad e^{-r} \\
    \text{matern32}:&\quad (1 + \sqrt3\, r)\, e^{-\sqrt3\, r} \\
    \text{matern52}:&\quad (1 + \sqrt5\, r + \tfrac53 r^2)\, e^{-\sqrt5\, r} \\
    \text{periodic}:&\quad \exp\!\left(-2\sin^2(\pi\tau/p)/\ell^2\right)

(the periodic form is MacKay's; GPyTorch's :class:`~gpytorch.kernels.PeriodicKernel` uses
:math:`\ell^2` as its lengthscale). An irrelevant dimension has the almost constant factor
:math:`e^{-2\pi^2\tau^2 s^2}` with a tiny bandwidth :math:`s` (``PriorConfig.line_bandwidth``).

Each task also carries a spectral mixture with Q components per dimension
(:class:`~pfn_kernels.SpectralParams` layout). It is exact for ``spectral_mixture``, ``rbf``
(:math:`s = 1/(2\pi\ell)`, :math:`\mu = 0`) and irrelevant dimensions. For the others it is a
closed-form Q-component approximation:

- Matérn-:math:`\nu`: its spectral density is a Student-t, a Gaussian scale mixture
  :math:`\int \mathcal N(\omega; 0, \sigma^2/\lambda)\,\mathrm{Gamma}(\lambda; \nu, \nu)\,d\lambda`
  with :math:`\sigma = 1/(2\pi\ell)`; a Q-node generalized Gauss-Laguerre rule over
  :math:`\lambda` gives Q zero-frequency components. With Q = 4 the largest error of the factor
  is about 0.15 (:math:`\nu=1/2`), 0.024 (3/2) and 0.007 (5/2) (an RBF with the same
  lengthscale: 0.29, 0.13, 0.084); with Q = 1 it is that RBF.
- periodic: its Fourier series :math:`\sum_k a_k \cos(2\pi k\tau/p)` (:math:`a_0 = e^{-z}I_0(z)`,
  :math:`a_k = 2e^{-z}I_k(z)`, :math:`z = 1/\ell^2`) truncated to the harmonics
  :math:`k = 0, \dots, Q-1`, renormalized, as lines of bandwidth ``line_bandwidth``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cache
from typing import TYPE_CHECKING, Any

import torch
from torch import Generator, Tensor

from pfn_kernels.kernels.bochner import TWO_PI_SQ
from pfn_kernels.prior._random import DTYPE, categorical, log_uniform, uniform
from pfn_kernels.prior.designs import kumaraswamy_cdf, sample_warping

if TYPE_CHECKING:
    from pfn_kernels.prior.config import PriorConfig

#: Names of the kernel families; ``TaskBatch.family`` indexes this tuple.
FAMILIES: tuple[str, ...] = (
    "spectral_mixture",
    "rbf",
    "matern12",
    "matern32",
    "matern52",
    "periodic",
)
SPECTRAL_MIXTURE, RBF, MATERN12, MATERN32, MATERN52, PERIODIC = range(len(FAMILIES))
#: Smoothness :math:`\nu` of the Matérn families.
MATERN_NU = {MATERN12: 0.5, MATERN32: 1.5, MATERN52: 2.5}
#: Families whose spectral mixture is the exact kernel (when the inputs are not warped).
EXACT_FAMILIES = (SPECTRAL_MIXTURE, RBF)
#: Internal code of an irrelevant dimension (any family) in :meth:`GroundTruthKernel.covariance`.
_IRRELEVANT = -1
#: Quadrature points of the periodic kernel's Fourier coefficients (exact for smooth kernels).
_FOURIER_POINTS = 256
#: Kernel values computed per chunk of tasks (about 0.5 MB of float64 temporaries).
_CHUNK_ELEMENTS = 2**16


# --------------------------------------------------------------------- 1D factors
def mixture_factor(tau: Tensor, weights: Tensor, means: Tensor, scales: Tensor) -> Tensor:
    r""":math:`\sum_q w_q e^{-2\pi^2\tau^2 s_q^2}\cos(2\pi\mu_q\tau)` for `(b, P)` lags ``tau`` and
    `(b, Q)` parameters; zero-weight components are skipped."""
    neg_tau_sq = tau.square().mul_(-TWO_PI_SQ)  # (b, P)
    log_w = weights.log()  # (b, Q); w * exp(a) = exp(a + log w), exactly 0 for w = 0
    out = None
    for q in range(weights.shape[-1]):
        if not bool((weights[:, q] > 0).any()):
            continue
        mu, s = means[:, q, None], scales[:, q, None]  # (b, 1)
        term = torch.addcmul(log_w[:, q, None], neg_tau_sq, s.square()).exp_()
        if bool((mu != 0).any()):
            term.mul_(torch.mul(tau, 2 * math.pi * mu).cos_())
        out = term if out is None else out.add_(term)
    return torch.zeros_like(tau) if out is None else out


def rbf_factor(tau: Tensor, lengthscale: Tensor) -> Tensor:
    r""":math:`e^{-r^2/2}`, :math:`r = |\tau|/\ell`, for `(b, P)` lags and `(b, 1)` lengthscales."""
    return torch.exp(-0.5 * (tau / lengthscale).square())


def matern_factor(tau: Tensor, lengthscale: Tensor, nu: float) -> Tensor:
    r"""Matérn factor for :math:`\nu \in \{1/2, 3/2, 5/2\}` (closed forms in the module doc)."""
    r = tau.abs() / lengthscale
    if nu == 0.5:
        return torch.exp(-r)
    if nu == 1.5:
        sr = math.sqrt(3.0) * r
        return (1.0 + sr) * torch.exp(-sr)
    if nu == 2.5:
        sr = math.sqrt(5.0) * r
        return (1.0 + sr + sr.square() / 3.0) * torch.exp(-sr)
    raise ValueError(f"Matérn smoothness must be 0.5, 1.5 or 2.5; got {nu}.")


def periodic_factor(tau: Tensor, lengthscale: Tensor, period: Tensor) -> Tensor:
    r""":math:`\exp(-2\sin^2(\pi\tau/p)/\ell^2)` for `(b, P)` lags and `(b, 1)` parameters."""
    return torch.exp(-2.0 * torch.sin(math.pi * tau / period).square() / lengthscale.square())


# --------------------------------------------------------------------- spectral approximations
@cache
def _matern_nodes(nu: float, num_mixtures: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from scipy.special import roots_genlaguerre

    x, w = roots_genlaguerre(num_mixtures, nu - 1.0)
    return tuple((w / w.sum()).tolist()), tuple((x / nu).tolist())  # weights, precisions lambda


def matern_spectral_mixture(
    lengthscale: Tensor, nu: float, num_mixtures: int
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Q zero-frequency components approximating a Matérn-:math:`\nu` factor (module doc).

    :param lengthscale: `(...)` lengthscales :math:`\ell`.
    :return: ``(weights, means, scales)``, each `(..., Q)`.
    """
    w, lam = (torch.tensor(v, dtype=lengthscale.dtype) for v in _matern_nodes(nu, num_mixtures))
    sigma = 1.0 / (2 * math.pi * lengthscale[..., None])  # (..., 1)
    scales = sigma / lam.sqrt()  # (..., Q)
    return w.expand_as(scales), torch.zeros_like(scales), scales


def periodic_spectral_mixture(
    lengthscale: Tensor, period: Tensor, num_mixtures: int, line_bandwidth: float
) -> tuple[Tensor, Tensor, Tensor]:
    r"""The first Q harmonics of a periodic factor's Fourier series, renormalized (module doc).

    :param lengthscale: `(...)` periodic lengthscales :math:`\ell`.
    :param period: `(...)` periods :math:`p`.
    :return: ``(weights, means, scales)``, each `(..., Q)`; means :math:`k/p`, scales
        ``line_bandwidth``.
    """
    theta = torch.arange(_FOURIER_POINTS, dtype=lengthscale.dtype) * (2 * math.pi / _FOURIER_POINTS)
    z = 1.0 / lengthscale[..., None].square()  # (..., 1)
    values = torch.exp(z * (torch.cos(theta) - 1.0))  # (..., T) one period of the factor
    k = torch.arange(num_mixtures, dtype=lengthscale.dtype)  # (Q,)
    cosines = torch.cos(k[:, None] * theta)  # (Q, T)
    coef = (values @ cosines.T) / _FOURIER_POINTS  # (..., Q), trapezoid rule on a period
    coef = (coef * torch.where(k == 0, 1.0, 2.0)).clamp_min(0.0)
    weights = coef / coef.sum(-1, keepdim=True)
    means = k / period[..., None]
    return weights, means, torch.full_like(means, line_bandwidth)


# --------------------------------------------------------------------- ground truth
@dataclass
class GroundTruthKernel:
    r"""The true (unit-outputscale) kernel of every task in a batch.

    .. math::
        k_b(\mathbf x, \mathbf x') = \prod_{j=1}^d k_{bj}\big(F_{bj}(x_j) - F_{bj}(x'_j)\big)

    with the factor :math:`k_{bj}` of task ``b``'s family (or the irrelevant-dimension factor) and
    :math:`F_{bj}` its Kumaraswamy warping (identity unless ``warped``).

    :param family: `(B,)` long indices into :data:`FAMILIES`.
    :param relevant: `(B, d)` bool; irrelevant dimensions use the mixture (one line at frequency
        0) whatever the family.
    :param weights: `(B, d, Q)` spectral-mixture weights: the exact spectrum for
        ``spectral_mixture``/``rbf`` tasks and irrelevant dimensions, an approximation otherwise.
    :param means: `(B, d, Q)` frequencies (cycles per unit).
    :param scales: `(B, d, Q)` bandwidths (cycles per unit).
    :param lengthscale: `(B, d)` lengthscales of the rbf/Matérn/periodic factors (drawn for every
        task, used only by those families).
    :param period: `(B, d)` periods of the periodic factors (used only by ``periodic``).
    :param warped: `(B,)` bool, whether the task's inputs are warped.
    :param warp_a: `(B, d)` Kumaraswamy parameters :math:`a` (1 when not warped).
    :param warp_b: `(B, d)` Kumaraswamy parameters :math:`b` (1 when not warped).
    :param trend_ratio: `(B,)` variance of the polynomial trend relative to the stationary
        part, :math:`\sigma_t^2/\sigma_f^2` (0: no trend; ``PriorConfig.trend_prob``).
    :param trend_center: `(B, d)` the trend's centre :math:`\mathbf c` (unwarped inputs).
    :param trend_quadratic: `(B,)` the quadratic share :math:`w \in [0, 1]` of the trend's
        variance (the rest is linear).

    With a trend, :meth:`covariance` is :math:`k(\mathbf x, \mathbf x') + \rho\,
    k_t(\mathbf x, \mathbf x')`, :math:`\rho` = ``trend_ratio``, :math:`k_t` of
    :meth:`trend_covariance`.

    Example:
        >>> import torch
        >>> from pfn_kernels.prior import PriorConfig, sample_tasks
        >>> batch = sample_tasks(PriorConfig(), 4, torch.Generator().manual_seed(0), num_dims=2)
        >>> x = torch.rand(10, 2)  # shared by the 4 tasks
        >>> batch.kernel.covariance(x).shape, batch.kernel.covariance(x, x, diag=True).shape
        (torch.Size([4, 10, 10]), torch.Size([4, 10]))
    """

    family: Tensor
    relevant: Tensor
    weights: Tensor
    means: Tensor
    scales: Tensor
    lengthscale: Tensor
    period: Tensor
    warped: Tensor
    warp_a: Tensor
    warp_b: Tensor
    trend_ratio: Tensor
    trend_center: Tensor
    trend_quadratic: Tensor

    @property
    def batch_size(self) -> int:
        return self.relevant.shape[0]

    @property
    def num_dims(self) -> int:
        return self.relevant.shape[1]

    @property
    def representable(self) -> Tensor:
        """`(B,)` bool: whether the spectral mixture is the exact kernel."""
        exact = torch.isin(self.family, torch.tensor(EXACT_FAMILIES, device=self.family.device))
        return exact & ~self.warped & ~self.has_trend

    @property
    def has_trend(self) -> Tensor:
        """`(B,)` bool: whether a task adds a polynomial trend (``trend_ratio > 0``)."""
        return self.trend_ratio > 0

    def trend_features(self, x: Tensor) -> Tensor:
        r"""Features :math:`\phi(\mathbf x)` with :math:`\rho\, k_t = \phi(\mathbf x)^\top
        \phi(\mathbf x')`: per dimension :math:`u_j` and :math:`u_j^2`, :math:`u_j = x_j - c_j`.

        .. math::
            k_t(\mathbf x, \mathbf x') = \frac1d \sum_{j=1}^d \Big[(1 - w)\,
            \frac{u_j u'_j}{E[u^2]} + w\, \frac{u_j^2 u_j'^2}{E[u^4]}\Big],
            \qquad E[u^2] = \tfrac16,\ E[u^4] = \tfrac1{15}

        (the moments of :math:`u = x - c` for independent uniform :math:`x, c`), so that
        :math:`k_t(\mathbf x, \mathbf x)` averages 1 over the cube and centres: a trend of
        variance ``trend_ratio`` times the stationary part's.

        :param x: `(B, n, d)` (unwarped) inputs.
        :return: `(B, n, 2d)`, zero for tasks without a trend.
        """
        d = x.shape[-1]
        u = x - self.trend_center.to(x)[:, None, :]
        w = self.trend_quadratic.to(x)[:, None, None]
        rho = self.trend_ratio.to(x)[:, None, None]
        lin = (rho * (1 - w) * 6.0 / d).sqrt() * u
        quad = (rho * w * 15.0 / d).sqrt() * u.square()
        return torch.cat([lin, quad], dim=-1)

    def trend_covariance(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False) -> Tensor:
        r""":math:`\rho\, k_t(\mathbf x_1, \mathbf x_2)` of :meth:`trend_features` (zero for tasks
        without a trend).

        :param x1: `(B, n1, d)` or `(n1, d)` unwarped inputs.
        :param x2: `(B, n2, d)` or `(n2, d)`; ``None`` for ``x1``.
        :param diag: only :math:`k_t(x1_i, x2_i)` (``n1 == n2``).
        :return: `(B, n1, n2)`, or `(B, n1)` with ``diag``.
        """
        B = self.batch_size
        expand = lambda x: x.expand(B, *x.shape[-2:]) if x.dim() == 2 else x  # noqa: E731
        f1 = self.trend_features(expand(x1))
        f2 = f1 if x2 is None or x2 is x1 else self.trend_features(expand(x2).to(f1))
        if diag:
            return (f1 * f2).sum(-1)
        return f1 @ f2.transpose(-1, -2)

    def warp(self, x: Tensor) -> Tensor:
        """Apply each task's warping to `(B, n, d)` inputs (identity for unwarped tasks)."""
        if not bool(self.warped.any()):
            return x
        a, b = self.warp_a.to(x)[:, None, :], self.warp_b.to(x)[:, None, :]  # (B, 1, d)
        return torch.where(self.warped[:, None, None], kumaraswamy_cdf(x, a, b), x)

    def covariance(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False) -> Tensor:
        r"""The unit-outputscale kernel matrix of every task (with a trend, the stationary part has
        unit variance and the trend adds :meth:`trend_covariance`).

        :param x1: `(B, n1, d)` inputs, or `(n1, d)` shared by all tasks.
        :param x2: `(B, n2, d)` inputs, or `(n2, d)` (``n2 == n1`` with ``diag``). ``None`` or
            ``x1`` itself computes the symmetric :math:`K(x_1, x_1)` from its upper triangle.
        :param diag: return only :math:`k(x1_i, x2_i)`.
        :return: `(B, n1, n2)`, or `(B, n1)` with ``diag``; in the dtype of ``x1``.
        """
        B, d = self.relevant.shape
        symmetric = (x2 is None or x2 is x1) and not diag
        x2 = x1 if x2 is None else x2
        x1, x2 = (x.expand(B, *x.shape[-2:]) if x.dim() == 2 else x for x in (x1, x2))
        if x1.shape[-1] != d or x2.shape[-1] != d:
            raise ValueError(
                f"The tasks have d={d} input dimensions; got inputs with {x1.shape[-1]}."
            )
        raw1, raw2 = x1, (x1 if symmetric else x2.to(x1))
        x1 = self.warp(x1)
        x2 = x1 if symmetric else self.warp(x2.to(x1))
        out = self._covariance(x1, x2, diag=diag, symmetric=symmetric, mirror=True)
        if bool(self.has_trend.any()):
            out.add_(self.trend_covariance(raw1, raw1 if symmetric else raw2, diag=diag))
        return out

    def lower_covariance(self, x: Tensor) -> Tensor:
        """:math:`K(x, x)` with only the lower triangle (and diagonal) filled, the rest zero.

        That is all a Cholesky factorization (or ``eigh``) reads, and it skips the mirroring.

        :param x: `(B, n, d)` inputs.
        :return: `(B, n, n)` lower-triangular matrices, in the dtype of ``x``.
        """
        if x.shape[-1] != self.num_dims:
            raise ValueError(
                f"The tasks have d={self.num_dims} input dimensions; got {x.shape[-1]}."
            )
        xw = self.warp(x)
        out = self._covariance(xw, xw, diag=False, symmetric=True, mirror=False)
        if bool(self.has_trend.any()):
            out.add_(self.trend_covariance(x).tril_())
        return out

    def _covariance(
        self, x1: Tensor, x2: Tensor, diag: bool, symmetric: bool, mirror: bool
    ) -> Tensor:
        B = self.batch_size
        n1, n2 = x1.shape[-2], x2.shape[-2]
        codes = torch.where(self.relevant, self.family[:, None], _IRRELEVANT).tolist()  # B x d
        if symmetric:
            i, k = torch.triu_indices(n1, n1, device=x1.device)  # (P,) pairs i <= k
            upper, lower = i * n1 + k, k * n1 + i  # their flat positions in (n, n)
            num_pairs = i.numel()
            out = x1.new_empty(B, n1 * n1) if mirror else x1.new_zeros(B, n1 * n1)
        else:
            upper = None
            num_pairs = n1 if diag else n1 * n2
            out = x1.new_empty(B, num_pairs)
        # A few tasks at a time keep the temporaries in cache (the work is memory-bound).
        step = max(1, _CHUNK_ELEMENTS // max(num_pairs, 1))
        for start in range(0, B, step):
            rows = slice(start, start + step)
            values = self._pair_values(x1[rows], x2[rows], codes[rows], start, upper, diag)
            if symmetric:
                out[rows].index_copy_(1, lower, values)
                if mirror:
                    out[rows].index_copy_(1, upper, values)
            else:
                out[rows] = values
        return out if diag else out.view(B, n1, n2)

    def _pair_values(
        self, x1: Tensor, x2: Tensor, codes: list, start: int, upper: Tensor | None, diag: bool
    ) -> Tensor:
        """`(b, P)` kernel values of tasks ``start .. start + b`` at their flattened pairs: the
        upper triangle (flat positions ``upper``) of a symmetric matrix, the diagonal, or all pairs."""
        b = x1.shape[0]
        out = None
        for j in range(x1.shape[-1]):
            if upper is not None:
                xj = x1[..., j]  # (b, n)
                tau = (xj[:, :, None] - xj[:, None, :]).view(b, -1).index_select(1, upper)  # (b, P)
            elif diag:
                tau = x1[..., j] - x2[..., j]  # (b, n)
            else:
                tau = (x1[..., :, None, j] - x2[..., None, :, j]).reshape(b, -1)  # (b, n1 * n2)
            factor = self._factor(tau, [c[j] for c in codes], j, start)
            out = factor if out is None else out.mul_(factor)
        return out

    def _factor(self, tau: Tensor, codes: list[int], j: int, start: int) -> Tensor:
        """`(b, P)` values of dimension j's factor for tasks ``start .. start + b``."""
        groups: dict[int, list[int]] = {}
        for row, code in enumerate(codes):
            groups.setdefault(code, []).append(row)
        if len(groups) == 1:  # the common case: no gather, no scatter
            return self._factor_of(codes[0], tau, slice(start, start + len(codes)), j)
        out = torch.empty_like(tau)
        for code, rows in groups.items():
            local = torch.tensor(rows, device=tau.device)
            out[local] = self._factor_of(code, tau[local], local + start, j)
        return out

    def _factor_of(self, code: int, tau: Tensor, rows: Tensor | slice, j: int) -> Tensor:
        if code in (SPECTRAL_MIXTURE, _IRRELEVANT):
            w, mu, s = (t[rows, j].to(tau) for t in (self.weights, self.means, self.scales))
            return mixture_factor(tau, w, mu, s)
        ell = self.lengthscale[rows, j, None].to(tau)  # (b, 1)
        if code == RBF:
            return rbf_factor(tau, ell)
        if code in MATERN_NU:
            return matern_factor(tau, ell, MATERN_NU[code])
        if code == PERIODIC:
            return periodic_factor(tau, ell, self.period[rows, j, None].to(tau))
        raise ValueError(f"Unknown kernel family index {code}.")

    # ----------------------------------------------------------------- containers
    def to(self, *args: Any, **kwargs: Any) -> GroundTruthKernel:
        """Move every tensor and cast the floating ones (:meth:`torch.Tensor.to` arguments)."""
        device, dtype, *_ = torch._C._nn._parse_to(*args, **kwargs)
        return GroundTruthKernel(
            **{f.name: _move(getattr(self, f.name), device, dtype) for f in fields(self)}
        )

    def __getitem__(self, index: Any) -> GroundTruthKernel:
        """The sub-batch ``index`` (an int keeps the batch dimension)."""
        index = [index] if isinstance(index, int) else index
        return GroundTruthKernel(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def _move(t: Tensor, device: torch.device | None, dtype: torch.dtype | None) -> Tensor:
    """``t`` on ``device``, cast to ``dtype`` only if floating (indices and masks keep theirs)."""
    return t.to(device=device, dtype=dtype if t.is_floating_point() else None)


def sample_kernels(
    cfg: PriorConfig, batch_size: int, num_dims: int, max_peaks: int, generator: Generator | None,
    num_context: int | None = None,
) -> GroundTruthKernel:
    r"""Draw the family, relevant dimensions, spectrum and warping of ``batch_size`` tasks.

    All draws are vectorized: every family's parameters are drawn for every task and the task's
    family selects among them (so the stream of random numbers does not depend on the families).

    :param cfg: the prior configuration.
    :param batch_size: number of tasks B.
    :param num_dims: input dimension d.
    :param max_peaks: most spectral-mixture peaks per dimension (``<= cfg.num_mixtures``).
    :param generator: source of all randomness.
    :param num_context: the tasks' context size n, which sets the frequencies of many-cycle tasks
        (``cfg.many_cycles_prob``); without it there are none.
    :return: float64 :class:`GroundTruthKernel` with Q = ``cfg.num_mixtures``.
    """
    B, d, Q, g = batch_size, num_dims, cfg.num_mixtures, generator
    dim_scale = float(d) ** cfg.dim_scaling
    family = categorical(cfg.family_weights(), B, g)  # (B,)

    # Relevant dimensions; a task with none gets one back at random.
    relevant = torch.rand(B, d, generator=g, dtype=DTYPE) >= cfg.irrelevant_prob  # (B, d)
    rescue = torch.randint(0, d, (B,), generator=g)
    relevant[torch.arange(B), rescue] |= ~relevant.any(-1)

    # spectral_mixture: 1..max_peaks peaks, Dirichlet(1) weights, some at frequency zero.
    counts = torch.randint(1, max_peaks + 1, (B, d, 1), generator=g)
    active = torch.arange(Q) < counts  # (B, d, Q)
    expo = -torch.log1p(-torch.rand(B, d, Q, generator=g, dtype=DTYPE))  # Exp(1)
    expo = expo.clamp_min(1e-12) * active
    sm_w = expo / expo.sum(-1, keepdim=True)
    nonzero = torch.rand(B, d, Q, generator=g, dtype=DTYPE) >= cfg.zero_frequency_prob
    sm_mu = uniform(0.0, cfg.max_frequency / dim_scale, (B, d, Q), g) * (nonzero & active)
    sm_s = log_uniform(*cfg.bandwidth_range, (B, d, Q), g) / dim_scale
    sm_s = torch.where(active, sm_s, 1.0)

    # rbf / Matérn / periodic
    ell = log_uniform(*cfg.lengthscale_range, (B, d), g) * dim_scale
    ell_periodic = log_uniform(*cfg.periodic_lengthscale_range, (B, d), g)
    period = log_uniform(*cfg.period_range, (B, d), g) * dim_scale
    if cfg.many_cycles_prob > 0 and num_context is not None:  # no draws otherwise: same stream
        sm_mu, period = _many_cycles(cfg, num_context, d, dim_scale, sm_mu, period, g)
    lengthscale = torch.where((family == PERIODIC)[:, None], ell_periodic, ell)

    first = torch.arange(Q) == 0  # (Q,) the single component of rbf / irrelevant dimensions
    weights, means, scales = sm_w, sm_mu, sm_s
    candidates = {
        RBF: (
            first.to(DTYPE).expand(B, d, Q),
            torch.zeros(B, d, Q, dtype=DTYPE),
            torch.where(first, 1.0 / (2 * math.pi * ell[..., None]), 1.0),
        ),
        PERIODIC: periodic_spectral_mixture(ell_periodic, period, Q, cfg.line_bandwidth),
    }
    for code, nu in MATERN_NU.items():
        candidates[code] = matern_spectral_mixture(ell, nu, Q)
    for code, (w, mu, s) in candidates.items():
        pick = (family == code)[:, None, None]
        weights, means, scales = (
            torch.where(pick, a, b) for a, b in ((w, weights), (mu, means), (s, scales))
        )

    irrelevant = ~relevant[..., None]  # (B, d, 1)
    line = torch.ones(Q, dtype=DTYPE)
    line[0] = cfg.line_bandwidth
    weights = torch.where(irrelevant, first.to(DTYPE), weights)
    means = torch.where(irrelevant, 0.0, means)
    scales = torch.where(irrelevant, line, scales)

    warped, warp_a, warp_b = sample_warping(cfg, B, d, g)
    trend_ratio, trend_center, trend_quadratic = sample_trends(cfg, B, d, g)
    return GroundTruthKernel(
        family=family,
        relevant=relevant,
        weights=weights,
        means=means,
        scales=scales,
        lengthscale=lengthscale,
        period=period,
        warped=warped,
        warp_a=warp_a,
        warp_b=warp_b,
        trend_ratio=trend_ratio,
        trend_center=trend_center,
        trend_quadratic=trend_quadratic,
    )


def sample_trends(
    cfg: PriorConfig, batch_size: int, num_dims: int, generator: Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """The polynomial trends of ``batch_size`` tasks (``cfg.trend_prob``): ratio `(B,)`, centre
    `(B, d)` and quadratic share `(B,)`. No random draws when ``trend_prob`` is 0 (the stream of
    earlier versions)."""
    B, d, g = batch_size, num_dims, generator
    if cfg.trend_prob <= 0:
        return torch.zeros(B, dtype=DTYPE), torch.full((B, d), 0.5, dtype=DTYPE), torch.zeros(B, dtype=DTYPE)
    has = torch.rand(B, generator=g, dtype=DTYPE) < cfg.trend_prob
    ratio = log_uniform(*cfg.trend_ratio_range, (B,), g) * has
    center = torch.rand(B, d, generator=g, dtype=DTYPE)
    quadratic = torch.rand(B, generator=g, dtype=DTYPE)
    return ratio, center, quadratic


def _many_cycles(
    cfg: PriorConfig, n: int, d: int, dim_scale: float, sm_mu: Tensor, period: Tensor,
    g: Generator | None,
) -> tuple[Tensor, Tensor]:
    """Many-cycle tasks (``cfg.many_cycles_prob``): nonzero peak frequencies `(B, d, Q)` and
    periods `(B, d)` redrawn, log-uniform up to what n context points resolve."""
    B = sm_mu.shape[0]
    many = torch.rand(B, generator=g, dtype=DTYPE) < cfg.many_cycles_prob  # (B,)
    cap = min(cfg.max_resolved_frequency, cfg.resolved_cycles_fraction * float(n) ** (1.0 / d))
    low_peak = cfg.max_frequency / dim_scale
    low_fundamental = 1.0 / (cfg.period_range[0] * dim_scale)
    peaks = log_uniform(min(low_peak, cap), cap, tuple(sm_mu.shape), g)
    fundamental = log_uniform(min(low_fundamental, cap), cap, tuple(period.shape), g)
    if cap > low_peak:
        sm_mu = torch.where(many[:, None, None] & (sm_mu > 0), peaks, sm_mu)
    if cap > low_fundamental:
        period = torch.where(many[:, None], 1.0 / fundamental, period)
    return sm_mu, period


__all__ = [
    "FAMILIES",
    "GroundTruthKernel",
    "matern_factor",
    "matern_spectral_mixture",
    "mixture_factor",
    "periodic_factor",
    "periodic_spectral_mixture",
    "rbf_factor",
    "sample_kernels",
    "sample_trends",
]
