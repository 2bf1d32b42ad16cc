"""Helpers shared by the benchmark scripts: machine metadata, timing and summary statistics."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from pfn_kernels.experiments import mean_stderr

#: Where the scripts write their JSON and figures by default.
RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_metadata(threads: int) -> dict[str, Any]:
    """Date, CPU, thread count, load and library versions, for the header of a results file."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("gpytorch", "botorch"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": threads,
        "load_average_1_5_15min": load,
        "versions": versions,
    }


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in torch and in the BLAS and OpenMP pools that numpy and scipy
    load (``threadpoolctl``). Left at their default (one thread per core), those pools spin
    against each other when several processes share a few cores, and timings lose their meaning."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def interleaved_seconds(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each call over ``repeats`` rounds, each round calling every one once in turn,
    after ``warmup`` untimed rounds: a machine's drift over minutes then hits all of them alike
    (compare them by the per-round ratios)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(warmup + repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


#: Mean and standard error of the mean (SE 0 for one value, NaN for none): the library's helper.
mean_se = mean_stderr


def apply_preset(args: argparse.Namespace, presets: dict[str, dict[str, Any]]) -> None:
    """Fill the options left at ``None`` from ``presets["quick"]`` (with ``--quick``) or
    ``presets["full"]``."""
    for key, value in presets["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def add_run_arguments(
    parser: argparse.ArgumentParser,
    name: str,
    threads: int = 2,
    plot: bool = True,
    progress: bool = True,
    by_preset: bool = False,
) -> None:
    """Add the options the scripts share: ``--threads``; ``--out``, the results JSON
    (``RESULTS/<name>.json``); with ``plot``, ``--plot`` (``RESULTS/<name>.png``) and ``--no-plot``;
    with ``progress``, ``--no-progress``. With ``by_preset`` the paths default to ``None``: the
    script names them after its preset (``<name>_quick`` for ``--quick``)."""
    parser.add_argument("--threads", type=int, default=threads, help=f"CPU threads of torch and of the BLAS pools ({threads})")
    where = f"benchmarks/results/{name}" + ("[_quick]" if by_preset else "")
    parser.add_argument("--out", type=Path, default=None if by_preset else RESULTS / f"{name}.json",
                        help=f"results JSON ({where}.json)")
    if plot:
        parser.add_argument("--plot", type=Path, default=None if by_preset else RESULTS / f"{name}.png",
                            help="figure PNG (" + ("next to --out" if by_preset else f"{where}.png") + ")")
        parser.add_argument("--no-plot", action="store_true", help="write no figure")
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def write_json(result: dict[str, Any], path: Path, indent: int = 2) -> None:
    """Write ``result`` as strict JSON (:func:`json_ready`), atomically: a run that is stopped
    while writing leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(json_ready(result), indent=indent, allow_nan=False) + "\n")
    os.replace(tmp, path)


def json_ready(obj: Any) -> Any:
    """Recursively convert tensors and tuples to lists and non-finite floats to ``None``
    (so the file is strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return json_ready(obj.tolist() if obj.dim() else obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj
