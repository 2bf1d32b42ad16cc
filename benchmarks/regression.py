r"""GP regression quality of the amortized kernel on prior tasks and on real data.

Usage:
    python benchmarks/regression.py                        # shipped weights, full size
    python benchmarks/regression.py --quick --weights runs/default/decoder.safetensors

Data sets:

- ``prior_d{1,2,4}``: held-out tasks from the task prior (``PriorConfig()``), ``--context``
  (50) context and ``--targets`` (100) target points, drawn with their own generator (seed
  ``REGRESSION_SEED + --seed + d``, unrelated to the training and validation seeds). The inputs
  already lie in the unit cube, the tasks' known domain, and are used as they are; the oracle
  (the true kernel, noise and constant mean: ``TaskBatch.covariance``, ``.noise``,
  ``.mean_offset``) is known.
- ``co2``: the Mauna Loa CO2 record (``statsmodels.datasets.co2``), weekly values resampled to
  monthly means (months without data dropped); the first 80% of the months in time are the
  context, the last 20% the targets (extrapolation).
- ``diabetes``: scikit-learn's diabetes data (442 points, 10 inputs), ``--splits`` random 80/20
  train/test splits (seed ``REGRESSION_SEED + --seed + split``).
- ``series`` (not in the default run): two real periodic series from statsmodels with tens of
  cycles across the window, yearly sunspot numbers (309 points, ~28 cycles) and monthly El Niño
  sea surface temperatures (732 points, 61 yearly cycles), each as ``<name>_extrap`` (the last
  20% in time are the targets) and ``<name>_interp`` (a seeded random 20%).

On real data the inputs are scaled to the unit cube by the context's per-dimension minimum and
maximum (what BoTorch's ``Normalize`` learns from the training data; test points may fall
outside). Every method sees the same inputs and the same targets, standardized by the context
mean and standard deviation, so the BoTorch models' default ``Standardize`` is the identity.
Scores are converted back to the original units of y: with ``s_y`` the context standard
deviation, the per-point Gaussian NLL gains ``log s_y`` and the RMSE is multiplied by ``s_y``
(both exact for an affine change of units).

Methods (fits and scores shared with ``benchmarks/decoder_quality.py``):

- ``amortized``: ``AmortizedSingleTaskGP(X, Y, decoder=..., input_transform=None)`` fitted by
  ``fit_gpytorch_mll`` (one decoder pass);
- ``amortized_refine``: the same with ``fit_gpytorch_mll(mll, refine=True)``: the decoder pass,
  then a short MAP refinement with priors centred on the decoded values;
- ``default_stgp``: BoTorch's ``SingleTaskGP(X, Y)`` with every default of ``fit_gpytorch_mll``;
- ``sm4_mll``: ``SingleTaskGP`` with ``SpectralMixtureKernel(4, ard_num_dims=d)`` from
  ``initialize_from_data``, ``--sm-restarts`` restarts with L-BFGS capped at ``--sm-maxiter``,
  the restart with the best final MLL kept;
- ``sm4_empspect``: the same from ``initialize_from_data_empspect`` (the empirical spectrum);
- ``oracle`` (prior tasks only): the exact GP with the true kernel, noise and constant mean
  (:meth:`pfn_kernels.prior.TaskBatch.oracle_scores`).

Reported per data set and method: the per-point predictive NLL of the targets (with observation
noise, original units) and the RMSE (original units), mean and standard error over tasks or
splits, the fit time (wall clock and CPU time of the process), and failures. Prior tasks also get the NLL gap to the oracle (independent of
units). Written: ``benchmarks/results/regression.json`` and a bar chart ``regression.png``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

import torch
from tqdm.auto import tqdm

from benchmarks._common import (  # noqa: E402
    RESULTS, add_run_arguments, apply_preset, json_ready, machine_metadata, mean_se, set_threads,
    write_json,
)
from benchmarks.decoder_quality import (
    fit_default_stgp,
    fit_sm4,
    predictive_scores,
    resolve_weights,
)
from pfn_kernels import AmortizedSingleTaskGP
from pfn_kernels.prior import PriorConfig, sample_tasks

#: Base seed of the prior tasks and the data splits (training uses 0.., validation 12345 and
#: decoder_quality 2026).
REGRESSION_SEED = 3030
METHODS = ("amortized", "amortized_refine", "default_stgp", "sm4_mll", "sm4_empspect")
PRIOR_DIMS = (1, 2, 4)
CO2_TEST_FRACTION = 0.2
SERIES_TEST_FRACTION = 0.2
#: The real periodic series, each in extrapolation and interpolation.
SERIES = ("sunspots", "elnino")
DIABETES_TEST_FRACTION = 0.2
#: Sizes of the full run and of ``--quick``; explicit command-line values override either.
PRESETS = {
    "full": {"tasks": 32, "splits": 5, "sm_restarts": 5, "sm_maxiter": 200},
    "quick": {"tasks": 3, "splits": 1, "sm_restarts": 2, "sm_maxiter": 50},
}


# ---------------------------------------------------------------------- data
def prior_tasks(d: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Held-out prior tasks of dimension ``d`` as problems (inputs used as they are)."""
    gen = torch.Generator().manual_seed(REGRESSION_SEED + args.seed + d)
    batch = sample_tasks(PriorConfig(), args.tasks, gen, num_dims=d, num_context=args.context,
                         num_targets=args.targets, dtype=torch.float64)
    oracle = batch.oracle_scores()  # standardized units, per task
    problems = []
    for i in range(args.tasks):
        problems.append({
            "xc": batch.x_context[i], "yc": batch.y_context[i],
            "xt": batch.x_target[i], "yt": batch.y_target[i],
            "y_std": float(batch.y_std[i]),
            "oracle": {"nll_std": float(oracle.target_nll[i]), "mse_std": float(oracle.target_mse[i])},
        })
    return problems


