r"""Surrogates of the BO harness: build and fit a GP model by method name.

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
  with the highest marginal likelihood is kept (:func:`fit_sm4`).

A fit that raises keeps the model's current parameters; the error is recorded in
:attr:`FitInfo.failure` and warnings are counted per category.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

#: Surrogates by name (see the module docstring).
METHODS = ("amortized", "amortized_refine", "default_stgp", "sm4_mll")
#: Human-readable method descriptions, for tables and plot legends.
METHOD_LABELS = {
    "amortized": "AmortizedSingleTaskGP (1 decoder pass)",
    "amortized_refine": "AmortizedSingleTaskGP + refine",
    "default_stgp": "SingleTaskGP (fit_gpytorch_mll)",
    "sm4_mll": "SingleTaskGP + SM(4) (MLL, best of restarts)",
}


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
    inference: Any = None,
) -> tuple[Any, FitInfo]:
    """Build and fit the surrogate ``method`` on unit-cube inputs `(n, d)` and targets `(n, 1)`.

    :param decoder: decoder of the amortized methods (``None``: the shipped pretrained one).
    :param seed: seeds ``initialize_from_data`` of ``sm4_mll`` (restart r uses ``seed + r``).
    :param inference: :class:`~pfn_kernels.inference.InferenceConfig` (or its dict) of the
        amortized methods; ``None``: the defaults.
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
                    train_X, train_Y, decoder=decoder, input_transform=None, inference=inference
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


#: Initializations of :func:`fit_sm4`: GPyTorch's ``initialize_from_data`` and
#: ``initialize_from_data_empspect`` (from the empirical spectrum; see
#: :func:`_initialize_from_empirical_spectrum`).
SM4_INITS = ("data", "empspect")


def _initialize_from_empirical_spectrum(covar: Any, train_X: Tensor, y: Tensor, seed: int) -> None:
    """GPyTorch's ``initialize_from_data_empspect``, in the inputs' units and seeded.

    GPyTorch reads y as evenly spaced samples and returns frequencies in cycles per *sample*,
    bandwidths as the Gaussian mixture's *variances*, and draws from NumPy's global generator
    (and an unseeded scikit-learn mixture) that ``torch.manual_seed`` does not reach. Here the
    points are ordered along the first input, the means and the bandwidths' square roots are
    divided by the median spacing of that input (cycles per unit input; exact for an evenly spaced
    1-D series, an approximation for irregular or multi-dimensional inputs), and NumPy's global
    state is seeded with ``seed`` for the call and restored after.
    """
    import numpy as np

    order = train_X[:, 0].argsort()
    spacing = train_X[order, 0].diff().median().clamp_min(1e-12)
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        covar.initialize_from_data_empspect(train_X[order], y[order])
    finally:
        np.random.set_state(state)
    with torch.no_grad():
        means = covar.mixture_means / spacing
        scales = covar.mixture_scales.clamp_min(1e-12).sqrt() / spacing
    covar.mixture_means = means
    covar.mixture_scales = scales


def fit_sm4(train_X: Tensor, train_Y: Tensor, seed: int = 0, restarts: int = 5, maxiter: int = 200,
            init: str = "data") -> tuple[Any, SM4Fit]:
    """``SingleTaskGP`` + ``SpectralMixtureKernel(4)``, best of ``restarts`` MLL fits, as users do it.

    Restart r seeds torch's global generator with ``seed + r`` (``initialize_from_data`` draws
    from it; the ``"empspect"`` start seeds NumPy's with it), initializes from the data (with y standardized), and runs ``fit_gpytorch_mll`` with
    L-BFGS capped at ``maxiter`` iterations and one attempt; optimizer warnings are counted, not
    retried. A restart whose fit raises keeps the parameters it has after the fit's rollback. The
    restart with the highest final marginal likelihood is returned, in eval mode.

    :param train_X: `(n, d)` inputs in the unit cube.
    :param train_Y: `(n, 1)` targets.
    :param init: ``"data"`` (``initialize_from_data``) or ``"empspect"``
        (``initialize_from_data_empspect``).
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
        if init == "data":
            covar.initialize_from_data(train_X, y)
        elif init == "empspect":
            _initialize_from_empirical_spectrum(covar, train_X, y, seed + r)
        else:
            raise ValueError(f"init must be one of {SM4_INITS}, got {init!r}.")
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


__all__ = [
    "METHODS",
    "METHOD_LABELS",
    "FitInfo",
    "SM4Fit",
    "fit_sm4",
    "fit_surrogate",
    "marginal_log_likelihood",
]
