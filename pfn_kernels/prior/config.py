r"""Configuration of the synthetic task prior.

Every knob of :func:`~pfn_kernels.prior.sample_tasks` lives in one :class:`PriorConfig`. Ranges
are ``(low, high)`` tuples; "log-uniform" means :math:`\log v \sim \mathcal U[\log lo, \log hi]`.
Frequencies and bandwidths are in cycles per unit input, lengthscales and periods in units of
the input cube :math:`[0, 1]^d`.

Dimension scaling: a product of :math:`d` factors varies faster than each factor, so (as in
BoTorch's dimension-scaled lengthscale prior) frequencies and bandwidths are divided, and
lengthscales and periods multiplied, by :math:`d^{\,\gamma}` with ``dim_scaling`` :math:`\gamma`
(default 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from pfn_kernels.prior.designs import DESIGNS
from pfn_kernels.prior.families import FAMILIES


def default_family_probs() -> dict[str, float]:
    """Default probabilities of the kernel families (normalized at sampling time)."""
    return {
        "spectral_mixture": 0.5,
        "rbf": 0.15,
        "matern12": 0.05,
        "matern32": 0.1,
        "matern52": 0.1,
        "periodic": 0.1,
    }


def default_design_probs() -> dict[str, float]:
    """Default probabilities of the input designs (normalized at sampling time)."""
    return {"uniform": 0.3, "sobol": 0.2, "clustered": 0.3, "grid": 0.2}


@dataclass
class PriorConfig:
    r"""Everything the task prior draws from, with validation.

    Sizes (shared by all tasks of one batch):

    :param min_dims: smallest input dimension d (>= 1).
    :param max_dims: largest input dimension d; d is uniform on ``[min_dims, max_dims]``.
    :param min_context: smallest number of context points n (>= 1).
    :param max_context: largest n; n is a log-uniform integer on ``[min_context, max_context]``
        (:math:`P(n) \propto \log((n+1)/n)`).
    :param num_targets: held-out target points m per task (>= 0).
    :param num_mixtures: components Q per dimension in the returned
        :class:`~pfn_kernels.SpectralParams` (unused ones are padded with zero weight).
    :param max_peaks: most spectral-mixture peaks per dimension, ``1 <= max_peaks <= num_mixtures``
        (a curriculum may lower it per call).

    Kernel families (per task):

    :param family_probs: ``{family: probability}`` over :data:`~pfn_kernels.prior.FAMILIES`;
        missing families get probability 0; normalized at sampling time.
    :param dim_scaling: exponent :math:`\gamma` of the dimension scaling described above.
    :param max_frequency: spectral-mixture peak frequencies are uniform on
        ``[0, max_frequency / d**dim_scaling]`` (cycles per unit).
    :param zero_frequency_prob: probability that a spectral-mixture peak sits at frequency 0
        (an RBF-like, non-oscillating component).
    :param bandwidth_range: log-uniform range of spectral-mixture bandwidths :math:`s`
        (cycles per unit), divided by ``d**dim_scaling``.
    :param lengthscale_range: log-uniform range of rbf/Matérn lengthscales :math:`\ell`,
        multiplied by ``d**dim_scaling``.
    :param period_range: log-uniform range of periodic-kernel periods :math:`p`, multiplied by
        ``d**dim_scaling``.
    :param periodic_lengthscale_range: log-uniform range of the periodic kernel's (dimensionless)
        lengthscale :math:`\ell` in :math:`\exp(-2\sin^2(\pi\tau/p)/\ell^2)`; not dimension-scaled.
        Small values give spikes with many harmonics.
    :param many_cycles_prob: probability that a task is a *many-cycle* task: its spectral-mixture
        peak frequencies are log-uniform from ``max_frequency / d**dim_scaling`` up to what its
        context resolves, :math:`\min(f_{max}^{res}, c\, n^{1/d})` with c =
        ``resolved_cycles_fraction`` and :math:`f_{max}^{res}` = ``max_resolved_frequency`` (a
        periodic task's fundamental frequency likewise, from ``1 / (period_range[0] d**dim_scaling)``;
        its harmonics lie beyond). Tens of cycles across the window, as in long real series.
        Where the cap does not exceed the lower end (small n at larger d, e.g. n = 50 at d = 2)
        a task stays as it was, so the fraction of many-cycle tasks is below this probability
        there. 0 (the default) draws exactly the tasks of earlier versions.
    :param resolved_cycles_fraction: c above: n points on a lattice resolve
        :math:`n^{1/d} / 2` cycles per unit (the Nyquist frequency); c = 1/4 stays at half of it.
    :param max_resolved_frequency: cap of many-cycle frequencies, cycles per unit (the decoder's
        filter bank reaches 64).
    :param irrelevant_prob: probability that a dimension is irrelevant (at least one dimension of
        every task stays relevant). An irrelevant dimension's factor is the single component
        :math:`\exp(-2\pi^2\tau^2 s^2)` with :math:`s` = ``line_bandwidth``, i.e. almost constant.
    :param line_bandwidth: bandwidth of (almost) spectral lines: the irrelevant-dimension
        component and the harmonics of the periodic kernel's spectral approximation.

    Polynomial trends (BO-like objectives: a smooth bowl or ridge with smaller wiggles on it):

    :param trend_prob: probability that a task adds a random separable quadratic trend
        :math:`t(\mathbf x) = \sum_j a_j u_j + b_j u_j^2`, :math:`u_j = x_j - c_j`, with a
        centre :math:`\mathbf c` uniform in the cube and Gaussian coefficients, i.e. a GP with
        the (non-stationary) kernel of :meth:`~pfn_kernels.prior.families.GroundTruthKernel.trend_covariance`.
        The oracle knows it; the stationary spectral ground truth (``params``) does not, so
        such tasks are not ``representable``. 0 (the default) draws exactly the tasks of
        earlier versions.
    :param trend_ratio_range: log-uniform range of the trend's variance relative to the GP's,
        :math:`\sigma_t^2 / \sigma_f^2`, on average over the cube and the centres (large values
        give the large dynamic ranges of polynomial test functions, with the GP part a small
        residual). The quadratic features are not centred, so part of that variance is a
        near-constant that standardization removes: the visible ratio is somewhat lower.

    Scale and noise (raw, i.e. before standardization):

    :param outputscale_range: log-uniform range of the signal variance :math:`\sigma_f^2`.
    :param mean_offset_std: standard deviation of each task's constant mean (normal, mean 0).
    :param noise_ratio_range: log-uniform range of :math:`\sigma_n^2 / \sigma_f^2` (>= 0; from
        near-noiseless to heavy noise).

    Input designs (per task, context and targets from the same design, split at random):

    :param design_probs: ``{design: probability}`` over :data:`~pfn_kernels.prior.DESIGNS`
        (``uniform``, ``sobol``, ``clustered``, ``grid``).
    :param cluster_uniform_fraction_range: the clustered design draws this fraction (uniform on
        the range) of its points uniformly, the rest from Gaussian clusters.
    :param num_clusters_range: number of cluster centres, uniform integer on the range.
    :param cluster_std_range: log-uniform range of a cluster's standard deviation (points are
        clipped to the cube).
    :param grid_span_range: grids cover a random sub-interval (per dimension) of this length,
        uniform on the range, within :math:`[0, 1]`.
    :param grid_extra_levels: for d > 1, a lattice has between :math:`k_0` and
        :math:`k_0 +` ``grid_extra_levels`` levels per dimension, :math:`k_0 = \lceil N^{1/d}\rceil`
        for N = n + m points (drawn without replacement from the lattice).

    :param optimum_design_prob: probability that a task's design follows a BO run: the first
        fraction of its points (``optimum_initial_fraction_range``) comes from its design, the
        function is drawn there, and the rest cluster around the best 1 to 3 of those values
        (Gaussian, std log-uniform on ``optimum_std_range``, clipped to the cube), except for a
        fraction (uniform on ``optimum_explore_range``) that stays where the design put them.
        Context and targets are then split at random, as for every design. 0 (the default)
        draws exactly the tasks of earlier versions.
    :param optimum_initial_fraction_range: uniform range of that initial fraction (drawn once per
        batch, as the batch shares n).
    :param optimum_std_range: log-uniform range of the clusters' standard deviation.
    :param optimum_explore_range: uniform range of the fraction of later points left in place.

    Input warping:

    :param warp_prob: probability that a task's inputs are warped by a per-dimension Kumaraswamy
        CDF :math:`F(x) = 1 - (1 - x^a)^b` (the function is stationary in :math:`F(x)`).
    :param warp_range: log-uniform range of the Kumaraswamy parameters :math:`a, b`.

    Example:
        >>> cfg = PriorConfig(max_dims=3, max_context=64, family_probs={"rbf": 1.0})
        >>> cfg.max_peaks
        4
        >>> PriorConfig(min_dims=4, max_dims=2)
        Traceback (most recent call last):
        ...
        ValueError: PriorConfig: min_dims (4) must be <= max_dims (2).
    """

    # sizes
    min_dims: int = 1
    max_dims: int = 8
    min_context: int = 1
    max_context: int = 256
    num_targets: int = 100
    num_mixtures: int = 4
    max_peaks: int = 4
    # kernel families
    family_probs: dict[str, float] = field(default_factory=default_family_probs)
    dim_scaling: float = 0.5
    max_frequency: float = 5.0
    zero_frequency_prob: float = 0.3
    bandwidth_range: tuple[float, float] = (0.03, 3.0)
    lengthscale_range: tuple[float, float] = (0.05, 2.0)
    period_range: tuple[float, float] = (0.1, 1.0)
    periodic_lengthscale_range: tuple[float, float] = (0.5, 2.0)
    many_cycles_prob: float = 0.0
    resolved_cycles_fraction: float = 0.25
    max_resolved_frequency: float = 48.0
    irrelevant_prob: float = 0.2
    line_bandwidth: float = 1e-3
    # polynomial trends
    trend_prob: float = 0.0
    trend_ratio_range: tuple[float, float] = (0.1, 100.0)
    # scale and noise
    outputscale_range: tuple[float, float] = (0.1, 10.0)
    mean_offset_std: float = 1.0
    noise_ratio_range: tuple[float, float] = (1e-6, 0.5)
    # input designs
    design_probs: dict[str, float] = field(default_factory=default_design_probs)
    cluster_uniform_fraction_range: tuple[float, float] = (0.0, 0.5)
    num_clusters_range: tuple[int, int] = (1, 3)
    cluster_std_range: tuple[float, float] = (0.03, 0.2)
    grid_span_range: tuple[float, float] = (0.3, 1.0)
    grid_extra_levels: int = 3
    optimum_design_prob: float = 0.0
    optimum_initial_fraction_range: tuple[float, float] = (0.2, 0.5)
    optimum_std_range: tuple[float, float] = (0.01, 0.2)
    optimum_explore_range: tuple[float, float] = (0.0, 0.3)
    # input warping
    warp_prob: float = 0.1
    warp_range: tuple[float, float] = (0.5, 2.0)

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise a ``ValueError`` naming the first invalid field (called on construction and by
        :func:`~pfn_kernels.prior.sample_tasks`, so later edits are checked too)."""
        _int_range(self, "min_dims", "max_dims", low=1)
        _int_range(self, "min_context", "max_context", low=1)
        _int_at_least(self, "num_targets", 0)
        _int_at_least(self, "num_mixtures", 1)
        _int_at_least(self, "max_peaks", 1)
        if self.max_peaks > self.num_mixtures:
            raise ValueError(
                f"PriorConfig: max_peaks ({self.max_peaks}) must be <= num_mixtures "
                f"({self.num_mixtures})."
            )
        _probs(self, "family_probs", FAMILIES)
        _probs(self, "design_probs", DESIGNS)
        _finite(self, "dim_scaling")
        _finite(self, "max_frequency", low=0.0)
        _finite(self, "mean_offset_std", low=0.0)
        for name in ("zero_frequency_prob", "irrelevant_prob", "warp_prob", "many_cycles_prob",
                     "trend_prob", "optimum_design_prob"):
            _probability(self, name)
        _finite(self, "resolved_cycles_fraction", low=0.0, strict=True)
        if self.many_cycles_prob > 0 and not self.max_frequency > 0:
            raise ValueError(
                "PriorConfig: many_cycles_prob > 0 needs max_frequency > 0 (the lower end of the "
                f"many-cycle frequencies); got max_frequency={self.max_frequency}."
            )
        _finite(self, "max_resolved_frequency", low=0.0, strict=True)
        _finite(self, "line_bandwidth", low=0.0, strict=True)
        for name in (
            "bandwidth_range",
            "lengthscale_range",
            "period_range",
            "periodic_lengthscale_range",
            "outputscale_range",
            "noise_ratio_range",
            "trend_ratio_range",
            "cluster_std_range",
            "optimum_std_range",
            "warp_range",
        ):
            _positive_range(self, name)
        _range(self, "cluster_uniform_fraction_range", 0.0, 1.0)
        _range(self, "grid_span_range", 0.0, 1.0, strict_low=True)
        _range(self, "optimum_initial_fraction_range", 0.0, 1.0, strict_low=True)
        _range(self, "optimum_explore_range", 0.0, 1.0)
        lo, hi = _pair(self, "num_clusters_range")
        if int(lo) != lo or int(hi) != hi or not 1 <= lo <= hi:
            raise ValueError(
                "PriorConfig: num_clusters_range must be integers 1 <= low <= high; "
                f"got {(lo, hi)}."
            )
        _int_at_least(self, "grid_extra_levels", 0)

    # ----------------------------------------------------------------- helpers
    def family_weights(self) -> Tensor:
        """`(len(FAMILIES),)` float64 probabilities aligned with :data:`FAMILIES`."""
        return _aligned(self.family_probs, FAMILIES)

    def design_weights(self) -> Tensor:
        """`(len(DESIGNS),)` float64 probabilities aligned with :data:`DESIGNS`."""
        return _aligned(self.design_probs, DESIGNS)


