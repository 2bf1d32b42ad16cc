r"""Fit time of the amortized GP against marginal-likelihood fits, and Ax generation-step times.

Usage:
    python benchmarks/fit_speed.py                            # shipped weights, full size
    python benchmarks/fit_speed.py --quick --weights runs/default/decoder.safetensors

Everything runs on CPU with ``torch.set_num_threads(--threads)``, float64.

1. Fit time at every n in ``--sizes`` (10 50 200 1000) and d in ``--dims`` (1 2 6 10). The data
   are one task of the task prior per (n, d) (``sample_tasks(PriorConfig(), 1, ...)``, seed
   ``2026 + n + 100 d``): inputs in :math:`[0, 1]^d`, standardized noisy targets. Timed is
   :func:`pfn_kernels.experiments.fit_surrogate`: building the model and fitting it, a fresh model
   every repeat, for

   - ``amortized``: ``AmortizedSingleTaskGP`` + ``fit_gpytorch_mll``, one decoder pass;
   - ``amortized_refine``: the same + the short MAP refinement (``fit_amortized(refine=True)``);
   - ``default_stgp``: BoTorch's default ``SingleTaskGP`` + ``fit_gpytorch_mll``;
   - ``sm4_mll``: ``SingleTaskGP`` + ``SpectralMixtureKernel(4, ard_num_dims=d)``,
     ``initialize_from_data``, ``--sm-restarts`` restarts (L-BFGS capped at ``--sm-maxiter``
     iterations), the best marginal likelihood kept.

   Reported: the median wall time over ``--repeats`` timed runs after one untimed warm-up
   (``--sm-repeats`` runs and no warm-up for ``sm4_mll``, the slowest), all the times, the median CPU time of the
   process (``time.process_time``; robust to other load on the machine, but it counts all torch
   threads), and the ratio of each median wall time to the amortized one.
2. Ax generation steps on Hartmann6 (the unit cube, so Ax adds no input transform): ``--ax-sobol``
   Sobol trials, then ``--ax-bo`` Bayesian-optimization trials, one trial per
   ``Client.get_next_trials`` call, for three strategies:

   - ``amortized``: :func:`pfn_kernels.ax.amortized_generation_strategy` (same weights);
   - ``amortized_refine``: the same with ``refine=True``;
   - ``default``: Ax's own ``Client.configure_generation_strategy(method="fast")`` with the same
     number of Sobol trials and no centre point (BoTorch's default ``SingleTaskGP``, fitted by
     marginal likelihood, and qLogNoisyExpectedImprovement, as the amortized strategy).

   Each BO step is split into the surrogate fit (time inside Ax's ``Surrogate.fit``), the
   acquisition (time inside ``BoTorchGenerator.gen``: building and optimizing the acquisition
   function, with Ax's default optimizer settings for all strategies) and the rest (Ax's
   transforms and bookkeeping); the CPU time of each step is recorded too. The two methods are
   wrapped with timers for the duration of this benchmark only. Skipped, and reported as such,
   if :mod:`pfn_kernels.ax` is not available.
3. A PNG of the fit time vs n (log-log), one panel per d.

The JSON holds every number plus metadata (date, CPU, threads, versions, weights).
"""

from __future__ import annotations

import argparse
import json
import contextlib
import logging
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

import torch
from tqdm.auto import tqdm

from benchmarks._common import (
    add_run_arguments, apply_preset, json_ready, machine_metadata, set_threads, write_json,
)
from benchmarks.bo import load_weights, resolve_weights, sha256
from pfn_kernels.experiments import METHOD_LABELS, METHODS, fit_surrogate, make_problem

EVAL_SEED = 2026
#: Sizes of the full run and of ``--quick``; explicit command-line values override either.
PRESETS = {
    "full": {
        "sizes": [10, 50, 200, 1000],
        "dims": [1, 2, 6, 10],
        "repeats": 10,
        "sm_repeats": 3,
        "sm_restarts": 5,
        "ax_sobol": 8,
        "ax_bo": 20,
    },
    "quick": {
        "sizes": [10, 50, 200],
        "dims": [1, 6],
        "repeats": 3,
        "sm_repeats": 1,
        "sm_restarts": 2,
        "ax_sobol": 8,
        "ax_bo": 3,
    },
}


