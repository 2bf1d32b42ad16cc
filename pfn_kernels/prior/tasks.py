r"""Batches of synthetic regression tasks: :class:`TaskBatch` and :func:`sample_tasks`.

One task is a Gaussian-process draw on random inputs:

.. math::

    \mathbf x_i \sim \text{design}, \qquad
    f \sim \mathcal{GP}\big(0,\ \sigma_f^2\, k(\mathbf x, \mathbf x')\big), \qquad
    y_i = c + f(\mathbf x_i) + \varepsilon_i,\quad \varepsilon_i \sim \mathcal N(0, \sigma_n^2),

with :math:`k` a unit-variance product kernel from :mod:`pfn_kernels.prior.families`, a constant
mean :math:`c`, signal variance :math:`\sigma_f^2` and noise variance :math:`\sigma_n^2`.
With ``PriorConfig.trend_prob`` a task's :math:`k` also carries a polynomial-trend term
(:meth:`~pfn_kernels.prior.families.GroundTruthKernel.trend_covariance`): :math:`f` is then a
stationary draw plus a random quadratic.
Targets are then standardized with the statistics of the context points, as BoTorch's
:class:`~botorch.models.transforms.outcome.Standardize` does, and the ground-truth
:class:`~pfn_kernels.SpectralParams` are expressed in those standardized units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Generator, Tensor

from pfn_kernels.exact_gp import GPScores, exact_gp_scores, robust_cholesky
from pfn_kernels.prior._random import DTYPE, log_uniform, log_uniform_int, uniform, uniform_int
from pfn_kernels.prior.config import PriorConfig
from pfn_kernels.prior.designs import sample_inputs
from pfn_kernels.prior.families import GroundTruthKernel, _move, sample_kernels
from pfn_kernels.spectral_params import SpectralParams

#: Standard deviations below this are replaced by 1 (BoTorch's ``Standardize`` default).
MIN_STD = 1e-8


@dataclass
class TaskBatch:
    r"""A batch of B regression tasks sharing d, n (context) and m (targets).

    Shapes below use ``[, M]`` for the optional realization dimension (``num_realizations``):
    without it there is one realization per task; with it, M realizations share the inputs and
    the kernel. Standardized quantities use the context statistics ``y_mean``, ``y_std``.

    :param x_context: `(B, n, d)` context inputs in :math:`[0, 1]^d`.
    :param y_context: `(B, n[, M])` standardized noisy context targets (mean 0, std 1 over the
        context, jointly over all M columns).
    :param x_target: `(B, m, d)` held-out inputs from the same design.
    :param y_target: `(B, m[, M])` standardized noisy held-out targets.
    :param f_context: `(B, n[, M])` standardized noiseless latent values
        :math:`(c + f - \bar y)/s_y`.
    :param f_target: `(B, m[, M])` standardized noiseless latent values at the targets.
    :param f_raw_context: `(B, n[, M])` the raw zero-mean GP draw :math:`f` at the context points
        (no mean offset, no standardization): :math:`f \sim \mathcal N(0, \sigma_f^2 K)`.
    :param f_raw_target: `(B, m[, M])` the raw zero-mean GP draw at the targets.
    :param y_mean: `(B,)` mean of the raw context targets.
    :param y_std: `(B,)` unbiased std of the raw context targets (1 if n = 1 or std < 1e-8).
    :param offset_raw: `(B,)` the constant mean :math:`c` of each task.
    :param outputscale_raw: `(B,)` signal variance :math:`\sigma_f^2` before standardization.
    :param noise_raw: `(B,)` noise variance :math:`\sigma_n^2` before standardization.
    :param params: :class:`~pfn_kernels.SpectralParams` with batch `(B,)`, d dimensions and
        Q = ``cfg.num_mixtures`` components (unused ones have zero weight), in standardized units:
        ``outputscale = outputscale_raw / y_std**2`` and ``noise = noise_raw / y_std**2``. Exact
        where ``representable``, the best closed-form approximation otherwise
        (:mod:`pfn_kernels.prior.families`).
    :param kernel: the exact unit-outputscale :class:`GroundTruthKernel` of every task.
    :param family: `(B,)` long indices into :data:`~pfn_kernels.prior.FAMILIES`.
    :param design: `(B,)` long indices into :data:`~pfn_kernels.prior.DESIGNS`.
    :param num_peaks: `(B, d)` long, nonzero-weight components of ``params`` per dimension: the
        drawn peak count for ``spectral_mixture``, 1 for ``rbf``, Q (or fewer, if some weights
        underflow) for the Matérn and periodic approximations, and 1 for an irrelevant dimension
        (tell those apart with ``relevant``).
    :param relevant: `(B, d)` bool, the dimensions the function depends on.
    :param representable: `(B,)` bool, whether ``params`` is the exact kernel (a
        ``spectral_mixture`` or ``rbf`` task without input warping or trend).
    :param at_optima: `(B,)` bool, whether the task's design followed a BO run: its later points
        cluster around the best of its first ones (``PriorConfig.optimum_design_prob``).

    Example:
        >>> import torch
        >>> from pfn_kernels.prior import PriorConfig, sample_tasks
        >>> g = torch.Generator().manual_seed(0)
        >>> batch = sample_tasks(PriorConfig(), 8, g, num_dims=2, num_context=20)
        >>> batch.x_context.shape, batch.y_context.shape, batch.y_target.shape
        (torch.Size([8, 20, 2]), torch.Size([8, 20]), torch.Size([8, 100]))
        >>> K = batch.covariance(batch.x_context, batch.x_context)  # standardized units
        >>> K.shape, batch.noise.shape
        (torch.Size([8, 20, 20]), torch.Size([8]))
    """

    x_context: Tensor
    y_context: Tensor
    x_target: Tensor
    y_target: Tensor
    f_context: Tensor
    f_target: Tensor
    f_raw_context: Tensor
    f_raw_target: Tensor
    y_mean: Tensor
    y_std: Tensor
    offset_raw: Tensor
    outputscale_raw: Tensor
    noise_raw: Tensor
    params: SpectralParams
    kernel: GroundTruthKernel
    family: Tensor
    design: Tensor
    num_peaks: Tensor
    relevant: Tensor
    representable: Tensor
    at_optima: Tensor

    # ----------------------------------------------------------------- sizes
    @property
    def batch_size(self) -> int:
        """Number of tasks B."""
        return self.x_context.shape[0]

    @property
    def mean_offset(self) -> Tensor:
        r"""`(B,)` the constant mean of each task in standardized units,
        :math:`(c - \bar y) / s_y`: the mean of the oracle GP.

        A zero-mean GP on standardized targets misses this constant, and when the kernel has no
        power near frequency 0 (a single spectral peak away from 0) it cannot absorb it either;
        an oracle that knows the kernel also knows the mean.
        """
        return (self.offset_raw - self.y_mean) / self.y_std

    @property
    def num_dims(self) -> int:
        """Input dimension d."""
        return self.x_context.shape[-1]

    @property
    def num_context(self) -> int:
        """Context points per task n."""
        return self.x_context.shape[-2]

    @property
    def num_targets(self) -> int:
        """Held-out points per task m."""
        return self.x_target.shape[-2]

    @property
    def num_realizations(self) -> int | None:
        """M, or ``None`` when ``y`` has no realization dimension."""
        return self.y_context.shape[-1] if self.y_context.dim() == 3 else None

    @property
    def dtype(self) -> torch.dtype:
        return self.x_context.dtype

    @property
    def device(self) -> torch.device:
        return self.x_context.device

    @property
    def noise(self) -> Tensor:
        """`(B,)` observation noise variance in standardized units (``params.noise``)."""
        return self.params.noise

    @property
    def has_trend(self) -> Tensor:
        """`(B,)` bool, whether a task adds a polynomial trend (not in ``params``)."""
        return self.kernel.has_trend

    @property
    def warped(self) -> Tensor:
        """`(B,)` bool, whether a task's inputs are warped."""
        return self.kernel.warped

    # ----------------------------------------------------------------- kernel
    def covariance(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False) -> Tensor:
        r"""The true kernel in standardized units, :math:`(\sigma_f^2 / s_y^2)\, k`.

        Valid for every family and warping; it excludes the noise (add ``noise`` on the
        diagonal for the oracle GP's training covariance).

        :param x1: `(B, n1, d)` inputs, or `(n1, d)` shared by all tasks.
        :param x2: `(B, n2, d)` inputs, or `(n2, d)`; ``None`` for ``x1``.
        :param diag: return only the diagonal (``n1 == n2``).
        :return: `(B, n1, n2)`, or `(B, n1)` with ``diag``; in the dtype of ``x1``.
        """
        scale = self.params.outputscale.to(x1)
        shape = self.kernel.covariance(x1, x2, diag=diag)  # a fresh tensor: scale in place
        return shape.mul_(scale[:, None] if diag else scale[:, None, None])

    def oracle_scores(self) -> GPScores:
        """Scores of the oracle GP at the targets: the true kernel, noise and constant mean.

        The oracle is the exact GP with :meth:`covariance`, :attr:`noise` and the true constant
        mean :attr:`mean_offset` (without it, a zero-mean GP on standardized y is misspecified
        whenever the kernel has no power near frequency zero). This is the reference of every
        "gap to the oracle" figure.
        """
        xc, xt = self.x_context, self.x_target
        mean = self.mean_offset[:, None] if self.y_context.dim() == 2 else self.mean_offset[:, None, None]
        return exact_gp_scores(
            self.covariance(xc, xc),
            self.covariance(xt, xc),
            self.covariance(xt, xt, diag=True),
            self.noise,
            self.y_context - mean,
            self.y_target - mean,
        )

    # ----------------------------------------------------------------- containers
    def to(self, *args: Any, **kwargs: Any) -> TaskBatch:
        """Move every tensor and cast the floating ones, with :meth:`torch.Tensor.to` arguments
        (e.g. ``batch.to(torch.float64)``, ``batch.to("cuda")``)."""
        device, dtype, *_ = torch._C._nn._parse_to(*args, **kwargs)
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                out[f.name] = _move(value, device, dtype)
            else:
                out[f.name] = value.to(device=device, dtype=dtype)
        return TaskBatch(**out)

    def __getitem__(self, index: Any) -> TaskBatch:
        """The sub-batch of tasks ``index`` (int, slice, index or mask tensor; an int keeps the
        batch dimension), e.g. ``batch[batch.representable]``."""
        index = [index] if isinstance(index, int) else index
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value[index]
        return TaskBatch(**out)


