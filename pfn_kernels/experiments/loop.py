r"""The Bayesian-optimization loop of the harness, shared by the demo and the BO benchmark.

One run (:func:`run_bo`) maximizes a :class:`~pfn_kernels.experiments.problems.Problem` with a
surrogate named in :data:`~pfn_kernels.experiments.surrogates.METHODS`:

1. ``n_init`` scrambled Sobol points in the unit cube (the same points for every method of a seed);
2. ``n_iter`` steps, each: fit the surrogate on all data so far (inputs in :math:`[0, 1]^d`,
   targets standardized by the model's default ``Standardize``), then maximize
   ``qLogNoisyExpectedImprovement`` (q = 1) with ``optimize_acqf`` and evaluate the candidate.

Failures never stop a run: a fit that raises keeps the model's current parameters, an acquisition
optimization that raises is replaced by the next point of a separate Sobol sequence; both are
recorded in :attr:`BOResult.failures`. Warnings are counted per category.

Regret is simple regret, ``problem.optimal_value - best observed value``, after each evaluation.

Example:
    >>> from pfn_kernels.experiments import make_problem, run_bo
    >>> problem = make_problem("branin")
    >>> result = run_bo(problem, "default_stgp", seed=0, n_init=4, n_iter=1)
    >>> len(result.regret)  # one value per evaluation
    5
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pfn_kernels.experiments.problems import Problem
from pfn_kernels.experiments.surrogates import METHODS, _count_warnings, fit_surrogate


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
    inference: Any = None,
) -> BOResult:
    """Maximize ``problem`` with the surrogate ``method``: Sobol design, then qLogNEI steps.

    :param problem: the objective (:func:`~pfn_kernels.experiments.problems.make_problem`).
    :param method: one of :data:`~pfn_kernels.experiments.surrogates.METHODS`.
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
    :param inference: :class:`~pfn_kernels.inference.InferenceConfig` (or its dict) of the
        amortized methods; ``None``: the defaults.
    """
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.optim import optimize_acqf
    from botorch.utils.sampling import draw_sobol_samples

    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    if n_init < 2 or n_iter < 0:
        raise ValueError(f"Need n_init >= 2 and n_iter >= 0, got {n_init} and {n_iter}.")
    start = time.perf_counter()
    d = problem.dim
    unit = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.float64)
    U = draw_sobol_samples(unit, n=n_init, q=1, seed=seed).squeeze(-2)  # (n_init, d) in [0, 1]^d
    Y = problem.evaluate_unit(U)  # (n_init,)
    fallback = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed + 7919)
    fit_times, acq_times, failures = [], [], []
    warning_counts: Counter = Counter()
    model = None
    for step in range(n_iter):
        model, info = fit_surrogate(method, U, Y[:, None], decoder=decoder, seed=seed * 1009 + step,
                                    inference=inference,
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


__all__ = ["BOResult", "run_bo"]