def standardize_problem(xc: torch.Tensor, yc: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor
                        ) -> dict[str, Any]:
    """Unit-cube inputs by the context's bounds and standardized targets by the context's stats."""
    lo, hi = xc.min(0).values, xc.max(0).values
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    mean, std = yc.mean(), yc.std()
    return {
        "xc": (xc - lo) / span, "xt": (xt - lo) / span,
        "yc": (yc - mean) / std, "yt": (yt - mean) / std,
        "y_std": float(std),
    }


def co2_problem() -> dict[str, Any]:
    """Monthly Mauna Loa CO2; the last 20% of the months are extrapolation targets."""
    from statsmodels.datasets import co2

    series = co2.load_pandas().data["co2"].resample("MS").mean().dropna()
    days = torch.tensor((series.index - series.index[0]).days.to_numpy(), dtype=torch.float64)
    y = torch.tensor(series.to_numpy(), dtype=torch.float64)
    n_train = int(round((1 - CO2_TEST_FRACTION) * len(y)))
    t = days.unsqueeze(-1)
    return standardize_problem(t[:n_train], y[:n_train], t[n_train:], y[n_train:])


def series(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A real periodic series from statsmodels: time `(n, 1)` (in its own units) and values `(n,)`.

    - ``sunspots``: yearly sunspot numbers 1700-2008 (309 points, an ~11-year cycle: ~28 cycles);
    - ``elnino``: monthly sea surface temperatures 1950-2010 (732 points, a yearly cycle: 61).
    """
    if name == "sunspots":
        from statsmodels.datasets import sunspots

        data = sunspots.load_pandas().data
        t, y = data["YEAR"].to_numpy(), data["SUNACTIVITY"].to_numpy()
    elif name == "elnino":
        from statsmodels.datasets import elnino

        data = elnino.load_pandas().data
        months = data.drop(columns="YEAR").to_numpy()  # (years, 12)
        y = months.reshape(-1)
        t = (data["YEAR"].to_numpy()[:, None] + (torch.arange(12).numpy() / 12.0)[None]).reshape(-1)
    else:
        raise ValueError(f"Unknown series {name!r}.")
    return (torch.tensor(t, dtype=torch.float64).unsqueeze(-1), torch.tensor(y, dtype=torch.float64))


def series_problem(name: str, split: str, seed: int) -> dict[str, Any]:
    """``split="extrap"``: the last ``SERIES_TEST_FRACTION`` in time are the targets;
    ``"interp"``: a seeded random ``SERIES_TEST_FRACTION`` of the points."""
    t, y = series(name)
    n = len(y)
    n_test = int(round(SERIES_TEST_FRACTION * n))
    if split == "extrap":
        train, test = torch.arange(n - n_test), torch.arange(n - n_test, n)
    elif split == "interp":
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        test, train = perm[:n_test].sort().values, perm[n_test:].sort().values
    else:
        raise ValueError(f"split must be 'extrap' or 'interp', got {split!r}.")
    return standardize_problem(t[train], y[train], t[test], y[test])


def diabetes_problems(splits: int, seed: int) -> list[dict[str, Any]]:
    """Random 80/20 splits of scikit-learn's diabetes data."""
    from sklearn.datasets import load_diabetes

    X_np, y_np = load_diabetes(return_X_y=True)
    X = torch.tensor(X_np, dtype=torch.float64)
    y = torch.tensor(y_np, dtype=torch.float64)
    n_test = int(round(DIABETES_TEST_FRACTION * len(y)))
    problems = []
    for s in range(splits):
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + s))
        test, train = perm[:n_test], perm[n_test:]
        problems.append(standardize_problem(X[train], y[train], X[test], y[test]))
    return problems


