r"""Time of the one pass (network and every inference stage), per inference variant and per stage.

Usage:
    python benchmarks/one_pass_speed.py --threads 1                  # n in 20 50 100 200 1000, d = 6
    python benchmarks/one_pass_speed.py --threads 1 --sizes 50 --dims 2 6 --repeats 50

Timed is :func:`pfn_kernels.inference.decode_spectral_params` on one task of the task prior per
(n, d) (the data of ``benchmarks/fit_speed.py``: ``sample_tasks(PriorConfig(), 1, ...)``, seed
``2026 + n + 100 d``, targets standardized), float64 inputs, the shipped decoder, for each
variant of ``--variants`` (the :data:`one_pass.VARIANTS` configurations: ``previous`` is the
inference configuration of earlier versions, run on today's code, so the ratio to it is the cost
of the configuration, not a comparison with earlier code; ``default`` is today's
:class:`~pfn_kernels.inference.InferenceConfig`),
and, for the default, each stage alone on the inputs it reads in the pass (beyond the pass's
context, :data:`~pfn_kernels.inference.pipeline.DEFAULT_MAX_CONTEXT` points or the decoder's
trained context if larger, the pass's subsample): the network, the evidence check, the sparse-spectra
stage (when the default runs it), the calibration and the mean/outputscale step.

Timing on a shared or virtualized machine drifts by tens of percent over minutes, so the
variants and stages are **interleaved**: every round times each of them once, in turn, after one
untimed warm-up round. Reported per (n, d): the median and the 10th percentile of each, and the
median over rounds of the per-round ratio to ``previous`` (the figure least sensitive to drift).
Run it alone, with ``--threads 1``. Written: ``benchmarks/results/one_pass_speed.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from benchmarks._common import (  # noqa: E402
    add_run_arguments,
    interleaved_seconds,
    machine_metadata,
    set_threads,
    write_json,
)
from benchmarks.fit_speed import task_data  # noqa: E402
from benchmarks.one_pass import VARIANTS  # noqa: E402
from pfn_kernels.inference import InferenceConfig, decode_spectral_params  # noqa: E402
from pfn_kernels.inference.bounds import OutputRanges  # noqa: E402
from pfn_kernels.inference.calibration import calibrate  # noqa: E402
from pfn_kernels.inference.evidence import evidence_check  # noqa: E402
from pfn_kernels.inference.outputscale import gls_mean_and_outputscale  # noqa: E402
from pfn_kernels.inference.pipeline import _run_network, context_limit, subsample_context  # noqa: E402
from pfn_kernels.inference.sparsity import sparsify  # noqa: E402
from pfn_kernels.network import default_decoder  # noqa: E402

STAGES = ("network", "evidence", "sparsity", "calibration", "mean_outputscale")


def timed_calls(X: torch.Tensor, y: torch.Tensor, variants: Sequence[str]) -> dict[str, Callable[[], Any]]:
    """name -> a call to time: each variant's whole pass, then the default's stages alone."""
    decoder = default_decoder()
    calls: dict[str, Callable[[], Any]] = {}
    for name in variants:
        config = InferenceConfig(**VARIANTS[name])
        calls[name] = lambda config=config: decode_spectral_params(X, y, decoder, config)
    cfg = InferenceConfig()
    # the stages read what the pass reads: beyond the context, its subsample
    x, yy = subsample_context(X[None], y[None], context_limit(cfg, decoder))
    est = _run_network(decoder, x, yy)
    xf, yf = x.to(est.weights), yy.to(est.weights)
    ranges = OutputRanges.of(decoder)
    checked, _ = evidence_check(xf, yf, est, ranges, cfg.evidence_margin, cfg.max_calibration_points)
    if cfg.sparsify:
        calls["sparsity"] = lambda checked=checked: sparsify(
            xf, yf, checked, ranges, cfg.sparsity_margin, cfg.max_calibration_points)
        checked, _ = sparsify(xf, yf, checked, ranges, cfg.sparsity_margin, cfg.max_calibration_points)
    cal = calibrate(xf, yf, checked, ranges, cfg.calibration_sweeps, cfg.max_calibration_points,
                    cfg.calibration_steps, cfg.calibration_prior_std)
    calls["network"] = lambda: _run_network(decoder, x, yy)
    calls["evidence"] = lambda: evidence_check(xf, yf, est, ranges, cfg.evidence_margin,
                                               cfg.max_calibration_points)
    calls["calibration"] = lambda: calibrate(xf, yf, checked, ranges, cfg.calibration_sweeps,
                                             cfg.max_calibration_points, cfg.calibration_steps,
                                             cfg.calibration_prior_std)
    calls["mean_outputscale"] = lambda: gls_mean_and_outputscale(
        xf, yf, cal, cfg.outputscale_prior_count, cfg.max_profile_points)
    return calls


def time_interleaved(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call over ``repeats`` interleaved rounds after one untimed warm-up round,
    in inference mode (as the pass runs its stages)."""
    with torch.inference_mode():
        return interleaved_seconds(calls, repeats, warmup=1)


def summarize(times: dict[str, list[float]], reference: str | None) -> dict[str, Any]:
    out = {}
    for name, ts in times.items():
        row = {"median_ms": 1e3 * statistics.median(ts),
               "p10_ms": 1e3 * sorted(ts)[len(ts) // 10], "times_ms": [1e3 * t for t in ts]}
        if reference is not None and reference in times and name != reference:
            ratios = [a / b for a, b in zip(ts, times[reference])]
            row[f"ratio_to_{reference}"] = statistics.median(ratios)
        out[name] = row
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 200, 1000])
    p.add_argument("--dims", type=int, nargs="+", default=[6])
    p.add_argument("--repeats", type=int, default=30, help="timed rounds (30)")
    p.add_argument("--variants", nargs="+", default=["previous", "default"], choices=list(VARIANTS))
    add_run_arguments(p, "one_pass_speed", threads=1, plot=False)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    reference = "previous" if "previous" in args.variants else None
    rows = []
    grid = [(n, d) for d in args.dims for n in args.sizes]
    for n, d in tqdm(grid, desc="one pass timing", disable=args.no_progress):
        X, Y = task_data(n, d)
        y = (Y[:, 0] - Y.mean()) / Y.std()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n beyond the context: the subsample warning
            times = time_interleaved(timed_calls(X, y, args.variants), args.repeats)
        rows.append({"n": n, "d": d, **summarize(times, reference)})
    result = {"meta": {"machine": machine_metadata(args.threads), "args": vars(args) | {"out": str(args.out)},
                       "variants": {v: VARIANTS[v] for v in args.variants}, "stages": list(STAGES),
                       "timed": "decode_spectral_params (variants) and the default's stages alone, "
                                "interleaved rounds after one warm-up"},
              "rows": rows}
    write_json(result, args.out)
    names = [*args.variants, *(s for s in STAGES if s in rows[0])]
    ratio_column = reference is not None and "default" in args.variants
    print("| n | d | " + " | ".join(names) + (f" | default / {reference} |" if ratio_column else " |"))
    print("|---" * (len(names) + 2 + ratio_column) + "|")
    for row in rows:
        cells = [f"{row[k]['median_ms']:.1f} ms" for k in names]
        ratio = f" | {row['default'][f'ratio_to_{reference}']:.2f}" if ratio_column else ""
        print(f"| {row['n']} | {row['d']} | " + " | ".join(cells) + ratio + " |")
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
