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
- ``spectral_density.png``: the decoded kernel of the amortized model fitted on all data of the
  first seed, per input dimension: its spectrum (every component as a stem at its frequency,
  height its weight, with its bandwidth; cycles per unit of the normalized input) and the
  kernel factor :math:`k_j(\tau)` (:func:`spectra_figure`);
- ``results.json``: the regret traces, times and failures of every run.

With the defaults (3 seeds, 8 + 20 evaluations) it takes about a minute or two on 2 CPU cores.
The plots need matplotlib, from the ``demo`` extra (:data:`INSTALL_HINT`).
"""

from __future__ import annotations

import json
import math
import time
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
