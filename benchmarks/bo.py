r"""Bayesian optimization with the amortized surrogate against marginal-likelihood baselines.

Usage:
    python benchmarks/bo.py                                   # shipped weights, full size
    python benchmarks/bo.py --workers 2                       # the same on 2 processes
    python benchmarks/bo.py --quick --weights runs/default/decoder.safetensors

Every (problem, method, seed) is one run of :func:`pfn_kernels.experiments.run_bo` (the loop the
demo uses): ``--n-init`` scrambled Sobol points (the same for every method of a seed), then
``--n-iter`` steps of ``qLogNoisyExpectedImprovement`` (q = 1, ``optimize_acqf`` with
``--num-restarts`` restarts and ``--raw-samples`` raw samples, identical for all methods). Inputs
are the unit cube mapped onto the problem's box; targets are standardized by each model's default
``Standardize``.

Problems (all maximized):

- ``branin``, ``hartmann6``, ``ackley4``, ``levy4``, ``rosenbrock4``: ``botorch.test_functions``,
  negated, known optimum;
- ``gp_prior2``, ``gp_prior4``: one function per seed drawn from the task prior the decoder is
  trained on (:func:`pfn_kernels.experiments.gp_prior_problem`): a kernel from
  ``sample_kernels(PriorConfig(), ...)`` (family, spectrum, irrelevant dimensions, warping) and a
  4096-feature random-Fourier-feature path of its spectral mixture (unit variance, noiseless,
  deterministic). Its optimum is estimated by a dense scrambled-Sobol search (2^14 points for
  d = 2, 2^16 for d = 4) followed by L-BFGS-B from the 10 best points.

Methods (:func:`pfn_kernels.experiments.fit_surrogate`):

- ``amortized``: ``AmortizedSingleTaskGP`` + ``fit_gpytorch_mll``, one decoder pass;
- ``amortized_refine``: the same + ``fit_amortized(model, refine=True)`` (short MAP refinement);
- ``default_stgp``: BoTorch's default ``SingleTaskGP`` + ``fit_gpytorch_mll``;
- ``sm4_mll``: ``SingleTaskGP`` + ``SpectralMixtureKernel(num_mixtures=4, ard_num_dims=d)``,
  ``initialize_from_data``, ``--sm-restarts`` restarts (L-BFGS capped at ``--sm-maxiter``
  iterations, one attempt each), the restart with the best marginal likelihood kept.

A failed fit keeps the model's current parameters and a failed acquisition optimization is
replaced by a Sobol point; both are recorded per run and counted in the summary.

Outputs (default ``benchmarks/results/bo.json`` and ``bo_log_regret.png``; ``bo_quick.*`` with
``--quick``): per run the regret trace (simple regret after each evaluation), points, values,
fit and acquisition times per step, wall and CPU time, failures and warning counts; per problem
and method the final regret (mean, standard error, median) and the final log10 regret; per method
the total fit, acquisition and wall times; the metadata of the machine and the weights. The JSON is
rewritten after every finished run, so ``--resume`` continues an interrupted benchmark; it keeps
every finished run of the file (runs of problems, methods or seeds not asked for again included),
so a slow method can be added with fewer seeds. Where the methods of a problem ran on different
seeds, the summary also compares them on the seeds they share (``common_seeds``), and
``meta.invocations`` lists the calls that added runs. The PNG is
one panel per problem: log10 regret (floored at 1e-8) vs evaluations, mean +- standard error over
seeds. A Markdown table of the final regrets and the times is printed at the end.

Parallelism: ``--workers N`` runs N processes (``multiprocessing``, spawn), each with
``set_threads(1)``; ``--ray`` distributes the runs with Ray (one CPU each) if it is
installed. Times measured in parallel runs include the contention between workers.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

import torch
from tqdm.auto import tqdm

from benchmarks._common import (
    add_run_arguments, apply_preset, machine_metadata, mean_se, set_threads, write_json,
)
from pfn_kernels.inference import InferenceConfig  # noqa: E402
from pfn_kernels.experiments import (
    METHOD_LABELS,
    METHODS,
    PROBLEMS,
    REGRET_FLOOR,
    make_problem,
    plot_log_regret,
    run_bo,
)

#: Sizes of the full run and of ``--quick``; explicit command-line values override either.
PRESETS = {
    "full": {
        "problems": list(PROBLEMS),
        "methods": list(METHODS),
        "seeds": 10,
        "n_init": 10,
        "n_iter": 40,
        "sm_restarts": 5,
    },
    "quick": {
        "problems": ["branin", "hartmann6", "gp_prior2"],
        "methods": list(METHODS),
        "seeds": 2,
        "n_init": 5,
        "n_iter": 3,
        "sm_restarts": 2,
    },
}


# ---------------------------------------------------------------------- weights
def resolve_weights(path: str | None) -> tuple[Path, dict[str, Any] | None]:
    """The weights file to use (``path`` or the shipped one), checked to load; its model card."""
    from pfn_kernels.network import WeightsError, load_decoder
    from pfn_kernels.network.weights import weights_path

    target = weights_path("default") if path is None else Path(path)
    if not target.is_file():
        hint = ("Pass --weights PATH, e.g. --weights runs/default/decoder.safetensors from a "
                "training run." if path is None else "")
        raise SystemExit(f"No decoder weights at {target}. {hint}".strip())
    try:
        load_decoder(target)
    except WeightsError as err:
        raise SystemExit(str(err)) from err
    card = None
    if target.with_suffix(".json").is_file():
        try:
            card = json.loads(target.with_suffix(".json").read_text())
        except json.JSONDecodeError:
            card = None
    return target, card


@functools.lru_cache(maxsize=2)
def load_weights(path: str) -> Any:
    """The decoder at ``path``, loaded once per process (retried: a training run may be
    rewriting the file)."""
    from pfn_kernels.network import WeightsError, load_decoder

    for attempt in range(3):
        try:
            return load_decoder(path).eval()
        except WeightsError:
            if attempt == 2:
                raise
            time.sleep(2.0)
    raise AssertionError("unreachable")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------- one run
@functools.lru_cache(maxsize=16)
def cached_problem(name: str, seed: int) -> Any:
    """Problems are built once per process; only the GP-sample problems depend on the seed."""
    return make_problem(name, seed=seed if name.startswith("gp_prior") else 0)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One (problem, method, seed) run; returns the run's JSON-ready dict."""
    problem = cached_problem(job["problem"], job["seed"])
    decoder = load_weights(job["weights"]) if job["method"].startswith("amortized") else None
    cpu = time.process_time()
    result = run_bo(
        problem, job["method"], seed=job["seed"], n_init=job["n_init"], n_iter=job["n_iter"],
        decoder=decoder, num_restarts=job["num_restarts"], raw_samples=job["raw_samples"],
        sm_restarts=job["sm_restarts"], sm_maxiter=job["sm_maxiter"],
        inference=job.get("inference"),
    )
    out = result.to_dict()
    out["cpu_time"] = time.process_time() - cpu
    out["description"] = problem.description
    out["torch_threads"] = torch.get_num_threads()
    return out


