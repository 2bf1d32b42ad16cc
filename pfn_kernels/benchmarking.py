r"""Bayesian-optimization loop and test problems, shared by the demo and the BO benchmark.

One run maximizes a :class:`Problem` with a surrogate named in :data:`METHODS`:

1. ``n_init`` scrambled Sobol points in the unit cube (the same points for every method of a seed);
2. ``n_iter`` steps, each: fit the surrogate on all data so far (inputs in :math:`[0, 1]^d`,
   targets standardized by the model's default ``Standardize``), then maximize
   ``qLogNoisyExpectedImprovement`` (q = 1) with ``optimize_acqf`` and evaluate the candidate.

The surrogates (:func:`fit_surrogate`):

- ``amortized``: :class:`~pfn_kernels.AmortizedSingleTaskGP` fitted by ``fit_gpytorch_mll``, i.e.
  one decoder pass (default decoder: the shipped pretrained one);
- ``amortized_refine``: the same, then :func:`~pfn_kernels.fit_amortized` with ``refine=True``
  (a short MAP refinement with priors centred on the decoded values);
- ``default_stgp``: BoTorch's ``SingleTaskGP(X, Y)`` with every default, fitted by
  ``fit_gpytorch_mll``;
- ``sm4_mll``: ``SingleTaskGP`` with gpytorch's ``SpectralMixtureKernel(num_mixtures=4,
  ard_num_dims=d)``, ``initialize_from_data`` on the standardized targets, ``restarts`` fits by
  ``fit_gpytorch_mll`` (L-BFGS capped at ``maxiter`` iterations, one attempt each); the restart
  with the highest marginal likelihood is kept.

Failures never stop a run: a fit that raises keeps the model's current parameters, an acquisition
optimization that raises is replaced by the next point of a separate Sobol sequence; both are
recorded in :attr:`BOResult.failures`. Warnings are counted per category.

Regret is simple regret, ``problem.optimal_value - best observed value``, after each evaluation.

Example:
    >>> from pfn_kernels.benchmarking import make_problem, run_bo
    >>> problem = make_problem("branin")
    >>> result = run_bo(problem, "default_stgp", seed=0, n_init=4, n_iter=1)
    >>> len(result.regret)  # one value per evaluation
    5
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

#: Problems by name; ``gp_prior2`` and ``gp_prior4`` are drawn from the task prior per seed.
PROBLEMS = ("branin", "hartmann6", "ackley4", "levy4", "rosenbrock4", "gp_prior2", "gp_prior4")
#: Surrogates by name (see the module docstring).
METHODS = ("amortized", "amortized_refine", "default_stgp", "sm4_mll")
#: Human-readable method descriptions, for tables and plot legends.
METHOD_LABELS = {
    "amortized": "AmortizedSingleTaskGP (1 decoder pass)",
    "amortized_refine": "AmortizedSingleTaskGP + refine",
    "default_stgp": "SingleTaskGP (fit_gpytorch_mll)",
    "sm4_mll": "SingleTaskGP + SM(4) (MLL, best of restarts)",
}
#: Regrets are floored at this value before taking logarithms (plots only).
REGRET_FLOOR = 1e-8
#: Base seed of the GP-sample objectives (independent of the BO seeds' other streams).
GP_PROBLEM_SEED = 4242


# ---------------------------------------------------------------------- problems
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
        lower, upper = self.bounds[0], self.bounds[1]
        with torch.no_grad():
            return self.function(lower + (upper - lower) * U).reshape(-1)

    def to_bounds(self, U: Tensor) -> Tensor:
        """Unit-cube points `(n, d)` mapped into ``bounds``."""
        return self.bounds[0] + (self.bounds[1] - self.bounds[0]) * U


def make_problem(name: str, seed: int = 0) -> Problem:
    """The problem ``name`` (see :data:`PROBLEMS`); ``seed`` matters for GP-sample problems only.

    Test functions come from :mod:`botorch.test_functions`, negated so that they are maximized
    (their known optimum likewise).
    """
    from botorch.test_functions import Ackley, Branin, Hartmann, Levy, Rosenbrock

    synthetic = {
        "branin": lambda: Branin(negate=True),
        "hartmann6": lambda: Hartmann(dim=6, negate=True),
        "ackley4": lambda: Ackley(dim=4, negate=True),
        "levy4": lambda: Levy(dim=4, negate=True),
        "rosenbrock4": lambda: Rosenbrock(dim=4, negate=True),
    }
    if name in synthetic:
        fn = synthetic[name]().to(torch.float64)
        return Problem(
            name=name,
            dim=fn.dim,
            bounds=fn.bounds.to(torch.float64),
            function=fn,
            optimal_value=float(fn.optimal_value),
            description=f"botorch.test_functions.{type(fn).__name__}(dim={fn.dim}), negated",
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


# ---------------------------------------------------------------------- surrogates
@dataclass
class FitInfo:
    """What one surrogate fit cost and how it went."""

    seconds: float
    failure: str | None = None
    warnings: Counter = field(default_factory=Counter)


def _count_warnings(caught: list[warnings.WarningMessage]) -> Counter:
    return Counter(w.category.__name__ for w in caught)


def fit_surrogate(
    method: str,
    train_X: Tensor,
    train_Y: Tensor,
    decoder: Any = None,
    seed: int = 0,
    sm_restarts: int = 5,
    sm_maxiter: int = 200,
) -> tuple[Any, FitInfo]:
    """Build and fit the surrogate ``method`` on unit-cube inputs `(n, d)` and targets `(n, 1)`.

    :param decoder: decoder of the amortized methods (``None``: the shipped pretrained one).
    :param seed: seeds ``initialize_from_data`` of ``sm4_mll`` (restart r uses ``seed + r``).
    :return: the model in eval mode and a :class:`FitInfo` (time from construction to fitted).
    """
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from pfn_kernels.fit import fit_amortized
    from pfn_kernels.models import AmortizedSingleTaskGP

    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    start = time.perf_counter()
    failure = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if method == "sm4_mll":
            model, sm4 = fit_sm4(train_X, train_Y, seed, sm_restarts, sm_maxiter)
            if sm4.all_failed:
                failure = f"all {len(sm4.errors)} SM(4) restarts failed; last: {sm4.errors[-1]}"
        else:
            if method == "default_stgp":
                model = SingleTaskGP(train_X, train_Y)
            else:  # inputs are already in the unit cube, as the decoder expects
                model = AmortizedSingleTaskGP(
                    train_X, train_Y, decoder=decoder, input_transform=None
                )
            try:
                if method == "amortized_refine":
                    fit_amortized(model, refine=True)
                else:
                    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            except Exception as err:  # noqa: BLE001  (recorded; the run goes on)
                failure = f"{type(err).__name__}: {err}"
        model.eval()
    return model, FitInfo(time.perf_counter() - start, failure, _count_warnings(caught))


@dataclass
class SM4Fit:
    """How a best-of-restarts SM(4) fit went (see :func:`fit_sm4`)."""

    restart_seconds: list[float]
    errors: list[str]
    best_mll: float
    warnings: Counter = field(default_factory=Counter)

    @property
    def all_failed(self) -> bool:
        return len(self.errors) == len(self.restart_seconds)


def fit_sm4(train_X: Tensor, train_Y: Tensor, seed: int = 0, restarts: int = 5, maxiter: int = 200
            ) -> tuple[Any, SM4Fit]:
    """``SingleTaskGP`` + ``SpectralMixtureKernel(4)``, best of ``restarts`` MLL fits, as users do it.

    Restart r seeds torch's global generator with ``seed + r`` (``initialize_from_data`` draws
    from it), initializes from the data (with y standardized), and runs ``fit_gpytorch_mll`` with
    L-BFGS capped at ``maxiter`` iterations and one attempt; optimizer warnings are counted, not
    retried. A restart whose fit raises keeps the parameters it has after the fit's rollback. The
    restart with the highest final marginal likelihood is returned, in eval mode.

    :param train_X: `(n, d)` inputs in the unit cube.
    :param train_Y: `(n, 1)` targets.
    """
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.kernels import SpectralMixtureKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood

    y = train_Y.squeeze(-1)
    y = (y - y.mean()) / (y.std() if len(y) > 1 and y.std() > 1e-8 else 1.0)
    best_value, best_model = -math.inf, None
    info = SM4Fit([], [], -math.inf)

    def accept(w: warnings.WarningMessage) -> bool:  # count optimizer warnings, do not retry
        info.warnings[w.category.__name__] += 1
        return True

    for r in range(max(1, restarts)):
        t0 = time.perf_counter()
        torch.manual_seed(seed + r)
        covar = SpectralMixtureKernel(num_mixtures=4, ard_num_dims=train_X.shape[-1]).to(train_X)
        covar.initialize_from_data(train_X, y)
        model = SingleTaskGP(train_X, train_Y, covar_module=covar)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}},
                                 max_attempts=1, warning_handler=accept)
            except Exception as err:  # noqa: BLE001  (NotPSDError, ModelFittingError, NaNs)
                info.errors.append(f"{type(err).__name__}: {err}")
        info.warnings.update(w.category.__name__ for w in caught)
        value = marginal_log_likelihood(mll)
        if best_model is None or value > best_value:
            best_value, best_model = value, model
        info.restart_seconds.append(time.perf_counter() - t0)
    info.best_mll = best_value
    return best_model.eval(), info


def marginal_log_likelihood(mll: Any) -> float:
    """The exact marginal log likelihood (per point) at the model's parameters; -inf on failure."""
    model = mll.model
    model.train()
    try:
        with torch.no_grad():
            value = float(mll(model(*model.train_inputs), model.train_targets))
    except Exception:  # noqa: BLE001
        value = -math.inf
    model.eval()
    return value if math.isfinite(value) else -math.inf


