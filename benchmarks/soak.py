r"""Soak test: a long Ax optimization loop with the amortized generation strategy.

Usage:
    python benchmarks/soak.py                                   # 200 trials, shipped weights
    python benchmarks/soak.py --trials 5 --out /tmp/soak.json   # a smoke run
    python benchmarks/soak.py --decoder runs/default/decoder.safetensors
    python benchmarks/soak.py --strategy default --out benchmarks/results/soak_default.json  # Ax's GP
    python benchmarks/soak.py --problem levy4 --out /tmp/soak_levy4.json  # another problem

An Ax ``Client`` minimizes Hartmann6 (``botorch.test_functions.Hartmann``, 6 dimensions on
:math:`[0, 1]^6`, minimum -3.32237) with :func:`pfn_kernels.ax.amortized_generation_strategy`:
``--num-sobol`` Sobol trials, then one amortized GP fit and one ``qLogNoisyExpectedImprovement``
candidate per trial, sequentially; ``--strategy default`` runs Ax's own default instead (the same
Sobol node, then Ax's modular BoTorch generator with its default surrogate, a ``SingleTaskGP``
fitted by ``fit_gpytorch_mll``, and the same acquisition function and optimizer budget), for the
side-by-side comparison. ``--problem NAME`` runs a problem of
:data:`pfn_kernels.experiments.PROBLEMS` instead (maximized; the unit cube scaled to its bounds).
What it checks over a long run:

- **no failed trials**: any exception while generating or completing a trial is recorded (with
  its message) and the trial marked failed; the run goes on;
- **memory**: peak resident memory (``resource.getrusage(...).ru_maxrss``), current resident
  memory, and Python-level allocations (``tracemalloc``: current and peak; torch tensors are
  allocated outside its view, hence the resident numbers) at each ``--checkpoints`` trial
  (default 50 and 200); a leak shows as resident memory growing between checkpoints beyond the
  growth of the data;
- **time**: wall time per trial (generation + evaluation), median and maximum per phase;
- **warnings**: counts by category and message start (a warning repeated every trial is a bug or
  a documented fallback worth knowing about).

Results go to ``--out`` (default ``benchmarks/results/soak.json``).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import math
import resource
import statistics
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

import torch

from benchmarks._common import add_run_arguments, machine_metadata, set_threads, write_json

HARTMANN6_MIN = -3.32237


def resident_mib() -> float:
    """Current resident set size of this process, MiB (Linux ``/proc/self/statm``)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except (OSError, IndexError, ValueError):
        return math.nan


def peak_resident_mib() -> float:
    """Peak resident set size so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def live_tensors() -> tuple[int, float]:
    """Number and total size (MiB) of the torch tensors the garbage collector can reach."""
    gc.collect()
    count, size = 0, 0
    for obj in gc.get_objects():
        try:
            if isinstance(obj, torch.Tensor) and not obj.is_meta:
                count += 1
                size += obj.element_size() * obj.nelement()
        except Exception:  # objects that fail isinstance checks (lazy modules, proxies)
            continue
    return count, size / 2**20


def trim_heap() -> bool:
    """Return free heap pages to the OS (glibc ``malloc_trim``); False where unavailable."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def memory_snapshot(trial: int, start: float) -> dict[str, Any]:
    """Memory at a checkpoint. Resident memory that falls back after ``malloc_trim`` was free heap
    kept by the allocator, not live data; a leak shows as growing ``live_tensor_mib`` or
    ``tracemalloc_current_mib``, or as ``rss_after_trim_mib`` growing faster than the data."""
    current, peak = tracemalloc.get_traced_memory()
    snap = {
        "trial": trial,
        "elapsed_s": round(time.perf_counter() - start, 2),
        "ru_maxrss_mib": round(peak_resident_mib(), 1),
        "rss_mib": round(resident_mib(), 1),
        "tracemalloc_current_mib": round(current / 2**20, 2),
        "tracemalloc_peak_mib": round(peak / 2**20, 2),
    }
    count, size = live_tensors()
    trimmed = trim_heap()
    snap.update({"live_tensors": count, "live_tensor_mib": round(size, 2),
                 "rss_after_trim_mib": round(resident_mib(), 1) if trimmed else None})
    return snap