def _init_worker() -> None:
    set_threads(1)


def _ray_job(job: dict[str, Any]) -> dict[str, Any]:
    set_threads(1)
    return run_job(job)


def execute(jobs: list[dict[str, Any]], workers: int, use_ray: bool) -> Iterator[dict[str, Any]]:
    """Yield finished runs as they complete: in this process, a process pool, or Ray."""
    if use_ray:
        try:
            import ray
        except ImportError:
            raise SystemExit("--ray needs Ray, which is not installed (pip install ray); "
                             "or use --workers N for a local process pool.") from None
        ray.init(num_cpus=workers if workers > 1 else None, ignore_reinit_error=True,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        remote = ray.remote(num_cpus=1)(_ray_job)
        pending = [remote.remote(job) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    elif workers > 1:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # fork after torch's thread pools can hang
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            yield from pool.imap_unordered(run_job, jobs)
    else:
        for job in jobs:
            yield run_job(job)


# ---------------------------------------------------------------------- summaries
def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Final regret per problem and method; total times per method."""
    final: dict[str, dict[str, Any]] = {}
    common: dict[str, dict[str, Any]] = {}
    for problem in sorted({r["problem"] for r in runs}, key=_problem_order):
        final[problem] = {}
        by_method = _runs_by_method(runs, problem)
        for method, rs in by_method.items():
            final[problem][method] = {
                "runs": len(rs),
                "seeds": sorted(r["seed"] for r in rs),
                **_final_regret(rs),
                "final_regret_median": statistics.median(r["regret"][-1] for r in rs),
                "runs_with_failures": sum(bool(r["failures"]) for r in rs),
                "failures": sum(len(r["failures"]) for r in rs),
            }
        seed_sets = [{r["seed"] for r in rs} for rs in by_method.values()]
        shared = set.intersection(*seed_sets)
        if len({frozenset(s) for s in seed_sets}) > 1 and shared:
            common[problem] = {"seeds": sorted(shared)} | {
                m: _final_regret([r for r in rs if r["seed"] in shared])
                for m, rs in by_method.items()}
    timing = {}
    for method in METHODS:
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        steps = [t for r in rs for t in r["fit_times"]]
        acq = [t for r in rs for t in r["acq_times"]]
        timing[method] = {
            "runs": len(rs),
            "fit_time_total_s": sum(steps),
            "acq_time_total_s": sum(acq),
            "wall_time_total_s": sum(r["wall_time"] for r in rs),
            "cpu_time_total_s": sum(r.get("cpu_time", math.nan) for r in rs),
            "fit_time_per_step_median_s": statistics.median(steps) if steps else math.nan,
            "acq_time_per_step_median_s": statistics.median(acq) if acq else math.nan,
        }
    summary = {"final_regret": final, "timing": timing}
    if common:
        summary["common_seeds"] = common
    return summary


def _runs_by_method(runs: list[dict[str, Any]], problem: str) -> dict[str, list[dict[str, Any]]]:
    """The runs of ``problem`` per method, in the order of :data:`METHODS`, methods without runs
    left out."""
    by_method = {m: [r for r in runs if r["problem"] == problem and r["method"] == m]
                 for m in METHODS}
    return {m: rs for m, rs in by_method.items() if rs}


def _final_regret(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and standard error of the final regret and of its log10 (floored) over ``runs``."""
    regrets = [r["regret"][-1] for r in runs]
    mean, se = mean_se(regrets)
    log_mean, log_se = mean_se([math.log10(max(x, REGRET_FLOOR)) for x in regrets])
    return {"final_regret_mean": mean, "final_regret_se": se,
            "final_log10_regret_mean": log_mean, "final_log10_regret_se": log_se}


def _problem_order(name: str) -> int:
    return PROBLEMS.index(name) if name in PROBLEMS else len(PROBLEMS)


def markdown_tables(summary: dict[str, Any]) -> str:
    """Final simple regret (mean ± s.e. over seeds) per problem and method, then the times."""
    final, timing = summary["final_regret"], summary["timing"]
    methods = [m for m in METHODS if any(m in v for v in final.values())]
    lines = ["| problem | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for problem, entry in final.items():
        most = max(e["runs"] for e in entry.values())
        cells = []
        for m in methods:
            e = entry.get(m)
            cells.append("—" if e is None else
                         f"{e['final_regret_mean']:.3g} ± {e['final_regret_se']:.2g}"
                         + (f" (n = {e['runs']})" if e["runs"] < most else "")
                         + (f" ({e['failures']} fail.)" if e["failures"] else ""))
        lines.append(f"| {problem} | " + " | ".join(cells) + " |")
    if summary.get("common_seeds"):
        lines += ["", "Final log10 regret on the seeds all methods of a problem share:", "",
                  "| problem | seeds | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 2) + "|"]
        for problem, entry in summary["common_seeds"].items():
            cells = ["—" if m not in entry else f"{entry[m]['final_log10_regret_mean']:.2f} ± "
                     f"{entry[m]['final_log10_regret_se']:.2f}" for m in methods]
            lines.append(f"| {problem} | {len(entry['seeds'])} | " + " | ".join(cells) + " |")
    lines += ["", "| method | runs | fit total (s) | acq. total (s) | wall total (s) | "
              "fit/step median (s) |", "|---|---|---|---|---|---|"]
    for m, t in timing.items():
        lines.append(f"| {m} | {t['runs']} | {t['fit_time_total_s']:.1f} | "
                     f"{t['acq_time_total_s']:.1f} | {t['wall_time_total_s']:.1f} | "
                     f"{t['fit_time_per_step_median_s']:.3g} |")
    return "\n".join(lines)


def plot_grid(runs: list[dict[str, Any]], n_init: int, path: Path) -> Path:
    """One panel per problem: log10 regret vs evaluations, mean ± s.e. over seeds per method."""
    from matplotlib.figure import Figure

    problems = sorted({r["problem"] for r in runs}, key=_problem_order)
    cols = min(len(problems), 4)
    rows = math.ceil(len(problems) / cols)
    # at least 6.5 inches wide, so that one or two panels keep the whole title and legend
    fig = Figure(figsize=(max(4.2 * cols, 6.5), 3.4 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i in range(rows * cols):
        ax = axes[i // cols][i % cols]
        if i >= len(problems):
            ax.set_visible(False)
            continue
        by_method = _runs_by_method(runs, problems[i])
        counts = {len(v) for v in by_method.values()}
        seeds = f"{max(counts)} seeds" if len(counts) == 1 else \
            f"{min(counts)}–{max(counts)} seeds, see legend"
        labels = ({m: f"{METHOD_LABELS[m]} (n = {len(v)})" for m, v in by_method.items()}
                  if len(counts) > 1 else None)
        plot_log_regret(ax, by_method, n_init, title=f"{problems[i]} ({seeds})", labels=labels)
        ax.set_xlabel("evaluations")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2 if cols > 1 else 1)
    sep = " " if cols > 2 else "\n"
    fig.suptitle(f"log10 simple regret, mean ± s.e. over seeds{sep}(dotted: end of Sobol design)")
    fig.savefig(path, dpi=110)
    return path


# ---------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run (smaller defaults below; writes bo_quick.*)")
    parser.add_argument("--weights", default=None,
                        help="decoder weights (.safetensors); default: the shipped ones")
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=None,
                        help="problems (all; quick: branin hartmann6 gp_prior2)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None,
                        help="methods (all)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (10; quick 2)")
    parser.add_argument("--n-init", type=int, default=None, help="Sobol points (10; quick 5)")
    parser.add_argument("--n-iter", type=int, default=None, help="BO steps (40; quick 3)")
    parser.add_argument("--num-restarts", type=int, default=4, help="optimize_acqf restarts")
    parser.add_argument("--raw-samples", type=int, default=128, help="optimize_acqf raw samples")
    parser.add_argument("--sm-restarts", type=int, default=None, help="SM(4) restarts (5; quick 2)")
    parser.add_argument("--sm-maxiter", type=int, default=200,
                        help="L-BFGS iterations per SM(4) restart")
    parser.add_argument("--inference", type=json.loads, default=None, metavar="JSON",
                        help="InferenceConfig options of the amortized methods, e.g. "
                        "'{\"mean_mode\": \"gls\"}' (default: the library's defaults)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes (multiprocessing), each with 1 torch thread")
    parser.add_argument("--ray", action="store_true", help="distribute the runs with Ray")
    parser.add_argument("--resume", action="store_true",
                        help="keep every finished run of an existing --out (same settings "
                             "required) and run only the missing (problem, method, seed)")
    add_run_arguments(parser, "bo", threads=1, by_preset=True)  # plot: <--out stem>_log_regret.png
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write the JSON and the plot, print the tables; return the results."""
    args = build_parser().parse_args(argv)
    apply_preset(args, PRESETS)
    stem = "bo_quick" if args.quick else "bo"
    args.out = args.out or ROOT / "benchmarks" / "results" / f"{stem}.json"
    args.plot = args.plot or args.out.with_name(f"{args.out.stem}_log_regret.png")  # next to --out
    if args.n_init < 2 or args.n_iter < 1 or args.seeds < 1:
        raise SystemExit("Need --n-init >= 2, --n-iter >= 1 and --seeds >= 1.")
    set_threads(args.threads)
    start = time.perf_counter()
    weights, card = resolve_weights(args.weights)

    settings = {"n_init": args.n_init, "n_iter": args.n_iter, "num_restarts": args.num_restarts,
                "raw_samples": args.raw_samples, "sm_restarts": args.sm_restarts,
                "sm_maxiter": args.sm_maxiter}
    if args.inference is not None:
        # as the JSON file holds it (lists, not tuples), so that --resume compares like with like
        settings["inference"] = json.loads(json.dumps(InferenceConfig.from_dict(args.inference).to_dict()))
    jobs = [
        {"problem": p, "method": m, "seed": s, "weights": str(weights), **settings}
        for s in range(args.seeds) for p in args.problems for m in args.methods
    ]
    runs: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []  # the invocations whose runs the file holds
    if args.resume and args.out.is_file():
        previous = json.loads(args.out.read_text())
        same = all(previous.get("meta", {}).get("settings", {}).get(k) == v
                   for k, v in settings.items())
        if not same:
            raise SystemExit(f"--resume: {args.out} was run with other settings "
                             f"({previous.get('meta', {}).get('settings')}); choose another --out.")
        # Every finished run stays, also those of problems, methods or seeds not asked for now:
        # a slow method can be added with fewer seeds without dropping the others' runs.
        runs = list(previous.get("runs", []))
        old = previous.get("meta", {})
        history = old.get("invocations") or [{  # a file from before invocations were kept
            "args": old.get("args"), "date": old.get("machine", {}).get("date"),
            "runs_added": len(runs), "note": "the last call before; earlier calls not recorded"}]
        done = {(r["problem"], r["method"], r["seed"]) for r in runs}
        jobs = [j for j in jobs if (j["problem"], j["method"], j["seed"]) not in done]
        print(f"resuming: {len(runs)} finished runs kept, {len(jobs)} to go")

    meta = {
        "machine": machine_metadata(1 if args.workers > 1 or args.ray else args.threads),
        "weights": {
            "path": str(weights),
            "sha256": sha256(weights),
            "steps": None if card is None else card.get("steps"),
            "model_card_validation": None if card is None else card.get("validation"),
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "invocations": history,
        "settings": settings,
        "parallel": ("ray" if args.ray else f"{args.workers} process(es)"),
        "acquisition": f"qLogNoisyExpectedImprovement(X_baseline=all points, prune_baseline=True), "
                       f"q=1, optimize_acqf(num_restarts={args.num_restarts}, "
                       f"raw_samples={args.raw_samples}); torch.manual_seed(seed*100003 + step) "
                       "before each step",
        "inputs": "unit cube mapped onto the problem's bounds; no input transform (the models see "
                  "[0, 1]^d); targets standardized by each model's default Standardize",
        "regret": "simple regret optimal_value - best observed value after each evaluation "
                  f"(plots: log10 of max(regret, {REGRET_FLOOR:g}))",
        "methods": {m: METHOD_LABELS[m] for m in METHODS
                    if m in args.methods or any(r["method"] == m for r in runs)},
        "gp_prior_problems": "kernel from pfn_kernels.prior.families.sample_kernels(PriorConfig()) "
                             "with generator seed 4242 + 1000*d + seed; 4096 random Fourier "
                             "features of its spectral mixture (input warping applied), unit "
                             "variance, noiseless; optimum by 2^(12+d) (<= 2^16) Sobol points "
                             "+ L-BFGS-B from the 10 best",
        "runtime_s": None,
    }

    history.append({"args": meta["args"], "date": meta["machine"]["date"], "runs_added": len(jobs)})

    def snapshot() -> dict[str, Any]:
        return {"meta": meta, "summary": summarize(runs) if runs else {}, "runs": runs}

    with tqdm(total=len(jobs), desc="BO runs", disable=args.no_progress) as bar:
        for run in execute(jobs, args.workers, args.ray):
            runs.append(run)
            bar.set_postfix_str(f"{run['problem']}/{run['method']}/seed {run['seed']}: "
                                f"regret {run['regret'][-1]:.3g}")
            bar.update()
            write_json(snapshot(), args.out, indent=1)

    runs.sort(key=lambda r: (_problem_order(r["problem"]), METHODS.index(r["method"]), r["seed"]))
    result = snapshot()
    result["problems"] = {
        p: {"description": sorted({r["description"] for r in runs if r["problem"] == p}),
            "optimal_value_by_seed": {str(r["seed"]): r["optimal_value"]
                                      for r in runs if r["problem"] == p}}
        for p in sorted({r["problem"] for r in runs}, key=_problem_order)
    }
    if not args.no_plot and runs:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        result["plots"] = [str(plot_grid(runs, args.n_init, args.plot))]
    meta["runtime_s"] = time.perf_counter() - start
    write_json(result, args.out, indent=1)
    print()
    print(markdown_tables(result["summary"]))
    print(f"\nfinal simple regret after {args.n_init} + {args.n_iter} evaluations, mean ± s.e. "
          f"over seeds; wrote {args.out}" + (f" and {args.plot}" if result.get("plots") else "")
          + f" ({meta['runtime_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
