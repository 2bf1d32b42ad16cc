r"""Demo: Bayesian optimization with the amortized surrogate vs BoTorch's default GP.

``pfn-kernels demo`` (or ``python -m pfn_kernels.experiments.demo``) maximizes a test function
(default: Hartmann6, negated) twice per seed, with the same Sobol design and the same acquisition
settings:

- ``amortized``: :class:`~pfn_kernels.AmortizedSingleTaskGP` fitted by ``fit_gpytorch_mll``, which
  is one forward pass of the pretrained decoder (no marginal-likelihood optimization);
- ``default_stgp``: BoTorch's default ``SingleTaskGP`` fitted by ``fit_gpytorch_mll``.

Each run is ``n_init`` scrambled Sobol points, then ``n_iter`` steps of
``qLogNoisyExpectedImprovement`` (q = 1, ``optimize_acqf`` with 4 restarts and 128 raw samples);
the loop is :func:`pfn_kernels.experiments.run_bo`. The demo prints, per method, the best value
found and the final simple regret (mean +- standard error over seeds) and the total time spent
fitting models and optimizing the acquisition function, and writes into ``out``:

- ``regret.png``: log10 simple regret vs function evaluations, mean +- standard error over seeds;
- ``spectral_density.png``: the decoded spectral density :math:`S_j(\omega)` of every input
  dimension of the amortized model fitted on all data of the first seed
  (``kernel.spectral_density``; frequencies in cycles per unit of the normalized input);
- ``results.json``: the regret traces, times and failures of every run.

With the defaults (3 seeds, 8 + 20 evaluations) it takes about a minute or two on 2 CPU cores.
The plots need matplotlib, from the ``demo`` extra (:data:`INSTALL_HINT`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

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
    """One row per method: best value and final regret (mean, standard error), total times."""
    from pfn_kernels.experiments import METHOD_LABELS, mean_stderr

    rows = []
    for method, runs in results.items():
        best_mean, best_se = mean_stderr([r.best_so_far[-1] for r in runs])
        regret_mean, regret_se = mean_stderr([r.final_regret for r in runs])
        rows.append({
            "method": method,
            "label": METHOD_LABELS[method],
            "best_value_mean": best_mean,
            "best_value_se": best_se,
            "final_regret_mean": regret_mean,
            "final_regret_se": regret_se,
            "fit_time_total_s": sum(sum(r.fit_times) for r in runs),
            "acq_time_total_s": sum(sum(r.acq_times) for r in runs),
            "failures": sum(len(r.failures) for r in runs),
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The summary rows as a fixed-width text table."""
    head = ("method", "best value", "final regret", "fit time (s)", "acq time (s)")
    cells = [
        (
            r["label"],
            f"{r['best_value_mean']:.4f} ± {r['best_value_se']:.4f}",
            f"{r['final_regret_mean']:.4f} ± {r['final_regret_se']:.4f}",
            f"{r['fit_time_total_s']:.2f}",
            f"{r['acq_time_total_s']:.2f}",
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]

    def line(c: tuple[str, ...]) -> str:
        return "  ".join([c[0].ljust(widths[0])] + [x.rjust(w) for x, w in zip(c[1:], widths[1:])])

    lines = [line(head), "-" * len(line(head))]
    for r, c in zip(rows, cells):
        lines.append(line(c) + (f"  ({r['failures']} recovered failures)" if r["failures"] else ""))
    return "\n".join(lines)


def plot_regret(results: dict[str, list[Any]], problem: Any, n_init: int, path: Path) -> Path:
    """Log regret vs evaluations, mean +- standard error over seeds, one line per method."""
    from matplotlib.figure import Figure

    from pfn_kernels.experiments import plot_log_regret

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    seeds = len(next(iter(results.values())))
    plot_log_regret(ax, results, n_init,
                    title=f"{problem.name}: simple regret, mean ± s.e. over {seeds} seed(s)")
    ax.legend()
    fig.savefig(path, dpi=120)
    return path


def density_grid(params: Any, num: int = 1500) -> torch.Tensor:
    """Frequencies (cycles per unit) at which to draw the densities: a uniform grid up to the
    largest peak plus four bandwidths, refined around every peak so narrow lines are not missed."""
    import torch  # here, not at the top: parsing the demo's command line needs no torch

    weights, means, scales = params.weights, params.means, params.scales  # (d, Q)
    active = weights > 1e-3
    top = float(torch.where(active, means + 4 * scales, torch.zeros_like(means)).max())
    top = min(max(top, 2.0), 64.0)
    grid = [torch.linspace(0.0, top, num, dtype=torch.float64)]
    offsets = torch.linspace(-4, 4, 81, dtype=torch.float64)
    for mu, s in zip(means[active].tolist(), scales[active].tolist()):
        grid.append(mu + s * offsets)
    omega = torch.cat(grid)
    return omega[(omega >= 0) & (omega <= top)].sort().values


def plot_spectral_densities(model: Any, path: Path, title: str) -> Path:
    """The decoded per-dimension spectral densities of an amortized model, one panel each."""
    import torch
    from matplotlib.figure import Figure

    kernel = model.covar_module
    params = kernel.spectral_params.detach()
    omega = density_grid(params)
    with torch.no_grad():
        density = kernel.spectral_density(omega.to(params.means))  # (d, L)
    d = density.shape[-2]
    cols = min(d, 3)
    rows = math.ceil(d / cols)
    fig = Figure(figsize=(3.6 * cols, 2.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for j in range(rows * cols):
        ax = axes[j // cols][j % cols]
        if j >= d:
            ax.set_visible(False)
            continue
        ax.plot(omega, density[j])
        ax.set_title(f"x{j + 1}")
        ax.set_xlabel("frequency ω (cycles per unit)")
        ax.set_ylabel("S(ω)")
        ax.set_xlim(0, float(omega[-1]))
        ax.set_ylim(bottom=0)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return path


def describe_kernel(model: Any) -> list[str]:
    """One line per input dimension: the decoded peaks (frequency, weight) with weight >= 5%."""
    p = model.covar_module.spectral_params.detach()
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


def main(
    problem: str = "hartmann6",
    seeds: int = 3,
    n_init: int = 8,
    n_iter: int = 20,
    out: str | Path = "demo_output",
    seed: int = 0,
    weights: str | Path | None = None,
    decoder: Any = None,
    progress: bool = True,
    num_restarts: int = 4,
    raw_samples: int = 128,
) -> dict[str, Any]:
    """Run the BO comparison, print the table, write the plots and JSON; return the results.

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
    :return: ``{"problem", "table" (rows), "runs" (per method, list of run dicts), "plots",
        "seconds"}``.
    :raises MissingDemoExtra: if matplotlib is not installed (checked before the runs).
    """
    from tqdm.auto import tqdm

    from pfn_kernels.experiments import fit_surrogate, make_problem, run_bo

    if problem not in DEMO_PROBLEMS:
        raise ValueError(f"Unknown problem {problem!r}; choose from {', '.join(DEMO_PROBLEMS)}.")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}.")
    require_matplotlib()
    start = time.perf_counter()
    decoder, source = resolve_decoder(decoder, weights)
    prob = make_problem(problem)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"pfn_kernels demo: Bayesian optimization of {prob.description}")
    print(f"  maximum {prob.optimal_value:.5g}; {n_init} Sobol points + {n_iter} qLogNEI steps "
          f"(q=1, {num_restarts} restarts, {raw_samples} raw samples), {seeds} seed(s)")
    print(f"  decoder: {source}")

    results: dict[str, list[Any]] = {m: [] for m in DEMO_METHODS}
    seed_list = list(range(seed, seed + seeds))
    with tqdm(total=len(seed_list) * len(DEMO_METHODS) * n_iter, desc="BO steps",
              disable=not progress) as bar:
        for s in seed_list:
            for method in DEMO_METHODS:
                bar.set_postfix_str(f"{method}, seed {s}")
                results[method].append(run_bo(
                    prob, method, seed=s, n_init=n_init, n_iter=n_iter, decoder=decoder,
                    num_restarts=num_restarts, raw_samples=raw_samples,
                    on_step=lambda _: bar.update(),
                ))

    rows = summarize(results)
    print()
    print(format_table(rows))
    print(f"  best value and final regret: mean ± standard error over {seeds} seed(s); times: "
          "total over all seeds and steps")

    # The decoded kernel of the amortized model on all data of the first seed.
    first = results["amortized"][0]
    U = (first.X - prob.bounds[0]) / (prob.bounds[1] - prob.bounds[0])
    final_model, _ = fit_surrogate("amortized", U, first.Y[:, None], decoder=decoder)
    print(f"  decoded spectral peaks of the final amortized model (seed {first.seed}, "
          f"{len(first.Y)} points; frequency ± bandwidth in cycles per unit, weight):")
    for line in describe_kernel(final_model):
        print(line)

    plots = {
        "regret": plot_regret(results, prob, n_init, out / "regret.png"),
        "spectral_density": plot_spectral_densities(
            final_model, out / "spectral_density.png",
            f"{prob.name}: decoded spectral densities, amortized model after "
            f"{len(first.Y)} evaluations (seed {first.seed})",
        ),
    }
    seconds = time.perf_counter() - start
    summary = {
        "problem": prob.name,
        "description": prob.description,
        "optimal_value": prob.optimal_value,
        "decoder": source,
        "settings": {"seeds": seed_list, "n_init": n_init, "n_iter": n_iter,
                     "num_restarts": num_restarts, "raw_samples": raw_samples},
        "table": rows,
        "runs": {m: [r.to_dict() for r in runs] for m, runs in results.items()},
        "plots": {k: str(v) for k, v in plots.items()},
        "seconds": seconds,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=1, allow_nan=True) + "\n")
    print(f"wrote {plots['regret']}, {plots['spectral_density']} and {out / 'results.json'} "
          f"({seconds:.0f} s)")
    summary["final_model"] = final_model
    return summary


if __name__ == "__main__":
    import sys

    from pfn_kernels import cli

    raise SystemExit(cli.main(["demo", *sys.argv[1:]]))