STRATEGIES = ("amortized", "default")


def default_generation_strategy(num_sobol: int, seed: int, optimizer_kwargs: dict[str, int] | None = None):
    """Ax's default strategy, built by the dispatch the amortized one uses (method ``"fast"``:
    Ax's default surrogate), with the same Sobol node, acquisition class and optimizer budget."""
    from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
    from ax.api.utils.structs import GenerationStrategyDispatchStruct
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement

    struct = GenerationStrategyDispatchStruct(
        method="fast", initialization_budget=num_sobol, initialization_random_seed=seed,
        initialize_with_center=False, use_existing_trials_for_initialization=True,
    )
    from pfn_kernels.ax import set_optimizer_kwargs

    strategy = choose_generation_strategy(struct, botorch_acqf_class=qLogNoisyExpectedImprovement)
    set_optimizer_kwargs(strategy, optimizer_kwargs)
    return strategy


def make_client(num_sobol: int, decoder: str | None, seed: int,
                optimizer_kwargs: dict[str, int] | None = None, strategy: str = "amortized",
                dim: int = 6, objective: str = "-hartmann6"):
    from ax.api.client import Client
    from ax.api.configs import RangeParameterConfig

    from pfn_kernels.ax import amortized_generation_strategy

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")

    client = Client(random_seed=seed)
    client.configure_experiment(
        parameters=[
            RangeParameterConfig(name=f"x{i}", bounds=(0.0, 1.0), parameter_type="float")
            for i in range(dim)
        ]
    )
    client.configure_optimization(objective=objective)
    # optimizer_kwargs: a smaller acquisition optimization than Ax's default (quick runs)
    if strategy == "default":
        client.set_generation_strategy(default_generation_strategy(num_sobol, seed, optimizer_kwargs))
    else:
        client.set_generation_strategy(amortized_generation_strategy(
            num_sobol=num_sobol, decoder=decoder, seed=seed, optimizer_kwargs=optimizer_kwargs))
    return client


