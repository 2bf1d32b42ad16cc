r"""Demo: Bayesian optimization with the amortized surrogate vs BoTorch's default GP.

``pfn-kernels demo`` (or ``python -m pfn_kernels.experiments.demo``) maximizes a test function
(default: Hartmann6, negated) twice per seed, with the same Sobol design and the same acquisition
settings:

- ``amortized``: :class:`~pfn_kernels.AmortizedSingleTaskGP` fitted by ``fit_gpytorch_mll``, which
  is one forward pass of the pretrained decoder (no marginal-likelihood optimization);
- ``default_stgp``: BoTorch's default ``SingleTaskGP`` fitted by ``fit_gpytorch_mll``.

Each run is ``n_init`` scrambled Sobol points, then ``n_iter`` steps of
``qLogNoisyExpectedImprovement`` (q = 1, ``optimize_acqf`` with 4 restarts and 128 raw samples);
the loop is :func:`pfn_kernels.experiments.run_bo`. Runs go to up to two processes, each with one
torch thread and its own seeds, so a rerun on the same machine prints the same optimization
table. The demo prints, per method, the best value found and the final simple regret (mean +-
standard error over seeds), the paired difference of the log10 final regret with a verdict
(better, worse, or level within the noise of the seeds), and apart from those the fit and
acquisition times per BO step. It then fits both models to a periodic 1-D function
(:func:`structure_discovery`) and prints the decoded spectral peaks against the true ones and
both models' held-out test NLL. It writes into ``out``:

- ``regret.png``: log10 simple regret vs function evaluations, mean +- standard error over seeds;
- ``spectral_density.png``: the decoded kernel of the amortized model fitted on all data of the
  first seed, per input dimension: its spectrum (every component as a stem at its frequency,
  height its weight, with its bandwidth; cycles per unit of the normalized input) and the
  kernel factor :math:`k_j(\tau)` (:func:`spectra_figure`);
- ``structure.png``: the structure-discovery case (:func:`structure_figure`);
- ``results.json``: the regret traces, times and failures of every run, and the case's results.

With the defaults (12 seeds, 10 + 30 evaluations, Hartmann6) it takes about 2 minutes on 2 CPU
cores.
The plots need matplotlib, from the ``demo`` extra (:data:`INSTALL_HINT`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Problems the demo offers (names of :func:`pfn_kernels.experiments.make_problem`).
DEMO_PROBLEMS = ("hartmann6", "branin", "ackley4", "levy4", "rosenbrock4")
#: The two surrogates compared.
DEMO_METHODS = ("amortized", "default_stgp")
#: How to install what the demo needs beyond the core library (matplotlib, for the plots).
INSTALL_HINT = 'pip install -e ".[demo]" (in a checkout) or pip install "pfn_kernels[demo]"'


class MissingDemoExtra(ImportError):
    """matplotlib, which the demo draws its plots with, is not installed."""


def require_matplotlib() -> None:
    """Check that matplotlib can be imported, before any optimization starts.

    :raises MissingDemoExtra: if it cannot, with the command that installs it.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise MissingDemoExtra(
            f"The demo draws its plots with matplotlib, which is not installed ({err}). "
            f"Install the demo extra: {INSTALL_HINT}."
        ) from err


def resolve_decoder(decoder: Any = None, weights: str | Path | None = None) -> tuple[Any, str]:
    """The decoder to use and a description of where it comes from.

    ``decoder`` wins; else the weights at ``weights``; else ``None``, meaning the shipped
    pretrained decoder (:meth:`SpectralDecoder.pretrained`, the default of
    :class:`~pfn_kernels.AmortizedSingleTaskGP`), loaded here once so that a missing file fails
    before any optimization starts.

    :raises pfn_kernels.network.WeightsError: if the weights file is missing or unreadable.
    """
    from pfn_kernels.network import default_decoder, load_decoder
    from pfn_kernels.network.weights import weights_path

    if decoder is not None:
        return decoder, f"given decoder ({type(decoder).__name__})"
    if weights is not None:
        return load_decoder(weights), f"weights {weights}"
    default_decoder()  # cached: the models' default decoder is this very instance
    return None, f"shipped pretrained decoder ({weights_path('default')})"