# ---------------------------------------------------------------------- methods
def fit_amortized_gp(decoder: Any, x: torch.Tensor, y: torch.Tensor, refine: bool
                     ) -> tuple[Any, dict[str, Any]]:
    """``AmortizedSingleTaskGP`` fitted by ``fit_gpytorch_mll`` (with ``refine``: and refined)."""
    from botorch import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    start = time.perf_counter()
    model = AmortizedSingleTaskGP(x, y.unsqueeze(-1), decoder=decoder, input_transform=None)
    failed = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # refine=True: the model's custom_fit decodes once, then refines the decoded values
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model), refine=refine)
        except Exception:  # noqa: BLE001
            failed = True
    model.eval()
    return model, {
        "time_s": time.perf_counter() - start,
        "failed": failed,
        "warnings": Counter(w.category.__name__ for w in caught),
    }


def run_methods(decoder: Any, problem: dict[str, Any], args: argparse.Namespace, seed: int
                ) -> dict[str, dict[str, Any]]:
    """Every method on one problem; scores in standardized units plus fit information."""
    xc, yc, xt, yt = problem["xc"], problem["yc"], problem["xt"], problem["yt"]
    fits = {
        "amortized": lambda: fit_amortized_gp(decoder, xc, yc, refine=False),
        "amortized_refine": lambda: fit_amortized_gp(decoder, xc, yc, refine=True),
        "default_stgp": lambda: fit_default_stgp(xc, yc),
        "sm4_mll": lambda: fit_sm4(xc, yc, args.sm_restarts, args.sm_maxiter, seed),
        "sm4_empspect": lambda: fit_sm4(xc, yc, args.sm_restarts, args.sm_maxiter, seed, init="empspect"),
    }
    out = {}
    for name in args.methods:
        cpu_start = time.process_time()
        model, info = fits[name]()
        cpu_s = time.process_time() - cpu_start
        nll, mse, fallback = predictive_scores(model, xc, yc, xt, yt)
        out[name] = {
            "nll_std": nll,
            "mse_std": mse,
            "time_s": info["time_s"],
            "cpu_time_s": cpu_s,
            "failed": bool(info.get("failed", False) or info.get("all_failed", False)),
            "posterior_fallback": fallback,
            "warnings": Counter(info["warnings"]),
        }
    if "oracle" in problem:
        out["oracle"] = dict(problem["oracle"])
    return out


def to_original_units(scores: dict[str, Any], y_std: float) -> dict[str, float]:
    """Per-point NLL and RMSE in the units of y (the problem's context std ``y_std``)."""
    return {
        "nll": scores["nll_std"] + math.log(y_std),
        "rmse": math.sqrt(scores["mse_std"]) * y_std,
    }


def evaluate(name: str, decoder: Any, problems: list[dict[str, Any]], args: argparse.Namespace,
             seed: int, progress: bool) -> dict[str, Any]:
    """Run every method on every problem of one data set and summarize."""
    rows = []
    for i, problem in enumerate(tqdm(problems, desc=name, leave=False, disable=not progress)):
        rows.append((problem, run_methods(decoder, problem, args, seed + 10_000 * i)))
    methods = list(args.methods) + (["oracle"] if "oracle" in problems[0] else [])
    summary: dict[str, Any] = {}
    for m in methods:
        units = [to_original_units(r[m], p["y_std"]) for p, r in rows]
        nll_mean, nll_se = mean_se(u["nll"] for u in units)
        rmse_mean, rmse_se = mean_se(u["rmse"] for u in units)
        entry = {"nll_mean": nll_mean, "nll_se": nll_se, "rmse_mean": rmse_mean,
                 "rmse_se": rmse_se, "per_problem": units}
        if "oracle" in methods:
            gap_mean, gap_se = mean_se(r[m]["nll_std"] - r["oracle"]["nll_std"] for _, r in rows)
            entry |= {"nll_gap_to_oracle_mean": gap_mean, "nll_gap_to_oracle_se": gap_se}
        if m != "oracle":
            entry |= {
                "fit_time_median_s": statistics.median(r[m]["time_s"] for _, r in rows),
                "fit_cpu_time_median_s": statistics.median(r[m]["cpu_time_s"] for _, r in rows),
                "fit_cpu_time_total_s": sum(r[m]["cpu_time_s"] for _, r in rows),
                "fit_failures": sum(r[m]["failed"] for _, r in rows),
                "posterior_fallbacks": sum(r[m]["posterior_fallback"] for _, r in rows),
                "warnings": dict(sum((r[m]["warnings"] for _, r in rows), Counter())),
            }
        summary[m] = entry
    first = problems[0]
    return {
        "num_problems": len(problems),
        "d": int(first["xc"].shape[-1]),
        "num_context": int(first["xc"].shape[-2]),
        "num_targets": int(first["xt"].shape[-2]),
        "methods": summary,
    }