def run_soak(
    trials: int = 200,
    num_sobol: int = 10,
    decoder: str | None = None,
    seed: int = 0,
    checkpoints: tuple[int, ...] = (50, 200),
    progress: bool = True,
    optimizer_kwargs: dict[str, int] | None = None,
    strategy: str = "amortized",
    problem: str = "hartmann6",
) -> dict[str, Any]:
    """Run the loop; return the results dictionary (see the module docstring).

    ``problem``: ``"hartmann6"`` (minimized, as above) or any name of
    :data:`pfn_kernels.experiments.PROBLEMS` (maximized on the unit cube, scaled to its bounds).

    ``strategy``: ``"amortized"`` (:func:`pfn_kernels.ax.amortized_generation_strategy`) or
    ``"default"`` (:func:`default_generation_strategy`, Ax's own).

    ``optimizer_kwargs`` (e.g. ``{"num_restarts": 2, "raw_samples": 32}``) replace Ax's default
    acquisition optimization budget; ``None`` keeps Ax's defaults.
    """
    from botorch.test_functions import Hartmann

    if problem == "hartmann6":
        dim, metric, sign, optimum = 6, "hartmann6", 1.0, HARTMANN6_MIN  # minimized
        evaluate, description = Hartmann(dim=6), "hartmann6 (minimize), 6 dimensions on [0, 1]^6"
    else:
        from pfn_kernels.experiments import make_problem

        task = make_problem(problem)
        dim, metric, sign, optimum = task.dim, task.name, -1.0, task.optimal_value  # maximized
        evaluate = task.evaluate_unit
        description = f"{task.name} (maximize), {task.dim} dimensions, unit cube scaled to its bounds"
    tracemalloc.start()
    start = time.perf_counter()
    client = make_client(num_sobol, decoder, seed, optimizer_kwargs, strategy, dim,
                         f"-{metric}" if sign > 0 else metric)
    failures: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []
    times: dict[str, list[float]] = collections.defaultdict(list)
    warning_counts: collections.Counter[str] = collections.Counter()
    best = math.inf
    history: list[float] = []

    def count_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        warning_counts[f"{category.__name__}: {str(message)[:100]}"] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = count_warning
        for trial in range(1, trials + 1):
            t0 = time.perf_counter()
            index = None
            try:
                ((index, params),) = client.get_next_trials(max_trials=1).items()
                x = torch.tensor([[params[f"x{i}"] for i in range(dim)]], dtype=torch.float64)
                value = float(evaluate(x))
                client.complete_trial(index, raw_data={metric: value})
                best = min(best, sign * value)  # sign * value is minimized
                node = client._experiment.trials[index].generator_runs[0]._generation_node_name
            except Exception as err:  # recorded: the soak's point is that nothing fails
                failures.append({"trial": trial, "error": f"{type(err).__name__}: {err}"[:2000]})
                node = "failed"
                if index is not None:
                    try:
                        client.mark_trial_failed(index, failed_reason=failures[-1]["error"][:200])
                    except Exception:  # noqa: BLE001
                        pass
            times[node].append(time.perf_counter() - t0)
            history.append(sign * best)
            if trial in checkpoints or trial == trials:
                snapshots.append(memory_snapshot(trial, start))
            if progress:
                print(f"trial {trial:4d} [{node}] {times[node][-1]:6.2f}s best {sign * best:.4f} "
                      f"rss {resident_mib():.0f} MiB failures {len(failures)}", flush=True)
    tracemalloc.stop()
    return {
        "problem": description,
        "known_minimum" if sign > 0 else "known_maximum": optimum,
        "trials": trials,
        "num_sobol": num_sobol,
        "strategy": strategy,
        "decoder": (decoder or "default (shipped weights)") if strategy == "amortized" else None,
        "seed": seed,
        "acquisition_optimizer_kwargs": optimizer_kwargs or "Ax defaults",
        "failed_trials": len(failures),
        "failures": failures,
        "best_value": sign * best,
        "simple_regret": sign * (sign * best - optimum),
        "best_by_trial": {
            str(t): history[t - 1] for t in (10, 25, 50, 100, 150, 200) if t <= len(history)
        },
        "memory": snapshots,
        "seconds_per_trial": {
            node: {"count": len(ts), "median": statistics.median(ts), "max": max(ts),
                   "total": sum(ts)}
            for node, ts in times.items()
        },
        "total_seconds": time.perf_counter() - start,
        "warnings": dict(warning_counts.most_common()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--num-sobol", type=int, default=10)
    p.add_argument("--decoder", help="shipped weights name or .safetensors path (default: shipped)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--problem", default="hartmann6",
                   help="hartmann6 (default, minimized) or a pfn_kernels.experiments problem (maximized)")
    p.add_argument("--strategy", choices=STRATEGIES, default="amortized",
                   help="amortized (default) or Ax's default GP, for the side-by-side comparison")
    p.add_argument("--checkpoints", type=int, nargs="*", default=[50, 200],
                   help="trials at which memory is recorded (and the last one)")
    p.add_argument("--num-restarts", type=int, help="acquisition restarts (default: Ax's)")
    p.add_argument("--raw-samples", type=int, help="acquisition raw samples (default: Ax's)")
    add_run_arguments(p, "soak", threads=1, plot=False, progress=False)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    set_threads(args.threads)
    optimizer_kwargs = {k: v for k, v in (("num_restarts", args.num_restarts),
                                          ("raw_samples", args.raw_samples)) if v is not None}
    results = run_soak(args.trials, args.num_sobol, args.decoder, args.seed,
                       tuple(args.checkpoints), progress=not args.quiet,
                       optimizer_kwargs=optimizer_kwargs or None, strategy=args.strategy,
                       problem=args.problem)
    results = {"machine": machine_metadata(args.threads), **results}
    write_json(results, args.out)
    print(f"{results['failed_trials']} failed trials, best {results['best_value']:.4f}; "
          f"wrote {args.out}")
    return 0 if results["failed_trials"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