def summarize(results: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One row per method: best value and final regret (mean, standard error), the log10 final
    regret, and the times (totals, and medians per BO step)."""
    import statistics

    from pfn_kernels.experiments import METHOD_LABELS, REGRET_FLOOR, mean_stderr

    rows = []
    for method, runs in results.items():
        best_mean, best_se = mean_stderr([r.best_so_far[-1] for r in runs])
        regret_mean, regret_se = mean_stderr([r.final_regret for r in runs])
        log_mean, log_se = mean_stderr([math.log10(max(r.final_regret, REGRET_FLOOR)) for r in runs])
        fits = [t for r in runs for t in r.fit_times]
        acqs = [t for r in runs for t in r.acq_times]
        rows.append({
            "method": method,
            "label": METHOD_LABELS[method],
            "best_value_mean": best_mean,
            "best_value_se": best_se,
            "final_regret_mean": regret_mean,
            "final_regret_se": regret_se,
            "log10_regret_mean": log_mean,
            "log10_regret_se": log_se,
            "fit_time_total_s": sum(fits),
            "acq_time_total_s": sum(acqs),
            "fit_time_per_step_median_s": statistics.median(fits) if fits else float("nan"),
            "acq_time_per_step_median_s": statistics.median(acqs) if acqs else float("nan"),
            "failures": sum(len(r.failures) for r in runs),
        })
    return rows


def compare(results: dict[str, list[Any]], z: float = 2.0) -> dict[str, Any]:
    r"""Paired comparison of the final log10 regret, amortized minus default, seed by seed.

    The verdict says which is better only when the mean difference is more than ``z`` standard
    errors from 0; otherwise the two are level within the noise of these seeds.
    """
    from pfn_kernels.experiments import REGRET_FLOOR, mean_stderr

    log = lambda r: math.log10(max(r.final_regret, REGRET_FLOOR))  # noqa: E731
    default = {r.seed: r for r in results["default_stgp"]}
    diffs = [log(r) - log(default[r.seed]) for r in results["amortized"] if r.seed in default]
    mean, se = mean_stderr(diffs)
    wins = sum(d < 0 for d in diffs)
    losses = sum(d > 0 for d in diffs)
    if len(diffs) >= 2 and mean + z * se < 0:
        verdict = "the one pass is better"
    elif len(diffs) >= 2 and mean - z * se > 0:
        verdict = "the default is better"
    else:
        verdict = f"level within the noise of {len(diffs)} seed(s)"
    return {"log10_regret_diff_mean": mean, "log10_regret_diff_se": se, "seeds": len(diffs),
            "amortized_lower": wins, "default_lower": losses, "verdict": verdict}


def _aligned(head: tuple[str, ...], cells: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]

    def line(c: tuple[str, ...]) -> str:
        return "  ".join([c[0].ljust(widths[0])] + [x.rjust(w) for x, w in zip(c[1:], widths[1:])])

    return [line(head), "-" * len(line(head)), *(line(c) for c in cells)]


def format_table(rows: list[dict[str, Any]], comparison: dict[str, Any] | None = None) -> str:
    """The optimization results as a fixed-width text table (the same numbers on every rerun on
    one machine: no times in it), with the paired comparison below it."""
    head = ("method", "best value", "final regret", "log10 final regret")
    cells = [
        (
            r["label"],
            f"{r['best_value_mean']:.4f} ± {r['best_value_se']:.4f}",
            f"{r['final_regret_mean']:.4f} ± {r['final_regret_se']:.4f}",
            f"{r['log10_regret_mean']:.3f} ± {r['log10_regret_se']:.3f}",
        )
        for r in rows
    ]
    lines = _aligned(head, cells)
    for i, r in enumerate(rows):
        if r["failures"]:
            lines[2 + i] += f"  ({r['failures']} recovered failures)"
    if comparison is not None:
        c = comparison
        lines.append(
            f"one pass − default, log10 final regret: {c['log10_regret_diff_mean']:+.3f} ± "
            f"{c['log10_regret_diff_se']:.3f} (paired, {c['seeds']} seeds; one pass lower on "
            f"{c['amortized_lower']}, default lower on {c['default_lower']}): {c['verdict']}"
        )
    return "\n".join(lines)


def format_times(rows: list[dict[str, Any]]) -> str:
    """Fit and acquisition times per method (these vary with the machine and its load)."""
    head = ("method", "fit per step", "acquisition per step", "fit total", "acquisition total")
    cells = [
        (
            r["label"],
            f"{1e3 * r['fit_time_per_step_median_s']:.0f} ms",
            f"{1e3 * r['acq_time_per_step_median_s']:.0f} ms",
            f"{r['fit_time_total_s']:.1f} s",
            f"{r['acq_time_total_s']:.1f} s",
        )
        for r in rows
    ]
    return "\n".join(_aligned(head, cells))


def regret_figure(results: dict[str, list[Any]], problem: Any, n_init: int) -> Any:
    """Log regret vs evaluations, mean +- standard error over seeds, one line per method."""
    from matplotlib.figure import Figure

    from pfn_kernels.experiments import plot_log_regret

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    seeds = len(next(iter(results.values())))
    plot_log_regret(ax, results, n_init,
                    title=f"{problem.name}: simple regret, mean ± s.e. over {seeds} seed(s)")
    ax.legend()
    return fig


def plot_regret(results: dict[str, list[Any]], problem: Any, n_init: int, path: Path) -> Path:
    """:func:`regret_figure`, written to ``path``."""
    regret_figure(results, problem, n_init).savefig(path, dpi=120)
    return path


#: Components below this weight are left out of the spectrum panels.
MIN_PLOTTED_WEIGHT = 1e-3


def spectra_figure(params: Any, title: str = "") -> Any:
    r"""A matplotlib ``Figure`` of a decoded kernel, two panels per input dimension j.

    - **spectrum**: every component of weight at least :data:`MIN_PLOTTED_WEIGHT` as a stem at
      its frequency :math:`\mu_{jq}` (cycles per unit) with height :math:`w_{jq}`, and a bar of
      :math:`\pm s_{jq}` (its bandwidth). A component at frequency 0, or one much narrower than
      the axis, stays visible (a density curve would draw it as a spike on the axis);
    - **kernel**: the factor :math:`k_j(\tau) = \sum_q w_{jq} e^{-2\pi^2\tau^2 s_{jq}^2}
      \cos(2\pi\mu_{jq}\tau)` for :math:`\tau \in [0, 1]`, the whole span of the unit cube.

    :param params: :class:`~pfn_kernels.SpectralParams` without batch dimensions (`(d, Q)`).
    """
    import torch
    from matplotlib.figure import Figure

    w, mu, s = (t.detach().to(torch.float64).cpu() for t in (params.weights, params.means, params.scales))
    if w.dim() != 2:
        raise ValueError(f"spectra_figure needs unbatched (d, Q) parameters; got weights {tuple(w.shape)}.")
    d = w.shape[0]
    cols = min(d, 3)
    rows = math.ceil(d / cols)
    fig = Figure(figsize=(5.4 * cols, 2.4 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, 2 * cols, squeeze=False)
    tau = torch.linspace(0.0, 1.0, 400, dtype=torch.float64)
    factor = (w[:, None, :] * torch.exp(-2 * math.pi**2 * tau[None, :, None] ** 2 * s[:, None, :] ** 2)
              * torch.cos(2 * math.pi * mu[:, None, :] * tau[None, :, None])).sum(-1)  # (d, L)
    for j in range(rows * cols):
        spec, kern = axes[j // cols][2 * (j % cols)], axes[j // cols][2 * (j % cols) + 1]
        if j >= d:
            spec.set_visible(False)
            kern.set_visible(False)
            continue
        keep = w[j] >= MIN_PLOTTED_WEIGHT
        wj, mj, sj = w[j][keep].tolist(), mu[j][keep].tolist(), s[j][keep].tolist()
        top = min(max([m + 2 * b for m, b in zip(mj, sj)] + [1.0]), 64.0)
        spec.vlines(mj, 0.0, wj, color="C0", linewidth=2)
        spec.errorbar(mj, wj, xerr=sj, fmt="o", color="C0", ecolor="C0", elinewidth=1, capsize=3)
        spec.set_xlim(-0.04 * top, 1.04 * top)  # stems at 0 and at the top stay inside
        spec.set_ylim(0.0, 1.05)
        spec.set_title(f"x{j + 1}: spectrum")
        spec.set_xlabel("frequency μ ± bandwidth (cycles per unit)")
        spec.set_ylabel("weight")
        kern.plot(tau, factor[j], color="C1")
        kern.axhline(0.0, color="0.7", linewidth=0.8)
        kern.set_xlim(0.0, 1.0)
        kern.set_ylim(min(-0.05, float(factor[j].min()) - 0.05), 1.05)
        kern.set_title(f"x{j + 1}: kernel factor")
        kern.set_xlabel("τ (normalized input)")
        kern.set_ylabel("k(τ)")
    if title:
        fig.suptitle(title)
    return fig


def plot_spectral_densities(model: Any, path: Path, title: str) -> Path:
    """The decoded kernel of an amortized model (:func:`spectra_figure`), written to ``path``."""
    fig = spectra_figure(model.covar_module.spectral_params.detach(), title)
    fig.savefig(path, dpi=110)
    return path


def describe_kernel(model: Any) -> list[str]:
    """One line per input dimension: the decoded peaks (frequency, weight) with weight >= 5%."""
    return describe_kernel_params(model.covar_module.spectral_params.detach())


def describe_kernel_params(p: Any) -> list[str]:
    """:func:`describe_kernel` of unbatched :class:`~pfn_kernels.SpectralParams`."""
    lines = []
    for j in range(p.weights.shape[-2]):
        peaks = sorted(
            ((mu, w, s) for w, mu, s in zip(p.weights[j].tolist(), p.means[j].tolist(),
                                           p.scales[j].tolist()) if w >= 0.05),
            key=lambda t: t[0],
        )
        text = ", ".join(f"{mu:.2f}±{s:.2f} (w {w:.2f})" for mu, w, s in peaks)
        lines.append(f"    x{j + 1}: {text}")
    return lines


#: The structure-discovery case: a 1-D GP draw whose spectrum has two peaks (cycles per unit).
STRUCTURE_TRUTH = {"weights": (0.6, 0.4), "means": (3.0, 11.0), "scales": (0.3, 0.3)}
#: Noise standard deviation, training points and the training window :math:`[0, w]` of that case
#: (the rest of :math:`[0, 1]` is held out: extrapolation).
STRUCTURE_NOISE_STD, STRUCTURE_POINTS, STRUCTURE_WINDOW = 0.1, 80, 0.75


@contextlib.contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Use ``threads`` threads in torch and, where ``threadpoolctl`` is installed, in the BLAS
    pools, and restore the previous counts on exit: with a fixed count a rerun on the same
    machine repeats every number."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
        else:
            with threadpool_limits(threads):
                yield
    finally:
        torch.set_num_threads(previous)


def structure_case(seed: int = 1) -> dict[str, Any]:
    """The structure-discovery data: the latent function on a grid of [0, 1], noisy training
    points in the window, held-out points beyond it (all float64)."""
    import torch

    from pfn_kernels.kernels import spectral_mixture_covariance

    g = torch.Generator().manual_seed(seed)
    w, mu, sd = (torch.tensor([STRUCTURE_TRUTH[k]], dtype=torch.float64) for k in ("weights", "means", "scales"))
    grid = torch.linspace(0.0, 1.0, 400, dtype=torch.float64)[:, None]
    K = spectral_mixture_covariance(grid, grid, w, mu, sd) + 1e-8 * torch.eye(400, dtype=torch.float64)
    f = (torch.linalg.cholesky(K) @ torch.randn(400, 1, generator=g, dtype=torch.float64))[:, 0]
    inside = int(STRUCTURE_WINDOW * 400)
    train = torch.randperm(inside, generator=g)[:STRUCTURE_POINTS].sort().values
    test = torch.arange(inside, 400)
    noise = lambda k: STRUCTURE_NOISE_STD * torch.randn(k, generator=g, dtype=torch.float64)  # noqa: E731
    return {"grid": grid, "f": f, "x_train": grid[train], "y_train": f[train] + noise(len(train)),
            "x_test": grid[test], "y_test": f[test] + noise(len(test))}


def structure_discovery(decoder: Any = None, seed: int = 1) -> dict[str, Any]:
    """Fit the one pass and the default ``SingleTaskGP`` on :func:`structure_case`; return the
    decoded kernel, the held-out (extrapolation) test NLL per point of both, and their
    predictions on the grid."""
    import torch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.input import Normalize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from pfn_kernels.models import AmortizedSingleTaskGP

    case = structure_case(seed)
    X, Y = case["x_train"], case["y_train"][:, None]
    cube = torch.tensor([[0.0], [1.0]], dtype=torch.float64)  # the search space, as in BO
    models = {
        "amortized": AmortizedSingleTaskGP(X, Y, decoder=decoder, input_transform=Normalize(d=1, bounds=cube)),
        "default_stgp": SingleTaskGP(X, Y, input_transform=Normalize(d=1, bounds=cube)),
    }
    out: dict[str, Any] = {"case": case, "nll": {}, "mean": {}, "std": {}}
    for name, model in models.items():
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        model.eval()
        with torch.no_grad():
            test = model.posterior(case["x_test"], observation_noise=True)
            nll = -torch.distributions.Normal(test.mean[:, 0], test.variance[:, 0].sqrt()).log_prob(case["y_test"])
            post = model.posterior(case["grid"])
        out["nll"][name] = float(nll.mean())
        out["mean"][name], out["std"][name] = post.mean[:, 0], post.variance[:, 0].sqrt()
    out["params"] = models["amortized"].covar_module.spectral_params.detach()
    return out


def structure_figure(result: dict[str, Any]) -> Any:
    """Left: the function, the training points and both GPs' predictions (mean ± 2 sd) over the
    window and beyond; right: the true spectral peaks against the decoded components."""
    from matplotlib.figure import Figure

    from pfn_kernels.experiments import METHOD_LABELS

    case, p = result["case"], result["params"]
    grid = case["grid"][:, 0]
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax, spec = fig.subplots(1, 2, width_ratios=[1.6, 1])
    ax.plot(grid, case["f"], color="k", linewidth=1, label="true function")
    ax.plot(case["x_train"][:, 0], case["y_train"], ".", color="0.4", markersize=4, label="training points")
    for name, color in (("amortized", "C0"), ("default_stgp", "C2")):
        m, sd = result["mean"][name], result["std"][name]
        ax.plot(grid, m, color=color, label=f"{METHOD_LABELS[name]}: test NLL {result['nll'][name]:.2f}")
        ax.fill_between(grid, m - 2 * sd, m + 2 * sd, color=color, alpha=0.2, linewidth=0)
    ax.axvline(STRUCTURE_WINDOW, color="0.5", linestyle=":")
    ax.set_xlim(0, 1)
    ax.set_xlabel("x (held out beyond the dotted line)")
    ax.set_ylabel("f(x)")
    ax.set_title("extrapolating a two-peak spectrum")
    ax.legend(fontsize=7, loc="lower left")
    true_mu, true_w = STRUCTURE_TRUTH["means"], STRUCTURE_TRUTH["weights"]
    spec.vlines(true_mu, 0, true_w, color="k", linewidth=4, alpha=0.3, label="true peaks")
    w, mu, sd = (t[0].tolist() for t in (p.weights, p.means, p.scales))
    keep = [i for i, wi in enumerate(w) if wi >= MIN_PLOTTED_WEIGHT]
    spec.vlines([mu[i] for i in keep], 0, [w[i] for i in keep], color="C0", linewidth=2)
    spec.errorbar([mu[i] for i in keep], [w[i] for i in keep], xerr=[sd[i] for i in keep], fmt="o",
                  color="C0", capsize=3, label="decoded (± bandwidth)")
    top = max([mu[i] + 2 * sd[i] for i in keep] + [max(true_mu) + 2.0])
    spec.set_xlim(-0.04 * top, 1.04 * top)
    spec.set_ylim(0, 1.05)
    spec.set_xlabel("frequency (cycles per unit)")
    spec.set_ylabel("weight")
    spec.set_title("spectrum: one decoder pass")
    spec.legend(fontsize=7)
    return fig


@functools.cache
def _load_decoder(path: str) -> Any:
    """The decoder at ``path``, loaded once per process."""
    from pfn_kernels.network import load_decoder

    return load_decoder(path)


def _run_job(job: dict[str, Any]) -> Any:
    """One BO run (in a worker process or inline), with its thread count; the result without its
    model."""
    from pfn_kernels.experiments import make_problem, run_bo

    decoder = job["decoder"]
    if decoder is None and job["weights"] is not None:
        decoder = _load_decoder(str(job["weights"]))
    with fixed_threads(job["threads"]):
        result = run_bo(make_problem(job["problem"]), job["method"], seed=job["seed"],
                        n_init=job["n_init"], n_iter=job["n_iter"], decoder=decoder,
                        num_restarts=job["num_restarts"], raw_samples=job["raw_samples"])
    result.model = None
    return result


def _run_jobs(jobs: list[dict[str, Any]], workers: int, progress: bool) -> list[Any]:
    """The runs of ``jobs``, in their order, on ``workers`` processes (spawned) or inline."""
    from tqdm.auto import tqdm

    results: list[Any] = [None] * len(jobs)
    with tqdm(total=len(jobs), desc="BO runs", disable=not progress) as bar:
        if workers <= 1:
            for i, job in enumerate(jobs):
                results[i] = _run_job(job)
                bar.update()
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # fork after torch's thread pools can hang
            with ctx.Pool(workers) as pool:
                pending = {i: pool.apply_async(_run_job, (job,)) for i, job in enumerate(jobs)}
                for i, handle in pending.items():
                    results[i] = handle.get()
                    bar.update()
    return results


def main(
    problem: str = "hartmann6",
    seeds: int = 12,
    n_init: int = 10,
    n_iter: int = 30,
    out: str | Path = "demo_output",
    seed: int = 0,
    weights: str | Path | None = None,
    decoder: Any = None,
    progress: bool = True,
    num_restarts: int = 4,
    raw_samples: int = 128,
    workers: int | None = None,
    threads: int = 1,
    structure: bool = True,
) -> dict[str, Any]:
    """Run the BO comparison and the structure-discovery case, print the tables, write the plots
    and JSON; return the results.

    Every run uses ``threads`` torch threads and its own seeds, so a rerun on the same machine
    prints the same optimization table (the times, printed apart, vary).

    :param problem: one of :data:`DEMO_PROBLEMS`.
    :param seeds: number of seeds (``seed``, ``seed + 1``, ...).
    :param n_init: Sobol points per run.
    :param n_iter: qLogNEI steps per run.
    :param out: output directory (created if needed).
    :param seed: first seed.
    :param weights: decoder weights file (.safetensors); default: the shipped ones.
    :param decoder: a decoder object, overriding ``weights`` (e.g. a small untrained one in tests).
    :param progress: show a tqdm progress bar.
    :param num_restarts: ``optimize_acqf`` restarts (both methods).
    :param raw_samples: ``optimize_acqf`` raw samples (both methods).
    :param workers: processes for the runs (default: up to 2, one per core); 1 runs them here.
    :param threads: torch threads per run.
    :param structure: also run the structure-discovery case.
    :return: ``{"problem", "table" (rows), "comparison", "runs" (per method, list of run dicts),
        "structure", "plots", "seconds", "final_model"}``.
    :raises MissingDemoExtra: if matplotlib is not installed (checked before the runs).
    """
    with fixed_threads(threads):
        return _demo(problem, seeds, n_init, n_iter, out, seed, weights, decoder, progress,
                     num_restarts, raw_samples, workers, threads, structure)


def _demo(problem: str, seeds: int, n_init: int, n_iter: int, out: str | Path, seed: int,
          weights: str | Path | None, decoder: Any, progress: bool, num_restarts: int,
          raw_samples: int, workers: int | None, threads: int, structure: bool) -> dict[str, Any]:
    """:func:`main`'s work, with its thread count set."""
    import os

    from pfn_kernels.experiments import fit_surrogate, make_problem

    if problem not in DEMO_PROBLEMS:
        raise ValueError(f"Unknown problem {problem!r}; choose from {', '.join(DEMO_PROBLEMS)}.")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}.")
    require_matplotlib()
    start = time.perf_counter()
    given = decoder
    decoder, source = resolve_decoder(decoder, weights)  # a missing weights file fails here
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, workers)
    prob = make_problem(problem)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"pfn_kernels demo: Bayesian optimization of {prob.description}")
    print(f"  maximum {prob.optimal_value:.5g}; {n_init} Sobol points + {n_iter} qLogNEI steps "
          f"(q=1, {num_restarts} restarts, {raw_samples} raw samples), {seeds} seed(s), "
          f"{workers} process(es) with {threads} thread(s) each")
    print(f"  decoder: {source}")

    seed_list = list(range(seed, seed + seeds))
    jobs = [{"problem": problem, "method": m, "seed": s, "n_init": n_init, "n_iter": n_iter,
             "num_restarts": num_restarts, "raw_samples": raw_samples, "threads": threads,
             "decoder": given, "weights": None if given is not None else weights}
            for s in seed_list for m in DEMO_METHODS]
    done = _run_jobs(jobs, workers, progress)
    results: dict[str, list[Any]] = {m: [r for r in done if r.method == m] for m in DEMO_METHODS}

    rows = summarize(results)
    comparison = compare(results)
    print()
    print(format_table(rows, comparison))
    print(f"  best value, final regret: mean ± standard error over {seeds} seed(s)")
    print()
    print(format_times(rows))
    print("  times: median per BO step and totals over all runs (they vary with the machine)")

    # The decoded kernel of the amortized model on all data of the first seed.
    first = results["amortized"][0]
    U = (first.X - prob.bounds[0]) / (prob.bounds[1] - prob.bounds[0])
    final_model, _ = fit_surrogate("amortized", U, first.Y[:, None], decoder=decoder)
    print()
    print(f"decoded spectral peaks of the final amortized model (seed {first.seed}, "
          f"{len(first.Y)} points; frequency ± bandwidth in cycles per unit, weight):")
    for line in describe_kernel(final_model):
        print(line)
    plots = {
        "regret": plot_regret(results, prob, n_init, out / "regret.png"),
        "spectral_density": plot_spectral_densities(
            final_model, out / "spectral_density.png",
            f"{prob.name}: decoded kernel of the amortized model after "
            f"{len(first.Y)} evaluations (seed {first.seed})",
        ),
    }

    found = None
    if structure:
        found = structure_discovery(decoder)
        p = found["params"]
        truth = ", ".join(f"{m:.2f} (w {w:.2f})" for m, w in zip(STRUCTURE_TRUTH["means"], STRUCTURE_TRUTH["weights"]))
        print()
        print(f"structure discovery: {STRUCTURE_POINTS} noisy points (sd {STRUCTURE_NOISE_STD}) of a "
              f"1-D GP on [0, {STRUCTURE_WINDOW}], held out on ({STRUCTURE_WINDOW}, 1]")
        print(f"    true peaks: {truth}")
        print(f"    decoded: {describe_kernel_params(p)[0].split(': ', 1)[1]}")
        print(f"    held-out test NLL per point: one pass {found['nll']['amortized']:.3f}, "
              f"default SingleTaskGP {found['nll']['default_stgp']:.3f}")
        plots["structure"] = out / "structure.png"
        structure_figure(found).savefig(plots["structure"], dpi=110)

    seconds = time.perf_counter() - start
    summary = {
        "problem": prob.name,
        "description": prob.description,
        "optimal_value": prob.optimal_value,
        "decoder": source,
        "settings": {"seeds": seed_list, "n_init": n_init, "n_iter": n_iter,
                     "num_restarts": num_restarts, "raw_samples": raw_samples,
                     "workers": workers, "threads": threads},
        "table": rows,
        "comparison": comparison,
        "runs": {m: [r.to_dict() for r in runs] for m, runs in results.items()},
        "structure": None if found is None else {
            "truth": STRUCTURE_TRUTH, "test_nll": found["nll"],
            "decoded": {k: getattr(found["params"], k)[0].tolist() for k in ("weights", "means", "scales")},
        },
        "plots": {k: str(v) for k, v in plots.items()},
        "seconds": seconds,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=1, allow_nan=True) + "\n")
    print(f"\nwrote {', '.join(str(v) for v in plots.values())} and {out / 'results.json'} "
          f"({seconds:.0f} s)")
    summary["final_model"] = final_model
    summary["structure_result"] = found
    return summary


if __name__ == "__main__":
    import sys

    from pfn_kernels import cli

    raise SystemExit(cli.main(["demo", *sys.argv[1:]]))
