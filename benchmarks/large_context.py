r"""Large contexts: what the one pass reads, and its time, memory and quality up to n = 10,000.

Usage:
    python benchmarks/large_context.py                  # n up to 10,000, d in {2, 8, 16}
    python benchmarks/large_context.py --quick          # n up to 1,000, fewer tasks

The strategy measured (``InferenceConfig()``, see :mod:`pfn_kernels.inference.pipeline`):

- up to :data:`~pfn_kernels.inference.pipeline.DEFAULT_MAX_CONTEXT` (512) points the network reads
  every point; beyond, a fixed random subsample of 512;
- the evidence check and the calibration read up to 256 of the points the network read;
- the GLS mean and the outputscale read up to ``max_profile_points`` (2048) of *all* points;
- the GP itself conditions on all n points (its own O(n^3) cost, not the pass's).

Per (n, d), in a fresh process per cell so that peak memory is the pass's own:

- **time**: median wall time of ``decode_spectral_params`` (network and every stage), 1 thread;
- **memory**: the rise of the process's peak resident memory during the first pass;
- **quality** (``--quality-max-n`` and below): test NLL per point of the exact GP on all n
  context points with the decoded hyperparameters, on ``--tasks`` held-out prior tasks, against
  the oracle (the true kernel and noise) and against the earlier strategy (a 256-point
  subsample for every stage: ``InferenceConfig(max_context=256, max_calibration_points=128)``).

Written: ``benchmarks/results/large_context.json`` and ``large_context.png``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from benchmarks._common import (  # noqa: E402
    add_run_arguments, apply_preset, machine_metadata, mean_se, median_seconds, set_threads,
    write_json,
)

LARGE_CONTEXT_SEED = 9090
#: The earlier strategy, for the quality comparison.
SUBSAMPLE_256 = {"max_context": 256, "max_calibration_points": 128}
PRESETS = {
    "quick": {"sizes": [256, 512, 1000], "dims": [2, 8], "tasks": 4, "repeats": 2, "quality_max_n": 1000},
    "full": {"sizes": [256, 512, 1000, 2000, 5000, 10000], "dims": [2, 8, 16], "tasks": 8,
             "repeats": 3, "quality_max_n": 5000},
}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def measure_cell(n: int, d: int, tasks: int, repeats: int, quality: bool, threads: int,
                 weights: str | None = None) -> dict[str, Any]:
    """One (n, d) cell, in this process: time and memory of the pass, and (with ``quality``)
    test NLLs on held-out prior tasks. ``weights``: a decoder file (default: the shipped one)."""
    from benchmarks.decoder_quality import amortized_scores
    from pfn_kernels.inference import InferenceConfig, decode_spectral_params
    from pfn_kernels.inference.pipeline import context_limit
    from pfn_kernels.network import default_decoder, load_decoder
    from pfn_kernels.prior import PriorConfig, sample_tasks

    set_threads(threads)
    warnings.simplefilter("ignore")
    decoder = default_decoder() if weights is None else load_decoder(weights)
    g = torch.Generator().manual_seed(LARGE_CONTEXT_SEED + 31 * d + n)
    X = torch.rand(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = torch.sin(6.0 * X @ w / d**0.5) + 0.3 * torch.cos(17.0 * X[:, 0]) + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    y = (y - y.mean()) / y.std()
    decode_spectral_params(X[:20], y[:20], decoder)  # warm-up outside the memory window
    before = _peak_rss_mib()
    decode_spectral_params(X, y, decoder)
    row: dict[str, Any] = {"n": n, "d": d, "peak_rss_increase_mib": _peak_rss_mib() - before}
    row["seconds"], row["seconds_all"] = median_seconds(lambda: decode_spectral_params(X, y, decoder), repeats, 0)
    row["network_reads"] = min(n, context_limit(InferenceConfig(), decoder))
    if quality:
        cfg = PriorConfig(min_dims=d, max_dims=d, max_context=max(n, 256))
        batch = sample_tasks(cfg, tasks, torch.Generator().manual_seed(LARGE_CONTEXT_SEED + d + n),
                             num_context=n, num_targets=200, dtype=torch.float64)
        oracle = batch.oracle_scores().target_nll
        row["oracle_nll"] = oracle.tolist()
        for name, options in {"one_pass": {}, "subsample_256": SUBSAMPLE_256}.items():
            nll = torch.cat([amortized_scores(decoder, batch[i : i + 1], InferenceConfig(**options))[0].target_nll
                             for i in range(tasks)])
            row[f"{name}_nll"] = nll.tolist()
    return row


def run_cell(n: int, d: int, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure_cell` in a fresh interpreter (peak memory is per process)."""
    quality = n <= args.quality_max_n
    cmd = [sys.executable, __file__, "--cell", str(n), str(d), str(args.tasks), str(args.repeats),
           str(int(quality)), str(args.threads)] + ([] if args.weights is None else ["--weights", str(args.weights)])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        s = {k: r[k] for k in ("n", "d", "seconds", "peak_rss_increase_mib", "network_reads")}
        if "oracle_nll" in r:
            for name in ("one_pass", "subsample_256"):
                gap = [a - b for a, b in zip(r[f"{name}_nll"], r["oracle_nll"])]
                s[f"{name}_gap"], s[f"{name}_gap_se"] = mean_se(gap)
        out.append(s)
    return out


