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
The names load on first use, so that ``pfn-kernels demo --help`` imports neither torch nor
BoTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "BOResult": "loop",
    "run_bo": "loop",
    "REGRET_FLOOR": "plotting",
    "log_regret_curves": "plotting",
    "plot_log_regret": "plotting",
    "GP_PROBLEM_SEED": "problems",
    "PROBLEMS": "problems",
    "GPSampleFunction": "problems",
    "Problem": "problems",
    "gp_prior_problem": "problems",
    "make_problem": "problems",
    "mean_stderr": "stats",
    "METHOD_LABELS": "surrogates",
    "METHODS": "surrogates",
    "FitInfo": "surrogates",
    "SM4Fit": "surrogates",
    "fit_sm4": "surrogates",
    "fit_surrogate": "surrogates",
    "marginal_log_likelihood": "surrogates",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
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


#: The submodules, reachable as attributes (``pfn_kernels.experiments.demo``), imported on use.
_SUBMODULES = frozenset({"demo", "loop", "plotting", "problems", "stats", "surrogates"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pfn_kernels.experiments' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pfn_kernels.experiments.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


__all__ = sorted(_EXPORTS)
