r"""Experiments: the Bayesian-optimization harness shared by the demo and ``benchmarks/bo.py``.

Not part of the core library (``import pfn_kernels`` does not import it); it compares the
amortized surrogate with BoTorch baselines on test problems:

- :mod:`~pfn_kernels.experiments.problems`: test functions and GP samples from the task prior
  (:func:`make_problem`, :data:`PROBLEMS`);
- :mod:`~pfn_kernels.experiments.surrogates`: the surrogates compared, built and fitted by name
  (:func:`fit_surrogate`, :data:`METHODS`), including the SM(4) marginal-likelihood baseline;
- :mod:`~pfn_kernels.experiments.loop`: one BO run (:func:`run_bo`, :class:`BOResult`);
- :mod:`~pfn_kernels.experiments.stats` and :mod:`~pfn_kernels.experiments.plotting`: mean and
  standard error, log-regret curves and their plot;
- :mod:`~pfn_kernels.experiments.demo`: the ``pfn-kernels demo`` command.

Importing the subpackage needs only the core dependencies; drawing plots (the demo, the
benchmark figures) needs matplotlib, from the ``demo`` extra: ``pip install -e ".[demo]"``.
"""

from pfn_kernels.experiments.loop import BOResult, run_bo
from pfn_kernels.experiments.plotting import REGRET_FLOOR, log_regret_curves, plot_log_regret
from pfn_kernels.experiments.problems import (
    GP_PROBLEM_SEED,
    PROBLEMS,
    GPSampleFunction,
    Problem,
    gp_prior_problem,
    make_problem,
)
from pfn_kernels.experiments.stats import mean_stderr
from pfn_kernels.experiments.surrogates import (
    METHOD_LABELS,
    METHODS,
    FitInfo,
    SM4Fit,
    fit_sm4,
    fit_surrogate,
    marginal_log_likelihood,
)

__all__ = [
    "GP_PROBLEM_SEED",
    "METHODS",
    "METHOD_LABELS",
    "PROBLEMS",
    "REGRET_FLOOR",
    "BOResult",
    "FitInfo",
    "GPSampleFunction",
    "Problem",
    "SM4Fit",
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