def plot(summary: list[dict[str, Any]], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    fig = Figure(figsize=(11, 3.4), layout="constrained")
    ax_t, ax_m, ax_q = fig.subplots(1, 3)
    for d in sorted({s["d"] for s in summary}):
        rows = [s for s in summary if s["d"] == d]
        ns = [s["n"] for s in rows]
        ax_t.plot(ns, [s["seconds"] for s in rows], "o-", label=f"d = {d}")
        ax_m.plot(ns, [s["peak_rss_increase_mib"] for s in rows], "o-", label=f"d = {d}")
        q = [s for s in rows if "one_pass_gap" in s]
        if q:
            line, = ax_q.plot([s["n"] for s in q], [s["one_pass_gap"] for s in q], "o-", label=f"d = {d}, reads 512")
            ax_q.plot([s["n"] for s in q], [s["subsample_256_gap"] for s in q], "s--", color=line.get_color(),
                      alpha=0.6, label=f"d = {d}, subsample 256")
    for ax, title in ((ax_t, "one pass, 1 thread (s)"), (ax_m, "peak memory rise (MiB)"),
                      (ax_q, "test NLL − oracle's (nats/pt)")):
        ax.set_xscale("log")
        ticks = sorted({s["n"] for s in summary})
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks], fontsize=7)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("context points n")
        ax.set_title(title, fontsize=10)
        ax.axvline(512, color="0.6", lw=0.8, ls=":")
        ax.legend(fontsize=7)
    ax_t.set_yscale("log")
    fig.savefig(path, dpi=130)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="n up to 1,000, d in {2, 8}, 4 tasks")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="context sizes n")
    p.add_argument("--dims", type=int, nargs="+", default=None)
    p.add_argument("--tasks", type=int, default=None, help="prior tasks per cell for the quality")
    p.add_argument("--repeats", type=int, default=None, help="timed passes per cell")
    p.add_argument("--quality-max-n", type=int, default=None, help="largest n with a quality measurement")
    p.add_argument("--weights", default=None, help="decoder .safetensors (default: the packaged weights)")
    p.add_argument("--cell", nargs=6, type=int, default=None, help=argparse.SUPPRESS)
    add_run_arguments(p, "large_context", threads=1, by_preset=True)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    args = build_parser().parse_args(argv)
    if args.cell is not None:  # the child process of one cell
        n, d, tasks, repeats, quality, threads = args.cell
        print(json.dumps(measure_cell(n, d, tasks, repeats, bool(quality), threads, args.weights)))
        return None
    apply_preset(args, PRESETS)
    name = "large_context_quick" if args.quick else "large_context"
    out_path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"{name}.json"
    plot_path = Path(args.plot) if args.plot else out_path.with_suffix(".png")
    cells = [(n, d) for d in args.dims for n in args.sizes]
    rows = [run_cell(n, d, args) for n, d in tqdm(cells, desc="cells", disable=args.no_progress)]
    summary = summarize(rows)
    result = {"meta": machine_metadata(args.threads),
              "settings": {k: getattr(args, k) for k in ("sizes", "dims", "tasks", "repeats", "quality_max_n")},
              "summary": summary, "cells": rows}
    write_json(result, out_path)
    if not args.no_plot:
        plot(summary, plot_path)
    print("| n | d | one pass (s) | peak memory rise (MiB) | gap to oracle, reads 512 | gap, subsample 256 |")
    print("|---|---|---|---|---|---|")
    for s in summary:
        q = (f"{s['one_pass_gap']:+.3f} ± {s['one_pass_gap_se']:.3f} | "
             f"{s['subsample_256_gap']:+.3f} ± {s['subsample_256_gap_se']:.3f}") if "one_pass_gap" in s else "– | –"
        print(f"| {s['n']} | {s['d']} | {s['seconds']:.3f} | {s['peak_rss_increase_mib']:.0f} | {q} |")
    return result


if __name__ == "__main__":
    main()