# ---------------------------------------------------------------------- plot and report
def plot(results: dict[str, Any], path: Path) -> Path:
    """Bar chart: NLL (top) and RMSE (bottom) per data set and method, with standard errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(2.8 * len(names), 6), squeeze=False)
    for j, name in enumerate(names):
        methods = results[name]["methods"]
        labels = list(methods)
        for row, metric in enumerate(("nll", "rmse")):
            ax = axes[row][j]
            means = [methods[m][f"{metric}_mean"] for m in labels]
            ses = [methods[m][f"{metric}_se"] for m in labels]
            ax.bar(range(len(labels)), means, yerr=ses, capsize=3,
                   color=[f"C{k}" for k in range(len(labels))])
            ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            if row == 0:
                r = results[name]
                ax.set_title(f"{name}\n(d={r['d']}, n={r['num_context']}, "
                             f"{r['num_problems']} {'tasks' if name.startswith('prior') else 'split(s)'})",
                             fontsize=8)
        axes[0][j].set_ylabel("test NLL / point" if j == 0 else "")
        axes[1][j].set_ylabel("test RMSE" if j == 0 else "")
    fig.suptitle("GP regression, original units of y (mean ± s.e.)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def print_report(result: dict[str, Any]) -> None:
    w = result["meta"]["weights"]
    print(f"\nweights: {w['path']} (steps: {w['steps']})")
    print("test NLL per point and RMSE, original units of y (mean ± s.e.); fit time, wall clock "
          "and process CPU (median, s)")
    for name, r in result["results"].items():
        print(f"\n{name}: d={r['d']}, n={r['num_context']} context, {r['num_targets']} targets, "
              f"{r['num_problems']} {'tasks' if name.startswith('prior') else 'split(s)'}")
        gap = "oracle" in r["methods"]
        print(f"  {'method':>17} {'NLL':>17} {'RMSE':>21} {'fit s':>8} {'cpu s':>8}"
              + (f" {'NLL gap':>16}" if gap else ""))
        for m, e in r["methods"].items():
            line = (f"  {m:>17} {e['nll_mean']:8.3f} ± {e['nll_se']:6.3f} "
                    f"{e['rmse_mean']:10.4g} ± {e['rmse_se']:8.3g}")
            if "fit_time_median_s" in e:
                line += f" {e['fit_time_median_s']:8.3f} {e['fit_cpu_time_median_s']:8.3f}"
            else:
                line += " " * 18
            if gap:
                line += f" {e['nll_gap_to_oracle_mean']:7.3f} ± {e['nll_gap_to_oracle_se']:6.3f}"
            if e.get("fit_failures") or e.get("posterior_fallbacks"):
                line += f"  (failures {e['fit_failures']}, fallbacks {e['posterior_fallbacks']})"
            print(line)


# ---------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", default=None,
                        help="decoder .safetensors (default: the packaged weights)")
    parser.add_argument("--quick", action="store_true", help="a tiny run (smaller defaults below)")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"seed offset of the prior tasks and data splits (base {REGRESSION_SEED})")
    parser.add_argument("--tasks", type=int, default=None, help="prior tasks per d (32; quick 3)")
    parser.add_argument("--dims", type=int, nargs="+", default=list(PRIOR_DIMS),
                        help="input dims of the prior tasks")
    parser.add_argument("--context", type=int, default=50, help="context points per prior task")
    parser.add_argument("--targets", type=int, default=100, help="target points per prior task")
    parser.add_argument("--splits", type=int, default=None, help="diabetes train/test splits (5; quick 1)")
    parser.add_argument("--datasets", nargs="+", default=["prior", "co2", "diabetes"],
                        choices=["prior", "co2", "diabetes", "series"],
                        help="data sets to run (series: sunspots and elnino, extrapolation and "
                             "interpolation)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                        help="methods to run (the oracle is added on prior tasks)")
    parser.add_argument("--sm-restarts", type=int, default=None, help="SM(4)-MLL restarts (5; quick 2)")
    parser.add_argument("--sm-maxiter", type=int, default=None,
                        help="L-BFGS iterations per SM(4) restart (200; quick 50)")
    add_run_arguments(parser, "regression", by_preset=True)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write the JSON (and the plot) and return the results dictionary."""
    args = build_parser().parse_args(argv)
    apply_preset(args, PRESETS)
    # the figure goes next to the JSON unless --plot says otherwise (never over another run's)
    args.out = Path(args.out) if args.out else RESULTS / ("regression_quick.json" if args.quick else "regression.json")
    args.plot = Path(args.plot) if args.plot else args.out.with_suffix(".png")
    set_threads(args.threads)
    progress = not args.no_progress
    start = time.perf_counter()
    decoder, path, card = resolve_weights(args.weights)

    datasets: list[tuple[str, Any]] = []
    if "prior" in args.datasets:
        datasets += [(f"prior_d{d}", lambda d=d: prior_tasks(d, args)) for d in args.dims]
    if "co2" in args.datasets:
        datasets.append(("co2", lambda: [co2_problem()]))
    if "diabetes" in args.datasets:
        datasets.append(("diabetes", lambda: diabetes_problems(args.splits, REGRESSION_SEED + args.seed)))
    if "series" in args.datasets:  # after the others: their seeds stay as they were
        datasets += [(f"{name}_{split}", lambda name=name, split=split: [
            series_problem(name, split, REGRESSION_SEED + args.seed)])
            for name in SERIES for split in ("extrap", "interp")]
    results = {}
    for k, (name, load) in enumerate(tqdm(datasets, desc="data sets", disable=not progress)):
        results[name] = evaluate(name, decoder, load(), args, REGRESSION_SEED + args.seed + 100 * k,
                                 progress)

    plots = []
    if not args.no_plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plots.append(plot(results, args.plot))
    trained_dims = decoder.config.trained_max_dims
    result = {
        "meta": {
            "machine": machine_metadata(args.threads),
            "weights": {
                "path": str(path),
                "steps": None if card is None else card.get("steps"),
                "parameters": sum(p.numel() for p in decoder.parameters()),
                "trained_max_dims": trained_dims,
                "trained_max_context": decoder.config.trained_max_context,
            },
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "seed": REGRESSION_SEED + args.seed,
            "units": "NLL per target point (Gaussian predictive with observation noise) and RMSE, "
                     "in the original units of y; nll_gap_to_oracle in nats per point",
            "data": {
                "prior": "PriorConfig() tasks, inputs in the unit cube used as they are",
                "co2": "statsmodels co2, monthly means (months without data dropped), first "
                       f"{1 - CO2_TEST_FRACTION:.0%} in time as context, last "
                       f"{CO2_TEST_FRACTION:.0%} as targets",
                "diabetes": f"sklearn load_diabetes, random {1 - DIABETES_TEST_FRACTION:.0%}/"
                            f"{DIABETES_TEST_FRACTION:.0%} splits, d=10"
                            + (f" (beyond the decoder's trained_max_dims={trained_dims})"
                               if trained_dims < 10 else ""),
                "scaling": "real data: inputs to the unit cube by the context's min/max, targets "
                           "standardized by the context's mean/std; scores mapped back to y's units",
            },
            "methods": {
                "amortized": "AmortizedSingleTaskGP(X, Y, decoder, input_transform=None), "
                             "fit_gpytorch_mll (one decoder pass)",
                "amortized_refine": "amortized with fit_gpytorch_mll(mll, refine=True) (decoder pass, "
                                    "then the regularized refinement)",
                "default_stgp": "SingleTaskGP(X, Y), fit_gpytorch_mll defaults",
                "sm4_mll": f"SingleTaskGP + SpectralMixtureKernel(4, ard_num_dims=d), "
                           f"initialize_from_data, best of {args.sm_restarts} restarts by final MLL, "
                           f"L-BFGS maxiter {args.sm_maxiter}",
                "sm4_empspect": "as sm4_mll, from initialize_from_data_empspect",
                "oracle": "prior tasks: exact GP with the true kernel, noise and constant mean",
            },
            "runtime_s": None,
        },
        "results": results,
        "plots": [str(p) for p in plots],
    }
    result["meta"]["runtime_s"] = time.perf_counter() - start
    result = json_ready(result)
    write_json(result, args.out)
    print_report(result)
    print(f"\nwrote {args.out}" + (f" and {args.plot}" if plots else "")
          + f" ({result['meta']['runtime_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