# --------------------------------------------------------------------- validators
def _fail(name: str, message: str) -> None:
    raise ValueError(f"PriorConfig: {name} {message}")


def _int_at_least(cfg: PriorConfig, name: str, low: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, f"must be an int; got {value!r}.")
    if value < low:
        _fail(name, f"must be >= {low}; got {value}.")


def _int_range(cfg: PriorConfig, lo_name: str, hi_name: str, low: int) -> None:
    _int_at_least(cfg, lo_name, low)
    _int_at_least(cfg, hi_name, low)
    lo, hi = getattr(cfg, lo_name), getattr(cfg, hi_name)
    if lo > hi:
        raise ValueError(f"PriorConfig: {lo_name} ({lo}) must be <= {hi_name} ({hi}).")


def _finite(cfg: PriorConfig, name: str, low: float | None = None, strict: bool = False) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(name, f"must be a finite number; got {value!r}.")
    if low is not None and (value <= low if strict else value < low):
        _fail(name, f"must be {'>' if strict else '>='} {low}; got {value}.")


def _probability(cfg: PriorConfig, name: str) -> None:
    _finite(cfg, name)
    value = getattr(cfg, name)
    if not 0.0 <= value <= 1.0:
        _fail(name, f"is a probability and must lie in [0, 1]; got {value}.")