# ---------------------------------------------------------------------- 1. fit times
def task_data(n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One prior task: `(n, d)` inputs in the unit cube and `(n, 1)` standardized targets."""
    from pfn_kernels.prior import PriorConfig, sample_tasks

    g = torch.Generator().manual_seed(EVAL_SEED + n + 100 * d)
    batch = sample_tasks(PriorConfig(), 1, g, num_dims=d, num_context=n, num_targets=0,
                         dtype=torch.float64)
    return batch.x_context[0], batch.y_context[0].unsqueeze(-1)


def time_fits(method: str, X: torch.Tensor, Y: torch.Tensor, decoder: Any, repeats: int,
              args: argparse.Namespace) -> dict[str, Any]:
    """Median time of ``fit_surrogate(method, X, Y)`` over ``repeats`` runs after a warm-up
    (none for ``sm4_mll``)."""
    times, cpu_times, failures, warns = [], [], 0, 0
    warmup = 0 if method == "sm4_mll" else 1  # SM(4) fits take seconds: first-call costs vanish
    for r in range(repeats + warmup):
        cpu = time.process_time()
        _, info = fit_surrogate(method, X, Y, decoder=decoder, seed=EVAL_SEED + r,
                                sm_restarts=args.sm_restarts, sm_maxiter=args.sm_maxiter,
                                inference=args.inference)
        cpu = time.process_time() - cpu
        if r < warmup:
            continue  # warm-up: caches, lazy imports, first-call allocations
        times.append(info.seconds)
        cpu_times.append(cpu)
        failures += info.failure is not None
        warns += sum(info.warnings.values())
    return {"median_s": statistics.median(times), "times_s": times,
            "cpu_median_s": statistics.median(cpu_times), "failures": failures,
            "warnings": warns}


def fit_benchmark(decoder: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every method at every (n, d); ratios to the amortized median."""
    rows = []
    cases = [(n, d) for d in args.dims for n in args.sizes]
    for n, d in tqdm(cases, desc="fit times", disable=args.no_progress):
        X, Y = task_data(n, d)
        row: dict[str, Any] = {"n": n, "d": d, "methods": {}}
        for method in args.methods:
            repeats = args.sm_repeats if method == "sm4_mll" else args.repeats
            row["methods"][method] = time_fits(method, X, Y, decoder, repeats, args)
        base = row["methods"].get("amortized", {}).get("median_s")
        if base:
            row["ratio_to_amortized"] = {m: v["median_s"] / base for m, v in row["methods"].items()
                                         if m != "amortized"}
        rows.append(row)
    return rows


# ---------------------------------------------------------------------- 2. Ax generation steps
@contextlib.contextmanager
def timed_methods(targets: dict[str, tuple[type, str]]) -> Iterator[dict[str, list[float]]]:
    """Wrap ``cls.method`` for every entry with a timer; yields {label: [seconds, ...]}."""
    spent: dict[str, list[float]] = {label: [] for label in targets}
    originals = []
    for label, (cls, name) in targets.items():
        original = getattr(cls, name)
        originals.append((cls, name, original))

        def wrapper(*a: Any, __original: Any = original, __label: str = label, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return __original(*a, **k)
            finally:
                spent[__label].append(time.perf_counter() - t0)

        setattr(cls, name, wrapper)
    try:
        yield spent
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


def ax_run(strategy: str, weights: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One Ax optimization of Hartmann6 with ``strategy``; per-step fit / acquisition / rest."""
    from ax.api.client import Client
    from ax.api.configs import RangeParameterConfig
    from ax.generators.torch.botorch_modular.generator import BoTorchGenerator
    from ax.generators.torch.botorch_modular.surrogate import Surrogate

    import pfn_kernels.ax as pax

    problem = make_problem("hartmann6")
    d = problem.dim
    client = Client(random_seed=args.seed)
    client.configure_experiment(parameters=[
        RangeParameterConfig(name=f"x{i}", bounds=(0.0, 1.0), parameter_type="float")
        for i in range(d)
    ])
    client.configure_optimization(objective="y")
    if strategy == "default":
        client.configure_generation_strategy(
            method="fast", initialization_budget=args.ax_sobol, initialize_with_center=False,
            initialization_random_seed=args.seed,
        )
    else:
        client.set_generation_strategy(pax.amortized_generation_strategy(
            num_sobol=args.ax_sobol, refine=strategy == "amortized_refine",
            decoder=str(weights), seed=args.seed,
        ))
    steps = []
    best = -math.inf
    targets = {"fit": (Surrogate, "fit"), "gen": (BoTorchGenerator, "gen")}
    with timed_methods(targets) as spent, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(args.ax_sobol + args.ax_bo):
            before = {k: len(v) for k, v in spent.items()}
            t0, cpu = time.perf_counter(), time.process_time()
            trials = client.get_next_trials(max_trials=1)
            total, cpu = time.perf_counter() - t0, time.process_time() - cpu
            fit = sum(spent["fit"][before["fit"]:])
            gen = sum(spent["gen"][before["gen"]:])
            for index, params in trials.items():
                x = torch.tensor([[params[f"x{j}"] for j in range(d)]], dtype=torch.float64)
                value = float(problem.evaluate_unit(x)[0])
                best = max(best, value)
                client.complete_trial(index, raw_data={"y": value})
            steps.append({"step": i, "bo": i >= args.ax_sobol, "total_s": total, "cpu_s": cpu,
                          "fit_s": fit,
                          "acquisition_s": gen, "other_s": total - fit - gen})
    bo = [s for s in steps if s["bo"]]
    med = lambda key: statistics.median(s[key] for s in bo) if bo else math.nan  # noqa: E731
    return {
        "strategy": strategy,
        "steps": steps,
        "bo_steps": len(bo),
        "median_step_s": med("total_s"),
        "median_step_cpu_s": med("cpu_s"),
        "median_fit_s": med("fit_s"),
        "median_acquisition_s": med("acquisition_s"),
        "median_other_s": med("other_s"),
        "total_fit_s": sum(s["fit_s"] for s in bo),
        "total_acquisition_s": sum(s["acquisition_s"] for s in bo),
        "total_step_s": sum(s["total_s"] for s in bo),
        "best_value": best,
        "final_regret": problem.optimal_value - best,
    }


def ax_benchmark(weights: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The Ax part, or why it was skipped."""
    try:
        import pfn_kernels.ax as pax

        pax.amortized_generation_strategy  # noqa: B018  (present?)
    except (ImportError, AttributeError) as err:
        return {"skipped": f"pfn_kernels.ax.amortized_generation_strategy unavailable: "
                           f"{type(err).__name__}: {err}"}
    import ax.api.client  # noqa: F401  (creates its logger before the levels are set)
    from ax.utils.common.logger import set_ax_logger_levels

    set_ax_logger_levels(logging.WARNING)  # Ax logs every trial at INFO
    runs = {}
    for strategy in tqdm(args.ax_strategies, desc="Ax strategies", disable=args.no_progress):
        try:
            runs[strategy] = ax_run(strategy, weights, args)
        except Exception as err:  # noqa: BLE001  (reported, the rest of the benchmark stands)
            runs[strategy] = {"strategy": strategy, "failed": f"{type(err).__name__}: {err}"}
    return {"problem": "hartmann6", "sobol_trials": args.ax_sobol, "bo_trials": args.ax_bo,
            "seed": args.seed, "runs": runs}


# ---------------------------------------------------------------------- report
def plot_times(rows: list[dict[str, Any]], path: Path) -> Path:
    """Median fit time vs n, log-log, one panel per d, one line per method."""
    from matplotlib.figure import Figure

    dims = sorted({r["d"] for r in rows})
    fig = Figure(figsize=(3.8 * len(dims), 3.6), layout="constrained")
    axes = fig.subplots(1, len(dims), squeeze=False)[0]
    for ax, d in zip(axes, dims):
        sub = sorted((r for r in rows if r["d"] == d), key=lambda r: r["n"])
        for method in METHODS:
            pts = [(r["n"], r["methods"][method]["median_s"])
                   for r in sub if method in r["methods"]]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=METHOD_LABELS[method])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"d = {d}")
        ax.set_xlabel("n (training points)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fit time, median (s)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    fig.savefig(path, dpi=110)
    return path


def print_report(result: dict[str, Any]) -> None:
    rows = result["fit"]
    methods = [m for m in METHODS if any(m in r["methods"] for r in rows)]
    print("| n | d | " + " | ".join(f"{m} (s)" for m in methods) + " | "
          + " | ".join(f"{m} / amortized" for m in methods if m != "amortized") + " |")
    print("|---" * (2 + len(methods) + len(methods) - ("amortized" in methods)) + "|")
    for r in rows:
        times = [f"{r['methods'][m]['median_s']:.3g}" for m in methods]
        ratios = [f"{r.get('ratio_to_amortized', {}).get(m, math.nan):.3g}"
                  for m in methods if m != "amortized"]
        print(f"| {r['n']} | {r['d']} | " + " | ".join(times + ratios) + " |")
    ax = result["ax"]
    print()
    if "skipped" in ax:
        print(f"Ax generation steps: skipped ({ax['skipped']})")
        return
    print(f"Ax generation steps, Hartmann6, {ax['sobol_trials']} Sobol + {ax['bo_trials']} BO "
          "trials; medians over BO steps (s):")
    print("| strategy | step | fit | acquisition | other | total fit | total acq. | final regret |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in ax["runs"].items():
        if "failed" in run:
            print(f"| {name} | failed: {run['failed']} |")
            continue
        print(f"| {name} | {run['median_step_s']:.3g} | {run['median_fit_s']:.3g} | "
              f"{run['median_acquisition_s']:.3g} | {run['median_other_s']:.3g} | "
              f"{run['total_fit_s']:.3g} | {run['total_acquisition_s']:.3g} | "
              f"{run['final_regret']:.3g} |")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run (smaller defaults below)")
    parser.add_argument("--weights", default=None,
                        help="decoder weights (.safetensors); default: the shipped ones")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="n (10 50 200 1000; quick 10 50 200)")
    parser.add_argument("--dims", type=int, nargs="+", default=None, help="d (1 2 6 10; quick 1 6)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (10; quick 3)")
    parser.add_argument("--sm-repeats", type=int, default=None,
                        help="timed repeats of sm4_mll (3; quick 1)")
    parser.add_argument("--sm-restarts", type=int, default=None, help="SM(4) restarts (5; quick 2)")
    parser.add_argument("--sm-maxiter", type=int, default=200,
                        help="L-BFGS iterations per SM(4) restart")
    parser.add_argument("--ax-sobol", type=int, default=None, help="Ax Sobol trials (8)")
    parser.add_argument("--ax-bo", type=int, default=None, help="Ax BO trials (20; quick 3)")
    parser.add_argument("--ax-strategies", nargs="+",
                        default=["amortized", "amortized_refine", "default"],
                        choices=["amortized", "amortized_refine", "default"])
    parser.add_argument("--no-ax", action="store_true", help="skip the Ax part")
    parser.add_argument("--inference", type=json.loads, default=None, metavar="JSON",
                        help="InferenceConfig options of the amortized fits, as a JSON object "
                             "(default: InferenceConfig()); not applied to the Ax part")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Ax runs")
    add_run_arguments(parser, "fit_speed", threads=1, by_preset=True)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write the JSON (and the plot) and return the results dictionary."""
    args = build_parser().parse_args(argv)
    apply_preset(args, PRESETS)
    stem = "fit_speed_quick" if args.quick else "fit_speed"
    args.out = args.out or ROOT / "benchmarks" / "results" / f"{stem}.json"
    args.plot = args.plot or args.out.with_suffix(".png")  # next to --out
    set_threads(args.threads)
    start = time.perf_counter()
    weights, card = resolve_weights(args.weights)
    decoder = load_weights(str(weights))

    fit_rows = fit_benchmark(decoder, args)
    ax = {"skipped": "--no-ax"} if args.no_ax else ax_benchmark(weights, args)
    result = {
        "meta": {
            "machine": machine_metadata(args.threads),
            "weights": {"path": str(weights), "sha256": sha256(weights),
                        "steps": None if card is None else card.get("steps")},
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "timed": "pfn_kernels.experiments.fit_surrogate: model construction + fit, a fresh "
                     "model per repeat, median after one untimed warm-up (none for sm4_mll)",
            "methods": {m: METHOD_LABELS[m] for m in args.methods},
            "runtime_s": None,
        },
        "fit": fit_rows,
        "ax": ax,
    }
    if not args.no_plot and fit_rows:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        result["plots"] = [str(plot_times(fit_rows, args.plot))]
    result["meta"]["runtime_s"] = time.perf_counter() - start
    write_json(result, args.out)
    print()
    print_report(json_ready(result))
    print(f"\nwrote {args.out}" + (f" and {args.plot}" if result.get("plots") else "")
          + f" ({result['meta']['runtime_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
