"""Throughput of the task prior and evaluation time of AmortizedSpectralKernel.

Usage:
    python benchmarks/prior_speed.py --out benchmarks/results/prior_speed.json

Reports (median over ``--repeats`` timed runs after warm-up):

- prior throughput in tasks/s of ``sample_tasks(PriorConfig(), 32, ...)`` for several (n, d), with
  the default ``num_targets`` (100 held-out points per task, so N = n + 100 joint points);
- the time of one dense kernel matrix ``AmortizedSpectralKernel()(x).to_dense()`` for
  n in {100, 1000}, d in {1, 6}, Q = 4, float32 and float64.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import torch
from tqdm import tqdm

from benchmarks._common import add_run_arguments, cpu_model, set_threads, write_json  # noqa: E402
from pfn_kernels import AmortizedSpectralKernel
from pfn_kernels.prior import PriorConfig, sample_tasks

PRIOR_CASES = [(128, 4), (16, 1), (64, 2), (32, 8), (256, 8)]  # (n, d); the first is the headline
KERNEL_CASES = [
    (n, d, dtype) for n in (100, 1000) for d in (1, 6) for dtype in ("float32", "float64")
]
BATCH_SIZE = 32


def timed(fn, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median and min wall-clock time, and median process CPU time, in ms.

    On a shared machine the wall clock includes waiting for a core; with one thread the CPU time
    is close to the wall time an idle machine would show.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "median_ms": 1e3 * statistics.median(wall),
        "min_ms": 1e3 * min(wall),
        "median_cpu_ms": 1e3 * statistics.median(cpu),
    }


def bench_prior(n: int, d: int, repeats: int, seed: int) -> dict:
    cfg = PriorConfig()
    generator = torch.Generator().manual_seed(seed)
    t = timed(lambda: sample_tasks(cfg, BATCH_SIZE, generator, num_dims=d, num_context=n), repeats)
    return {
        "n_context": n,
        "num_targets": cfg.num_targets,
        "d": d,
        "batch_size": BATCH_SIZE,
        "median_ms_per_batch": t["median_ms"],
        "min_ms_per_batch": t["min_ms"],
        "median_cpu_ms_per_batch": t["median_cpu_ms"],
        "tasks_per_s": 1e3 * BATCH_SIZE / t["median_ms"],
        "tasks_per_cpu_s": 1e3 * BATCH_SIZE / t["median_cpu_ms"],
    }


def bench_kernel(n: int, d: int, dtype: str, repeats: int, seed: int) -> dict:
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(seed)
    params = sample_tasks(
        PriorConfig(), 1, generator, num_dims=d, num_context=2, num_targets=0
    ).params[0]
    kernel = AmortizedSpectralKernel(num_mixtures=params.num_mixtures).to(torch_dtype)
    kernel.set_spectral_params(params.to(torch_dtype))
    x = torch.rand(n, d, generator=generator).to(torch_dtype)
    with torch.no_grad():
        t = timed(lambda: kernel(x).to_dense(), repeats)
    return {"n": n, "d": d, "Q": params.num_mixtures, "dtype": dtype, **t}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(parser, "prior_speed", plot=False, progress=False)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    set_threads(args.threads)
    load_before = list(os.getloadavg())  # other processes on the machine skew wall-clock times
    prior, kernel = [], []
    cases = [("prior", c) for c in PRIOR_CASES] + [("kernel", c) for c in KERNEL_CASES]
    for kind, case in tqdm(cases, desc="benchmarks"):
        if kind == "prior":
            prior.append(bench_prior(*case, repeats=args.repeats, seed=args.seed))
        else:
            kernel.append(bench_kernel(*case, repeats=args.repeats, seed=args.seed))

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "load_average_1_5_15min_before": load_before,
            "load_average_1_5_15min_after": list(os.getloadavg()),
        },
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "repeats": args.repeats,
        "prior": prior,
        "kernel": kernel,
    }
    write_json(result, args.out)

    print(f"prior throughput (batch {BATCH_SIZE}, {prior[0]['num_targets']} targets per task):")
    for r in prior:
        print(
            f"  n={r['n_context']:4d} d={r['d']}: {r['tasks_per_s']:8.0f} tasks/s "
            f"({r['median_ms_per_batch']:.1f} ms per batch, {r['median_cpu_ms_per_batch']:.1f} ms CPU)"
        )
    print("AmortizedSpectralKernel, dense n x n matrix:")
    for r in kernel:
        print(
            f"  n={r['n']:5d} d={r['d']} {r['dtype']}: {r['median_ms']:.3f} ms "
            f"({r['median_cpu_ms']:.3f} ms CPU)"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