# ---------------------------------------------------------------------- the loop
@dataclass
class BOResult:
    """One BO run. Lists over evaluations have ``n_init + n_iter`` entries; over steps ``n_iter``.

    :param X: `(n, d)` evaluated points, in the problem's bounds.
    :param Y: `(n,)` observed values.
    :param best_so_far: best value after each evaluation.
    :param regret: ``optimal_value - best_so_far`` after each evaluation.
    :param fit_times: seconds per surrogate fit (construction included), one per BO step.
    :param acq_times: seconds per acquisition optimization, one per BO step.
    :param wall_time: seconds for the whole run, function evaluations included.
    :param failures: ``"step k: fit|acquisition: message"`` for every recovered failure.
    :param warnings: warning counts by category.
    :param model: the last fitted surrogate (not serialized).
    """

    problem: str
    method: str
    seed: int
    n_init: int
    n_iter: int
    optimal_value: float
    X: Tensor
    Y: Tensor
    best_so_far: list[float]
    regret: list[float]
    fit_times: list[float]
    acq_times: list[float]
    wall_time: float
    failures: list[str]
    warnings: dict[str, int]
    model: Any = None

    @property
    def final_regret(self) -> float:
        return self.regret[-1]

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, as JSON-ready Python values."""
        return {
            "problem": self.problem,
            "method": self.method,
            "seed": self.seed,
            "n_init": self.n_init,
            "n_iter": self.n_iter,
            "optimal_value": self.optimal_value,
            "X": self.X.tolist(),
            "Y": self.Y.tolist(),
            "best_so_far": self.best_so_far,
            "regret": self.regret,
            "fit_times": self.fit_times,
            "acq_times": self.acq_times,
            "fit_time_total": sum(self.fit_times),
            "acq_time_total": sum(self.acq_times),
            "wall_time": self.wall_time,
            "failures": self.failures,
            "warnings": self.warnings,
        }


def run_bo(
    problem: Problem,
    method: str,
    seed: int = 0,
    n_init: int = 8,
    n_iter: int = 20,
    decoder: Any = None,
    num_restarts: int = 4,
    raw_samples: int = 128,
    sm_restarts: int = 5,
    sm_maxiter: int = 200,
    on_step: Callable[[int], None] | None = None,
) -> BOResult:
    """Maximize ``problem`` with the surrogate ``method``: Sobol design, then qLogNEI steps.

    :param problem: the objective (:func:`make_problem`).
    :param method: one of :data:`METHODS`.
    :param seed: seeds the Sobol design (shared by all methods), the acquisition optimization
        (``torch.manual_seed(seed * 100003 + step)`` before each step) and the SM(4) restarts.
    :param n_init: Sobol points before the first model fit (>= 2).
    :param n_iter: BO steps (q = 1).
    :param decoder: decoder of the amortized methods (``None``: the shipped pretrained one).
    :param num_restarts: ``optimize_acqf`` restarts.
    :param raw_samples: ``optimize_acqf`` raw samples for the initial conditions.
    :param sm_restarts: restarts of ``sm4_mll``.
    :param sm_maxiter: L-BFGS iterations per ``sm4_mll`` restart.
    :param on_step: called with the step index after every BO step (progress bars).
    """
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.optim import optimize_acqf

    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    if n_init < 2 or n_iter < 0:
        raise ValueError(f"Need n_init >= 2 and n_iter >= 0, got {n_init} and {n_iter}.")
    start = time.perf_counter()
    d = problem.dim
    unit = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.float64)
    sobol = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed)
    U = sobol.draw(n_init, dtype=torch.float64)  # (n_init, d) unit-cube inputs
    Y = problem.evaluate_unit(U)  # (n_init,)
    fallback = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed + 7919)
    fit_times, acq_times, failures = [], [], []
    warning_counts: Counter = Counter()
    model = None
    for step in range(n_iter):
        model, info = fit_surrogate(method, U, Y[:, None], decoder=decoder, seed=seed * 1009 + step,
                                    sm_restarts=sm_restarts, sm_maxiter=sm_maxiter)
        fit_times.append(info.seconds)
        warning_counts.update(info.warnings)
        if info.failure is not None:
            failures.append(f"step {step}: fit: {info.failure}")

        t0 = time.perf_counter()
        torch.manual_seed(seed * 100003 + step)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                acqf = qLogNoisyExpectedImprovement(model=model, X_baseline=U, prune_baseline=True)
                candidate, _ = optimize_acqf(acqf, bounds=unit, q=1, num_restarts=num_restarts,
                                             raw_samples=raw_samples)
                candidate = candidate.detach().reshape(1, d).clamp(0, 1)
                if not bool(torch.isfinite(candidate).all()):
                    raise RuntimeError("non-finite candidate")
            except Exception as err:  # noqa: BLE001  (recorded; a Sobol point instead)
                failures.append(f"step {step}: acquisition: {type(err).__name__}: {err}")
                candidate = fallback.draw(1, dtype=torch.float64)
        warning_counts.update(_count_warnings(caught))
        acq_times.append(time.perf_counter() - t0)

        U = torch.cat([U, candidate])
        Y = torch.cat([Y, problem.evaluate_unit(candidate)])
        if on_step is not None:
            on_step(step)

    best = torch.cummax(Y, dim=0).values
    return BOResult(
        problem=problem.name,
        method=method,
        seed=seed,
        n_init=n_init,
        n_iter=n_iter,
        optimal_value=problem.optimal_value,
        X=problem.to_bounds(U),
        Y=Y,
        best_so_far=best.tolist(),
        regret=(problem.optimal_value - best).tolist(),
        fit_times=fit_times,
        acq_times=acq_times,
        wall_time=time.perf_counter() - start,
        failures=failures,
        warnings=dict(warning_counts),
        model=model,
    )


# ---------------------------------------------------------------------- summaries and plots
def mean_stderr(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for one value, NaN for none)."""
    v = [float(x) for x in values]
    if not v:
        return math.nan, math.nan
    mean = sum(v) / len(v)
    if len(v) < 2:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in v) / (len(v) - 1)
    return mean, math.sqrt(var / len(v))