def _pair(cfg: PriorConfig, name: str) -> tuple[float, float]:
    value = getattr(cfg, name)
    try:
        lo, hi = value
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        _fail(name, f"must be a (low, high) pair of numbers; got {value!r}.")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        _fail(name, f"must be finite; got {value!r}.")
    if lo > hi:
        _fail(name, f"must satisfy low <= high; got {value!r}.")
    return lo, hi


def _positive_range(cfg: PriorConfig, name: str) -> None:
    lo, _ = _pair(cfg, name)
    if lo <= 0:
        _fail(name, f"is log-uniform and needs 0 < low <= high; got {getattr(cfg, name)!r}.")


def _range(cfg: PriorConfig, name: str, low: float, high: float, strict_low: bool = False) -> None:
    lo, hi = _pair(cfg, name)
    if (lo <= low if strict_low else lo < low) or hi > high:
        bracket = "(" if strict_low else "["
        _fail(name, f"must lie in {bracket}{low}, {high}]; got {getattr(cfg, name)!r}.")


def _probs(cfg: PriorConfig, name: str, allowed: tuple[str, ...]) -> None:
    probs = getattr(cfg, name)
    if not isinstance(probs, dict):
        _fail(name, f"must be a dict {{name: probability}}; got {type(probs).__name__}.")
    unknown = sorted(set(probs) - set(allowed))
    if unknown:
        _fail(name, f"has unknown keys {unknown}; allowed are {list(allowed)}.")
    for key, value in probs.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(
                f"PriorConfig: {name}[{key!r}] must be a finite number; got {value!r}."
            )
        if value < 0:
            raise ValueError(
                f"PriorConfig: {name}[{key!r}] must be >= 0 (a probability); got {value}."
            )
    if sum(probs.values()) <= 0:
        _fail(name, "must give a positive probability to at least one entry.")


def _aligned(probs: dict[str, float], names: tuple[str, ...]) -> Tensor:
    w = torch.tensor([float(probs.get(k, 0.0)) for k in names], dtype=torch.float64)
    return w / w.sum()


__all__ = ["PriorConfig", "default_design_probs", "default_family_probs"]
