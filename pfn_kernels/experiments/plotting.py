r"""Regret curves of BO runs and their plot.

:func:`log_regret_curves` needs only torch; :func:`plot_log_regret` draws on a matplotlib axis
that the caller creates (matplotlib comes with the ``demo`` extra), so importing this module does
not import matplotlib.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from pfn_kernels.experiments.loop import BOResult
from pfn_kernels.experiments.surrogates import METHOD_LABELS, METHODS

#: Regrets are floored at this value before taking logarithms (plots only).
REGRET_FLOOR = 1e-8


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

    Each method of :data:`~pfn_kernels.experiments.surrogates.METHODS` keeps its colour across
    panels (``C0``, ``C1``, ... in that order); ``labels`` overrides the legend entry of a method
    (default :data:`~pfn_kernels.experiments.surrogates.METHOD_LABELS`).
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


__all__ = ["REGRET_FLOOR", "log_regret_curves", "plot_log_regret"]