def log_regret_curves(results: list[BOResult | dict[str, Any]]) -> tuple[Tensor, Tensor]:
    r"""Mean and standard error over runs of :math:`\log_{10}` regret per evaluation.

    Regrets are floored at :data:`REGRET_FLOOR` (so exact optima and the small negative regrets of
    estimated optima stay plottable). All runs must have the same length.
    """
    regrets = torch.tensor([r.regret if isinstance(r, BOResult) else r["regret"] for r in results],
                           dtype=torch.float64)
    logs = regrets.clamp_min(REGRET_FLOOR).log10()  # (runs, n)
    mean = logs.mean(0)
    se = logs.std(0) / math.sqrt(len(results)) if len(results) > 1 else torch.zeros_like(mean)
    return mean, se


def plot_log_regret(ax: Any, results_by_method: dict[str, list[Any]], n_init: int,
                    title: str = "", labels: dict[str, str] | None = None) -> None:
    """Draw mean +- standard error of log10 regret vs evaluations on a matplotlib axis.

    Each method of :data:`METHODS` keeps its colour across panels (``C0``, ``C1``, ... in that
    order); ``labels`` overrides the legend entry of a method (default :data:`METHOD_LABELS`).
    """
    labels = labels or {}
    for method, results in results_by_method.items():
        if not results:
            continue
        mean, se = log_regret_curves(results)
        x = torch.arange(1, len(mean) + 1)
        color = f"C{METHODS.index(method)}" if method in METHODS else None
        line, = ax.plot(x, mean, color=color,
                        label=labels.get(method, METHOD_LABELS.get(method, method)))
        ax.fill_between(x, mean - se, mean + se, alpha=0.2, color=line.get_color())
    ax.axvline(n_init + 0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("function evaluations (Sobol design left of the dotted line)")
    ax.set_ylabel("log10 simple regret")
    if title:
        ax.set_title(title)


__all__ = [
    "BOResult",
    "FitInfo",
    "GPSampleFunction",
    "METHODS",
    "METHOD_LABELS",
    "PROBLEMS",
    "Problem",
    "REGRET_FLOOR",
    "fit_sm4",
    "fit_surrogate",
    "gp_prior_problem",
    "log_regret_curves",
    "make_problem",
    "marginal_log_likelihood",
    "mean_stderr",
    "plot_log_regret",
    "run_bo",
]