def sample_tasks(
    cfg: PriorConfig,
    batch_size: int,
    generator: Generator | None = None,
    num_dims: int | None = None,
    num_context: int | None = None,
    num_targets: int | None = None,
    num_realizations: int | None = None,
    max_peaks: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> TaskBatch:
    r"""Draw a batch of synthetic regression tasks from the prior ``cfg``.

    All tasks share d, n and m; everything else (family, spectrum, noise, design, warping) is
    drawn per task. The latent values are sampled jointly at context and target points from a
    float64 Cholesky factor of :math:`K + \epsilon I`, with :math:`\epsilon` the first of
    :data:`~pfn_kernels.exact_gp.JITTERS` that works for the task (an eigendecomposition is the last resort).

    :param cfg: the prior.
    :param batch_size: number of tasks B (>= 1).
    :param generator: the source of every random draw (same seed, same batch, bit for bit);
        ``None`` uses torch's global generator.
    :param num_dims: input dimension d; ``None`` draws it uniformly on
        ``[cfg.min_dims, cfg.max_dims]``.
    :param num_context: context size n; ``None`` draws a log-uniform integer on
        ``[cfg.min_context, cfg.max_context]``.
    :param num_targets: held-out points m; ``None`` uses ``cfg.num_targets``.
    :param num_realizations: ``None`` for `(B, n)` targets; an int M >= 1 for `(B, n, M)`:
        M independent draws of the function and noise sharing the inputs and the kernel.
    :param max_peaks: curriculum override of ``cfg.max_peaks`` (1 .. ``cfg.num_mixtures``).
    :param dtype: dtype of the returned floating tensors (sampling runs in float64).
    :return: a :class:`TaskBatch`.

    Example:
        >>> import torch
        >>> from pfn_kernels.prior import PriorConfig, sample_tasks
        >>> batch = sample_tasks(PriorConfig(), 4, torch.Generator().manual_seed(1),
        ...                      num_dims=3, num_context=16, num_realizations=5)
        >>> batch.y_context.shape, batch.params.batch_shape, batch.params.num_mixtures
        (torch.Size([4, 16, 5]), torch.Size([4]), 4)
    """
    cfg.validate()
    _check_int("batch_size", batch_size, 1)
    peaks = cfg.max_peaks if max_peaks is None else _check_int("max_peaks", max_peaks, 1)
    if peaks > cfg.num_mixtures:
        raise ValueError(f"max_peaks ({peaks}) must be <= cfg.num_mixtures ({cfg.num_mixtures}).")
    g = generator
    d = (
        uniform_int(cfg.min_dims, cfg.max_dims, g)
        if num_dims is None
        else _check_int("num_dims", num_dims, 1)
    )
    if num_context is None:
        n = log_uniform_int(cfg.min_context, cfg.max_context, g)
    else:
        n = _check_int("num_context", num_context, 1)
    m = cfg.num_targets if num_targets is None else _check_int("num_targets", num_targets, 0)
    M = 1 if num_realizations is None else _check_int("num_realizations", num_realizations, 1)
    B, N = batch_size, n + m

    kernel = sample_kernels(cfg, B, d, peaks, g, num_context=n)
    x, design = sample_inputs(cfg, B, N, d, g)  # (B, N, d), random order
    outputscale = log_uniform(*cfg.outputscale_range, (B,), g)
    noise = log_uniform(*cfg.noise_ratio_range, (B,), g) * outputscale
    offset = cfg.mean_offset_std * torch.randn(B, generator=g, dtype=DTYPE)

    moved = torch.zeros(B, dtype=torch.bool)  # tasks whose later points were moved
    if cfg.optimum_design_prob > 0 and N > 1:  # no draws otherwise: the stream of old versions
        x, moved, (z0, eps0), jitter0 = _cluster_at_optima(cfg, kernel, x, noise / outputscale, M, g)

    chol, jitter = robust_cholesky(kernel.lower_covariance(x), overwrite=True, return_jitter=True)
    # The first points keep the draws that placed the later ones: the leading block of a Cholesky
    # factor is the factor of the leading block, so their values are the same, if both took the
    # same jitter and neither fell back to the eigendecomposition (jitter 0). Where not, the task
    # is a plain draw on that design, and not flagged ``at_optima``.
    at_optima = moved & (jitter == jitter0) & (jitter > 0) if bool(moved.any()) else moved
    # The jitter is white noise in the draw (f ~ N(0, s^2 (K + eps I))): count it as noise, so
    # that the ground truth (and the oracle GP built from it) describes the data exactly.
    noise = noise + jitter * outputscale
    z = torch.randn(B, N, M, generator=g, dtype=DTYPE)
    if bool(moved.any()):
        z[moved, : z0.shape[1]] = z0[moved]
    f_raw = outputscale.sqrt()[:, None, None] * (chol @ z)  # (B, N, M)
    eps = torch.randn(B, N, M, generator=g, dtype=DTYPE)
    if bool(moved.any()):
        eps[moved, : eps0.shape[1]] = eps0[moved]
    y_raw = offset[:, None, None] + f_raw + noise.sqrt()[:, None, None] * eps
    if bool(moved.any()):  # context and targets split at random, as for every design
        order = torch.rand(B, N, generator=g, dtype=DTYPE).argsort(-1)
        order = torch.where(moved[:, None], order, torch.arange(N))
        x = x.gather(1, order[..., None].expand(B, N, d))
        f_raw, y_raw = (t.gather(1, order[..., None].expand(B, N, M)) for t in (f_raw, y_raw))

    y_mean, y_std = context_statistics(y_raw[:, :n])
    y = (y_raw - y_mean[:, None, None]) / y_std[:, None, None]
    f = (offset[:, None, None] + f_raw - y_mean[:, None, None]) / y_std[:, None, None]
    if num_realizations is None:
        y, f, f_raw = y[..., 0], f[..., 0], f_raw[..., 0]

    var = y_std.square()
    params = SpectralParams(
        weights=kernel.weights,
        means=kernel.means,
        scales=kernel.scales,
        outputscale=outputscale / var,
        noise=noise / var,
        validate=False,
    )
    context, target = (lambda t: t[:, :n].contiguous()), (lambda t: t[:, n:].contiguous())
    batch = TaskBatch(
        x_context=context(x),
        y_context=context(y),
        x_target=target(x),
        y_target=target(y),
        f_context=context(f),
        f_target=target(f),
        f_raw_context=context(f_raw),
        f_raw_target=target(f_raw),
        y_mean=y_mean,
        y_std=y_std,
        offset_raw=offset,
        outputscale_raw=outputscale,
        noise_raw=noise,
        params=params,
        kernel=kernel,
        family=kernel.family,
        design=design,
        num_peaks=(kernel.weights > 0).sum(-1),
        relevant=kernel.relevant,
        representable=kernel.representable,
        at_optima=at_optima,
    )
    return batch.to(dtype)


def _cluster_at_optima(
    cfg: PriorConfig, kernel: GroundTruthKernel, x: Tensor, noise_ratio: Tensor, M: int,
    g: Generator | None,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
    r"""Designs that follow a BO run (``cfg.optimum_design_prob``).

    For the chosen tasks, the first :math:`n_0` of the N points stay (:math:`n_0 / N` drawn once
    per batch); the function is drawn there (standard normals ``z0``, ``eps0``, returned so that the final draw reuses them) and
    the other points move to Gaussian clusters around the best 1 to 3 noisy values of the first
    realization (with M > 1 realizations, the others do not place points), except for an
    exploring fraction left where the design put them.

    :param noise_ratio: `(B,)` :math:`\sigma_n^2/\sigma_f^2` (the draw's scale does not move
        the best points).
    :return: the new `(B, N, d)` inputs, the `(B,)` mask of the chosen tasks, ``(z0, eps0)``,
        each `(B, n0, M)`, and the `(B,)` jitter of the first points' factor.
    """
    B, N, d = x.shape
    chosen = torch.rand(B, generator=g, dtype=DTYPE) < cfg.optimum_design_prob
    frac = float(uniform(*cfg.optimum_initial_fraction_range, (1,), g))
    n0 = min(N - 1, max(1, math.ceil(frac * N)))
    z0 = torch.randn(B, n0, M, generator=g, dtype=DTYPE)
    eps0 = torch.randn(B, n0, M, generator=g, dtype=DTYPE)
    x0 = x[:, :n0]
    chol0, jitter0 = robust_cholesky(kernel.lower_covariance(x0), overwrite=True, return_jitter=True)
    y0 = (chol0 @ z0[..., :1])[..., 0] + noise_ratio.sqrt()[:, None] * eps0[..., 0]  # (B, n0)

    k = min(3, n0)
    best = y0.topk(k, dim=1).indices  # (B, k)
    num_centres = torch.randint(1, k + 1, (B, 1), generator=g)
    pick = (torch.rand(B, N - n0, generator=g, dtype=DTYPE) * num_centres).long()  # (B, N - n0)
    centres = x0.gather(1, best.gather(1, pick)[..., None].expand(B, N - n0, d))
    std = log_uniform(*cfg.optimum_std_range, (B, 1, 1), g)
    moved = (centres + std * torch.randn(B, N - n0, d, generator=g, dtype=DTYPE)).clamp_(0.0, 1.0)
    explore = uniform(*cfg.optimum_explore_range, (B, 1), g)
    stay = torch.rand(B, N - n0, generator=g, dtype=DTYPE) < explore
    later = torch.where(stay[..., None], x[:, n0:], moved)
    x = torch.where(chosen[:, None, None], torch.cat([x0, later], dim=1), x)
    return x, chosen, (z0, eps0), jitter0


def context_statistics(y_context: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased std of `(B, n, M)` context values, jointly over n and M.

    As BoTorch's ``Standardize``: the std is 1 when n = 1 or when it is below :data:`MIN_STD`.

    :return: ``(mean, std)``, each `(B,)`.
    """
    B, n = y_context.shape[:2]
    flat = y_context.reshape(B, -1)
    mean = flat.mean(-1)
    if n == 1:
        return mean, torch.ones_like(mean)
    std = flat.std(-1, correction=1)
    return mean, torch.where(std >= MIN_STD, std, torch.ones_like(std))


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"sample_tasks: {name} must be an int >= {low}; got {value!r}.")
    return value


__all__ = ["TaskBatch", "context_statistics", "sample_tasks"]
