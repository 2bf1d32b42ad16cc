r"""What the marginal-likelihood calibration of the decoded spectrum buys, and what it costs.

Usage:
    python benchmarks/calibration.py                      # shipped weights
    python benchmarks/calibration.py --weights runs/x/decoder.safetensors --tasks 64

:meth:`pfn_kernels.SpectralDecoder.calibrate` dilates the decoded spectrum of each input dimension
by the factor that maximizes the profile marginal likelihood over a small grid. This script scores
the same decoder with ``DecoderConfig.calibrate`` off and on, on held-out prior tasks (default
prior, seed ``5151 + --seed + d``, ``--context`` points, ``--targets`` held-out points): per-point
test NLL gap to the oracle GP (true kernel, noise and mean; mean +- standard error over tasks) and
the MSE ratio to the oracle. It also times one decoder call (median, ``--threads`` CPU threads) at
n = 50, 100 and 256 with d = 6, both ways.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

from benchmarks._common import (  # noqa: E402
    add_run_arguments, machine_metadata, mean_se, median_seconds, set_threads, write_json,
)
from benchmarks.decoder_quality import amortized_scores, resolve_weights  # noqa: E402
from pfn_kernels.inference import InferenceConfig, decode_spectral_params  # noqa: E402
from pfn_kernels.prior import PriorConfig, sample_tasks  # noqa: E402

EVAL_SEED = 5151


def quality(decoder: Any, d: int, args: argparse.Namespace) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(EVAL_SEED + args.seed + d)
    batch = sample_tasks(PriorConfig(), args.tasks, gen, num_dims=d, num_context=args.context,
                         num_targets=args.targets, dtype=torch.float64)
    oracle = batch.oracle_scores()
    row: dict[str, Any] = {"tasks": args.tasks}
    for name, on in (("raw", False), ("calibrated", True)):
        scores, _, _ = amortized_scores(decoder, batch, InferenceConfig(calibrate=on))
        gap, se = mean_se((scores.target_nll - oracle.target_nll).tolist())
        row[name] = {"gap": gap, "gap_se": se,
                     "mse_ratio": float(scores.target_mse.mean() / oracle.target_mse.mean())}
    row["gap_change"] = row["calibrated"]["gap"] - row["raw"]["gap"]
    return row


def timing(decoder: Any, sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        X = torch.rand(n, 6, generator=g, dtype=torch.float64)
        y = torch.sin(2 * torch.pi * 3 * X[:, 0]) + X[:, 1] + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
        y = (y - y.mean()) / y.std()
        row: dict[str, Any] = {"n": n, "d": 6}
        for name, on in (("raw", False), ("calibrated", True)):
            config = InferenceConfig(calibrate=on)
            row[f"{name}_ms"] = 1000 * median_seconds(
                lambda: decode_spectral_params(X, y, decoder, config), repeats)[0]
        out.append(row)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="decoder weights (default: the shipped ones)")
    p.add_argument("--dims", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--tasks", type=int, default=256, help="tasks per d (256)")
    p.add_argument("--context", type=int, default=50)
    p.add_argument("--targets", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help=f"evaluation seed offset (base {EVAL_SEED})")
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 256], help="timed n (d = 6)")
    p.add_argument("--repeats", type=int, default=20)
    add_run_arguments(p, "calibration", plot=False)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    decoder, path, card = resolve_weights(args.weights)
    rows = {str(d): quality(decoder, d, args) for d in tqdm(args.dims, desc="dims", disable=args.no_progress)}
    times = timing(decoder, args.sizes, args.repeats)
    out = {"meta": {**machine_metadata(args.threads), "weights": str(path),
                    "steps": (card or {}).get("steps"), "settings": vars(args)},
           "quality": rows, "timing": times}
    write_json(out, args.out)
    print("| d | tasks | gap, raw | gap, calibrated | MSE ratio, raw | MSE ratio, calibrated |")
    print("|---|---|---|---|---|---|")
    for d, r in rows.items():
        a, b = r["raw"], r["calibrated"]
        print(f"| {d} | {r['tasks']} | {a['gap']:.3f} ± {a['gap_se']:.3f} | {b['gap']:.3f} ± {b['gap_se']:.3f} "
              f"| {a['mse_ratio']:.2f} | {b['mse_ratio']:.2f} |")
    print("\n| n (d = 6) | raw (ms) | calibrated (ms) |\n|---|---|---|")
    for t in times:
        print(f"| {t['n']} | {t['raw_ms']:.1f} | {t['calibrated_ms']:.1f} |")
    return out


if __name__ == "__main__":
    main()
